"""Everything the stock-portfolio environment reads per day, computed once per data set.

- the trading prices and the paper's four indicators per stock (stockstats: ``macd``,
  ``rsi_30``, ``cci_30``, ``dx_30`` as in FinRL), raw, for the paper's state vector;
- the network's market features per day: for each stock its log return, MACD / close, RSI, CCI
  and ADX, plus the log turbulence. Each feature kind is normalised with the mean and std pooled
  over all stocks and over the days seen so far, up to the end of the train split (expanding,
  so nothing peeks ahead, not even inside the train split); the statistics start
  ``history_days`` before the train split, from data before it;
- turbulence (FinRL): the Mahalanobis distance of the day's returns from the trailing
  ``turbulence_window`` days before it; where a stock has no history yet (late listing), it is
  left out of that day's distance, as FinRL drops such columns;
- the threshold: the expanding percentile of the train split's turbulence, frozen at its train-end
  value afterwards.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from clstm_ppo.config import Config, PortfolioConfig, config_from_key, config_key
from clstm_ppo.data.equities import EquityPanel, load_equity_panel, parse_tickers
from clstm_ppo.envs.tape import _expanding_threshold, indicator_frame, turbulence_index
from clstm_ppo.errors import DataError

INDICATORS = ("macd", "rsi", "cci", "adx")
FEATURES_PER_STOCK = 5  # log return and the four indicators
_CLIP = 10.0


@dataclass(frozen=True, eq=False)
class PortfolioTape:
    panel: EquityPanel
    dates: pd.DatetimeIndex
    prices: np.ndarray
    """(D, N) trading price at each close."""
    indicators: np.ndarray
    """(D, N, 4) raw MACD, RSI, CCI, ADX (NaN before warm-up)."""
    features: np.ndarray
    """(D, 5N + 1) normalised market features (float32, NaN set to 0)."""
    turbulence: np.ndarray
    threshold: np.ndarray
    turbulent: np.ndarray
    """(D,) True where turbulence is above the threshold: sell all, buy nothing."""
    bounds: dict[str, tuple[int, int]]
    """Split name -> (first, last) day index."""
    provenance: dict[str, Any]

    @property
    def n_stocks(self) -> int:
        return self.prices.shape[1]

    def split_bounds(self, split: str) -> tuple[int, int]:
        if split not in self.bounds:
            raise DataError(f"unknown split {split!r} (use train, validation or test)")
        return self.bounds[split]


def portfolio_turbulence(returns: np.ndarray, window: int) -> np.ndarray:
    """Turbulence per day over the stocks with a complete trailing window (see module doc)."""
    result = turbulence_index(returns, window)
    for day in np.flatnonzero(np.isnan(result)):
        if day < window:
            continue
        history = returns[day - window : day]
        usable = np.isfinite(history).all(axis=0) & np.isfinite(returns[day])
        if usable.sum() < 2:
            continue
        hist = history[:, usable]
        diff = returns[day, usable] - hist.mean(axis=0)
        cov = np.cov(hist, rowvar=False)
        result[day] = float(diff @ np.linalg.pinv(cov) @ diff)
    return result


def _pooled_expanding(values: np.ndarray, train_last: int) -> np.ndarray:
    """Normalise ``(D, N)`` values with the mean/std of all finite values on days
    ``0..min(d, train_last)``; days with fewer than 20 values get NaN."""
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    c1, c2, cn = np.cumsum(x.sum(1)), np.cumsum((x * x).sum(1)), np.cumsum(finite.sum(1))
    end = np.minimum(np.arange(len(values)), train_last)
    n = cn[end].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = c1[end] / n
        std = np.sqrt(np.maximum((c2[end] - n * mean * mean) / (n - 1.0), 0.0))
        out = (values - mean[:, None]) / np.where(std > 1e-12, std, 1.0)[:, None]
    out[n < 20] = np.nan
    return out


def build_portfolio_tape(config: PortfolioConfig) -> PortfolioTape:
    if config.data is None:
        raise DataError("portfolio.data: no data given (use --data csv:PATH or alpaca:TICKERS)")
    splits = config.splits
    first = splits.train.start - dt.timedelta(days=config.history_days)
    panel = load_equity_panel(
        config.data, parse_tickers(config.tickers), first, splits.train.start, splits.test.end,
        config.prices,
    )  # fmt: skip
    dates = panel.dates
    bounds: dict[str, tuple[int, int]] = {}
    for name in ("train", "validation", "test"):
        part = getattr(splits, name)
        inside = (dates >= pd.Timestamp(part.start)) & (dates <= pd.Timestamp(part.end))
        rows = np.flatnonzero(inside)
        if rows.size < 2:
            raise DataError(f"{panel.origin}: split '{name}' ({part.start}..{part.end}) is empty")
        bounds[name] = (int(rows[0]), int(rows[-1]))
    n = len(panel.tickers)
    indicators = np.full((len(dates), n, len(INDICATORS)), np.nan)
    for column in range(n):
        frame = panel.frame(column)
        valid = frame["close"].notna().to_numpy()
        table = indicator_frame(frame[valid])
        raw = table[["macd", "rsi", "cci", "adx"]].to_numpy(dtype=float, copy=True)
        raw[:, 0] *= frame["close"].to_numpy()[valid]  # indicator_frame gives MACD / close
        indicators[valid, column] = raw
    prices = panel.close
    with np.errstate(invalid="ignore", divide="ignore"):
        log_returns = np.vstack([np.full((1, n), np.nan), np.diff(np.log(prices), axis=0)])
    train_last = bounds["train"][1]
    turbulence = portfolio_turbulence(log_returns, config.turbulence_window)
    threshold = _expanding_threshold(turbulence, train_last, config.turbulence_percentile)
    turbulent = np.nan_to_num(turbulence, nan=0.0) > np.nan_to_num(threshold, nan=np.inf)
    kinds = [log_returns, indicators[:, :, 0] / prices, *(indicators[:, :, k] for k in (1, 2, 3))]
    blocks = [_pooled_expanding(kind, train_last) for kind in kinds]
    log_turb = np.log1p(turbulence)[:, None]
    blocks.append(_pooled_expanding(log_turb, train_last))
    features = np.concatenate(blocks, axis=1)
    features = np.clip(np.nan_to_num(features, nan=0.0), -_CLIP, _CLIP).astype(np.float32)
    provenance = {
        "data": panel.provenance(),
        "splits": {
            name: [str(dates[lo].date()), str(dates[hi].date())]
            for name, (lo, hi) in bounds.items()
        },
        "turbulence_threshold_after_train": float(threshold[train_last]),
        "turbulent_days": {
            name: int(turbulent[lo : hi + 1].sum()) for name, (lo, hi) in bounds.items()
        },
    }
    return PortfolioTape(
        panel=panel, dates=dates, prices=prices, indicators=indicators, features=features,
        turbulence=turbulence, threshold=threshold, turbulent=turbulent, bounds=bounds,
        provenance=provenance,
    )  # fmt: skip


@lru_cache(maxsize=4)
def _cached(key: str) -> PortfolioTape:
    return build_portfolio_tape(config_from_key(key).portfolio)


def portfolio_tape_for(config: Config) -> PortfolioTape:
    """The tape of ``config.portfolio``, built once per process for the same settings."""
    section = json.loads(config_key(config, {"portfolio"}))["portfolio"]
    # The tape depends only on data, tickers, prices, history, splits and turbulence settings.
    for unused in ("window", "hmax", "cost_pct", "initial_capital", "reward_scaling",
                   "episode_length"):  # fmt: skip
        section.pop(unused, None)
    return _cached(config_key(Config(portfolio=PortfolioConfig(**section)), {"portfolio"}))
