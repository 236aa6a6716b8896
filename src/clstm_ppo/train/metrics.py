"""Every trading metric of the product, defined once.

Per episode (from its daily portfolio values and closed trades):
- ``return``: last value / first value - 1.
- ``win_rate``: closed trades with P&L > 0 / closed trades (NaN with no closed trade).
- ``sharpe``: mean / std of daily excess returns x sqrt(252); the excess is over
  ``risk_free_rate / 252`` per day. NaN when the std is 0.
- ``sortino``: mean daily excess return / downside deviation x sqrt(252), where the downside
  deviation is sqrt(mean(min(excess, 0)^2)).
- ``max_drawdown``: the largest fall from a running peak, as a positive fraction.

Over a set of episodes (rolling window, validation):
- ``profit_rate``: episodes with return > 0 / episodes.
- ``win_rate``: all closed trades pooled (wins / trades).
- ``composite``: the score that picks the primary checkpoint, in [0, 1]::

      composite = 0.35 * win_rate + 0.35 * profit_rate
                + 0.30 * (0.5 + 0.5 * tanh(mean_return / 0.10))

  Win rate and profit rate reward consistency; the return term rewards size, saturating so that
  one lucky +200% episode cannot dominate (a mean return of +10% scores 0.88 of the term's
  range, -10% scores 0.12). A set with no closed trade counts its win rate as 0.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import numpy as np

TRADING_DAYS = 252
MILESTONES = (0.5, 0.6, 0.7, 0.8)  # rolling profit rates that earn a milestone checkpoint


@dataclass(frozen=True)
class EpisodeMetrics:
    """The numbers of one finished episode."""

    total_return: float
    win_rate: float
    trades: int
    wins: int
    sharpe: float
    sortino: float
    max_drawdown: float
    costs_paid: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def daily_returns(values: Sequence[float]) -> np.ndarray:
    series = np.asarray(values, dtype=float)
    return series[1:] / series[:-1] - 1.0


def sharpe_ratio(returns: np.ndarray, risk_free_rate: float = 0.0) -> float:
    excess = returns - risk_free_rate / TRADING_DAYS
    std = excess.std(ddof=1) if excess.size > 1 else 0.0
    return float(excess.mean() / std * math.sqrt(TRADING_DAYS)) if std > 0 else float("nan")


def sortino_ratio(returns: np.ndarray, risk_free_rate: float = 0.0) -> float:
    excess = returns - risk_free_rate / TRADING_DAYS
    downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2))) if excess.size else 0.0
    return (
        float(excess.mean() / downside * math.sqrt(TRADING_DAYS)) if downside > 0 else float("nan")
    )


def max_drawdown(values: Sequence[float]) -> float:
    series = np.asarray(values, dtype=float)
    if series.size == 0:
        return 0.0
    peaks = np.maximum.accumulate(series)
    return float(np.max(1.0 - series / peaks))


def episode_metrics(
    values: Sequence[float],
    trade_pnls: Iterable[float],
    costs_paid: float = 0.0,
    risk_free_rate: float = 0.0,
) -> EpisodeMetrics:
    pnls = np.asarray(list(trade_pnls), dtype=float)
    wins = int(np.sum(pnls > 0))
    returns = daily_returns(values)
    return EpisodeMetrics(
        total_return=float(values[-1] / values[0] - 1.0),
        win_rate=wins / pnls.size if pnls.size else float("nan"),
        trades=int(pnls.size),
        wins=wins,
        sharpe=sharpe_ratio(returns, risk_free_rate),
        sortino=sortino_ratio(returns, risk_free_rate),
        max_drawdown=max_drawdown(values),
        costs_paid=float(costs_paid),
    )


def summary_metrics(summary: dict, risk_free_rate: float = 0.0) -> EpisodeMetrics:
    """Metrics of an environment's end-of-episode summary (``final_info`` entry)."""
    return episode_metrics(
        summary["portfolio_values"],
        (trade["pnl"] for trade in summary["closed_trades"]),
        summary.get("costs_paid", 0.0),
        risk_free_rate,
    )


def composite_score(win_rate: float, profit_rate: float, mean_return: float) -> float:
    win = 0.0 if math.isnan(win_rate) else win_rate
    return 0.35 * win + 0.35 * profit_rate + 0.30 * (0.5 + 0.5 * math.tanh(mean_return / 0.10))


def _nanmean(values: Iterable[float]) -> float:
    array = np.asarray(list(values), dtype=float)
    finite = array[np.isfinite(array)]
    return float(finite.mean()) if finite.size else float("nan")


def aggregate(episodes: Sequence[EpisodeMetrics]) -> dict[str, float]:
    """Set-level metrics over ``episodes`` (see the module docstring)."""
    if not episodes:
        return {}
    trades = sum(e.trades for e in episodes)
    wins = sum(e.wins for e in episodes)
    win_rate = wins / trades if trades else float("nan")
    profit_rate = float(np.mean([e.total_return > 0 for e in episodes]))
    mean_return = float(np.mean([e.total_return for e in episodes]))
    return {
        "episodes": float(len(episodes)),
        "mean_return": mean_return,
        "win_rate": win_rate,
        "profit_rate": profit_rate,
        "sharpe": _nanmean(e.sharpe for e in episodes),
        "sortino": _nanmean(e.sortino for e in episodes),
        "max_drawdown": float(np.max([e.max_drawdown for e in episodes])),
        "trades": float(trades),
        "composite": composite_score(win_rate, profit_rate, mean_return),
    }


def trend_arrow(history: Sequence[float], window: int = 10) -> str:
    """'↓' if the last ``window`` values average lower than the ``window`` before, '↑' if higher,
    '→' within 2% or with too little history (for losses, ↓ is good)."""
    if len(history) < 2 * window:
        return "→"
    recent = float(np.mean(history[-window:]))
    before = float(np.mean(history[-2 * window : -window]))
    if abs(recent - before) <= 0.02 * max(abs(before), 1e-12):
        return "→"
    return "↑" if recent > before else "↓"
