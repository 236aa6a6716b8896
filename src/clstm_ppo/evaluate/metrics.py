"""Metrics of one continuous walk through an evaluation split.

Daily-return metrics reuse the definitions in :mod:`clstm_ppo.train.metrics` (Sharpe, Sortino,
max drawdown are defined once). Additionally:

- ``annualised_return``: (final / initial) ** (252 / days) - 1;
- ``annualised_volatility``: std of daily returns x sqrt(252);
- ``calmar``: annualised return / max drawdown;
- ``profit_rate``: for one continuous walk, the share of calendar months whose return is > 0
  (the walk is one episode, so months stand in for episodes);
- ``sharpe_ci_low`` / ``sharpe_ci_high``: a 95% percentile interval for the annualised Sharpe
  from a circular block bootstrap of the daily returns (``arch.bootstrap``; 10-day blocks keep
  volatility clustering, 1,000 resamples, fixed seed).

Across runs (seeds), :func:`mean_interval` gives each metric's mean, standard deviation and a 95%
interval for the mean that stays inside the metric's natural range (:data:`BOUNDS`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from arch.bootstrap import CircularBlockBootstrap
from scipy import stats

from clstm_ppo.train.metrics import TRADING_DAYS, max_drawdown, sharpe_ratio, sortino_ratio

BLOCK_DAYS = 10
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 7
CONFIDENCE = 0.95

UNBOUNDED = (-math.inf, math.inf)
BOUNDS: dict[str, tuple[float, float]] = {
    # A portfolio cannot lose more than everything, so neither return can fall below -100%.
    "total_return": (-1.0, math.inf),
    "cumulative_return": (-1.0, math.inf),  # the paper's name for total_return
    "annualised_return": (-1.0, math.inf),
    "annualised_volatility": (0.0, math.inf),
    "max_drawdown": (0.0, 1.0),
    "win_rate": (0.0, 1.0),
    "profit_rate": (0.0, 1.0),
    "trades": (0.0, math.inf),
    "costs_paid": (0.0, math.inf),
}
"""Natural range of each metric of :func:`strategy_metrics`; the others (Sharpe, its interval,
Sortino, Calmar) are unbounded."""


def sharpe_interval(returns: np.ndarray, risk_free_rate: float = 0.0) -> tuple[float, float]:
    if returns.size < 2 * BLOCK_DAYS or np.std(returns) == 0:
        return float("nan"), float("nan")
    bootstrap = CircularBlockBootstrap(BLOCK_DAYS, returns, seed=BOOTSTRAP_SEED)

    def statistic(sample: np.ndarray) -> np.ndarray:
        return np.array([sharpe_ratio(sample, risk_free_rate)])

    interval = bootstrap.conf_int(statistic, reps=BOOTSTRAP_REPS, method="percentile")
    return float(interval[0, 0]), float(interval[1, 0])


def mean_interval(
    values: np.ndarray | list[float],
    bounds: tuple[float, float] = UNBOUNDED,
    confidence: float = CONFIDENCE,
) -> dict[str, float]:
    """Mean, standard deviation (ddof 1) and a ``confidence`` interval for the mean of
    ``values`` (one per run or seed; NaNs, e.g. the win rate of a run without trades, are left
    out), as ``{"mean", "std", "ci_low", "ci_high"}``.

    Method: Student's t-interval, ``mean +- t(confidence, n - 1) x std / sqrt(n)``, intersected
    with ``bounds``, the range the metric cannot leave (:data:`BOUNDS`: rates and drawdown in
    [0, 1], counts and costs >= 0, returns >= -100%). The true mean lies inside ``bounds``, so it
    is inside the clipped interval exactly when it is inside the plain one: clipping removes only
    impossible values and keeps the t-interval's coverage. The mean always lies inside the bounds,
    so the clipped interval is never empty. With few runs the interval is wide (with 3 seeds
    t = 4.30); a bound reached by the interval means "the data do not rule out the bound".

    Why not a t-interval on a transformed scale (logit for rates, log for counts) mapped back:
    it is undefined at the bounds, which real runs reach (a seed that stops trading has 0 trades,
    0 costs, 0 drawdown, 0 profit rate), so it would need an arbitrary continuity correction that
    moves the interval; and mapped back it is an interval for a different quantity (e.g. the
    geometric mean for log), not for the arithmetic mean shown beside it. Why not a bootstrap
    across runs: with 3 runs it has only 10 distinct resamples and understates the spread.
    Fewer than two finite values: the interval is NaN (a spread needs two runs).
    """
    array = np.asarray(values, dtype=float)
    finite = array[np.isfinite(array)]
    mean = float(finite.mean()) if finite.size else math.nan
    if finite.size < 2:
        return {"mean": mean, "std": math.nan, "ci_low": math.nan, "ci_high": math.nan}
    std = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, finite.size - 1)) * std / math.sqrt(finite.size)
    low, high = bounds
    return {
        "mean": mean,
        "std": std,
        "ci_low": max(mean - half, low),
        "ci_high": min(mean + half, high),
    }


def strategy_metrics(
    dates: pd.DatetimeIndex,
    values: np.ndarray,
    trade_pnls: np.ndarray,
    costs_paid: float,
    risk_free_rate: float = 0.0,
) -> dict[str, float]:
    values = np.asarray(values, dtype=float)
    returns = values[1:] / values[:-1] - 1.0
    days = max(len(values) - 1, 1)
    total = float(values[-1] / values[0] - 1.0)
    annual = float((values[-1] / values[0]) ** (TRADING_DAYS / days) - 1.0)
    drawdown = max_drawdown(values)
    monthly = pd.Series(values, index=dates).resample("ME").last()
    first_month_start = pd.Series([values[0]])
    month_returns = pd.concat([first_month_start, monthly]).pct_change().dropna()
    pnls = np.asarray(trade_pnls, dtype=float)
    low, high = sharpe_interval(returns, risk_free_rate)
    return {
        "total_return": total,
        "annualised_return": annual,
        "annualised_volatility": float(np.std(returns, ddof=1) * math.sqrt(TRADING_DAYS))
        if returns.size > 1
        else float("nan"),
        "sharpe": sharpe_ratio(returns, risk_free_rate),
        "sharpe_ci_low": low,
        "sharpe_ci_high": high,
        "sortino": sortino_ratio(returns, risk_free_rate),
        "max_drawdown": drawdown,
        "calmar": annual / drawdown if drawdown > 0 else float("nan"),
        "win_rate": float(np.mean(pnls > 0)) if pnls.size else float("nan"),
        "profit_rate": float(np.mean(month_returns.to_numpy() > 0))
        if len(month_returns)
        else float("nan"),
        "trades": float(pnls.size),
        "costs_paid": float(costs_paid),
    }
