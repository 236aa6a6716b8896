"""Train / validation / test date splits from the config.

The splits never overlap (the config refuses it) and every run records them. Normalisation
statistics and thresholds come from the train split only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from clstm_ppo.config import DateRange, Splits
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError

SPLIT_NAMES = ("train", "validation", "test")


@dataclass(frozen=True)
class SplitSummary:
    """What one split covers in a given series."""

    name: str
    start: pd.Timestamp
    end: pd.Timestamp
    rows: int
    first_date: pd.Timestamp | None
    last_date: pd.Timestamp | None


def split_range(splits: Splits, name: str) -> DateRange:
    if name not in SPLIT_NAMES:
        raise DataError(f"unknown split {name!r} (use one of {', '.join(SPLIT_NAMES)})")
    return getattr(splits, name)


def describe_splits(market: MarketData, splits: Splits) -> list[SplitSummary]:
    """Rows and actual first/last trading days of each split in ``market``."""
    summaries = []
    for name in SPLIT_NAMES:
        window = split_range(splits, name)
        rows = market.between(window.start, window.end)
        summaries.append(
            SplitSummary(
                name,
                pd.Timestamp(window.start),
                pd.Timestamp(window.end),
                len(rows),
                rows.index[0] if len(rows) else None,
                rows.index[-1] if len(rows) else None,
            )
        )
    return summaries


def split_bars(market: MarketData, splits: Splits, name: str) -> pd.DataFrame:
    """The bars of one split; an empty split is an error naming the config key."""
    window = split_range(splits, name)
    rows = market.between(window.start, window.end)
    if rows.empty:
        raise DataError(
            f"data.splits.{name}: {window.start}..{window.end} holds no rows of {market.symbol} "
            f"({market.origin} covers {market.first_date.date()}..{market.last_date.date()})"
        )
    return rows
