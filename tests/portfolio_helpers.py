"""Hand-made daily panels for the stock-portfolio tests (tests/test_portfolio_env.py,
tests/test_reproduce_paper.py).

``write_panel_csv`` writes a Yahoo-style long file (``Date,Ticker,Open,High,Low,Close,Adj Close,
Volume``) of seeded, mean-reverting lognormal walks that stay between 50 and 200. ``Adj Close`` is
``Close`` times a constant per-ticker factor (:data:`ADJ_FACTORS`), so a test can tell which of
the two columns the environment trades at. Tapes are cached per config (that is, per path), so
each data variant must be written to its own path.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clstm_ppo.config import Config, build_config

TICKERS = ("AAA", "BBB", "CCC", "DDD")
ADJ_FACTORS = {"AAA": 0.8, "BBB": 0.9, "CCC": 0.75, "DDD": 0.85, "EEE": 0.95}
COLUMNS = ["Date", "Ticker", "Open", "High", "Low", "Close", "Adj Close", "Volume"]


def _walk(rng: np.random.Generator, days: int) -> np.ndarray:
    """Closes of a lognormal walk pulled back towards 100 (stays inside 50..200)."""
    shocks = rng.normal(0.0, 0.012, days)
    logs = np.empty(days)
    level = rng.normal(0.0, 0.1)
    for day in range(days):
        level = 0.995 * level + shocks[day]
        logs[day] = level
    return 100.0 * np.exp(np.clip(logs, np.log(0.55), np.log(1.9)))


def panel_frame(
    tickers: Sequence[str] = TICKERS,
    start: str = "2006-01-02",
    end: str = "2020-06-30",
    late: Mapping[str, str] | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The long frame that :func:`write_panel_csv` writes (rows by ticker, then date)."""
    rng = np.random.default_rng(seed)
    dates = pd.bdate_range(start, end)
    frames = []
    for ticker in tickers:
        close = _walk(rng, len(dates))
        open_ = close * np.exp(rng.normal(0.0, 0.004, len(dates)))
        high = np.maximum(open_, close) * (1.0 + rng.uniform(0.0, 0.01, len(dates)))
        low = np.minimum(open_, close) * (1.0 - rng.uniform(0.0, 0.01, len(dates)))
        volume = rng.integers(200_000, 5_000_000, len(dates))
        frame = pd.DataFrame(
            {
                "Date": dates.strftime("%Y-%m-%d"),
                "Ticker": ticker,
                "Open": open_.round(4),
                "High": high.round(4),
                "Low": low.round(4),
                "Close": close.round(4),
                "Volume": volume,
            }
        )
        frame["Adj Close"] = (frame["Close"] * ADJ_FACTORS.get(ticker, 0.8)).round(6)
        if late and ticker in late:
            frame = frame[dates >= pd.Timestamp(late[ticker])]
        frames.append(frame[COLUMNS])
    return pd.concat(frames, ignore_index=True)


def write_panel_csv(
    path: Path,
    tickers: Sequence[str] = TICKERS,
    start: str = "2006-01-02",
    end: str = "2020-06-30",
    late: Mapping[str, str] | None = None,
    seed: int = 0,
) -> Path:
    """Write the hand-made panel to ``path`` (a fresh path per data variant) and return it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    panel_frame(tickers, start, end, late, seed).to_csv(path, index=False)
    return path


def read_panel(path: Path) -> pd.DataFrame:
    """The CSV as written, indexed by (Ticker, Date): the test's source of expected prices."""
    frame = pd.read_csv(path, parse_dates=["Date"])
    return frame.set_index(["Ticker", "Date"]).sort_index()


def column(path: Path, name: str, tickers: Sequence[str], dates: pd.DatetimeIndex) -> np.ndarray:
    """``(len(dates), len(tickers))`` values of one CSV column, read straight from the file."""
    frame = read_panel(path)[name].unstack(level=0)
    return frame.reindex(index=dates, columns=list(tickers)).to_numpy(dtype=float)


def portfolio_config(
    csv_path: Path, tickers: Sequence[str] = TICKERS, **portfolio_overrides: Any
) -> Config:
    """A small config on the hand-made file: window 5 and tiny networks."""
    overrides: dict[str, Any] = {
        "portfolio.data": f"csv:{csv_path}",
        "portfolio.tickers": ",".join(tickers),
        "portfolio.window": 5,
        "agent.lstm_hidden": 8,
        "agent.feature_dim": 8,
        "agent.policy_hidden": 16,
        "agent.mlp_hidden": 16,
        "ppo.rollout_length": 16,
        "train.num_envs": 2,
    }
    overrides.update({f"portfolio.{key}": value for key, value in portfolio_overrides.items()})
    return build_config(overrides=overrides, origin="test")
