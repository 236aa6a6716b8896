"""Evaluation hardening: environments registered on ``import clstm_ppo``, intervals across seeds
that respect each metric's range, one-line errors for malformed checkpoints and for the flag the
user typed, evaluation on other data (``data_overrides``), and a CPU-only paper reproduction."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from rich.console import Console
from scipy import stats

from clstm_ppo.agent.mlp import build_model
from clstm_ppo.cli import main
from clstm_ppo.config import Config, build_config, config_to_dict
from clstm_ppo.errors import CheckpointError, ConfigError
from clstm_ppo.evaluate import paper, runner
from clstm_ppo.evaluate.metrics import BOUNDS, UNBOUNDED, mean_interval, strategy_metrics
from clstm_ppo.evaluate.results import StrategyRun
from clstm_ppo.train.checkpoint import FORMAT, VERSION
from portfolio_helpers import portfolio_config, write_panel_csv
from tiny import tiny_flags

T_975_2 = float(stats.t.ppf(0.975, 2))  # 4.303: the t quantile of a 95% interval from 3 runs


# --- 1. environments registered by the package itself -------------------------------------


def test_import_clstm_ppo_registers_the_environments_without_torch() -> None:
    # A fresh interpreter: in this one, other tests may already have imported clstm_ppo.envs.
    code = textwrap.dedent(
        """
        import sys, warnings
        import gymnasium as gym
        import clstm_ppo
        assert "torch" not in sys.modules, "import clstm_ppo imported torch"
        assert "clstm_ppo.envs" not in sys.modules, "import clstm_ppo imported the env modules"
        ids = ("clstm_ppo/OptionsTrading-v0", "clstm_ppo/MultiLegOptions-v0",
               "clstm_ppo/StockPortfolio-v0")
        for env_id in ids:
            gym.spec(env_id)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import clstm_ppo.envs  # must not register the ids a second time
        overriding = [str(w.message) for w in caught if "Overriding" in str(w.message)]
        assert not overriding, overriding
        env = gym.make("clstm_ppo/OptionsTrading-v0", episode_length=20)
        print("actions", env.action_space.n)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "actions 31" in result.stdout


# --- 2. intervals across seeds within each metric's range ---------------------------------


def test_interval_of_a_rate_stays_within_0_and_1() -> None:
    # The README's win rates: a t-interval of [-100.8%, 131.1%] before.
    interval = mean_interval([0.0, 0.15, 0.30], BOUNDS["win_rate"])
    assert interval["mean"] == pytest.approx(0.15)
    assert interval["std"] == pytest.approx(0.15)
    assert interval["ci_low"] == 0.0  # clipped: the plain interval starts at -22%
    assert interval["ci_high"] == pytest.approx(0.15 + T_975_2 * 0.15 / math.sqrt(3))
    assert interval["ci_high"] <= 1.0
    near_one = mean_interval([1.0, 0.9, 0.5], BOUNDS["profit_rate"])
    assert near_one["ci_low"] >= 0.0 and near_one["ci_high"] == 1.0


def test_interval_of_counts_costs_and_drawdown_stays_non_negative() -> None:
    trades = mean_interval([0, 219, 438], BOUNDS["trades"])
    assert trades["ci_low"] == 0.0
    assert trades["ci_high"] == pytest.approx(219 + T_975_2 * 219 / math.sqrt(3))
    for key, values in (("costs_paid", [0.0, 302.0, 604.0]), ("max_drawdown", [0.0, 0.04, 0.12])):
        interval = mean_interval(values, BOUNDS[key])
        low, high = BOUNDS[key]
        assert low == interval["ci_low"] < interval["mean"] < interval["ci_high"] <= high, key
    losses = mean_interval([-0.99, -0.5, -0.95], BOUNDS["total_return"])
    assert losses["ci_low"] == -1.0  # nobody loses more than everything


def test_unbounded_metrics_keep_the_plain_t_interval() -> None:
    values = np.array([-4.8, -4.4, -4.1])
    mean, std = values.mean(), values.std(ddof=1)
    half = T_975_2 * std / math.sqrt(3)
    for key in ("sharpe", "sortino", "calmar"):
        assert BOUNDS.get(key, UNBOUNDED) == UNBOUNDED
        interval = mean_interval(values, BOUNDS.get(key, UNBOUNDED))
        assert interval["mean"] == pytest.approx(mean)
        assert interval["std"] == pytest.approx(std)
        assert interval["ci_low"] == pytest.approx(mean - half)
        assert interval["ci_high"] == pytest.approx(mean + half)
    # A bounded metric far from its bounds is not clipped either.
    assert mean_interval([0.4, 0.5, 0.6], (0.0, 1.0))["ci_low"] == pytest.approx(
        0.5 - T_975_2 * 0.1 / math.sqrt(3)
    )


def test_interval_leaves_out_nan_and_needs_two_values() -> None:
    # A seed without trades has no win rate: the interval rests on the other two.
    interval = mean_interval([math.nan, 0.1, 0.3], BOUNDS["win_rate"])
    assert interval["mean"] == pytest.approx(0.2) and interval["ci_low"] == 0.0
    single = mean_interval([0.3, math.nan], BOUNDS["win_rate"])
    assert single["mean"] == 0.3 and all(math.isnan(single[k]) for k in ("std", "ci_low"))
    assert all(math.isnan(v) for v in mean_interval([], UNBOUNDED).values())


def test_bounds_hold_for_real_metrics() -> None:
    # Every bounded metric that strategy_metrics computes lies in its declared range.
    dates = pd.bdate_range("2016-01-04", periods=253)
    values = 1_000_000 * np.cumprod(1 + np.random.default_rng(0).normal(0, 0.02, 253))
    metrics = strategy_metrics(dates, values, np.array([5.0, -3.0, 2.0]), 12.0)
    for key, (low, high) in BOUNDS.items():
        if key in metrics:
            assert low <= metrics[key] <= high, key
    assert {"total_return", "max_drawdown", "win_rate", "profit_rate", "trades",
            "costs_paid"} <= set(BOUNDS)  # fmt: skip


def _fake_run(name: str, metrics: dict[str, float], kind: str = "agent") -> StrategyRun:
    dates = pd.bdate_range("2016-01-04", periods=2)
    return StrategyRun(name, dates, np.ones(2), pd.DataFrame(), 0.0, metrics=metrics, kind=kind)


def test_summary_across_runs_uses_the_bounded_interval(tmp_path, monkeypatch) -> None:
    per_run = {
        "a": {"win_rate": 0.0, "trades": 0.0, "max_drawdown": 0.0, "sharpe": -4.8},
        "b": {"win_rate": 0.15, "trades": 219.0, "max_drawdown": 0.04, "sharpe": -4.4},
        "c": {"win_rate": 0.30, "trades": 438.0, "max_drawdown": 0.08, "sharpe": -4.1},
    }

    def fake_evaluate(policy, config, split, random_seeds, name="clstm-ppo"):
        metrics = {key: math.nan for key in runner.SHOWN} | per_run[policy]
        return [_fake_run(name, metrics), _fake_run("cash", metrics | {"trades": 0.0}, "baseline")]

    def fake_load(spec, folder, **_):
        return folder.parent.name, Config(), {}  # the "policy" is the run's name

    monkeypatch.setattr(runner, "load_policy", fake_load)
    monkeypatch.setattr(runner, "evaluate_policy", fake_evaluate)
    summary = runner.summarise_runs(
        [tmp_path / name for name in per_run], "test", tmp_path / "out", 0, Console(quiet=True)
    ).set_index("metric")
    for key in ("win_rate", "trades", "max_drawdown"):
        assert summary.loc[key, "ci_low"] == 0.0, key
        assert summary.loc[key, "ci_high"] <= BOUNDS[key][1]
    sharpe = np.array([-4.8, -4.4, -4.1])
    assert summary.loc["sharpe", "ci_low"] == pytest.approx(
        sharpe.mean() - T_975_2 * sharpe.std(ddof=1) / math.sqrt(3)
    )
    written = pd.read_csv(tmp_path / "out" / "summary.csv").set_index("metric")
    assert written.loc["win_rate", "ci_low"] == 0.0


def test_paper_summary_uses_the_bounded_interval() -> None:
    drawdown = paper.summarise([0.0, 0.05, 0.4], "max_drawdown")
    assert drawdown["ci_low"] == 0.0 and drawdown["ci_high"] <= 1.0
    assert paper.summarise([-0.95, -0.99, -0.2], "cumulative_return")["ci_low"] == -1.0
    sharpe = paper.summarise([1.0, 2.0, 4.0], "sharpe")
    assert sharpe["ci_low"] == pytest.approx(7 / 3 - T_975_2 * np.std([1, 2, 4], ddof=1) / 3**0.5)


# --- 6. reproduce-paper: the CPU only, never a silent override -----------------------------


@pytest.mark.parametrize(
    ("key", "value"), [("train.num_gpus", 1), ("train.device", "cuda"), ("train.num_procs", 2)]
)
def test_reproduce_paper_refuses_settings_it_would_ignore(tmp_path, key, value) -> None:
    config = build_config(overrides={key: value})
    with pytest.raises(ConfigError, match=rf"^{key}: reproduce-paper"):
        paper.reproduce_paper(config, [0], 10, tmp_path, console=Console(quiet=True))
    assert not (tmp_path / "runs").exists()  # refused before any work


# --- 3 and 4. checkpoint errors: one line, the flag the user typed ------------------------


def _one_line_error(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert "Traceback" not in captured.err and "\n" not in err, captured.err
    assert err.startswith("clstm-ppo: error: "), err
    return err


def test_missing_best_names_the_checkpoint_flag(tmp_path, capsys) -> None:
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", "best", "--run-dir", str(tmp_path)])
    assert "--checkpoint best: no 'best_composite' checkpoint" in err
    assert "--resume-from" not in err


def test_missing_best_in_runs_names_the_runs_flag(tmp_path, capsys) -> None:
    run = tmp_path / "seed0"
    (run / "checkpoints").mkdir(parents=True)
    err = _one_line_error(capsys, ["evaluate", "--runs", str(run), "--output", str(tmp_path)])
    assert f"--runs {run}" in err and "no 'best_composite' checkpoint" in err
    assert "--resume-from" not in err and "--checkpoint" not in err


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A tiny trained run (4 episodes); its best checkpoint's real path."""
    folder = tmp_path_factory.mktemp("trained")
    assert main(["train", "--episodes", "4", *tiny_flags(folder)]) == 0
    best = folder / "clstm_ppo" / "checkpoints" / "best_composite.pt"
    return best.resolve()


def _payload(best: Path) -> dict[str, Any]:
    return torch.load(best, weights_only=True)


def _save(payload: Any, path: Path) -> Path:
    torch.save(payload, path)
    return path


def _evaluate_error(capsys, path: Path, tmp_path: Path) -> str:
    err = _one_line_error(
        capsys, ["evaluate", "--checkpoint", str(path), "--output", str(tmp_path / "out"),
                 "--random-seeds", "0"],
    )  # fmt: skip
    assert str(path) in err
    return err


def test_checkpoint_without_model_is_one_line(trained, tmp_path, capsys) -> None:
    payload = _payload(trained)
    assert payload["format"] == FORMAT and payload["version"] == VERSION
    del payload["model"]
    err = _evaluate_error(capsys, _save(payload, tmp_path / "no_model.pt"), tmp_path)
    assert "missing 'model'" in err


def test_checkpoint_without_train_state_is_one_line(trained, tmp_path, capsys) -> None:
    payload = _payload(trained)
    del payload["train_state"]
    err = _evaluate_error(capsys, _save(payload, tmp_path / "no_state.pt"), tmp_path)
    assert "'train_state'" in err


@pytest.mark.parametrize("which", ["actor_lstm.weight_hh_l0", "critic_head.weight"])
def test_checkpoint_with_wrong_shapes_is_one_line(trained, tmp_path, capsys, which) -> None:
    payload = _payload(trained)
    payload["model"][which] = torch.zeros(3, 2)
    err = _evaluate_error(capsys, _save(payload, tmp_path / "shapes.pt"), tmp_path)
    assert which in err and "size mismatch" in err


def test_checkpoint_whose_model_is_not_a_state_dict_is_one_line(trained, tmp_path, capsys) -> None:
    payload = _payload(trained)
    payload["model"] = [1, 2, 3]
    _evaluate_error(capsys, _save(payload, tmp_path / "list.pt"), tmp_path)


def test_checkpoint_with_an_invalid_config_is_one_line(trained, tmp_path, capsys) -> None:
    payload = _payload(trained)
    payload["config"]["env"]["window"] = -5
    err = _evaluate_error(capsys, _save(payload, tmp_path / "config.pt"), tmp_path)
    assert "env.window" in err
    payload["config"] = "not a config"
    err = _evaluate_error(capsys, _save(payload, tmp_path / "config2.pt"), tmp_path)
    assert "config" in err


def test_ensemble_file_without_members_is_one_line(tmp_path, capsys) -> None:
    folder = tmp_path / "ensemble"
    folder.mkdir()
    (folder / "ensemble.json").write_text(json.dumps({"format": "clstm-ppo-ensemble"}))
    err = _one_line_error(capsys, ["evaluate", "--checkpoint", str(folder)])
    assert str(folder / "ensemble.json") in err and "'members'" in err


def test_random_bytes_are_not_a_checkpoint(tmp_path, capsys) -> None:
    # The lead's fix in train/checkpoint.py load(): random bytes cannot "run code".
    path = tmp_path / "noise.pt"
    path.write_bytes(os.urandom(4096))
    err = _evaluate_error(capsys, path, tmp_path)
    assert "not a checkpoint" in err or "not a clstm-ppo checkpoint" in err
    assert "could run code" not in err


# --- 5. evaluation on other data ------------------------------------------------------------


@pytest.mark.parametrize(
    "overrides",
    [{"agent.lstm_hidden": 16}, {"agent": {"lstm_hidden": 16}}, {"env.window": 10},
     {"env.enable_multi_leg": True}, {"env": {"window": 10}}],
)  # fmt: skip
def test_data_overrides_refuse_the_network_input(trained, tmp_path, overrides) -> None:
    with pytest.raises(ConfigError, match=r"^--data: .*network's input"):
        runner.run_evaluation(str(trained), tmp_path, "test", tmp_path / "out", 0,
                              Console(quiet=True), data_overrides=overrides)  # fmt: skip
    assert not (tmp_path / "out").exists()


def test_data_overrides_are_data_settings_with_valid_values(trained, tmp_path) -> None:
    console = Console(quiet=True)
    with pytest.raises(ConfigError, match=r"^--data: costs.spread_base is not a data setting"):
        runner.run_evaluation(str(trained), tmp_path, "test", tmp_path / "out", 0, console,
                              data_overrides={"costs.spread_base": 0.0})  # fmt: skip
    with pytest.raises(ConfigError, match=r"^--data: key 'data.source'"):
        runner.run_evaluation(str(trained), tmp_path, "test", tmp_path / "out", 0, console,
                              data_overrides={"data.source": "nope"})  # fmt: skip


def test_evaluation_on_other_data(trained, tmp_path) -> None:
    output = tmp_path / "nasdaq"
    runs = runner.run_evaluation(
        str(trained), tmp_path, "test", output, 0, Console(quiet=True),
        data_overrides={"data.symbol": "NASDAQ"},
    )  # fmt: skip
    by_name = {run.name: run for run in runs}
    # Buy-and-hold walked the NASDAQ Composite, not the S&P 500 the policy was trained on:
    # 2016-01-04 .. 2018-12-31 closes 4903.09 .. 6635.28 (about +35%, the S&P +25%).
    assert by_name["buy_and_hold"].metrics["total_return"] == pytest.approx(
        6635.28 / 4903.09 - 1, abs=0.01
    )
    provenance = json.loads((output / "provenance.json").read_text())
    assert provenance["data"]["symbol"] == "NASDAQ"
    assert provenance["data_overridden"] is True
    assert provenance["policy"]["data_overrides"] == {
        "data.symbol": {"trained": None, "evaluated": "NASDAQ"}
    }
    assert "data_overrides" in (output / "report.html").read_text()
    # Without overrides, the provenance says so.
    plain = tmp_path / "plain"
    runner.run_evaluation(str(trained), tmp_path, "test", plain, 0, Console(quiet=True))
    assert json.loads((plain / "provenance.json").read_text())["data_overridden"] is False


def _portfolio_checkpoint(config: Config, stocks: int, path: Path) -> Path:
    """An untrained stock-portfolio policy for ``stocks`` stocks, saved as a checkpoint."""
    model = build_model(config.agent, n_features=5 * stocks + 1, portfolio_size=stocks + 3,
                        action_dim=stocks)  # fmt: skip
    payload = {"format": FORMAT, "version": VERSION, "config": config_to_dict(config),
               "train_state": {"episodes": 0}, "model": model.state_dict()}  # fmt: skip
    return _save(payload, path)


def test_portfolio_data_override_checks_the_stock_count(panel_csv, late_csv, tmp_path) -> None:
    config = portfolio_config(panel_csv)  # four stocks: AAA, BBB, CCC, DDD
    checkpoint = _portfolio_checkpoint(config, 4, tmp_path / "portfolio.pt")
    # The late file lists DDD only from 2019: three usable stocks for a four-stock policy.
    with pytest.raises(ConfigError, match=r"^--data: the data give 3 usable stocks .* trades 4"):
        runner.load_policy(str(checkpoint), tmp_path,
                           data_overrides={"portfolio.data": f"csv:{late_csv}"})  # fmt: skip
    other = write_panel_csv(tmp_path / "other.csv", seed=5)
    _, evaluated, source = runner.load_policy(
        str(checkpoint), tmp_path, data_overrides={"portfolio.data": f"csv:{other}"}
    )
    assert evaluated.portfolio.data == f"csv:{other}"
    assert evaluated.portfolio.window == config.portfolio.window
    assert source["data_overrides"]["portfolio.data"]["trained"] == f"csv:{panel_csv}"


def test_load_policy_keeps_checkpoint_errors_one_line(tmp_path) -> None:
    with pytest.raises(CheckpointError, match=r"^--checkpoint latest: no 'latest' checkpoint"):
        runner.load_policy("latest", tmp_path)


def test_ensemble_loads_with_data_overrides(trained, tmp_path) -> None:
    folder = tmp_path / "ensemble"
    folder.mkdir()
    members = [{"checkpoint": str(trained), "seed": seed} for seed in (0, 1)]
    metadata = {"format": "clstm-ppo-ensemble", "members": members, "weights": [0.5, 0.5],
                "config": _payload(trained)["config"]}  # fmt: skip
    (folder / "ensemble.json").write_text(json.dumps(metadata))
    policy, config, source = runner.load_policy(
        str(folder), tmp_path, data_overrides={"data.symbol": "NASDAQ"}
    )
    assert len(policy.members) == 2 and source["seeds"] == [0, 1]
    assert config.data.symbol == "NASDAQ" and config.agent.lstm_hidden == 8
    assert source["data_overrides"] == {"data.symbol": {"trained": None, "evaluated": "NASDAQ"}}


def test_data_overrides_of_the_other_environment_are_ignored(trained, tmp_path) -> None:
    # `--data csv:PATH` reaches the runner as both environments' keys; an options policy keeps
    # only the data.* ones, and the provenance records no portfolio setting it never used.
    _, config, source = runner.load_policy(
        str(trained), tmp_path, data_overrides={"portfolio.data": "csv:x.csv",
                                                "data.symbol": "NASDAQ"},
    )  # fmt: skip
    assert config.data.symbol == "NASDAQ" and config.portfolio.data is None
    assert "data.symbol" in source["data_overrides"]
    assert "portfolio.data" not in source["data_overrides"]
