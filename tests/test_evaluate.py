"""Evaluation: metrics and baselines on hand-made paths, and the evaluate command end to end."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from clstm_ppo.cli import main
from clstm_ppo.config import Config
from clstm_ppo.evaluate.baselines import buy_and_hold, cash
from clstm_ppo.evaluate.metrics import strategy_metrics
from tiny import tiny_flags

DATES = pd.bdate_range("2016-01-04", periods=253)


def test_metrics_on_a_known_path() -> None:
    growth = 1.0004
    values = 1_000_000 * growth ** np.arange(253)
    values[100:110] *= 0.9  # one 10% dip for ten days
    metrics = strategy_metrics(DATES, values, np.array([5.0, -3.0, 2.0, 0.0]), 123.0)
    assert metrics["total_return"] == pytest.approx(growth**252 - 1)
    assert metrics["annualised_return"] == pytest.approx(growth**252 - 1)  # 252 days = 1 year
    assert metrics["max_drawdown"] == pytest.approx(1 - 0.9 * growth**100 / growth**99)
    assert metrics["calmar"] == pytest.approx(
        metrics["annualised_return"] / metrics["max_drawdown"]
    )
    assert metrics["win_rate"] == pytest.approx(2 / 4)
    assert metrics["trades"] == 4 and metrics["costs_paid"] == 123.0
    assert metrics["sharpe_ci_low"] < metrics["sharpe"] < metrics["sharpe_ci_high"]
    months = pd.Series(values, index=DATES).resample("ME").last()
    rising = np.mean(np.diff(np.concatenate([[values[0]], months.to_numpy()])) > 0)
    assert metrics["profit_rate"] == pytest.approx(rising)


def test_buy_and_hold_and_cash_on_a_hand_made_path() -> None:
    spot = np.linspace(100.0, 150.0, len(DATES))
    tape = SimpleNamespace(dates=DATES, spot=spot, volume=np.full(len(DATES), 1e6))
    config = Config()
    run = buy_and_hold(tape, config, DATES)
    fill = config.costs.fill_stock(1, 100.0, 1e6)
    shares = int(1_000_000 // (float(fill.fill_price) * 1.001))
    bought = config.costs.fill_stock(shares, 100.0, 1e6)
    expected_cash = 1_000_000 + float(bought.cash_flow)
    np.testing.assert_allclose(run.values, expected_cash + shares * spot)
    assert run.values[-1] / 1_000_000 - 1 == pytest.approx(0.5, abs=0.002)  # +50% less costs
    assert run.costs_paid == pytest.approx(float(bought.total_fees))
    flat = cash(config, DATES)
    assert (flat.values == 1_000_000).all() and flat.trades.empty


def _tiny_flags(tmp_path) -> list[str]:
    return tiny_flags(tmp_path, env__enable_multi_leg=True)


def test_evaluate_command_writes_files_and_report(tmp_path, capsys) -> None:
    assert main(["train", "--episodes", "4", *_tiny_flags(tmp_path)]) == 0
    output = tmp_path / "out"
    code = main(["evaluate", "--checkpoint", "best", "--run-dir", str(tmp_path), "--output",
                 str(output), "--random-seeds", "2", "--episodes", "3"])  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "evaluation on the test split (2016-01-04..2018-12-31)" in out.replace("\n", " ")
    for name in ("metrics.json", "metrics.csv", "trades.csv", "equity.csv", "report.html",
                 "equity.png", "drawdown.png", "actions.png", "pnl_by_strategy.png"):  # fmt: skip
        assert (output / name).exists(), name
    metrics = {row["name"]: row for row in json.loads((output / "metrics.json").read_text())}
    assert {"clstm-ppo", "buy_and_hold", "cash", "random_seed0", "random_seed1",
            "covered_call_monthly", "cash_secured_put_monthly"} <= set(metrics)  # fmt: skip
    # Buy-and-hold of the S&P 500 over 2016-2018: the index went from 2012.66 to 2506.85.
    assert metrics["buy_and_hold"]["total_return"] == pytest.approx(2506.85 / 2012.66 - 1, abs=0.01)
    assert metrics["cash"]["total_return"] == 0.0
    assert metrics["covered_call_monthly"]["trades"] >= 20  # about one buy-write a month
    windows = json.loads((output / "windows.json").read_text())
    assert windows["episodes"] == 3 and "composite" in windows
    equity = pd.read_csv(output / "equity.csv")
    assert len(equity) == 754  # every trading day of the test split


def test_evaluate_runs_summarises_seeds(tmp_path, capsys) -> None:
    runs = []
    for seed in (0, 1):
        assert main(["train", "--episodes", "4", "--seed", str(seed), "--run-name", f"s{seed}",
                     *_tiny_flags(tmp_path)]) == 0  # fmt: skip
        runs.append(str(tmp_path / f"s{seed}"))
    output = tmp_path / "summary"
    assert main(["evaluate", "--runs", *runs, "--output", str(output), "--random-seeds", "1"]) == 0
    summary = pd.read_csv(output / "summary.csv").set_index("metric")
    assert {"mean", "std", "ci_low", "ci_high", "buy_and_hold", "cash"} <= set(summary.columns)
    row = summary.loc["total_return"]
    assert row["ci_low"] <= row["mean"] <= row["ci_high"]


def test_evaluate_bad_input_is_one_line(tmp_path, capsys) -> None:
    assert main(["evaluate", "--checkpoint", "best", "--run-dir", str(tmp_path)]) == 2
    assert "no 'best_composite' checkpoint" in capsys.readouterr().err
    assert main(["evaluate", "--runs", str(tmp_path / "nope")]) == 2
    assert "no checkpoints folder" in capsys.readouterr().err
