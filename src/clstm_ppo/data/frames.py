"""The two frame shapes every data source produces, and their validation rules.

Daily bars: a ``DataFrame`` indexed by a tz-naive ``DatetimeIndex`` named ``date`` with float
columns ``open, high, low, close, volume`` and optionally ``adj_close``. Index levels such as
VIX have no traded volume; their sources declare fewer required columns.

Option quotes (one row per contract per day): columns ``date, expiry, strike, right, bid, ask,
underlying_price`` plus optional ``symbol, last, volume, open_interest, iv, delta, gamma, theta,
vega, rho``. ``right`` is ``"C"`` or ``"P"``; ``date`` and ``expiry`` are tz-naive timestamps.

Every rule violation raises :class:`~clstm_ppo.errors.DataError` with one line naming the origin
(file), the row (the file's line number, header = line 1) and the rule.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from clstm_ppo.errors import DataError

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
OPTIONAL_BAR_COLUMNS: tuple[str, ...] = ("adj_close",)
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close")

QUOTE_COLUMNS: tuple[str, ...] = (
    "date",
    "expiry",
    "strike",
    "right",
    "bid",
    "ask",
    "underlying_price",
)
OPTIONAL_QUOTE_COLUMNS: tuple[str, ...] = (
    "symbol",
    "last",
    "volume",
    "open_interest",
    "iv",
    "delta",
    "gamma",
    "theta",
    "vega",
    "rho",
)


def _line(position: int, first_line: int | np.ndarray) -> int:
    if isinstance(first_line, np.ndarray):
        return int(first_line[position])
    return position + first_line


def _first_bad(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def validate_bars(
    frame: pd.DataFrame,
    origin: str,
    required: Sequence[str] = BAR_COLUMNS,
    first_line: int | np.ndarray = 2,
) -> pd.DataFrame:
    """Check a bar frame in file order and return it unchanged.

    ``frame`` must still be in the order of the file, indexed by position or by date, so that the
    row numbers in the errors point at the file's lines. ``first_line`` is the line of the first
    data row (2 for a CSV with one header line), or an array giving each row's file line when the
    rows are a subset of the file (one symbol of a multi-symbol file).
    """
    if len(frame) == 0:
        raise DataError(f"{origin}: no data rows")
    for column in required:
        if column not in frame.columns:
            raise DataError(f"{origin}: missing required column '{column}'")
    dates = pd.DatetimeIndex(frame.index)
    for column in required:
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(np.isnan(values))
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)} ({dates[bad].date()}): "
                f"NaN in required column '{column}'"
            )
    for column in PRICE_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(values <= 0)
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)} ({dates[bad].date()}): "
                f"price '{column}' must be positive, got {values[bad]:g}"
            )
    if "volume" in frame.columns:
        volume = frame["volume"].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(volume < 0)
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)} ({dates[bad].date()}): "
                f"volume must be >= 0, got {volume[bad]:g}"
            )
    if "high" in frame.columns and "low" in frame.columns:
        high = frame["high"].to_numpy(dtype=float)
        low = frame["low"].to_numpy(dtype=float)
        bad = _first_bad(high < low)
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)} ({dates[bad].date()}): "
                f"high {high[bad]:g} < low {low[bad]:g}"
            )
    stamps = dates.asi8
    bad = _first_bad(np.diff(stamps) == 0)
    if bad is not None:
        raise DataError(
            f"{origin}: line {_line(bad + 1, first_line)}: duplicate date {dates[bad + 1].date()}"
        )
    bad = _first_bad(np.diff(stamps) < 0)
    if bad is not None:
        raise DataError(
            f"{origin}: line {_line(bad + 1, first_line)}: dates not sorted ascending "
            f"({dates[bad + 1].date()} comes after {dates[bad].date()})"
        )
    return frame


def validate_quotes(
    frame: pd.DataFrame, origin: str, first_line: int | np.ndarray = 2
) -> pd.DataFrame:
    """Check an option-quote frame (rows in file order) and return it unchanged."""
    if len(frame) == 0:
        raise DataError(f"{origin}: no option quotes")
    for column in QUOTE_COLUMNS:
        if column not in frame.columns:
            raise DataError(f"{origin}: missing required column '{column}'")
    for column in QUOTE_COLUMNS:
        bad = _first_bad(frame[column].isna().to_numpy())
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)}: NaN in required column '{column}'"
            )
    right = frame["right"].to_numpy()
    bad = _first_bad(~np.isin(right, ["C", "P"]))
    if bad is not None:
        raise DataError(
            f"{origin}: line {_line(bad, first_line)}: right must be 'C' or 'P', got {right[bad]!r}"
        )
    for column in ("strike", "underlying_price"):
        values = frame[column].to_numpy(dtype=float)
        bad = _first_bad(values <= 0)
        if bad is not None:
            raise DataError(
                f"{origin}: line {_line(bad, first_line)}: {column} must be positive, "
                f"got {values[bad]:g}"
            )
    bid = frame["bid"].to_numpy(dtype=float)
    ask = frame["ask"].to_numpy(dtype=float)
    bad = _first_bad(bid < 0)
    if bad is not None:
        raise DataError(
            f"{origin}: line {_line(bad, first_line)}: bid must be >= 0, got {bid[bad]:g}"
        )
    bad = _first_bad(bid > ask)
    if bad is not None:
        raise DataError(
            f"{origin}: line {_line(bad, first_line)}: crossed quote, bid {bid[bad]:g} > "
            f"ask {ask[bad]:g}"
        )
    date = pd.DatetimeIndex(frame["date"]).asi8
    expiry = pd.DatetimeIndex(frame["expiry"]).asi8
    bad = _first_bad(expiry < date)
    if bad is not None:
        raise DataError(f"{origin}: line {_line(bad, first_line)}: expiry before quote date")
    return frame
