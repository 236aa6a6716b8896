"""A user's daily bars from CSV or Parquet: one file, or a folder of them.

Column names are matched case-insensitively with common vendor aliases (Yahoo ``Adj Close``,
Compustat ``prccd``/``datadate``, DoltHub ``act_symbol``...). A file may hold one symbol or many
(a ``ticker``/``symbol`` column); in a folder without such a column the file name is the symbol.
Every file is validated in file order, so an error names the file line a user can open.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from clstm_ppo.data.frames import BAR_COLUMNS, validate_bars
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError

_ALIASES: dict[str, tuple[str, ...]] = {
    "date": ("date", "datadate", "timestamp", "time", "day", "quote_date"),
    "open": ("open", "prcod", "o"),
    "high": ("high", "prchd", "h"),
    "low": ("low", "prcld", "l"),
    "close": ("close", "prccd", "c", "last"),
    "volume": ("volume", "cshtrd", "v", "vol"),
    "adj_close": ("adj_close", "adj close", "adjclose", "adjusted_close"),
    "symbol": ("symbol", "ticker", "tic", "act_symbol", "underlying"),
}
_SUFFIXES = (".csv", ".csv.gz", ".parquet", ".pq")
_DATE_FORMATS = ("ISO8601", "%m/%d/%Y", "%Y%m%d", "%d.%m.%Y")


def _is_data_file(path: Path) -> bool:
    return path.is_file() and path.name.lower().endswith(_SUFFIXES)


def _is_folder(path: Path) -> bool:
    """True for a folder, False for a regular file; anything else is refused before opening.

    Opening a FIFO blocks until a writer appears and a device can stream forever, so only a
    regular file (after symlinks) or a folder gets as far as ``open``.
    """
    try:
        if path.is_dir():
            return True
        if path.is_file():
            return False
        exists = path.exists()
    except OSError as error:  # e.g. a parent folder without search permission
        raise DataError(f"{path}: cannot access ({error.strerror or error})") from None
    if not exists:
        raise DataError(f"{path}: no such file or folder")
    raise DataError(f"{path}: is not a regular file or folder (a FIFO, socket or device?)")


def _data_files(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if _is_data_file(p))
    except OSError as error:
        raise DataError(f"{folder}: cannot list the folder ({error.strerror or error})") from None


def _read_table(path: Path) -> pd.DataFrame:
    try:
        if path.name.lower().endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        return pd.read_csv(path, encoding="utf-8-sig")
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: empty file") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError, OSError) as error:
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise DataError(f"{path}: cannot read as CSV/Parquet ({reason})") from None


def _normalise_columns(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    lookup = {str(c).strip().lower(): c for c in frame.columns}
    renamed: dict[object, str] = {}
    for canonical, aliases in _ALIASES.items():
        for alias in aliases:
            if alias in lookup and lookup[alias] not in renamed:
                renamed[lookup[alias]] = canonical
                break
    frame = frame.rename(columns=renamed)
    if "date" not in frame.columns:
        raise DataError(f"{path}: missing required column 'date'")
    return frame


def _parse_dates(values: pd.Series, path: Path, lines: np.ndarray) -> pd.DatetimeIndex:
    text = values.astype(str).str.strip()
    for fmt in _DATE_FORMATS:
        parsed = pd.to_datetime(text, format=fmt, errors="coerce")
        if not parsed.isna().any():
            break
    else:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
        bad = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        raise DataError(f"{path}: line {lines[bad]}: cannot parse date {text.iloc[bad]!r}")
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_convert("America/New_York").tz_localize(None)
    return index.normalize().rename("date")


def _to_float(values: pd.Series, column: str, path: Path, lines: np.ndarray) -> np.ndarray:
    """A column as floats; text that is no number becomes NaN (the NaN rule then names it)."""
    try:
        return pd.to_numeric(values, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    except OverflowError:
        pass
    # pandas reads an integer too long for a float (a 400-digit volume) as a Python int and
    # then gives up on the whole column; find the cell so the error can name its line.
    for position, value in enumerate(values.to_numpy()):
        try:
            float(value)
        except OverflowError:
            text = str(value)
            shown = text if len(text) <= 24 else f"{text[:20]}... ({len(text)} digits)"
            raise DataError(
                f"{path}: line {lines[position]}: '{column}' value {shown} is too large for a "
                "number (rule: every numeric value must be finite)"
            ) from None
        except (TypeError, ValueError):
            continue
    raise DataError(f"{path}: column '{column}' cannot be read as numbers (overflow)")


def _bars_of(
    frame: pd.DataFrame, path: Path, lines: np.ndarray, symbol: str, required: tuple[str, ...]
) -> MarketData:
    dates = _parse_dates(frame["date"], path, lines)
    columns = [c for c in (*BAR_COLUMNS, "adj_close") if c in frame.columns]
    bars = pd.DataFrame({c: _to_float(frame[c], c, path, lines) for c in columns})
    bars.index = dates
    validate_bars(bars, origin=str(path), required=required, first_line=lines)
    return MarketData(symbol, bars, "csv", str(path))


def _symbols_in(frame: pd.DataFrame) -> list[str]:
    return sorted(frame["symbol"].astype(str).str.upper().unique().tolist())


def _from_file(path: Path, symbol: str | None, required: tuple[str, ...]) -> MarketData:
    frame = _normalise_columns(_read_table(path), path)
    if len(frame) == 0:
        raise DataError(f"{path}: no data rows")
    lines = np.arange(len(frame)) + 2
    if "symbol" not in frame.columns:
        return _bars_of(frame, path, lines, (symbol or _stem(path)).upper(), required)
    available = _symbols_in(frame)
    if symbol is None:
        if len(available) > 1:
            shown = ", ".join(available[:8]) + (" ..." if len(available) > 8 else "")
            raise DataError(
                f"{path}: holds {len(available)} symbols ({shown}); choose one with --symbol"
            )
        symbol = available[0]
    keep = (frame["symbol"].astype(str).str.upper() == symbol.upper()).to_numpy()
    if not keep.any():
        raise DataError(
            f"{path}: unknown symbol {symbol!r} (available: {', '.join(available[:20])})"
        )
    return _bars_of(frame[keep], path, lines[keep], symbol.upper(), required)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in _SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def load_csv(
    path: Path, symbol: str | None = None, required: tuple[str, ...] = BAR_COLUMNS
) -> MarketData:
    """Validated bars for ``symbol`` from a CSV/Parquet file or a folder of them.

    ``required`` is narrowed to ``("close",)`` for index levels such as VIX that have no volume.
    """
    if not _is_folder(path):
        return _from_file(path, symbol, required)
    files = _data_files(path)
    if not files:
        raise DataError(f"{path}: folder holds no .csv, .csv.gz or .parquet files")
    if symbol is not None:
        named = [p for p in files if _stem(p).upper() == symbol.upper()]
        if named:
            return _from_file(named[0], symbol, required)
    if symbol is None and len(files) > 1:
        names = ", ".join(_stem(p) for p in files[:8])
        raise DataError(f"{path}: holds {len(files)} files ({names}); choose one with --symbol")
    for file in files:
        try:
            return _from_file(file, symbol, required)
        except DataError as error:
            if "unknown symbol" not in str(error):
                raise
    raise DataError(
        f"{path}: unknown symbol {symbol!r}: not found in any of its {len(files)} files"
    )


def load_csv_symbols(
    path: Path, symbols: list[str] | None = None, required: tuple[str, ...] = BAR_COLUMNS
) -> dict[str, MarketData]:
    """Validated bars of several symbols from one long file (a ``ticker`` column) or a folder
    (one file per symbol, or long files). ``symbols=None`` takes every symbol found."""
    files = _data_files(path) if _is_folder(path) else [path]
    if not files:
        raise DataError(f"{path}: folder holds no .csv, .csv.gz or .parquet files")
    wanted = None if symbols is None else {s.upper() for s in symbols}
    found: dict[str, MarketData] = {}
    for file in files:
        frame = _normalise_columns(_read_table(file), file)
        if len(frame) == 0:
            raise DataError(f"{file}: no data rows")
        lines = np.arange(len(frame)) + 2
        if "symbol" not in frame.columns:
            name = _stem(file).upper()
            if wanted is None or name in wanted:
                found[name] = _bars_of(frame, file, lines, name, required)
            continue
        labels = frame["symbol"].astype(str).str.upper().to_numpy()
        for name in _symbols_in(frame):
            if wanted is not None and name not in wanted:
                continue
            keep = labels == name
            found[name] = _bars_of(frame[keep], file, lines[keep], name, required)
    if wanted is not None:
        missing = sorted(wanted - set(found))
        if missing and len(missing) == len(wanted):
            raise DataError(f"{path}: none of the tickers {', '.join(sorted(wanted))} found")
    if not found:
        raise DataError(f"{path}: no symbols found")
    return found
