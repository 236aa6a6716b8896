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
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from arch.bootstrap import CircularBlockBootstrap

from clstm_ppo.train.metrics import TRADING_DAYS, max_drawdown, sharpe_ratio, sortino_ratio

BLOCK_DAYS = 10
BOOTSTRAP_REPS = 1000
BOOTSTRAP_SEED = 7


def sharpe_interval(returns: np.ndarray, risk_free_rate: float = 0.0) -> tuple[float, float]:
    if returns.size < 2 * BLOCK_DAYS or np.std(returns) == 0:
        return float("nan"), float("nan")
    bootstrap = CircularBlockBootstrap(BLOCK_DAYS, returns, seed=BOOTSTRAP_SEED)

    def statistic(sample: np.ndarray) -> np.ndarray:
        return np.array([sharpe_ratio(sample, risk_free_rate)])

    interval = bootstrap.conf_int(statistic, reps=BOOTSTRAP_REPS, method="percentile")
    return float(interval[0, 0]), float(interval[1, 0])


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
