"""Replay recorded end-of-day option chains in the common quote schema.

Five vendor layouts that carry bid *and* ask are read (see :data:`LAYOUTS`); the layout is picked
from the header, so a folder may mix them. Every file is validated with
:func:`~clstm_ppo.data.frames.validate_quotes` in file order, so an error names the file line a
user can open; only then are rows sorted by ``date, expiry, right, strike, root``.

Conventions, chosen because the real files (``../shared/data/options``) need them:

* ``root`` (an extra column) is the option root (``SPX``/``SPXW``/``SPXPM``, ``VIX``/``BVZ``).
  The key of a contract on a day is ``(symbol, root, expiry, strike, right)``: the CBOE VIX file
  lists 158 contracts twice, once per root.
* ``bid = ask = 0`` rows (no market) are kept: an RL environment must see that nothing could be
  traded there. Expired-today contracts (expiry == date) are kept too.
* Placeholder implied vols (``iv <= 0.01``: iVolatility's -1, the 0.01 and 0 of
  HistoricalOptionData, Lean's 1e-7) become NaN, and so do that row's greeks, which the vendor
  filled with zeros. A ``last`` of 0 means "no trade" and becomes NaN.
* A crossed quote (bid > ask) raises by default; ``drop_crossed=True`` drops such rows and counts
  them in ``frame.attrs["dropped_crossed"]``.
* CBOE DataShop: ``underlying_price`` is the mid of ``underlying_bid_eod``/``underlying_ask_eod``.
  For VIX options that is the *spot VIX index*, not the VIX future the options price off.
* Lean quote bars carry no underlying price: pass daily bars (a frame with a ``close`` column
  indexed by date, or a mapping symbol -> such frame) as ``underlying``.

Bad input is one :class:`~clstm_ppo.errors.DataError` line naming the file (and line and column
where there is one): only regular files are opened (a FIFO, socket or device is refused before
``open``, and left out of a folder's listing), a damaged ``.gz`` cannot traceback, and a number too
large for a float (400 digits, ``1e400``) is refused under the file's own column name.
"""

from __future__ import annotations

import datetime as dt
import lzma
import tarfile
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from clstm_ppo.data.csv_source import _is_folder, _to_float
from clstm_ppo.data.frames import OPTIONAL_QUOTE_COLUMNS, QUOTE_COLUMNS, validate_quotes
from clstm_ppo.errors import DataError

Underlying = pd.DataFrame | Mapping[str, pd.DataFrame] | None
_GREEKS = ("delta", "gamma", "theta", "vega", "rho")
_DATE_FORMATS = ("%m/%d/%Y", "ISO8601", "%Y%m%d")
_SUFFIXES = (".csv", ".csv.gz")
_RIGHTS = {"C": "C", "CALL": "C", "P": "P", "PUT": "P"}
_KEY = ["symbol", "root", "expiry", "strike", "right"]
IV_PLACEHOLDER_MAX = 0.01


@dataclass(frozen=True)
class Layout:
    """How one vendor layout maps onto the quote schema (file columns lower-cased, stripped)."""

    name: str
    label: str
    markers: tuple[str, ...]
    columns: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)


def _pairs(text: str) -> dict[str, str]:
    """``"field=column ..."`` -> ``{field: column}``; keeps the layout table below readable."""
    return dict(item.split("=", 1) for item in text.split())


_GREEK_MAP = "delta=delta gamma=gamma theta=theta vega=vega"
LAYOUTS: tuple[Layout, ...] = (
    Layout(
        "ivolatility",
        "iVolatility",
        ("option_expiration", "call/put", "stock_price_close"),
        _pairs(
            "date=date expiry=option_expiration strike=strike right=call/put bid=bid ask=ask "
            "underlying=stock_price_close symbol=symbol occ=option_symbol"
        ),
        _pairs(f"iv=iv volume=volume open_interest=open_interest rho=rho {_GREEK_MAP}"),
    ),
    Layout(
        "historicaloptiondata",
        "HistoricalOptionData",
        ("quotedate", "underlying_last"),
        _pairs(
            "date=quotedate expiry=expiration strike=strike right=type bid=bid ask=ask "
            "underlying=underlying_last symbol=underlying occ=optionroot"
        ),
        _pairs(f"last=last volume=volume open_interest=openinterest iv=impliedvol {_GREEK_MAP}"),
    ),
    Layout(
        "deltaneutral",
        "DeltaNeutral",
        ("datadate", "underlyingprice"),
        _pairs(
            "date=datadate expiry=expiration strike=strike right=type bid=bid ask=ask "
            "underlying=underlyingprice symbol=underlyingsymbol occ=optionsymbol"
        ),
        _pairs(f"last=last volume=volume open_interest=openinterest iv=ivmean {_GREEK_MAP}"),
    ),
    Layout(
        "cboe_eod",
        "CBOE DataShop Option EOD",
        ("quote_date", "option_type", "bid_eod", "ask_eod"),
        _pairs(
            "date=quote_date expiry=expiration strike=strike right=option_type bid=bid_eod "
            "ask=ask_eod underlying_bid=underlying_bid_eod underlying_ask=underlying_ask_eod "
            "symbol=underlying_symbol root=root"
        ),
        _pairs("last=close volume=trade_volume open_interest=open_interest"),
    ),
    Layout(
        "lean_quote_bars",
        "Lean quote bars",
        ("expiry", "bid_close", "ask_close"),
        _pairs(
            "date=date expiry=expiry strike=strike right=right bid=bid_close ask=ask_close "
            "symbol=underlying"
        ),
        _pairs("last=trade_close volume=trade_volume open_interest=open_interest"),
    ),
)
_BY_NAME = {layout.name: layout for layout in LAYOUTS}


def _norm(column: object) -> str:
    return str(column).strip().lstrip("\ufeff").strip().lower()


def _normalise(columns: pd.Index) -> dict[str, str]:
    return {_norm(c): str(c) for c in columns}


# What a damaged compressed file raises while pandas decompresses it (zlib.error, LZMAError and
# BadZipFile are no OSError), and ImportError for a format whose optional module is missing
# (``.zst``): every one is the file's fault or the setup's, never a reason for a traceback.
_READ_ERRORS = (
    pd.errors.ParserError,
    UnicodeDecodeError,
    ValueError,
    OSError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    zipfile.BadZipFile,
    tarfile.TarError,
    ImportError,
)


def _read_csv(path: Path, **kwargs: object) -> pd.DataFrame:
    # Only a regular file may be opened: a FIFO would block until a writer appears and a device
    # can stream forever. _is_folder raises one line for those and for a missing path.
    if _is_folder(path):
        raise DataError(f"{path}: is a folder, not an option-chain file")
    try:
        return pd.read_csv(path, encoding="utf-8-sig", dtype=str, skip_blank_lines=False, **kwargs)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file (no header line)") from None
    except _READ_ERRORS as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot read as CSV ({reason})") from None


def _match(columns: dict[str, str], path: Path) -> Layout:
    for layout in LAYOUTS:
        if all(marker in columns for marker in layout.markers):
            return layout
    supported = "; ".join(f"{lay.label} [{', '.join(lay.markers)}]" for lay in LAYOUTS)
    shown = ", ".join(list(columns)[:12]) + (" ..." if len(columns) > 12 else "")
    raise DataError(
        f"{path}: unknown option-chain layout (columns: {shown}); supported layouts "
        f"(identified by these columns): {supported}"
    )


def detect_layout(path: str | Path) -> str:
    """The name of the layout of ``path``, from its header alone (cheap: one line is read)."""
    path = Path(path)
    return _match(_normalise(_read_csv(path, nrows=0).columns), path).name


def _parse_dates(raw: pd.Series, path: Path, column: str, lines: np.ndarray) -> pd.Series:
    text = raw.str.strip()
    parsed = (pd.to_datetime(text, format=fmt, errors="coerce") for fmt in _DATE_FORMATS)
    best = max(parsed, key=lambda dates: dates.notna().sum())
    bad = np.flatnonzero(best.isna().to_numpy())
    if bad.size:
        raise DataError(
            f"{path}: line {lines[bad[0]]}: column '{column}': cannot parse date "
            f"{text.iloc[bad[0]]!r}"
        )
    return best.dt.normalize().astype("datetime64[ns]")


def _numbers(raw: pd.Series, path: Path, column: str, lines: np.ndarray) -> pd.Series:
    # The cells are text (dtype=str), so to_numeric reads a 400-digit number as inf (refused
    # below); csv_source's _to_float also turns the OverflowError that such a number raises when
    # pandas holds it as a Python int into one line, so no input shape can traceback here.
    values = pd.Series(_to_float(raw.str.strip(), column, path, lines), index=raw.index)
    bad = np.flatnonzero((values.isna() & raw.notna()).to_numpy())
    if bad.size:
        raise DataError(
            f"{path}: line {lines[bad[0]]}: column '{column}': cannot parse number "
            f"{raw.iloc[bad[0]]!r}"
        )
    # A 400-digit number (or 1e400, or "inf") reads as inf. validate_quotes would refuse it too,
    # but under the schema's name (underlying_price is the mid of two CBOE columns); naming the
    # file's own column here tells the user which cell to open.
    bad = np.flatnonzero(np.isinf(values.to_numpy()))
    if bad.size:
        text = str(raw.iloc[bad[0]]).strip()
        shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} characters)"
        raise DataError(
            f"{path}: line {lines[bad[0]]}: column '{column}': {shown} is not a finite number "
            "(rule: every numeric value must be finite)"
        )
    return values


def _underlying_close(
    frame: pd.DataFrame, underlying: Underlying, path: Path, lines: np.ndarray
) -> np.ndarray:
    if underlying is None:
        raise DataError(
            f"{path}: Lean quote bars hold no underlying price; pass daily bars as `underlying`"
        )
    out = np.full(len(frame), np.nan)
    for symbol in frame["symbol"].unique():
        rows = (frame["symbol"] == symbol).to_numpy()
        bars = underlying if isinstance(underlying, pd.DataFrame) else underlying.get(symbol)
        if bars is None or "close" not in bars.columns:
            raise DataError(
                f"{path}: line {lines[rows][0]}: no underlying bars with a 'close' column "
                f"for {symbol!r}"
            )
        close = bars["close"].astype(float)
        close.index = pd.DatetimeIndex(close.index).normalize().astype("datetime64[ns]")
        out[rows] = close.reindex(frame["date"][rows]).to_numpy()
    bad = np.flatnonzero(np.isnan(out))
    if bad.size:
        raise DataError(
            f"{path}: line {lines[bad[0]]}: the underlying bars have no close for "
            f"{frame['symbol'].iloc[bad[0]]} on {frame['date'].iloc[bad[0]].date()}"
        )
    return out


def _read(
    path: str | Path,
    expect: str | None = None,
    underlying: Underlying = None,
    drop_crossed: bool = False,
) -> pd.DataFrame:
    path = Path(path)
    raw = _read_csv(path)
    columns = _normalise(raw.columns)
    layout = _match(columns, path) if expect is None else _BY_NAME[expect]
    for source in layout.columns.values():
        if source not in columns:
            raise DataError(f"{path}: line 1: missing column '{source}' ({layout.label} layout)")
    lines = np.arange(len(raw)) + 2
    filled = raw.notna().any(axis=1).to_numpy()  # blank lines are read as empty rows
    raw, lines = raw[filled].reset_index(drop=True), lines[filled]
    if len(raw) == 0:
        raise DataError(f"{path}: no data rows after the header")

    spec = layout.columns

    def col(key: str) -> pd.Series:
        return raw[columns[spec[key]]]

    def num(key: str) -> pd.Series:
        return _numbers(col(key), path, spec[key], lines)

    if layout.name == "lean_quote_bars":  # a contract's quote bar is absent on untraded days
        quoted = (col("bid").notna() & col("ask").notna()).to_numpy()
        raw, lines = raw[quoted].reset_index(drop=True), lines[quoted]
        if len(raw) == 0:
            raise DataError(f"{path}: no row has both bid_close and ask_close")
    frame = pd.DataFrame(
        {
            "date": _parse_dates(col("date"), path, spec["date"], lines),
            "expiry": _parse_dates(col("expiry"), path, spec["expiry"], lines),
            "strike": num("strike"),
            "right": col("right").str.strip().map(lambda r: _RIGHTS.get(str(r).upper(), r)),
            "bid": num("bid"),
            "ask": num("ask"),
            "symbol": col("symbol").str.strip().str.lstrip("^").str.upper(),
        }
    )
    if "underlying" in spec:
        frame["underlying_price"] = num("underlying")
    elif "underlying_bid" in spec:
        frame["underlying_price"] = (num("underlying_bid") + num("underlying_ask")) / 2
    else:
        frame["underlying_price"] = _underlying_close(frame, underlying, path, lines)
    if "occ" in spec:  # OCC/OSI symbol: the last 15 characters are expiry, right and strike
        frame["root"] = col("occ").str.strip().str[:-15].str.strip()
    else:
        frame["root"] = col("root").str.strip() if "root" in spec else frame["symbol"]
    for name, source in layout.optional.items():
        if source in columns:
            frame[name] = _numbers(raw[columns[source]], path, source, lines)
    if layout.name == "lean_quote_bars" and "volume" in frame:
        frame["volume"] = frame["volume"].fillna(0.0)  # no trade bar means no trades
    if "iv" in frame:
        placeholder = (frame["iv"] <= IV_PLACEHOLDER_MAX).to_numpy()
        for name in ("iv", *_GREEKS):
            if name in frame:
                frame.loc[placeholder, name] = np.nan
    if "last" in frame:
        frame.loc[frame["last"] <= 0, "last"] = np.nan

    crossed = (frame["bid"] > frame["ask"]).to_numpy()
    if drop_crossed and crossed.any():
        frame, lines = frame[~crossed].reset_index(drop=True), lines[~crossed]
    validate_quotes(frame, str(path), first_line=lines)
    twice = np.flatnonzero(frame.duplicated(["date", *_KEY]).to_numpy())
    if twice.size:
        row = frame.iloc[twice[0]]
        raise DataError(
            f"{path}: line {lines[twice[0]]}: contract {row['root']} {row['expiry'].date()} "
            f"{row['strike']:g}{row['right']} already quoted on {row['date'].date()}"
        )

    order = [*QUOTE_COLUMNS, "root", *(c for c in OPTIONAL_QUOTE_COLUMNS if c in frame)]
    frame = frame[order].sort_values(["date", "expiry", "right", "strike", "root"])
    frame = frame.reset_index(drop=True)
    dropped = int(crossed.sum()) if drop_crossed else 0
    frame.attrs.update(origin=str(path), layout=layout.name, dropped_crossed=dropped)
    if layout.name == "cboe_eod":  # for ^VIX this is the spot index, not the VIX future
        frame.attrs["underlying_note"] = "underlying_price = mid of underlying_bid/ask_eod"
    return frame


def read_chain(
    path: str | Path, *, underlying: Underlying = None, drop_crossed: bool = False
) -> pd.DataFrame:
    """Read any supported chain file, choosing the layout from its header."""
    return _read(path, None, underlying, drop_crossed)


def read_ivolatility(path: str | Path, *, drop_crossed: bool = False) -> pd.DataFrame:
    """An iVolatility EOD chain (``call/put``, ``stock_price_close``; M/D/YYYY dates)."""
    return _read(path, "ivolatility", None, drop_crossed)


def read_historicaloptiondata(path: str | Path, *, drop_crossed: bool = False) -> pd.DataFrame:
    """A HistoricalOptionData chain (``quotedate``, ``underlying_last``; BOM tolerated)."""
    return _read(path, "historicaloptiondata", None, drop_crossed)


def read_deltaneutral(path: str | Path, *, drop_crossed: bool = False) -> pd.DataFrame:
    """A DeltaNeutral chain (``DataDate``, ``UnderlyingPrice``, ``IVMean`` used as iv)."""
    return _read(path, "deltaneutral", None, drop_crossed)


def read_cboe_eod(path: str | Path, *, drop_crossed: bool = False) -> pd.DataFrame:
    """A CBOE DataShop Option EOD file, using the end-of-day (not the 15:45) quotes."""
    return _read(path, "cboe_eod", None, drop_crossed)


def read_lean_quote_bars(
    path: str | Path, underlying: Underlying, *, drop_crossed: bool = False
) -> pd.DataFrame:
    """Lean per-contract daily bars: ``bid_close``/``ask_close`` where both exist.

    The file has no underlying price, so ``underlying`` daily bars (raw, unadjusted, matching
    Lean's raw strikes) supply the close of each quote date.
    """
    return _read(path, "lean_quote_bars", underlying, drop_crossed)


class ChainReplay:
    """Day-by-day access to the chains in one file or a folder of files (any mix of layouts).

    Construction reads only headers. The first call to :meth:`dates`/:meth:`underlyings` reads
    the date and symbol columns of every file; :meth:`chain` loads (and caches) only the files
    holding that day. ``skip_unknown=True`` skips files of other layouts (and Lean bars when no
    ``underlying`` is given) instead of raising, listing them in :attr:`skipped`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        underlying: Underlying = None,
        drop_crossed: bool = False,
        skip_unknown: bool = False,
    ) -> None:
        self.path = Path(path)
        # _is_folder refuses a FIFO, socket or device (and a missing path) before anything opens
        # it; inside a folder, is_file() leaves such entries out for the same reason.
        if _is_folder(self.path):
            try:
                found = sorted(
                    p for p in self.path.iterdir() if p.is_file() and p.name.endswith(_SUFFIXES)
                )
            except OSError as error:  # e.g. a folder without read permission
                reason = error.strerror or str(error)
                raise DataError(f"{self.path}: cannot list the folder ({reason})") from None
            if not found:
                raise DataError(f"{self.path}: folder holds no .csv or .csv.gz files")
        else:
            found = [self.path]
        self._underlying, self._drop_crossed = underlying, drop_crossed
        self.layouts: dict[Path, str] = {}
        self.skipped: dict[Path, str] = {}
        self.dropped_crossed: dict[Path, int] = {}
        for file in found:
            try:
                name = detect_layout(file)
                if name == "lean_quote_bars" and underlying is None:
                    raise DataError(f"{file}: Lean quote bars need `underlying` daily bars")
            except DataError as error:
                if not skip_unknown:
                    raise
                self.skipped[file] = str(error)
                continue
            self.layouts[file] = name
        if not self.layouts:
            raise DataError(f"{self.path}: no readable option-chain file")
        self._index: pd.DataFrame | None = None
        self._frames: dict[Path, pd.DataFrame] = {}

    def _load(self, file: Path) -> pd.DataFrame:
        if file not in self._frames:
            frame = _read(file, self.layouts[file], self._underlying, self._drop_crossed)
            self.dropped_crossed[file] = frame.attrs["dropped_crossed"]
            self._frames[file] = frame
        return self._frames[file]

    def _scan(self) -> pd.DataFrame:
        if self._index is None:
            parts = []
            for file, name in self.layouts.items():
                spec = _BY_NAME[name].columns
                keys = [spec["date"], spec["symbol"]]
                if name == "lean_quote_bars":  # only quoted rows count, as in _read
                    keys += [spec["bid"], spec["ask"]]
                raw = _read_csv(file, usecols=lambda c, k=tuple(keys): _norm(c) in k)
                raw.columns = [_norm(c) for c in raw.columns]
                missing = [k for k in keys if k not in raw.columns]
                if missing:
                    raise DataError(f"{file}: line 1: missing column '{missing[0]}'")
                lines = np.arange(len(raw)) + 2
                quoted = raw.notna().all(axis=1) if len(keys) > 2 else raw.notna().any(axis=1)
                raw, lines = raw[quoted.to_numpy()], lines[quoted.to_numpy()]
                if len(raw) == 0:  # said as _read says it; an empty index has no dates to list
                    if len(keys) > 2:
                        raise DataError(f"{file}: no row has both bid_close and ask_close")
                    raise DataError(f"{file}: no data rows after the header")
                dates = _parse_dates(raw[keys[0]], file, keys[0], lines)
                symbols = raw[keys[1]].str.strip().str.lstrip("^").str.upper()
                part = pd.DataFrame({"date": dates.to_numpy(), "symbol": symbols.to_numpy()})
                parts.append(part.drop_duplicates().assign(file=str(file)))
            self._index = pd.concat(parts, ignore_index=True)
        return self._index

    def dates(self) -> list[pd.Timestamp]:
        """Every quote date in any file, ascending."""
        return [pd.Timestamp(d) for d in np.sort(self._scan()["date"].unique())]

    def underlyings(self) -> list[str]:
        """Every underlying symbol (``^VIX`` is reported as ``VIX``), sorted."""
        # A blank symbol cell is NaN, which sorted() cannot compare with the names.
        return sorted(self._scan()["symbol"].dropna().unique().tolist())

    def chain(self, date: str | dt.date | pd.Timestamp) -> pd.DataFrame:
        """All contracts quoted on ``date``, from every file that holds it, sorted."""
        try:
            day = pd.Timestamp(date).normalize()
        except ValueError:
            raise DataError(f"{self.path}: cannot parse date {date!r}") from None
        index = self._scan()
        files = sorted(set(index.loc[index["date"] == day, "file"]))
        if not files:
            days = pd.DatetimeIndex(self.dates())
            near = [str(d.date()) for d in (days[days < day][-1:].append(days[days > day][:1]))]
            raise DataError(
                f"{self.path}: no option chain on {day.date()}; the data cover "
                f"{days[0].date()} to {days[-1].date()} ({len(days)} dates; nearest: "
                f"{', '.join(near)})"
            )
        parts = [f[f["date"] == day] for f in (self._load(Path(p)) for p in files)]
        out = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0].copy()
        dup = out.duplicated(_KEY, keep=False).to_numpy()
        if dup.any():
            first = out[dup].iloc[0]
            raise DataError(
                f"{self.path}: {day.date()}: contract {first['root']} {first['expiry'].date()} "
                f"{first['strike']:g}{first['right']} is quoted twice (files: {', '.join(files)})"
            )
        out = out.sort_values(["date", "expiry", "right", "strike", "root"])
        return out.reset_index(drop=True)
