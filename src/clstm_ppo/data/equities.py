"""A panel of daily bars for many stocks on common trading days (the paper's 30-stock setting).

Sources: ``csv:PATH`` (one long file with a ticker column, such as Yahoo-style
``Date,Ticker,Open,High,Low,Close,Adj Close,Volume``, or a folder of per-ticker files) and
``alpaca:`` (``alpaca:DOW30`` or ``alpaca:AAPL,MSFT,...``, dividend- and split-adjusted bars
through alpaca-py, cached on disk).

Tickers must have a bar on every trading day from ``complete_from`` to ``complete_to`` (the
union of the tickers' dates in that range); the others are dropped and the panel says which and
why (e.g. DOW lists in 2019). Before ``complete_from`` (indicator and turbulence warm-up) a
late-listed ticker's days are NaN.

Prices: ``adjusted`` (default) trades at the dividend- and split-adjusted close, as FinRL does
with Yahoo's ``Adj Close``; open/high/low are scaled by the same factor so the indicators see one
consistent series. ``close`` trades at the file's close. ``index_close`` keeps the file's close
(split-adjusted, no dividends, as a price index uses) for the rebuilt price-weighted index.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError

# FinRL's DOW_30_TICKER list (Yang et al. 2020 setting; DOW itself lists only in 2019).
DOW30 = (
    "AXP", "AMGN", "AAPL", "BA", "CAT", "CSCO", "CVX", "GS", "HD", "HON", "IBM", "INTC", "JNJ",
    "KO", "JPM", "MCD", "MMM", "MRK", "MSFT", "NKE", "PG", "TRV", "UNH", "CRM", "VZ", "V", "WBA",
    "WMT", "DIS", "DOW",
)  # fmt: skip

PriceMode = Literal["adjusted", "close"]


@dataclass(frozen=True)
class EquityPanel:
    """Aligned ``(days, tickers)`` arrays; NaN only before ``complete_from``."""

    dates: pd.DatetimeIndex
    tickers: tuple[str, ...]
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    """Trading price (see the module docstring for ``adjusted`` vs ``close``)."""
    volume: np.ndarray
    index_close: np.ndarray
    """The file's close (split-adjusted, without dividends) for price-index baselines."""
    origin: str
    price_mode: PriceMode
    dropped: dict[str, str] = field(default_factory=dict)
    """Ticker -> why it was left out."""

    def provenance(self) -> dict[str, Any]:
        return {
            "origin": self.origin,
            "prices": self.price_mode,
            "tickers": list(self.tickers),
            "dropped": dict(self.dropped),
            "first_date": str(self.dates[0].date()),
            "last_date": str(self.dates[-1].date()),
            "days": len(self.dates),
        }

    def frame(self, column: int) -> pd.DataFrame:
        """One ticker's OHLCV frame (for indicator libraries)."""
        return pd.DataFrame(
            {
                "open": self.open[:, column],
                "high": self.high[:, column],
                "low": self.low[:, column],
                "close": self.close[:, column],
                "volume": self.volume[:, column],
            },
            index=self.dates,
        )


def parse_tickers(text: str | None) -> tuple[str, ...]:
    """``DOW30`` (or nothing) gives FinRL's list; otherwise comma-separated tickers."""
    if text is None or text.strip().upper() == "DOW30":
        return DOW30
    tickers = tuple(t.strip().upper() for t in text.split(",") if t.strip())
    if not tickers:
        raise DataError(f"tickers {text!r}: no ticker given")
    return tickers


def _load_symbols(
    spec: str, tickers: tuple[str, ...] | None, start: dt.date, end: dt.date, cache_dir: Path
) -> tuple[dict[str, MarketData], str, tuple[str, ...] | None]:
    source, sep, argument = spec.partition(":")
    if not sep or not argument:
        raise DataError(f"data spec {spec!r}: use csv:PATH or alpaca:TICKERS")
    if source == "csv":
        from clstm_ppo.data.csv_source import load_csv_symbols

        found = load_csv_symbols(Path(argument), list(tickers) if tickers else None)
        return found, f"csv {argument}", tickers
    if source == "alpaca":
        from clstm_ppo.data.alpaca import AlpacaCredentials, AlpacaSource

        names = tickers or parse_tickers(argument)
        client = AlpacaSource(AlpacaCredentials.load(), cache_dir)
        found = {}
        for name in names:
            try:
                bars = client.stock_bars(name, start, end, adjustment="all")
            except DataError as error:
                if "no daily bars" not in str(error):
                    raise
                continue
            found[name] = MarketData(name, bars, "alpaca", f"alpaca-py ({name}, adjustment=all)")
        return found, "alpaca-py StockHistoricalDataClient (adjustment=all)", names
    raise DataError(f"data spec {spec!r}: unknown source {source!r} (use csv or alpaca)")


def load_equity_panel(
    spec: str,
    tickers: tuple[str, ...] | None,
    history_from: dt.date,
    complete_from: dt.date,
    complete_to: dt.date,
    price_mode: PriceMode = "adjusted",
    cache_dir: Path = Path(".cache/clstm_ppo"),
) -> EquityPanel:
    """The panel of ``tickers`` (all in the data when None) from ``history_from`` to
    ``complete_to``, keeping tickers complete over ``complete_from..complete_to``."""
    found, origin, asked = _load_symbols(spec, tickers, history_from, complete_to, cache_dir)
    dropped: dict[str, str] = {}
    for name in asked or ():
        if name not in found:
            dropped[name] = "not in the data"
    lo, hi = pd.Timestamp(history_from), pd.Timestamp(complete_to)
    frames = {name: data.bars.loc[lo:hi] for name, data in found.items()}
    core_lo = pd.Timestamp(complete_from)
    days = pd.DatetimeIndex(sorted(set().union(*(f.loc[core_lo:].index for f in frames.values()))))
    if len(days) == 0:
        raise DataError(f"{origin}: no trading days from {complete_from} to {complete_to}")
    kept: list[str] = []
    for name in asked or sorted(frames):
        if name not in frames:
            continue
        have = frames[name].index
        missing = days.difference(have)
        if len(missing):
            first = have[0].date() if len(have) else None
            dropped[name] = (
                f"{len(missing)} of {len(days)} trading days missing from {complete_from} to "
                f"{complete_to} (first bar {first})"
            )
            continue
        if price_mode == "adjusted":
            if "adj_close" not in frames[name].columns:
                raise DataError(f"{origin}: {name} has no adjusted close (use prices: close)")
            adjusted = frames[name]["adj_close"].to_numpy(dtype=float)
            bad = np.flatnonzero(~(adjusted > 0))  # NaN or non-positive
            if bad.size:
                day = frames[name].index[bad[0]].date()
                raise DataError(
                    f"{found[name].origin}: {name} {day}: adjusted close must be a positive "
                    f"number, got {adjusted[bad[0]]}"
                )
        kept.append(name)
    if len(kept) < 2:
        raise DataError(f"{origin}: only {len(kept)} ticker(s) complete from {complete_from}")
    before = set().union(*(frames[n].index[frames[n].index < core_lo] for n in kept))
    all_days = pd.DatetimeIndex(sorted(before)).append(days)
    columns: dict[str, list[np.ndarray]] = {
        k: [] for k in ("open", "high", "low", "close", "volume", "index_close")
    }
    for name in kept:
        bars = frames[name].reindex(all_days)
        factor = bars["adj_close"] / bars["close"] if price_mode == "adjusted" else 1.0
        for key in ("open", "high", "low", "close"):
            columns[key].append((bars[key] * factor).to_numpy(dtype=float))
        columns["volume"].append(bars["volume"].to_numpy(dtype=float))
        columns["index_close"].append(bars["close"].to_numpy(dtype=float))
    arrays = {key: np.column_stack(value) for key, value in columns.items()}
    return EquityPanel(
        dates=all_days, tickers=tuple(kept), origin=origin, price_mode=price_mode,
        dropped=dropped, **arrays,
    )  # fmt: skip
