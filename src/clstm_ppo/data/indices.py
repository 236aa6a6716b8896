"""Daily CBOE volatility indices and FRED's 3-month T-bill rate, aligned past-only to trading days.

Series (``INDEX_SYMBOLS``): VIX9D, VIX, VIX3M, VIX6M, VIX1Y (the implied-vol term structure),
SKEW (tail skew), VVIX (vol of VIX), all CBOE closes in index points, and DGS3MO (FRED, percent).

Where a series comes from (a *spec*):

* ``bundled``: the dated snapshot shipped in ``clstm_ppo/data/index_snapshot`` (see its README);
* ``auto``: the user's cache written by ``clstm-ppo data fetch --source cboe|fred`` when present,
  else the snapshot (the snapshot is used instead if it reaches a later date than the cache, so an
  old cache never hides a newer package snapshot);
* a folder (``PATH`` or ``folder:PATH``) of files named as CBOE/FRED name their downloads
  (``VIX_History.csv``, ``DGS3MO.csv``), or ``SYMBOL.csv[.gz]`` or ``symbol_daily_*.csv[.gz]``.

Every file goes through :func:`parse_index_csv`, the same parser that validates downloads.
"""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import logging
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from clstm_ppo.errors import DataError

log = logging.getLogger(__name__)

CBOE_SYMBOLS = ("VIX9D", "VIX", "VIX3M", "VIX6M", "VIX1Y", "SKEW", "VVIX")
FRED_SYMBOLS = ("DGS3MO",)
INDEX_SYMBOLS = CBOE_SYMBOLS + FRED_SYMBOLS
SOURCE_OF = {**{s: "cboe" for s in CBOE_SYMBOLS}, **{s: "fred" for s in FRED_SYMBOLS}}
# MarketInputs field -> series symbol, in term-structure order.
FIELDS = {
    "vix9d": "VIX9D",
    "vix": "VIX",
    "vix3m": "VIX3M",
    "vix6m": "VIX6M",
    "vix1y": "VIX1Y",
    "skew": "SKEW",
    "vvix": "VVIX",
    "rate": "DGS3MO",
}
DEFAULT_CACHE_DIR = Path(".cache/clstm_ppo")
SNAPSHOT_FOLDER = "index_snapshot"
MAX_FILL_DAYS = 5
# VVIX's 2006 rows are sparse and start with values (15.71, 27.94) far below anything since
# (2007 minimum 59.74): CBOE's back-fill, not a market; every source is cut the same way.
VVIX_FIRST_DATE = pd.Timestamp("2007-01-01")
# Plausibility bounds that catch a unit or column mix-up: T-bill yields have stayed within
# -0.1%..17% since 1981, and no CBOE vol index has closed above ~210.
MAX_RATE_PERCENT = 25.0
MAX_INDEX_POINTS = 1000.0
# DGS3MO is a bond-equivalent yield: for a bill under six months that is simple interest on a
# 365-day year over the bill's term, so 1 + y*tau over tau years; see rate_from_percent.
RATE_TERM_YEARS = 0.25
RATE_CONVERSION = "rate = ln(1 + y/100 * 0.25) / 0.25 (DGS3MO bond-equivalent % to continuous)"

_DATE_COLUMNS = ("DATE", "OBSERVATION_DATE")
_IGNORED_COLUMNS = ("OPEN", "HIGH", "LOW", "REALTIME_START", "REALTIME_END")
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4})")
_ISO_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})(?:[ T]00:00(?::00)?)?")
_MISSING = ("", ".")  # FRED writes "." for a day without an observation


@dataclass(frozen=True, eq=False)
class IndexHistory:
    """One daily series: ``values`` (floats, as published) on a sorted, unique date index."""

    symbol: str
    values: pd.Series
    origin: str
    notes: tuple[str, ...] = ()

    @property
    def first_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.values.index[0])

    @property
    def last_date(self) -> pd.Timestamp:
        return pd.Timestamp(self.values.index[-1])


def canonical_index_symbol(symbol: str) -> str:
    """``vix``/``^VIX`` -> ``VIX``; an unknown name fails listing the known ones."""
    name = str(symbol).strip().upper().lstrip("^")
    if name not in INDEX_SYMBOLS:
        raise DataError(f"index {symbol!r} is not known (known: {', '.join(INDEX_SYMBOLS)})")
    return name


# ---------------------------------------------------------------------------------- parsing


def _parse_date(text: str, where: str) -> dt.date:
    text = text.strip()
    us = _US_DATE.fullmatch(text)
    iso = None if us else _ISO_DATE.fullmatch(text)
    try:
        if us:
            return dt.date(int(us[3]), int(us[1]), int(us[2]))
        if iso:
            return dt.date(int(iso[1]), int(iso[2]), int(iso[3]))
    except ValueError:
        raise DataError(f"{where}: date {text!r} is not a calendar date") from None
    raise DataError(f"{where}: date {text!r} is neither MM/DD/YYYY nor YYYY-MM-DD")


def _check_value(value: float, text: str, symbol: str, where: str) -> None:
    if not np.isfinite(value):
        raise DataError(f"{where}: {symbol} value {text!r} is not finite")
    if SOURCE_OF[symbol] == "fred":
        if abs(value) > MAX_RATE_PERCENT:
            raise DataError(
                f"{where}: {symbol} {value:g}% is outside +-{MAX_RATE_PERCENT:g}% "
                "(a yield in percent is expected)"
            )
    elif not 0.0 < value <= MAX_INDEX_POINTS:
        raise DataError(
            f"{where}: {symbol} {value:g} must be positive and at most {MAX_INDEX_POINTS:g} "
            "index points"
        )


def _value_column(names: list[str], symbol: str, where: str) -> int:
    """CLOSE when there is one, else the column named after the symbol or ``value``, else the one
    column left after the date, OPEN/HIGH/LOW and FRED's realtime columns."""
    for wanted in ("CLOSE", symbol, "VALUE"):
        if wanted in names:
            return names.index(wanted)
    rest = [i for i, n in enumerate(names) if n not in (*_DATE_COLUMNS, *_IGNORED_COLUMNS)]
    if len(rest) == 1:
        return rest[0]
    raise DataError(
        f"{where}: no CLOSE or {symbol} value column (columns: {', '.join(names) or 'none'})"
    )


def parse_index_csv(data: bytes | str, origin: str, symbol: str) -> pd.Series:
    """Validated values of one CBOE/FRED daily CSV (all dates kept, sorted; VVIX not yet cut).

    Accepts MM/DD/YYYY or ISO dates, a UTF-8 BOM, CRLF line endings, blank lines, unsorted rows
    (sorted here) and FRED's ``.`` (or an empty cell) for a day without a value (dropped). Refused,
    as one line naming ``origin`` and the line: an unknown layout, a bad date, a duplicate date,
    a non-numeric, non-finite or implausible value.
    """
    symbol = canonical_index_symbol(symbol)
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DataError(f"{origin}: not UTF-8 text (bad byte at offset {exc.start})") from None
    lines = data.lstrip("\ufeff").splitlines()
    rows = ((n, row) for n, row in enumerate(csv.reader(lines), start=1) if any(row))
    header = next(rows, None)
    if header is None:
        raise DataError(f"{origin}: empty file, expected a DATE,CLOSE header")
    head_line, head = header
    names = [cell.strip().upper() for cell in head]
    where = f"{origin}: line {head_line}"
    date_at = next((names.index(n) for n in _DATE_COLUMNS if n in names), None)
    if date_at is None:
        shown = ",".join(head)[:60]
        raise DataError(f"{where}: no DATE or observation_date column (header {shown!r})")
    value_at = _value_column(names, symbol, where)
    seen: dict[dt.date, int] = {}
    dates: list[dt.date] = []
    values: list[float] = []
    for number, row in rows:
        where = f"{origin}: line {number}"
        if len(row) <= max(date_at, value_at):
            raise DataError(f"{where}: {len(row)} fields, the header has {len(names)}")
        day = _parse_date(row[date_at], where)
        if day in seen:
            raise DataError(
                f"{where}: date {day} repeats line {seen[day]} (duplicate dates are refused)"
            )
        seen[day] = number
        text = row[value_at].strip()
        if text in _MISSING:
            continue
        try:
            value = float(text)
        except ValueError:
            raise DataError(f"{where}: {symbol} value {text!r} is not a number") from None
        _check_value(value, text, symbol, where)
        dates.append(day)
        values.append(value)
    if not values:
        raise DataError(f"{origin}: no {symbol} values (header only, or every value missing)")
    index = pd.DatetimeIndex(pd.to_datetime(dates), name="date")
    return pd.Series(values, index=index, name=symbol, dtype=float).sort_index(kind="stable")


def _checked(series: pd.Series, symbol: str, origin: str) -> pd.Series:
    """Re-check a series read back from a cache (it was parsed once, but files can be edited)."""
    index = pd.DatetimeIndex(series.index)
    if series.empty or not index.is_monotonic_increasing or not index.is_unique:
        raise DataError(f"{origin}: cached {symbol} is empty or its dates are unsorted/repeated")
    values = series.to_numpy(dtype=float)
    with np.errstate(invalid="ignore"):
        if SOURCE_OF[symbol] == "fred":
            bad = ~(np.abs(values) <= MAX_RATE_PERCENT)
        else:
            bad = ~((values > 0) & (values <= MAX_INDEX_POINTS))
    if bad.any():
        at = int(np.argmax(bad))
        raise DataError(f"{origin}: cached {symbol} value {values[at]!r} on {index[at]:%Y-%m-%d}")
    return pd.Series(values, index=index.normalize().rename("date"), name=symbol)


def _finish(symbol: str, values: pd.Series, origin: str) -> IndexHistory:
    notes: tuple[str, ...] = ()
    if symbol == "VVIX":
        early = values.index < VVIX_FIRST_DATE
        if early.any():
            values = values[~early]
            notes = (f"dropped {int(early.sum())} VVIX rows before 2007-01-01 (implausible)",)
        if values.empty:
            raise DataError(f"{origin}: no VVIX values from 2007-01-01 on")
    return IndexHistory(symbol, values, origin, notes)


# ---------------------------------------------------------------------------------- sources


def snapshot_dir() -> Any:
    """The packaged snapshot folder (an ``importlib.resources`` Traversable)."""
    return resources.files("clstm_ppo.data") / SNAPSHOT_FOLDER


@lru_cache(maxsize=len(INDEX_SYMBOLS))
def _snapshot(symbol: str) -> IndexHistory:
    resource = snapshot_dir() / f"{symbol}.csv.gz"
    origin = f"clstm_ppo/data/{SNAPSHOT_FOLDER}/{symbol}.csv.gz"
    try:
        raw = gzip.decompress(resource.read_bytes())
    except (OSError, EOFError) as exc:
        raise DataError(f"{origin}: packaged snapshot unreadable ({exc}); reinstall") from None
    values = parse_index_csv(raw, origin, symbol)
    return _finish(symbol, values, f"snapshot (to {values.index[-1]:%Y-%m-%d})")


def index_cache_path(cache_dir: Path, symbol: str) -> Path:
    """Where ``data fetch --source cboe|fred`` keeps ``symbol``."""
    return Path(cache_dir) / "indices" / f"{canonical_index_symbol(symbol)}.parquet"


def read_cached_index(cache_dir: Path, symbol: str) -> tuple[pd.Series, dict[str, Any]] | None:
    """The cached raw series and its fetch record (``attrs``), or None when nothing is cached."""
    symbol = canonical_index_symbol(symbol)
    path = index_cache_path(cache_dir, symbol)
    if not path.is_file():
        return None
    try:
        frame = pd.read_parquet(path)
        series = frame["value"]
    except Exception as exc:
        raise DataError(
            f"{path}: cached {symbol} is unreadable ({type(exc).__name__}); delete it and run "
            f"clstm-ppo data fetch --source {SOURCE_OF[symbol]} --symbols {symbol}"
        ) from None
    return _checked(series, symbol, str(path)), dict(frame.attrs)


def _from_cache(cache_dir: Path, symbol: str) -> IndexHistory | None:
    cached = read_cached_index(cache_dir, symbol)
    if cached is None:
        return None
    series, record = cached
    fetched = str(record.get("fetched_at", "at an unknown time"))[:10]
    origin = f"cache {record.get('source', SOURCE_OF[symbol])} fetched {fetched}"
    return _finish(symbol, series, f"{origin} (to {series.index[-1]:%Y-%m-%d})")


def _folder_candidates(symbol: str) -> tuple[str, ...]:
    return tuple(
        f"{stem}{ext}" for stem in (f"{symbol}_History", symbol) for ext in (".csv", ".csv.gz")
    )


def find_index_file(folder: Path, symbol: str) -> Path | None:
    """The file for ``symbol`` in ``folder`` (names compared case-insensitively), or None."""
    symbol = canonical_index_symbol(symbol)
    names = {path.name.lower(): path for path in folder.iterdir() if path.is_file()}
    for name in _folder_candidates(symbol):
        if name.lower() in names:
            return names[name.lower()]
    # The ../shared style, e.g. vix9d_daily_cboe.csv.gz; VIX must not take vix9d's file.
    loose = sorted(
        path
        for name, path in names.items()
        if name.startswith(f"{symbol.lower()}_daily") and name.endswith((".csv", ".csv.gz"))
    )
    if len(loose) > 1:
        raise DataError(
            f"{folder}: several files for {symbol} ({', '.join(p.name for p in loose)}); keep one"
        )
    return loose[0] if loose else None


def read_index_file(path: Path, symbol: str) -> pd.Series:
    """Raw validated values of one index file (``.csv`` or gzipped ``.csv.gz``)."""
    symbol = canonical_index_symbol(symbol)
    try:
        raw = Path(path).read_bytes()
        if path.name.lower().endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: cannot read ({exc.__class__.__name__}: {exc})") from None
    return parse_index_csv(raw, str(path), symbol)


def _folder_of(spec: str) -> Path:
    folder = Path(spec.removeprefix("folder:")).expanduser()
    if not folder.exists():
        raise DataError(f"index folder {folder} does not exist (specs: auto, bundled, a folder)")
    if not folder.is_dir():
        raise DataError(
            f"index spec {folder} is a file; give the folder holding VIX_History.csv, "
            "SKEW_History.csv, DGS3MO.csv..."
        )
    return folder


def _from_folder(folder: Path, symbol: str) -> IndexHistory | None:
    path = find_index_file(folder, symbol)
    if path is None:
        return None
    values = read_index_file(path, symbol)
    return _finish(symbol, values, f"folder:{folder} ({path.name}, to {values.index[-1]:%Y-%m-%d})")


def _load_or_none(symbol: str, spec: str, cache_dir: Path) -> IndexHistory | None:
    if spec == "bundled":
        return _snapshot(symbol)
    if spec == "auto":
        snapshot = _snapshot(symbol)
        cached = _from_cache(cache_dir, symbol)
        if cached is None:
            return snapshot
        if cached.last_date < snapshot.last_date:
            log.info(
                "%s: cache ends %s, before the snapshot; using the snapshot",
                symbol,
                f"{cached.last_date:%Y-%m-%d}",
            )
            return snapshot
        return cached
    return _from_folder(_folder_of(spec), symbol)


def load_index(
    symbol: str, spec: str = "auto", cache_dir: Path = DEFAULT_CACHE_DIR
) -> IndexHistory:
    """One index series from ``spec`` (``auto``, ``bundled`` or a folder); see the module doc."""
    symbol = canonical_index_symbol(symbol)
    history = _load_or_none(symbol, spec, Path(cache_dir))
    if history is None:
        names = ", ".join(_folder_candidates(symbol))
        raise DataError(f"index folder {spec}: no file for {symbol} (looked for {names})")
    return history


# ---------------------------------------------------------------------------------- alignment


def rate_from_percent(percent: np.ndarray | pd.Series) -> np.ndarray:
    """DGS3MO (bond-equivalent yield, percent) -> annual continuously compounded decimal.

    Treasury quotes bills on a bond-equivalent basis, which for a bill under six months is simple
    interest on a 365-day year: a 3-month bill grows by ``1 + y*tau`` over ``tau = 0.25`` years,
    so ``r = ln(1 + y*tau) / tau``. At y = 5% that is 4.969% (``ln(1 + y)`` would say 4.879%).
    """
    y = np.asarray(percent, dtype=float) / 100.0
    return np.log1p(y * RATE_TERM_YEARS) / RATE_TERM_YEARS


def _align(
    series: pd.Series, dates: pd.DatetimeIndex, strictly_before: bool
) -> tuple[np.ndarray, int, int]:
    """Per day, the last value dated on/before it (``strictly_before``: before it), carried at
    most ``MAX_FILL_DAYS`` trading days; returns ``(values, filled, missing)``.

    A value's age is the number of ``dates`` entries after its own date up to the cutoff, plus
    the weekdays between it and ``dates[0]`` when it predates the window.
    """
    n = len(dates)
    if n == 0 or series.empty:
        return np.full(n, np.nan), 0, n
    day = np.timedelta64(1, "D")
    obs = series.index.to_numpy(dtype="datetime64[ns]")
    vals = series.to_numpy(dtype=float)
    when = dates.to_numpy(dtype="datetime64[ns]")
    cutoff = when - day if strictly_before else when
    pos = np.searchsorted(obs, cutoff, side="right") - 1
    have = pos >= 0
    seen = obs[np.clip(pos, 0, None)]
    age = np.searchsorted(when, cutoff, side="right") - np.searchsorted(when, seen, side="right")
    first = when[0].astype("datetime64[D]")
    early = seen < when[0]
    begin = seen.astype("datetime64[D]") + 1
    end = np.minimum(cutoff.astype("datetime64[D]") + 1, first)
    age = age + np.where(early, np.clip(np.busday_count(begin, end), 0, None), 0)
    ok = have & (age <= MAX_FILL_DAYS)
    out = np.where(ok, vals[np.clip(pos, 0, None)], np.nan)
    return out, int((ok & (age > 0)).sum()), int((~ok).sum())


@dataclass(frozen=True, eq=False)
class MarketInputs:
    """Index levels (points, as published) and the rate per trading day in ``dates``.

    CBOE closes are the same day's (published 16:15 ET, when the day's close trade is decided);
    ``rate`` is from the last DGS3MO dated strictly before the day (FRED publishes a day's yield
    the next day), continuously compounded (``RATE_CONVERSION``). A missing day takes the last
    earlier value for at most ``MAX_FILL_DAYS`` trading days (counted in ``filled``), else NaN
    (counted in ``missing``). Arrays are read-only.
    """

    dates: pd.DatetimeIndex
    vix9d: np.ndarray
    vix: np.ndarray
    vix3m: np.ndarray
    vix6m: np.ndarray
    vix1y: np.ndarray
    skew: np.ndarray
    vvix: np.ndarray
    rate: np.ndarray
    filled: dict[str, int] = field(default_factory=dict)
    missing: dict[str, int] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def provenance(self) -> dict[str, Any]:
        """JSON-safe record of where each series came from and how many days were filled."""
        span = (
            {"first": f"{self.dates[0]:%Y-%m-%d}", "last": f"{self.dates[-1]:%Y-%m-%d}"}
            if len(self.dates)
            else {"first": None, "last": None}
        )
        return {
            "days": len(self.dates),
            **span,
            "max_fill_days": MAX_FILL_DAYS,
            "rate_conversion": RATE_CONVERSION,
            "series": {
                name: {
                    "symbol": symbol,
                    "origin": self.origins[name],
                    "filled": int(self.filled[name]),
                    "missing": int(self.missing[name]),
                }
                for name, symbol in FIELDS.items()
            },
        }


def _override_series(override: pd.Series | IndexHistory) -> tuple[pd.Series, str]:
    if isinstance(override, IndexHistory):
        return override.values, override.origin
    series = pd.Series(override, dtype=float).dropna()
    index = pd.DatetimeIndex(series.index).normalize()
    if not index.is_unique:
        raise DataError("vix override: repeated dates")
    bad = ~np.isfinite(series.to_numpy()) | (series.to_numpy() <= 0)
    if bad.any():
        raise DataError(f"vix override: non-positive or non-finite value on {index[bad][0].date()}")
    name = f" ({series.name})" if series.name not in (None, "", "VIX") else ""
    return pd.Series(series.to_numpy(), index=index).sort_index(), f"override{name}"


def market_inputs(
    dates: pd.DatetimeIndex,
    spec: str | None = "auto",
    cache_dir: Path = DEFAULT_CACHE_DIR,
    vix_override: pd.Series | IndexHistory | None = None,
) -> MarketInputs:
    """Every index and the rate on the underlying's trading days ``dates``, past-only.

    ``spec`` None gives NaN everywhere (origin ``none``). With a folder spec, a series whose file
    the folder lacks is NaN with an origin saying so. ``vix_override`` replaces the VIX series
    (the ``data.vix`` setting) whatever ``spec`` is.
    """
    index = pd.DatetimeIndex(dates)
    if index.tz is not None:
        index = index.tz_localize(None)
    index = index.normalize()
    if not (index.is_monotonic_increasing and index.is_unique):
        raise DataError("market inputs: trading days must be sorted and unique")
    arrays: dict[str, np.ndarray] = {}
    filled: dict[str, int] = {}
    missing: dict[str, int] = {}
    origins: dict[str, str] = {}
    for name, symbol in FIELDS.items():
        series: pd.Series | None = None
        if name == "vix" and vix_override is not None:
            series, origins[name] = _override_series(vix_override)
        elif spec is None:
            origins[name] = "none"
        else:
            history = _load_or_none(symbol, spec, Path(cache_dir))
            if history is None:
                origins[name] = f"none (no {symbol} file in {spec})"
            else:
                series, origins[name] = history.values, history.origin
        if series is None:
            values, filled[name], missing[name] = np.full(len(index), np.nan), 0, len(index)
        else:
            if name == "rate":
                series = pd.Series(rate_from_percent(series), index=series.index)
            values, filled[name], missing[name] = _align(series, index, name == "rate")
        values.setflags(write=False)
        arrays[name] = values
    return MarketInputs(dates=index, **arrays, filled=filled, missing=missing, origins=origins)
