"""The stock-portfolio data: the equity panel from hand-made long CSV files
(tests/portfolio_helpers.py) and the real Dow-30 file, and the one-line errors of
``clstm-ppo reproduce-paper``."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import gymnasium
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import clstm_ppo.envs  # noqa: F401  (registers clstm_ppo/StockPortfolio-v0)
from clstm_ppo.cli import main
from clstm_ppo.data.equities import load_equity_panel
from clstm_ppo.envs.portfolio import StockPortfolioEnv
from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
from clstm_ppo.errors import DataError
from portfolio_helpers import (
    ADJ_FACTORS,
    TICKERS,
    column,
    panel_frame,
    portfolio_config,
    read_panel,
)

HISTORY_FROM = dt.date(2007, 1, 2)  # the default train start 2009-01-01 minus 730 days
COMPLETE_FROM = dt.date(2009, 1, 1)
COMPLETE_TO = dt.date(2020, 5, 8)
TICKER_TEXT = ",".join(TICKERS)
N = len(TICKERS)
CAPITAL = 1_000_000.0
COST = 0.001


def _prices_on(path, date: str, name: str = "Adj Close") -> np.ndarray:
    """The four tickers' ``name`` column on ``date``, straight from the CSV."""
    frame = read_panel(path)
    return np.array([frame.loc[(t, pd.Timestamp(date)), name] for t in TICKERS], dtype=float)


def _calm_start(env: StockPortfolioEnv, days: int = 12) -> None:
    """No turbulent day in the first ``days`` (it would sell instead of trading as asked)."""
    sim = env.sim
    assert not sim.tape.turbulent[sim.day[0] : sim.day[0] + days + 1].any()


def _env(panel_csv, **overrides) -> StockPortfolioEnv:
    overrides.setdefault("random_start", False)
    return StockPortfolioEnv(data=f"csv:{panel_csv}", tickers=TICKER_TEXT, window=5, **overrides)


# ---------------------------------------------------------------------------------- data


def test_late_listed_and_absent_tickers_are_dropped_with_reasons(late_csv) -> None:
    panel = load_equity_panel(
        f"csv:{late_csv}", ("AAA", "BBB", "CCC", "DDD", "ZZZ"), HISTORY_FROM, COMPLETE_FROM,
        COMPLETE_TO,
    )  # fmt: skip
    assert panel.tickers == ("AAA", "BBB", "CCC")
    assert panel.dropped["ZZZ"] == "not in the data"
    core = pd.bdate_range(COMPLETE_FROM, COMPLETE_TO)  # every ticker's calendar in the file
    missing = int((core < pd.Timestamp("2019-01-02")).sum())
    reason = panel.dropped["DDD"]
    assert reason.startswith(f"{missing} of {len(core)} trading days missing")
    assert "first bar 2019-01-02" in reason
    assert set(panel.provenance()["dropped"]) == {"DDD", "ZZZ"}
    # Only complete tickers are kept, so nothing is NaN from the first complete day on.
    assert panel.dates[0] == pd.Timestamp(HISTORY_FROM)
    assert not np.isnan(panel.close[panel.dates >= pd.Timestamp(COMPLETE_FROM)]).any()


def test_the_tape_reports_the_dropped_ticker(late_csv) -> None:
    tape = portfolio_tape_for(portfolio_config(late_csv))
    assert tape.panel.tickers == ("AAA", "BBB", "CCC")
    assert tape.n_stocks == 3
    assert "DDD" in tape.provenance["data"]["dropped"]
    assert tape.features.shape[1] == 5 * 3 + 1


def test_adjusted_prices_trade_at_adj_close_and_scale_open_high_low(panel_csv) -> None:
    adjusted = load_equity_panel(
        f"csv:{panel_csv}", TICKERS, HISTORY_FROM, COMPLETE_FROM, COMPLETE_TO, "adjusted"
    )
    plain = load_equity_panel(
        f"csv:{panel_csv}", TICKERS, HISTORY_FROM, COMPLETE_FROM, COMPLETE_TO, "close"
    )
    dates = adjusted.dates
    assert dates.equals(plain.dates)
    assert dates[-1] == pd.Timestamp(COMPLETE_TO)
    read = {name: column(panel_csv, name, TICKERS, dates) for name in
            ("Open", "High", "Low", "Close", "Adj Close", "Volume")}  # fmt: skip
    factor = read["Adj Close"] / read["Close"]
    # The files' factors are the per-ticker constants (up to the CSV's rounding).
    np.testing.assert_allclose(factor, [[ADJ_FACTORS[t] for t in TICKERS]] * len(dates), rtol=1e-5)
    np.testing.assert_allclose(adjusted.close, read["Adj Close"], rtol=1e-12)
    np.testing.assert_allclose(adjusted.open, read["Open"] * factor, rtol=1e-12)
    np.testing.assert_allclose(adjusted.high, read["High"] * factor, rtol=1e-12)
    np.testing.assert_allclose(adjusted.low, read["Low"] * factor, rtol=1e-12)
    np.testing.assert_allclose(plain.close, read["Close"], rtol=1e-12)
    np.testing.assert_allclose(plain.open, read["Open"], rtol=1e-12)
    np.testing.assert_allclose(plain.high, read["High"], rtol=1e-12)
    # The price index keeps the file's close in both modes; volume is never scaled.
    np.testing.assert_allclose(adjusted.index_close, read["Close"], rtol=1e-12)
    np.testing.assert_allclose(plain.index_close, read["Close"], rtol=1e-12)
    np.testing.assert_allclose(adjusted.volume, read["Volume"], rtol=1e-12)
    assert adjusted.provenance()["prices"] == "adjusted"
    assert plain.provenance()["prices"] == "close"


@pytest.mark.parametrize("prices, csv_column", [("adjusted", "Adj Close"), ("close", "Close")])
def test_the_env_trades_at_the_chosen_price(panel_csv, prices, csv_column) -> None:
    env = _env(panel_csv, prices=prices)
    obs, info = env.reset(seed=0)
    _calm_start(env)
    p0 = _prices_on(panel_csv, info["date"], csv_column)
    np.testing.assert_allclose(obs["state"][1 : 1 + N], p0, rtol=1e-6)
    env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    assert env.sim.cash[0] == pytest.approx(CAPITAL - 50 * p0[0] * (1 + COST), abs=1e-6)


def test_missing_file_is_a_one_line_data_error(tmp_path) -> None:
    missing = tmp_path / "nowhere.csv"
    with pytest.raises(DataError) as error:
        load_equity_panel(f"csv:{missing}", TICKERS, HISTORY_FROM, COMPLETE_FROM, COMPLETE_TO)
    message = str(error.value)
    assert str(missing) in message
    assert "\n" not in message


def _panel_with_nan(folder: Path, column: str) -> tuple[Path, int]:
    """The hand-made panel with ``column`` NaN for BBB on 2012-03-05: (file, frame row)."""
    frame = panel_frame()
    row = frame.index[(frame.Ticker == "BBB") & (frame.Date == "2012-03-05")][0]
    frame.loc[row, column] = np.nan
    path = folder / f"nan_{column.replace(' ', '_').lower()}.csv"
    frame.to_csv(path, index=False)
    return path, row


def test_nan_close_is_a_one_line_data_error_naming_the_file_line(tmp_path) -> None:
    path, row = _panel_with_nan(tmp_path, "Close")
    with pytest.raises(DataError) as error:
        load_equity_panel(f"csv:{path}", TICKERS, HISTORY_FROM, COMPLETE_FROM, COMPLETE_TO)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: line {row + 2} (2012-03-05)")  # header is line 1
    assert "close" in message


def test_nan_adjusted_close_is_a_data_error(tmp_path) -> None:
    path, _ = _panel_with_nan(tmp_path, "Adj Close")
    # Otherwise the agent would trade at a NaN price on a day the panel says is complete.
    with pytest.raises(DataError, match=str(path)) as error:
        load_equity_panel(
            f"csv:{path}", TICKERS, HISTORY_FROM, COMPLETE_FROM, COMPLETE_TO, "adjusted"
        )
    assert "BBB 2012-03-05: adjusted close" in str(error.value)
    assert "\n" not in str(error.value)


def test_fewer_than_two_complete_tickers_is_a_data_error(late_csv) -> None:
    with pytest.raises(DataError, match=r"only 1 ticker\(s\) complete"):
        load_equity_panel(f"csv:{late_csv}", ("AAA", "DDD"), HISTORY_FROM, COMPLETE_FROM,
                          COMPLETE_TO)  # fmt: skip
    with pytest.raises(DataError, match="none of the tickers"):
        load_equity_panel(f"csv:{late_csv}", ("XXX", "YYY"), HISTORY_FROM, COMPLETE_FROM,
                          COMPLETE_TO)  # fmt: skip


# ---------------------------------------------------------------------------------- real data


@pytest.mark.shared_data
def test_real_dow30_file(shared_data) -> None:
    path = shared_data / "equities" / "dow30_daily_yahoo_2000_2024.csv.gz"
    env = gymnasium.make("clstm_ppo/StockPortfolio-v0", data=f"csv:{path}", window=5)
    tape = env.unwrapped.sim.tape
    assert "DOW" in tape.provenance["data"]["dropped"]
    assert "DOW" not in tape.panel.tickers
    assert len(tape.panel.tickers) == 29
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=0)
    assert obs["state"].shape == (175,)
    assert obs["market"].shape == (5, 5 * 29 + 1)
    assert obs["portfolio"].shape == (32,)


# ---------------------------------------------------------------------------------- CLI


def test_cli_missing_data_file_is_one_line(capsys) -> None:
    assert main(["reproduce-paper", "--data", "csv:/no/such.csv"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert "/no/such.csv" in err


@pytest.mark.parametrize(
    "flags, named",
    [
        (["--models", "foo"], "--models"),
        (["--seeds", "0"], "--seeds"),
        (["--timesteps", "0"], "--timesteps"),
        (["--retrain-timesteps", "0"], "--retrain-timesteps"),
        (["--num-envs", "0"], "--num-envs"),
    ],
)
def test_cli_bad_flags_are_one_line(capsys, flags, named) -> None:
    assert main(["reproduce-paper", "--data", "csv:/no/such.csv", *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err
    assert named in err
