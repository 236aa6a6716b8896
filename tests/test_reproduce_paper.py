"""``clstm-ppo reproduce-paper`` end to end on a hand-made three-stock panel (tiny networks, a
few hundred training steps): the files it writes, the statistics across seeds, the baselines
recomputed from the CSV, and resuming without retraining."""

from __future__ import annotations

import base64
import itertools
import json
import math
import re
import time

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from clstm_ppo.cli import main
from clstm_ppo.train import checkpoint as ckpt
from portfolio_helpers import column, write_panel_csv

TICKERS = ("AAA", "BBB", "CCC")
CAPITAL = 1_000_000.0
COST = 0.001
METRICS = {"cumulative_return": "total_return", "max_drawdown": "max_drawdown",
           "sharpe": "sharpe"}  # fmt: skip
MODELS = {"clstm": "CLSTM-PPO", "mlp": "PPO"}
TRADING_DAYS = pd.bdate_range("2016-01-01", "2020-05-08")  # the hand-made file's calendar
BOUNDS = {"cumulative_return": (-1.0, math.inf), "max_drawdown": (0.0, 1.0)}
PNGS = ("equity.png", "drawdown.png", "actions.png", "pnl_by_strategy.png")


def _checkpoint_state(runs) -> dict[str, tuple]:
    """Per run: the files in its checkpoints folder (name, size, mtime) and the latest
    checkpoint's episode count."""
    state = {}
    for run in sorted(p for p in runs.iterdir() if p.is_dir()):
        folder = run / "checkpoints"
        files = tuple(
            (p.name, p.lstat().st_size, p.lstat().st_mtime_ns) for p in sorted(folder.iterdir())
        )
        latest = ckpt.load(ckpt.resolve(folder, "latest"))["train_state"]["episodes"]
        state[run.name] = (files, latest)
    return state


@pytest.mark.slow
def test_reproduce_paper_end_to_end_and_resume(tmp_path, capsys) -> None:
    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    out = tmp_path / "out"
    argv = [
        "reproduce-paper", "--data", f"csv:{csv}", "--tickers", ",".join(TICKERS),
        "--seeds", "2", "--timesteps", "300", "--num-envs", "2", "--output", str(out),
        "--set", "portfolio.episode_length=60", "--set", "portfolio.window=5",
        "--set", "agent.lstm_hidden=8", "--set", "agent.feature_dim=8",
        "--set", "agent.policy_hidden=16", "--set", "agent.mlp_hidden=16",
        "--set", "ppo.rollout_length=16",
    ]  # fmt: skip
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny networks: extra threads only contend on a busy machine
    try:
        started = time.perf_counter()
        assert main(argv) == 0
        first_seconds = time.perf_counter() - started
        first = json.loads((out / "results.json").read_text())
        checkpoints = _checkpoint_state(out / "runs")

        started = time.perf_counter()
        assert main(argv) == 0
        second_seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    capsys.readouterr()
    second = json.loads((out / "results.json").read_text())

    # --- the models: two seeds each, summaries consistent with the per-seed metrics
    assert set(first["models"]) == {"clstm", "mlp"}
    for arch, row in first["models"].items():
        assert [s["seed"] for s in row["seeds"]] == [0, 1]
        for name, key in METRICS.items():
            values = np.array([s["metrics"][key] for s in row["seeds"]])
            assert np.isfinite(values).all()
            summary = row["summary"][name]
            mean = values.sum() / 2
            std = math.sqrt(((values - mean) ** 2).sum() / (2 - 1))
            half = stats.t.ppf(0.975, 1) * std / math.sqrt(2)
            assert summary["mean"] == pytest.approx(mean, rel=1e-12, abs=1e-15), (arch, name)
            assert summary["std"] == pytest.approx(std, rel=1e-9, abs=1e-15), (arch, name)
            # The t-interval, clipped to the metric's range (drawdown >= 0, return >= -100%).
            low, high = BOUNDS.get(name, (-math.inf, math.inf))
            assert summary["ci_low"] == pytest.approx(max(mean - half, low), rel=1e-9, abs=1e-15)
            assert summary["ci_high"] == pytest.approx(min(mean + half, high), rel=1e-9, abs=1e-15)
        for seed in row["seeds"]:
            assert 1 <= seed["checkpoint_episode"] <= 6  # 300 steps = 5 episodes of 60
            # --- each seed's report, with its four plots embedded from files that exist
            report = out / "reports" / f"{arch}_seed{seed['seed']}" / "report.html"
            assert seed["report"] == str(report)
            page = report.read_text()
            embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
            assert len(embedded) == len(PNGS)
            files = {(report.parent / name).read_bytes() for name in PNGS}
            assert {base64.b64decode(data) for data in embedded} == files
            # The agent walked the whole trading period, not one training-length episode.
            equity = pd.read_csv(report.parent / "equity.csv", index_col=0, parse_dates=True)
            assert equity.index.equals(pd.DatetimeIndex(TRADING_DAYS, name=equity.index.name))
            agent = equity[f"{MODELS[arch]} seed {seed['seed']}"]
            assert agent.notna().all() and agent.iloc[0] == CAPITAL

    # --- the table: our numbers beside the paper's
    table = (out / "table.md").read_text()
    rows = {line.split("|")[1].strip(): line for line in table.splitlines()[2:]}
    clstm = rows["CLSTM-PPO (clstm, 2 seeds)"]
    mean = first["models"]["clstm"]["summary"]["cumulative_return"]["mean"]
    assert f"| {mean:.2%} [" in clstm
    assert "| 90.81% |" in clstm and "| 46.51% |" in clstm and "| 1.154 |" in clstm
    assert "| 54.37% |" in rows["PPO (mlp, 2 seeds)"]
    assert "| 50.97% |" in rows["DJI (rebuilt, price-weighted)"]

    # --- the baselines, recomputed from the CSV over the trading period
    dates = TRADING_DAYS
    close = column(csv, "Close", TICKERS, dates)
    level = close.sum(axis=1)
    index = first["baselines"]["DJI (rebuilt, price-weighted)"]
    assert index["cumulative_return"] == pytest.approx(level[-1] / level[0] - 1, rel=1e-9)
    drawdown = float(np.max(1.0 - level / np.maximum.accumulate(level)))
    assert index["max_drawdown"] == pytest.approx(drawdown, rel=1e-9)
    adjusted = column(csv, "Adj Close", TICKERS, dates)
    unit = adjusted[0] * (1 + COST)
    shares = np.floor(CAPITAL / len(TICKERS) / unit)
    values = CAPITAL - shares @ unit + adjusted @ shares  # cash left + holdings at each close
    equal = first["baselines"]["equal-weight buy-and-hold"]
    assert equal["cumulative_return"] == pytest.approx(values[-1] / CAPITAL - 1, rel=1e-9)
    assert first["provenance"]["trading_period"] == ["2016-01-01", "2020-05-08"]
    assert first["provenance"]["data"]["data"]["tickers"] == list(TICKERS)

    # --- the rerun resumed: nothing retrained, same checkpoints, same results, faster
    assert _checkpoint_state(out / "runs") == checkpoints
    # 300 steps of 60-day episodes on 2 envs: 3 rounds of 2 episodes, recorded as trained.
    assert first["provenance"]["timesteps_per_run"] == 300
    assert first["provenance"]["episodes_per_run"] == 6
    assert all(latest == 6 for _, latest in checkpoints.values())
    for row in first["models"].values():
        assert all(360 <= s["trained_env_steps"] < 360 + 2 * 16 for s in row["seeds"])
    assert second_seconds < first_seconds
    for arch in ("clstm", "mlp"):
        for a, b in zip(first["models"][arch]["seeds"], second["models"][arch]["seeds"],
                        strict=True):  # fmt: skip
            assert b["metrics"] == a["metrics"]
            assert b["checkpoint_episode"] == a["checkpoint_episode"]
            assert b["env_steps"] == a["env_steps"]
            assert b["train_seconds"] < a["train_seconds"]
        assert second["models"][arch]["summary"] == first["models"][arch]["summary"]
    assert second["baselines"] == first["baselines"]


@pytest.mark.slow
def test_sigint_during_training_stops_without_evaluating_then_resumes(
    tmp_path, capsys, monkeypatch
) -> None:
    """Ctrl-C while a model trains saves it and stops the command (exit 130, no results from a
    half-trained model); the same command then continues and finishes."""
    import os
    import signal

    from clstm_ppo.train.trainer import Trainer

    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    out = tmp_path / "out"
    argv = [
        "reproduce-paper", "--data", f"csv:{csv}", "--tickers", ",".join(TICKERS),
        "--seeds", "1", "--models", "mlp", "--timesteps", "300", "--num-envs", "2",
        "--output", str(out), "--set", "portfolio.episode_length=60",
        "--set", "portfolio.window=5", "--set", "agent.mlp_hidden=16",
        "--set", "ppo.rollout_length=16",
    ]  # fmt: skip
    original = Trainer._collect
    calls = {"n": 0}

    def interrupted_collect(self):
        calls["n"] += 1
        if calls["n"] == 6:  # after 2 episodes: the trainer's own signal handler catches it
            os.kill(os.getpid(), signal.SIGINT)
        return original(self)

    monkeypatch.setattr(Trainer, "_collect", interrupted_collect)
    assert main(argv) == 130
    printed = capsys.readouterr().out
    assert "rerun the same command to continue" in printed
    assert not (out / "results.json").exists()
    saved = ckpt.load(ckpt.resolve(out / "runs" / "mlp_seed0" / "checkpoints", "latest"))
    stopped_at = saved["train_state"]["episodes"]
    assert 0 < stopped_at < 5  # 300 steps / 60-day episodes = 5 episodes wanted

    monkeypatch.setattr(Trainer, "_collect", original)
    assert main(argv) == 0
    assert "resumed from" in capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert [s["seed"] for s in results["models"]["mlp"]["seeds"]] == [0]
    done = ckpt.load(ckpt.resolve(out / "runs" / "mlp_seed0" / "checkpoints", "latest"))
    assert done["train_state"]["episodes"] >= 5

    # `clstm-ppo evaluate` on the same stock-portfolio checkpoint gives the same walk, beside
    # the same two baselines.
    report = tmp_path / "evaluation"
    checkpoints = out / "runs" / "mlp_seed0" / "checkpoints"
    assert main(["evaluate", "--checkpoint", str(ckpt.resolve(checkpoints, "best")),
                 "--output", str(report)]) == 0  # fmt: skip
    rows = {row["name"]: row for row in json.loads((report / "metrics.json").read_text())}
    assert set(rows) == {"mlp-ppo", *results["baselines"]}
    agent = results["models"]["mlp"]["seeds"][0]["metrics"]
    assert rows["mlp-ppo"]["total_return"] == pytest.approx(agent["total_return"], rel=1e-12)
    assert rows["mlp-ppo"]["sharpe"] == pytest.approx(agent["sharpe"], rel=1e-12)
    for name, metrics in results["baselines"].items():
        assert rows[name]["total_return"] == pytest.approx(metrics["cumulative_return"])


def test_quarters_partition_the_trading_period_and_expand_the_training_window(tmp_path) -> None:
    from clstm_ppo.config import build_config
    from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
    from clstm_ppo.evaluate.retrain import HOLDOUT_DAYS, quarter_config, quarters

    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    config = build_config(overrides={"portfolio.data": f"csv:{csv}",
                                     "portfolio.tickers": ",".join(TICKERS)})  # fmt: skip
    spans = quarters(config)
    days = [d.date() for d in TRADING_DAYS]
    assert spans[0][0] == days[0] and spans[-1][1] == days[-1]
    assert len(spans) == 18  # 2016-Q1 .. 2020-Q2
    for (_, end), (start, _) in itertools.pairwise(spans):
        assert end == start  # each walk ends on the next quarter's first close
    firsts = pd.Series(days, index=pd.DatetimeIndex(days)).groupby(lambda d: (d.year, d.quarter))
    assert [start for start, _ in spans] == firsts.min().tolist()
    q_start, q_end = spans[5]
    q = quarter_config(config, q_start, q_end, "q05").portfolio.splits
    assert q.test.start == q_start and q.test.end == q_end
    assert q.validation.end < q_start
    assert (q_start - q.validation.start).days == HOLDOUT_DAYS
    assert q.train.start == config.portfolio.splits.train.start
    assert q.train.end < q.validation.start
    first = quarter_config(config, *spans[0], "q00", expand=False).portfolio.splits
    assert first.train == config.portfolio.splits.train
    assert first.validation == config.portfolio.splits.validation
    # Each quarter's tape normalises with statistics up to its own train end (past only).
    tape = portfolio_tape_for(quarter_config(config, q_start, q_end, "q05"))
    assert tape.dates[tape.split_bounds("train")[1]].date() <= q.train.end


@pytest.mark.slow
def test_quarterly_retraining_walks_the_period_with_one_carried_account(tmp_path) -> None:
    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    out = tmp_path / "out"
    argv = [
        "reproduce-paper", "--data", f"csv:{csv}", "--tickers", ",".join(TICKERS),
        "--seeds", "1", "--models", "mlp", "--timesteps", "80", "--num-envs", "2",
        "--output", str(out), "--retrain", "quarterly", "--retrain-timesteps", "40",
        "--set", "portfolio.episode_length=40", "--set", "portfolio.window=5",
        "--set", "portfolio.splits.test.end=2016-12-31", "--set", "agent.mlp_hidden=16",
        "--set", "ppo.rollout_length=16",
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["provenance"]["retrain"] == "quarterly"
    assert "quarterly retraining" in (out / "table.md").read_text()
    # Quarters 2..4 were fine-tuned from the previous model, each in its own run folder.
    tuned = sorted(p.name for p in (out / "runs").iterdir() if "_q" in p.name)
    assert tuned == ["mlp_seed0_q01", "mlp_seed0_q02", "mlp_seed0_q03"]
    fine_tunes = results["models"]["mlp"]["seeds"][0]["fine_tunes"]
    assert [f["quarter"] for f in fine_tunes] == ["2016-04-01", "2016-07-01", "2016-10-03"]
    previous = ckpt.load(ckpt.resolve(out / "runs" / "mlp_seed0" / "checkpoints", "best"))
    for name, record in zip(tuned, fine_tunes, strict=True):
        checkpoints = out / "runs" / name / "checkpoints"
        # The model traded last quarter is validated first, as episode 0, and may be kept.
        start = ckpt.load(checkpoints / "episode_000000.pt")
        assert start["train_state"]["validation_history"][0]["episode"] == 0
        for key, value in previous["model"].items():
            assert torch.equal(start["model"][key], value), (name, key)
        chosen = ckpt.load(ckpt.resolve(checkpoints, "best"))
        assert record["checkpoint_episode"] == chosen["train_state"]["episodes"] in (0, 2)
        previous = chosen
        latest = ckpt.load(ckpt.resolve(checkpoints, "latest"))["train_state"]
        # 40 steps of 40-day episodes on 2 envs: one round, 2 episodes, as recorded
        assert record["episodes"] == latest["episodes"] == 2
        assert record["env_steps"] == latest["env_steps"] >= 40
        assert record["train"][0] == "2009-01-01"
    assert [f["train"][1] for f in fine_tunes] == sorted(f["train"][1] for f in fine_tunes)
    # One continuous walk over every trading day of 2016, no day twice, no reset to the capital.
    equity = pd.read_csv(out / "reports" / "mlp_seed0" / "equity.csv", index_col=0,
                         parse_dates=True)  # fmt: skip
    agent = equity["PPO seed 0"]
    expected = pd.bdate_range("2016-01-01", "2016-12-30")
    assert agent.index.equals(pd.DatetimeIndex(expected, name=agent.index.name))
    assert agent.notna().all()
    metrics = results["models"]["mlp"]["seeds"][0]["metrics"]
    assert metrics["total_return"] == pytest.approx(agent.iloc[-1] / CAPITAL - 1, rel=1e-9)


def test_training_length_rounds_up_to_whole_rounds_and_follows_the_window(tmp_path) -> None:
    """All envs walk the whole split together, so the trainer stops only after whole rounds of
    one episode per env; a quarter's longer window needs fewer rounds for the same steps."""
    from clstm_ppo.config import build_config
    from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
    from clstm_ppo.evaluate.paper import episodes_for
    from clstm_ppo.evaluate.retrain import quarter_config, quarters

    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    config = build_config(overrides={"portfolio.data": f"csv:{csv}", "train.num_envs": 8,
                                     "portfolio.tickers": ",".join(TICKERS)})  # fmt: skip
    first, last = portfolio_tape_for(config).split_bounds("train")
    span = last - first  # steps of one whole-split episode
    assert episodes_for(config, 1) == 8
    assert episodes_for(config, 8 * span) == 8
    assert episodes_for(config, 8 * span + 1) == 16
    later = quarter_config(config, *quarters(config)[8], "q08")
    q_first, q_last = portfolio_tape_for(later).split_bounds("train")
    assert q_last - q_first > span
    assert episodes_for(later, 8 * span + 1) == 8
    short = build_config(config.model_dump(mode="json"), {"portfolio.episode_length": 100})
    assert episodes_for(short, 801) == 16


def test_a_carried_account_is_walked_on_from_its_holdings(tmp_path) -> None:
    """What quarterly retraining relies on: a walk that starts from the previous quarter's cash,
    holdings and cost basis values them at this quarter's prices from the first day on."""
    from clstm_ppo.config import build_config
    from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
    from clstm_ppo.evaluate.paper import walk_account

    class Hold:
        def initial_state(self, batch, device):
            return None

        def act(self, market, portfolio, mask, state, starts):
            return torch.zeros(1, len(TICKERS)), state, torch.ones(1)

    csv = write_panel_csv(tmp_path / "panel.csv", tickers=TICKERS)
    config = build_config(overrides={"portfolio.data": f"csv:{csv}", "portfolio.window": 5,
                                     "portfolio.tickers": ",".join(TICKERS)})  # fmt: skip
    holdings = np.array([10, 0, 7])
    account = {"cash": 1234.5, "holdings": holdings, "avg_cost": np.array([50.0, 0.0, 60.0])}
    run, final = walk_account(Hold(), config, "test", "hold", account)
    tape = portfolio_tape_for(config)
    first, last = tape.split_bounds("test")
    expected = 1234.5 + tape.prices[first : last + 1] @ holdings
    # Holding is all the policy does, until the first turbulent day sells everything.
    calm = int(np.argmax(tape.turbulent[first : last + 1]))
    assert calm > 5
    np.testing.assert_allclose(run.values[: calm + 1], expected[: calm + 1], rtol=1e-12)
    proceeds = tape.prices[first + calm] @ holdings * (1 - COST)
    assert final["cash"] == pytest.approx(1234.5 + proceeds, rel=1e-12)
    assert final["holdings"].tolist() == [0, 0, 0]


@pytest.mark.slow
@pytest.mark.shared_data
def test_reduced_reproduction_on_the_real_dow30_file(shared_data, tmp_path) -> None:
    """The command in a setting the CI machine can afford (one seed, the MLP, one round of
    training) on the real Yahoo Dow-30 file: DOW dropped and recorded, the paper's trading
    period walked day by day, and both baselines equal to what the file's prices say."""
    path = shared_data / "equities" / "dow30_daily_yahoo_2000_2024.csv.gz"
    out = tmp_path / "out"
    argv = [
        "reproduce-paper", "--data", f"csv:{path}", "--seeds", "1", "--models", "mlp",
        "--timesteps", "1", "--num-envs", "2", "--output", str(out),
        "--set", "agent.mlp_hidden=16",
    ]  # fmt: skip
    assert main(argv) == 0
    results = json.loads((out / "results.json").read_text())
    data = results["provenance"]["data"]["data"]
    assert "DOW" in data["dropped"] and "first bar 2019-03-20" in data["dropped"]["DOW"]
    tickers = data["tickers"]
    assert len(tickers) == 29 and "DOW" not in tickers
    assert results["provenance"]["trading_period"] == ["2016-01-04", "2020-05-08"]
    assert results["provenance"]["episodes_per_run"] == 2  # one round: one episode per env
    seed = results["models"]["mlp"]["seeds"][0]
    assert seed["trained_env_steps"] >= 2 * 1500  # two whole walks of 2009-2014

    equity = pd.read_csv(out / "reports" / "mlp_seed0" / "equity.csv", index_col=0,
                         parse_dates=True)  # fmt: skip
    dates = pd.DatetimeIndex(equity.index)
    sessions = xcals.get_calendar("XNYS").sessions_in_range("2016-01-01", "2020-05-08")
    assert dates.equals(pd.DatetimeIndex(sessions.tz_localize(None), name=dates.name))
    close = column(path, "Close", tickers, dates)
    assert np.isfinite(close).all()  # every kept ticker trades on every day of the period
    level = close.sum(axis=1)
    index = results["baselines"]["DJI (rebuilt, price-weighted)"]
    assert index["cumulative_return"] == pytest.approx(level[-1] / level[0] - 1, rel=1e-9)
    adjusted = column(path, "Adj Close", tickers, dates)
    unit = adjusted[0] * (1 + COST)
    shares = np.floor(CAPITAL / len(tickers) / unit)
    values = CAPITAL - shares @ unit + adjusted @ shares
    equal = results["baselines"]["equal-weight buy-and-hold"]
    assert equal["cumulative_return"] == pytest.approx(values[-1] / CAPITAL - 1, rel=1e-9)
    agent = equity["PPO seed 0"]
    assert agent.iloc[0] == CAPITAL and agent.notna().all()
    assert seed["metrics"]["total_return"] == pytest.approx(agent.iloc[-1] / CAPITAL - 1)
