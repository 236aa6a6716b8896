"""One interface over every bar source: ``load_bars(spec)`` returns validated :class:`MarketData`.

A data *spec* is ``SOURCE:ARGUMENT``: ``bundled:SPX``, ``csv:/path/to/file_or_folder`` (or
``csv:PATH#SYMBOL`` for one symbol of a multi-symbol file), ``alpaca:SPY``, ``synthetic:gbm``.
The source is always recorded in the result's provenance, so a synthetic or downloaded series can
never pass for another.

A date range (``start``/``end``) limits every source the same way: the SDK request for
``alpaca``, the generated days for ``synthetic``, a slice of the file or package for ``csv`` and
``bundled``. A range that reaches past the data (an NYSE trading day before its first row or
after its last) is an error that states the data's range, never a silently shorter series.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from clstm_ppo.errors import DataError

SOURCES = ("bundled", "csv", "alpaca", "synthetic")


@dataclass(frozen=True)
class MarketData:
    """Validated daily bars of one symbol, and where they came from."""

    symbol: str
    bars: pd.DataFrame
    """Indexed by ``date``; columns as in :mod:`clstm_ppo.data.frames`."""
    source: str
    """One of :data:`SOURCES`."""
    origin: str
    """The exact file, package module or API the rows came from."""
    notes: tuple[str, ...] = field(default=())
    """Cleaning that was applied (e.g. rows dropped), stated so a user can check it."""

    @property
    def first_date(self) -> pd.Timestamp:
        return self.bars.index[0]

    @property
    def last_date(self) -> pd.Timestamp:
        return self.bars.index[-1]

    def provenance(self) -> dict[str, Any]:
        """What a run records about its data."""
        return {
            "symbol": self.symbol,
            "source": self.source,
            "origin": self.origin,
            "rows": len(self.bars),
            "first_date": str(self.first_date.date()),
            "last_date": str(self.last_date.date()),
            "notes": list(self.notes),
        }

    def between(self, start: dt.date | str, end: dt.date | str) -> pd.DataFrame:
        """Bars with ``start <= date <= end``."""
        index = self.bars.index
        return self.bars[(index >= pd.Timestamp(start)) & (index <= pd.Timestamp(end))]


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``SOURCE:ARGUMENT``; a bare word is a bundled symbol."""
    source, sep, argument = spec.partition(":")
    if not sep:
        return "bundled", spec
    if source not in SOURCES:
        raise DataError(
            f"data spec {spec!r}: unknown source {source!r} (use one of {', '.join(SOURCES)})"
        )
    if not argument:
        raise DataError(f"data spec {spec!r}: missing the part after '{source}:'")
    return source, argument


def spec_fields(spec: str) -> tuple[str, str | None, str | None]:
    """``(source, symbol, path)`` of a spec: what ``--source/--symbol/--path`` would say."""
    source, argument = parse_spec(spec)
    if source == "csv":
        path, _, symbol = argument.partition("#")
        if not path:
            raise DataError(f"data spec {spec!r}: missing the file or folder after 'csv:'")
        return source, symbol or None, path
    return source, argument, None


def check_range(start: dt.date | None, end: dt.date | None) -> None:
    """Refuse ``end`` before ``start``."""
    if start is not None and end is not None and end < start:
        raise DataError(f"date range: end {end} is before start {start}")


def _has_sessions(lo: pd.Timestamp, hi: pd.Timestamp) -> bool:
    """Whether any NYSE trading day falls in ``lo..hi`` (weekdays outside the calendar's span)."""
    if lo > hi:
        return False
    from clstm_ppo.data.calendar import trading_days

    try:
        return len(trading_days(lo, hi)) > 0
    except DataError:  # before 1990 or years ahead: the calendar is not built that far
        return len(pd.bdate_range(lo, hi)) > 0


def restrict(market: MarketData, start: dt.date | None, end: dt.date | None) -> MarketData:
    """``market`` cut to ``start..end`` (inclusive; None leaves that side open).

    A bound past the data is refused with the data's range: a trading day between ``start`` and
    the first row, or between the last row and ``end`` (up to yesterday: today's bar may not be
    out yet), is a day the user asked for and the data lacks.
    """
    check_range(start, end)
    if start is None and end is None:
        return market
    first, last = market.first_date, market.last_date
    covers = f"the data covers {first.date()}..{last.date()}"
    lo = first if start is None else pd.Timestamp(start)
    hi = last if end is None else pd.Timestamp(end)
    one_day = pd.Timedelta(days=1)
    if lo > last:
        raise DataError(f"{market.origin}: start {lo.date()} is after the data ({covers})")
    if hi < first:
        raise DataError(f"{market.origin}: end {hi.date()} is before the data ({covers})")
    if _has_sessions(lo, first - one_day):
        raise DataError(f"{market.origin}: start {lo.date()} is before the data ({covers})")
    yesterday = pd.Timestamp.today().normalize() - one_day
    if _has_sessions(last + one_day, min(hi, yesterday)):
        raise DataError(f"{market.origin}: end {hi.date()} is after the data ({covers})")
    bars = market.between(lo, hi)
    if bars.empty:
        raise DataError(
            f"{market.origin}: no rows from {lo.date()} to {hi.date()} ({covers}; "
            "no trading day in the range?)"
        )
    return dataclasses.replace(market, bars=bars)


def load_bars(
    source: str,
    symbol: str | None = None,
    path: Path | str | None = None,
    cache_dir: Path | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    seed: int = 0,
    required: tuple[str, ...] | None = None,
) -> MarketData:
    """Load one symbol's validated bars from ``source``.

    ``bundled`` needs ``symbol``; ``csv`` needs ``path`` (and ``symbol`` when the file holds
    several); ``alpaca`` needs ``symbol`` and a date range; ``synthetic`` takes ``symbol`` as the
    model name (``gbm`` or ``heston``) and is generated only because it was asked for.
    ``required`` narrows the required columns for index levels (VIX has only a close).
    ``start``/``end`` limit every source (see the module docstring); for ``bundled`` and ``csv``
    they are optional.
    """
    check_range(start, end)
    if source == "bundled":
        from clstm_ppo.data.bundled import load_bundled

        return restrict(load_bundled(symbol or "SPX"), start, end)
    if source == "csv":
        from clstm_ppo.data.csv_source import load_csv

        if path is None:
            raise DataError("source csv: no file given (set data.path or use csv:PATH)")
        market = load_csv(Path(path), symbol, **({"required": required} if required else {}))
        return restrict(market, start, end)
    if source == "alpaca":
        from clstm_ppo.data.alpaca import AlpacaCredentials, AlpacaSource

        if not symbol or start is None or end is None:
            raise DataError(
                "source alpaca: needs a symbol and a start and end date (--start/--end YYYY-MM-DD)"
            )
        client = AlpacaSource(AlpacaCredentials.load(), cache_dir or Path(".cache/clstm_ppo"))
        bars = client.stock_bars(symbol, start, end)
        origin = f"alpaca-py StockHistoricalDataClient ({symbol})"
        # The request already asked for start..end; this refuses a symbol listed after start.
        return restrict(MarketData(symbol, bars, "alpaca", origin), start, end)
    if source == "synthetic":
        from clstm_ppo.data.synthetic import generate

        return generate(symbol or "gbm", start=start, end=end, seed=seed)
    raise DataError(f"unknown data source {source!r} (use one of {', '.join(SOURCES)})")


def underlying_spec(source: str, symbol: str | None, path: Path | str | None) -> str:
    """The ``SOURCE:ARGUMENT`` spec of a config's underlying."""
    if source == "csv":
        if path is None:
            raise DataError("source csv: no file given (set data.path or --path)")
        return f"csv:{path}" + (f"#{symbol}" if symbol else "")
    default = {"bundled": "SPX", "synthetic": "gbm"}.get(source, "")
    return f"{source}:{symbol or default}"


def vix_spec(vix: str | None, source: str, symbol: str | None) -> str | None:
    """Resolve ``data.vix``: ``auto`` is the bundled VIX for the bundled SPX, else none."""
    if vix != "auto":
        return vix
    is_spx = source == "bundled" and (symbol or "SPX").upper() in ("SPX", "SP500", "^GSPC")
    return "bundled:VIX" if is_spx else None


# Tickers whose options are priced off the S&P 500's implied-vol indices (VIX family, SKEW).
SP500_SYMBOLS = frozenset({"SPX", "SPXW", "SP500", "^GSPC", "^SPX", "SPY", "XSP"})


def vol_indices_spec(vol_indices: str | None, source: str, symbol: str | None) -> str | None:
    """Resolve ``data.vol_indices``: ``auto`` is the cache-or-snapshot index family for an
    S&P 500 underlying (the bundled SPX, or SPX/SPXW/SPY/^GSPC from any source), else none:
    the VIX family measures the S&P 500's options, not another stock's."""
    if vol_indices != "auto":
        return vol_indices
    name = (symbol or ("SPX" if source == "bundled" else "")).upper()
    return "auto" if name in SP500_SYMBOLS else None


def load_spec(spec: str, **kwargs: Any) -> MarketData:
    """``load_bars`` from a ``SOURCE:ARGUMENT`` spec such as ``bundled:SPX`` or ``csv:PATH``."""
    source, symbol, path = spec_fields(spec)
    return load_bars(source, symbol=symbol, path=path, **kwargs)
