"""One interface over every bar source: ``load_bars(spec)`` returns validated :class:`MarketData`.

A data *spec* is ``SOURCE:ARGUMENT``: ``bundled:SPX``, ``csv:/path/to/file_or_folder``,
``alpaca:SPY``, ``synthetic:gbm``. The source is always recorded in the result's provenance, so
a synthetic or downloaded series can never pass for another.
"""

from __future__ import annotations

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
    """
    if source == "bundled":
        from clstm_ppo.data.bundled import load_bundled

        return load_bundled(symbol or "SPX")
    if source == "csv":
        from clstm_ppo.data.csv_source import load_csv

        if path is None:
            raise DataError("source csv: no file given (set data.path or use csv:PATH)")
        return load_csv(Path(path), symbol, **({"required": required} if required else {}))
    if source == "alpaca":
        from clstm_ppo.data.alpaca import AlpacaCredentials, AlpacaSource

        if not symbol or start is None or end is None:
            raise DataError("source alpaca: needs a symbol and a start and end date")
        client = AlpacaSource(AlpacaCredentials.load(), cache_dir or Path(".cache/clstm_ppo"))
        bars = client.stock_bars(symbol, start, end)
        return MarketData(symbol, bars, "alpaca", f"alpaca-py StockHistoricalDataClient ({symbol})")
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


def load_spec(spec: str, **kwargs: Any) -> MarketData:
    """``load_bars`` from a ``SOURCE:ARGUMENT`` spec such as ``bundled:SPX`` or ``csv:PATH``."""
    source, argument = parse_spec(spec)
    if source == "csv":
        path, _, symbol = argument.partition("#")
        return load_bars("csv", symbol=symbol or None, path=path, **kwargs)
    return load_bars(source, symbol=argument, **kwargs)
