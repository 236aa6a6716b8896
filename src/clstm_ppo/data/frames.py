"""The two frame shapes every data source produces, and their validation rules.

Daily bars: a ``DataFrame`` indexed by a tz-naive ``DatetimeIndex`` named ``date`` with float
columns ``open, high, low, close, volume`` and optionally ``adj_close``. Index levels such as
VIX have no traded volume; their sources declare fewer required columns.

Option quotes (one row per contract per day): columns ``date, expiry, strike, right, bid, ask,
underlying_price`` plus optional ``symbol, last, volume, open_interest, iv, delta, gamma, theta,
vega, rho``. ``right`` is ``"C"`` or ``"P"``; ``date`` and ``expiry`` are tz-naive timestamps.

Every rule violation raises :class:`~clstm_ppo.errors.DataError` with one line naming the origin
(file), the row (the file's line number, header = line 1) and the rule.

Plausibility rules for bars, on top of the structural ones (no NaN in required columns, sorted
unique dates, positive prices, high >= low); they refuse values that a float column accepts but
that would crash or poison training later (an ``inf`` in the GARCH fit, NaN logits):

* every numeric value is finite (``inf``, ``-inf`` and ``1e309``, which reads as ``inf``);
* prices are at most :data:`MAX_PRICE` (1e7 USD: over ten times the dearest US share quoted,
  Berkshire Hathaway A at about 7e5 USD);
* volume is at most :data:`MAX_VOLUME` (1e13 shares a day: about a thousand times the busiest
  split-adjusted day in the Dow-30 file, AAPL with 7.4e9);
* ``close`` (and ``adj_close``) moves at most :data:`MAX_DAILY_MOVE` (20x) up or down from one
  row to the next. Real one-day crashes reach 1/17 (Lehman, 2008-09-15) and 1/11 (Washington
  Mutual, 2008-09-26, in the Lean file), so a tighter bound would refuse real history; 20x still
  catches unit mix-ups (cents for dollars is 100x) and garbage such as ``1e308``. An unadjusted
  stock split of more than 20:1 trips it too, which is wanted: it is a fake return.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from clstm_ppo.errors import DataError

BAR_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")
OPTIONAL_BAR_COLUMNS: tuple[str, ...] = ("adj_close",)
PRICE_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close")
MOVE_COLUMNS: tuple[str, ...] = ("close", "adj_close")

MAX_PRICE = 1e7
"""Highest price accepted, in the data's currency (USD for every bundled and shared series)."""
MAX_VOLUME = 1e13
"""Highest daily volume accepted."""
MAX_DAILY_MOVE = 20.0
"""Largest accepted ratio between consecutive closes, up (x20) or down (x1/20)."""

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


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    """Columns holding numbers (not dates, labels or flags), in frame order."""
    return [
        str(column)
        for column in frame.columns
        if pd.api.types.is_numeric_dtype(frame[column])
        and not pd.api.types.is_bool_dtype(frame[column])
    ]


def _check_finite(frame: pd.DataFrame, origin: str, where: Callable[[int], str]) -> None:
    """No ``inf``/``-inf`` in any numeric column (NaN is the required-column rule's business)."""
    for column in _numeric_columns(frame):
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(np.isinf(values))
        if bad is not None:
            raise DataError(
                f"{origin}: {where(bad)}: '{column}' is {values[bad]:g} "
                "(rule: every numeric value must be finite)"
            )


def validate_bars(
    frame: pd.DataFrame,
    origin: str,
    required: Sequence[str] = BAR_COLUMNS,
    first_line: int | np.ndarray = 2,
    max_daily_move: float | None = MAX_DAILY_MOVE,
) -> pd.DataFrame:
    """Check a bar frame in file order and return it unchanged.

    ``frame`` must still be in the order of the file, indexed by position or by date, so that the
    row numbers in the errors point at the file's lines. ``first_line`` is the line of the first
    data row (2 for a CSV with one header line), or an array giving each row's file line when the
    rows are a subset of the file (one symbol of a multi-symbol file). ``max_daily_move=None``
    switches the close-to-close rule off, for option bars: a far out-of-the-money option can
    really go from 0.01 to 0.50 in a day.
    """
    if len(frame) == 0:
        raise DataError(f"{origin}: no data rows")
    for column in required:
        if column not in frame.columns:
            raise DataError(f"{origin}: missing required column '{column}'")
    dates = pd.DatetimeIndex(frame.index)

    def where(position: int) -> str:
        return f"line {_line(position, first_line)} ({dates[position].date()})"

    for column in required:
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(np.isnan(values))
        if bad is not None:
            raise DataError(f"{origin}: {where(bad)}: NaN in required column '{column}'")
    _check_finite(frame, origin, where)
    for column in PRICE_COLUMNS:
        if column not in frame.columns:
            continue
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(values <= 0)
        if bad is not None:
            raise DataError(
                f"{origin}: {where(bad)}: price '{column}' must be positive, got {values[bad]:g}"
            )
        bad = _first_bad(values > MAX_PRICE)
        if bad is not None:
            raise DataError(
                f"{origin}: {where(bad)}: price '{column}' is {values[bad]:g} "
                f"(rule: prices at most {MAX_PRICE:g})"
            )
    if "volume" in frame.columns:
        volume = frame["volume"].to_numpy(dtype=float, na_value=np.nan)
        bad = _first_bad(volume < 0)
        if bad is not None:
            raise DataError(f"{origin}: {where(bad)}: volume must be >= 0, got {volume[bad]:g}")
        bad = _first_bad(volume > MAX_VOLUME)
        if bad is not None:
            raise DataError(
                f"{origin}: {where(bad)}: volume is {volume[bad]:g} "
                f"(rule: volume at most {MAX_VOLUME:g} a day)"
            )
    if "high" in frame.columns and "low" in frame.columns:
        high = frame["high"].to_numpy(dtype=float)
        low = frame["low"].to_numpy(dtype=float)
        bad = _first_bad(high < low)
        if bad is not None:
            raise DataError(f"{origin}: {where(bad)}: high {high[bad]:g} < low {low[bad]:g}")
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
    if max_daily_move is not None:
        _check_moves(frame, origin, where, dates, max_daily_move)
    return frame


def _check_moves(
    frame: pd.DataFrame,
    origin: str,
    where: Callable[[int], str],
    dates: pd.DatetimeIndex,
    limit: float,
) -> None:
    """Consecutive closes may differ by a factor of at most ``limit`` either way."""
    for column in MOVE_COLUMNS:
        if column not in frame.columns or len(frame) < 2:
            continue
        values = frame[column].to_numpy(dtype=float, na_value=np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = values[1:] / values[:-1]
        # NaN (an optional column's gap) compares False: only real numbers are judged.
        bad = _first_bad((ratio > limit) | (ratio < 1.0 / limit))
        if bad is None:
            continue
        factor = ratio[bad] if ratio[bad] > 1 else 1.0 / ratio[bad]
        direction = "up" if ratio[bad] > 1 else "down"
        raise DataError(
            f"{origin}: {where(bad + 1)}: {column} moves {factor:.4g}x {direction} to "
            f"{values[bad + 1]:g} from {values[bad]:g} on the previous row ({dates[bad].date()}) "
            f"(rule: at most {limit:g}x up or down from one trading day to the next; "
            "an unadjusted split? use split-adjusted prices)"
        )


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
    _check_finite(frame, origin, lambda position: f"line {_line(position, first_line)}")
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
