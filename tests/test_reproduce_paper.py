"""``clstm-ppo reproduce-paper`` end to end on a hand-made three-stock panel (tiny networks, a
few hundred training steps): the files it writes, the statistics across seeds, the baselines
recomputed from the CSV, and resuming without retraining."""

from __future__ import annotations

import base64
import json
import math
import re
import time

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
            assert summary["ci_low"] == pytest.approx(mean - half, rel=1e-9, abs=1e-15)
            assert summary["ci_high"] == pytest.approx(mean + half, rel=1e-9, abs=1e-15)
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
    assert all(latest >= 5 for _, latest in checkpoints.values())
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
