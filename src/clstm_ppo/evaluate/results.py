"""What an evaluation produces: one :class:`StrategyRun` per policy or baseline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd


@dataclass
class StrategyRun:
    """One strategy's continuous walk through an evaluation split."""

    name: str
    """e.g. ``clstm-ppo``, ``buy_and_hold``, ``cash``, ``random_seed0``."""
    dates: pd.DatetimeIndex
    """Trading days of the walk, first day included (len = len(values))."""
    values: np.ndarray
    """Daily portfolio value in USD, marked at mid."""
    trades: pd.DataFrame
    """Closed trades: columns ``strategy, opened, closed, pnl`` (may be empty)."""
    costs_paid: float
    """Commissions, fees and stock costs paid (USD); the spread is inside the fills."""
    actions: np.ndarray | None = None
    """Action id taken each day (environment policies only)."""
    metrics: dict[str, float] = field(default_factory=dict)
    """Filled by :func:`clstm_ppo.evaluate.metrics.strategy_metrics`."""
    kind: str = "baseline"
    """``agent`` for the evaluated policy, ``baseline`` otherwise."""
