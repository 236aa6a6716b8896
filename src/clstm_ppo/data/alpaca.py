"""Market data from Alpaca through the official ``alpaca-py`` SDK, cached on disk as Parquet.

Three kinds of data:

* daily stock bars (``StockHistoricalDataClient.get_stock_bars``, ``GET /v2/stocks/bars``);
* the option chain of an underlying (``OptionHistoricalDataClient.get_option_chain``,
  ``GET /v1beta1/options/snapshots/{underlying}``, ``{symbol: OptionsSnapshot}``) with the
  underlying's price taken from its latest trade (``GET /v2/stocks/trades/latest``);
* daily historical option bars (``get_option_bars``, ``GET /v1beta1/options/bars``), which
  Alpaca serves only from 2024-02-01.

Keys come from the environment or a ``.env`` file and are handed to the SDK explicitly. They are
never logged, never written to the cache and never part of a repr or an error message.

The SDK retries HTTP 429/504 internally with fixed ``time.sleep(3)`` waits; that retry is switched
off here so that :class:`AlpacaSource` owns the whole policy (exponential backoff through an
injectable ``sleep``, a known number of attempts, one-line errors).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import logging
import os
import re
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import requests
from alpaca.common.exceptions import APIError
from alpaca.common.rest import RESTClient
from alpaca.data.enums import Adjustment
from alpaca.data.historical.option import OptionHistoricalDataClient
from alpaca.data.historical.stock import StockHistoricalDataClient
from alpaca.data.models.bars import BarSet
from alpaca.data.models.snapshots import OptionsSnapshot
from alpaca.data.requests import (
    OptionBarsRequest,
    OptionChainRequest,
    StockBarsRequest,
    StockLatestTradeRequest,
)
from alpaca.data.timeframe import TimeFrame
from dotenv import dotenv_values

from clstm_ppo.data.frames import BAR_COLUMNS, QUOTE_COLUMNS, validate_bars, validate_quotes
from clstm_ppo.data.occ import parse_occ, parse_occ_many
from clstm_ppo.errors import ApiError, ConfigError, DataError

log = logging.getLogger(__name__)

KEY_ID_VAR = "APCA_API_KEY_ID"
SECRET_KEY_VAR = "APCA_API_SECRET_KEY"
OPTION_BARS_FIRST_DATE = dt.date(2024, 2, 1)
NEW_YORK = "America/New_York"
MAX_SYMBOLS_PER_REQUEST = 100
# Free plans may not query SIP data from the last 15 minutes; keep the window end clear of it.
RECENT_DATA_DELAY = dt.timedelta(minutes=16)
KINDS = ("bars", "chain", "option-bars")

T = TypeVar("T")


@dataclass(frozen=True)
class AlpacaCredentials:
    """An Alpaca API key pair. The secret is masked in every textual form of this object."""

    key_id: str
    secret_key: str = field(repr=False)

    def __repr__(self) -> str:
        return f"AlpacaCredentials(key_id={self.key_id!r}, secret_key='***')"

    __str__ = __repr__

    @classmethod
    def load(cls, env_file: Path | None = None) -> AlpacaCredentials:
        """Read the key pair from ``os.environ``, else from ``env_file`` (default ``./.env``).

        The pair is taken whole from one place so that a key from one account is never matched
        with a secret from another. ``os.environ`` is read, never written.
        """
        path = Path(env_file) if env_file is not None else Path.cwd() / ".env"
        key_id = os.environ.get(KEY_ID_VAR, "").strip()
        secret = os.environ.get(SECRET_KEY_VAR, "").strip()
        if key_id and secret:
            return cls(key_id, secret)
        state = "does not exist"
        if path.is_file():
            values = dotenv_values(path)
            key_id = (values.get(KEY_ID_VAR) or "").strip()
            secret = (values.get(SECRET_KEY_VAR) or "").strip()
            if key_id and secret:
                return cls(key_id, secret)
            state = "lacks one or both"
        raise ApiError(
            f"alpaca: no API keys: set {KEY_ID_VAR} and {SECRET_KEY_VAR} in the environment "
            f"or in the .env file {path} (which {state})"
        )


def _disable_sdk_retry(client: RESTClient) -> None:
    # RESTClient retries 429/504 itself with time.sleep(3); the data clients' constructors do not
    # expose the knobs, so switch it off on the instance (retry_attempts=0 would mean "default").
    client._retry = 0
    client._retry_codes = []


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _server_message(exc: APIError) -> str:
    """The ``message`` of Alpaca's JSON error body, or the body itself."""
    body = str(exc)
    with contextlib.suppress(ValueError, AttributeError):
        body = str(json.loads(body).get("message", body))
    return _one_line(body)


def _check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not re.fullmatch(r"[A-Z][A-Z0-9.\-]{0,9}", symbol):
        raise DataError(
            f"alpaca: symbol {symbol!r} is not an upper-case ticker such as 'SPY' or 'BRK.B'"
        )
    return symbol


def _check_range(what: str, start: dt.date, end: dt.date) -> None:
    if not isinstance(start, dt.date) or not isinstance(end, dt.date):
        raise DataError(f"alpaca: {what}: start and end must be dates, got {start!r}, {end!r}")
    if end < start:
        raise DataError(f"alpaca: {what}: end {end} is before start {start}")


def _window(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """UTC-naive request window covering the daily bars stamped on ``start`` .. ``end``.

    Daily bars are stamped at midnight New York time (04:00/05:00 UTC), so the window runs from
    00:00 UTC on ``start`` to 23:59:59 UTC on ``end``, clipped to 16 minutes ago.
    """
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) - RECENT_DATA_DELAY
    first = dt.datetime.combine(start, dt.time.min)
    last = min(dt.datetime.combine(end, dt.time(23, 59, 59)), max(now, first))
    return first, last


def _ny_dates(stamps: Sequence[Any]) -> pd.DatetimeIndex:
    """Trading dates (tz-naive midnight) of UTC timestamps, as seen in New York."""
    index = pd.DatetimeIndex(pd.to_datetime(list(stamps), utc=True))
    local = index.tz_convert(NEW_YORK).normalize().tz_localize(None)
    return pd.DatetimeIndex(local.to_numpy(dtype="datetime64[ns]"))  # no inferred freq


def _atomic_write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """Write next to the target and ``os.replace`` it, so readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        frame.to_parquet(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _symbols_label(symbols: Sequence[str]) -> str:
    return symbols[0] if len(symbols) == 1 else f"{symbols[0]} (+{len(symbols) - 1} more)"


class AlpacaSource:
    """Fetches, validates and caches Alpaca market data.

    Every HTTP 429 or 5xx answer (and every connection failure) is retried with exponential
    backoff, ``backoff_seconds * 2**k``, until ``max_attempts`` calls have been made; then an
    :class:`ApiError` says what failed and why. 401/403 fail at once: retrying bad keys only
    burns the rate limit. ``sleep`` is injectable so tests never wait.
    """

    def __init__(
        self,
        credentials: AlpacaCredentials,
        cache_dir: Path,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"alpaca: max_attempts must be >= 1, got {max_attempts}")
        if backoff_seconds < 0:
            raise ConfigError(f"alpaca: backoff_seconds must be >= 0, got {backoff_seconds}")
        self.cache_dir = Path(cache_dir)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._key_id = credentials.key_id
        self._stock = StockHistoricalDataClient(
            api_key=credentials.key_id, secret_key=credentials.secret_key
        )
        self._options = OptionHistoricalDataClient(
            api_key=credentials.key_id, secret_key=credentials.secret_key
        )
        _disable_sdk_retry(self._stock)
        _disable_sdk_retry(self._options)
        self.last_dropped: dict[str, int] = {}
        self.last_path: Path | None = None  # the cache file behind the latest result

    def __repr__(self) -> str:
        return f"AlpacaSource(key_id={self._key_id!r}, cache_dir={str(self.cache_dir)!r})"

    # ------------------------------------------------------------------ HTTP with retries

    def _call(self, what: str, fetch: Callable[[], T]) -> T:
        failure = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                return fetch()
            except APIError as exc:
                status = exc.status_code
                detail = _server_message(exc)
                if status in (401, 403):
                    raise ApiError(
                        f"alpaca: credentials rejected (HTTP {status}) for {what}: {detail} "
                        f"(check {KEY_ID_VAR} / {SECRET_KEY_VAR} and the data subscription)"
                    ) from exc
                if status is None or not (status == 429 or status >= 500):
                    raise DataError(f"alpaca: {what} rejected (HTTP {status}): {detail}") from exc
                reason = "rate limited" if status == 429 else "server error"
                failure = f"HTTP {status} {reason}" + (f" ({detail})" if detail else "")
            except requests.RequestException as exc:
                failure = f"network error: {_one_line(str(exc))}"
            except ValueError as exc:  # pydantic / SDK parsing of an unexpected body
                first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise DataError(
                    f"alpaca: {what}: unexpected response ({_one_line(first)})"
                ) from exc
            if attempt < self.max_attempts:
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                n = self.max_attempts
                log.warning(
                    "alpaca: %s: %s; try %d/%d, again in %gs", what, failure, attempt, n, delay
                )
                self._sleep(delay)
        raise ApiError(f"alpaca: {what} failed after {self.max_attempts} attempts: {failure}")

    # ------------------------------------------------------------------ cache

    def _cache_path(self, kind: str, key: str) -> Path:
        safe = re.sub(r"[^A-Za-z0-9._+\-]", "_", key)
        return self.cache_dir / "alpaca" / kind / f"{safe}.parquet"

    def _read_cache(self, path: Path) -> pd.DataFrame | None:
        if not path.is_file():
            return None
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:
            raise DataError(
                f"{path}: cached Alpaca data is unreadable ({type(exc).__name__}); delete it "
                "to download again"
            ) from exc
        log.debug("alpaca: cache hit %s", path)
        self.last_path = path
        return frame

    def _write_cache(self, frame: pd.DataFrame, path: Path) -> None:
        _atomic_write_parquet(frame, path)
        self.last_path = path
        log.info("alpaca: cached %d rows in %s", len(frame), path)

    # ------------------------------------------------------------------ stock bars

    def stock_bars(
        self, symbol: str, start: dt.date, end: dt.date, *, adjustment: str = "raw"
    ) -> pd.DataFrame:
        """Daily bars of ``symbol`` from ``start`` to ``end`` (inclusive) in the bar schema.

        ``adjustment`` defaults to ``raw`` so that prices stay comparable with listed strikes.
        """
        symbol = _check_symbol(symbol)
        what = f"stock bars for {symbol}"
        _check_range(what, start, end)
        try:
            mode = Adjustment(adjustment)
        except ValueError:
            choices = ", ".join(a.value for a in Adjustment)
            raise DataError(
                f"alpaca: {what}: adjustment {adjustment!r} is not one of {choices}"
            ) from None
        path = self._cache_path("stock-bars", f"{symbol}_{start}_{end}_{mode.value}")
        cached = self._read_cache(path)
        if cached is not None:
            return validate_bars(cached, origin=str(path))
        first, last = _window(start, end)
        request = StockBarsRequest(
            symbol_or_symbols=symbol,
            timeframe=TimeFrame.Day,
            start=first,
            end=last,
            adjustment=mode,
        )
        barset = self._call(what, lambda: self._stock.get_stock_bars(request))
        frame = _bars_frame(barset, start, end)
        frame = frame[frame["symbol"] == symbol].set_index("date")[list(BAR_COLUMNS)]
        if frame.empty:
            raise DataError(
                f"alpaca: no daily bars for {symbol} from {start} to {end} "
                "(unknown symbol, or no trading days in the range)"
            )
        validate_bars(frame, origin=f"alpaca:{symbol}")
        self._write_cache(frame, path)
        return frame

    # ------------------------------------------------------------------ option chain

    def option_chain(self, underlying: str, as_of: dt.date | None = None) -> pd.DataFrame:
        """The option chain of ``underlying`` as quote rows (one per contract).

        Alpaca serves only the *latest* snapshot, so ``as_of=None`` always fetches it (and caches
        it under its quote date). A given ``as_of`` is read from the cache; on a miss the latest
        snapshot is fetched and accepted only if its quotes are dated ``as_of``.

        ``underlying_price`` is the underlying's latest trade price (``/v2/stocks/trades/latest``)
        fetched together with the chain. Rows without a usable two-sided quote are dropped and
        counted in ``frame.attrs["dropped"]`` (and ``self.last_dropped``): no quote, a stale quote
        from an earlier day, no ask, or a crossed quote (bid > ask). The rest is then validated
        with ``validate_quotes``.
        """
        underlying = _check_symbol(underlying)
        what = f"option chain for {underlying}"
        if as_of is not None:
            path = self._cache_path("option-chain", f"{underlying}_{as_of}")
            cached = self._read_cache(path)
            if cached is not None:
                self.last_dropped = dict(cached.attrs.get("dropped", {}))
                return validate_quotes(cached, origin=str(path))
        request = OptionChainRequest(underlying_symbol=underlying)
        snapshots = self._call(what, lambda: self._options.get_option_chain(request))
        if not snapshots:
            raise DataError(
                f"alpaca: no option contracts for {underlying} (unknown underlying or no "
                "listed options)"
            )
        trades = self._call(
            f"latest trade for {underlying}",
            lambda: self._stock.get_stock_latest_trade(
                StockLatestTradeRequest(symbol_or_symbols=underlying)
            ),
        )
        trade = trades.get(underlying)
        if trade is None or not trade.price or trade.price <= 0:
            raise DataError(f"alpaca: no latest trade for {underlying} to price the chain")

        frame, self.last_dropped = _chain_frame(snapshots, float(trade.price), as_of, what)
        frame.attrs["dropped"] = dict(self.last_dropped)
        frame.attrs["underlying_price_source"] = (
            f"latest trade {pd.Timestamp(trade.timestamp).isoformat()}"
        )
        if self.last_dropped:
            log.warning(
                "alpaca: %s: dropped %s of %d contracts",
                what,
                ", ".join(f"{n} {reason}" for reason, n in sorted(self.last_dropped.items())),
                len(snapshots),
            )
        validate_quotes(frame, origin=f"alpaca:{underlying} chain")
        snapshot_date = frame["date"].iloc[0].date()
        path = self._cache_path("option-chain", f"{underlying}_{snapshot_date}")
        self._write_cache(frame, path)
        return frame

    # ------------------------------------------------------------------ option bars

    def option_bars(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> pd.DataFrame:
        """Daily bars of option contracts (OCC symbols) from ``start`` to ``end`` inclusive.

        Columns: ``symbol, date, open, high, low, close, volume, trade_count, vwap, root, expiry,
        right, strike``, sorted by symbol and date. Alpaca has option bars only from 2024-02-01;
        an earlier ``start`` is an error rather than a silently shorter history.
        """
        if isinstance(symbols, str):
            symbols = [symbols]
        wanted = sorted(set(symbols))
        if not wanted:
            raise DataError("alpaca: option bars: no option symbols given")
        for symbol in wanted:
            parse_occ(symbol)
        what = f"option bars for {_symbols_label(wanted)}"
        _check_range(what, start, end)
        if start < OPTION_BARS_FIRST_DATE:
            raise DataError(
                f"alpaca: {what}: Alpaca has historical option bars only from "
                f"{OPTION_BARS_FIRST_DATE}; start {start} is earlier (not truncated silently: "
                f"ask for {OPTION_BARS_FIRST_DATE} or later)"
            )
        digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()[:16]
        path = self._cache_path("option-bars", f"{wanted[0]}+{len(wanted)}-{digest}_{start}_{end}")
        cached = self._read_cache(path)
        if cached is not None:
            return _validate_option_bars(cached, str(path))
        first, last = _window(start, end)
        frames = []
        for i in range(0, len(wanted), MAX_SYMBOLS_PER_REQUEST):
            request = OptionBarsRequest(
                symbol_or_symbols=wanted[i : i + MAX_SYMBOLS_PER_REQUEST],
                timeframe=TimeFrame.Day,
                start=first,
                end=last,
            )
            barset = self._call(what, lambda r=request: self._options.get_option_bars(r))
            frames.append(_bars_frame(barset, start, end))
        frame = pd.concat(frames, ignore_index=True)
        if frame.empty:
            raise DataError(f"alpaca: no {what} from {start} to {end} (no trades in the range)")
        frame = frame.sort_values(["symbol", "date"], kind="stable").reset_index(drop=True)
        parsed = parse_occ_many(frame["symbol"])
        for column in ("root", "expiry", "right", "strike"):
            frame[column] = parsed[column].to_numpy()
        _validate_option_bars(frame, "alpaca")
        self._write_cache(frame, path)
        return frame


_BAR_FIELDS = ("open", "high", "low", "close", "volume", "trade_count", "vwap")
_GREEKS = ("delta", "gamma", "theta", "vega", "rho")


def _bars_frame(barset: BarSet, start: dt.date, end: dt.date) -> pd.DataFrame:
    """Long frame (``symbol, date`` + bar fields) of an SDK ``BarSet``, kept to start..end."""
    rows = [
        {"symbol": symbol, "date": bar.timestamp, **{f: getattr(bar, f) for f in _BAR_FIELDS}}
        for symbol, bars in barset.data.items()
        for bar in bars
    ]
    frame = pd.DataFrame(rows, columns=["symbol", "date", *_BAR_FIELDS])
    frame["date"] = _ny_dates(frame["date"])
    for column in _BAR_FIELDS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    inside = (frame["date"] >= pd.Timestamp(start)) & (frame["date"] <= pd.Timestamp(end))
    return frame[inside]


def _chain_frame(
    snapshots: dict[str, OptionsSnapshot], price: float, as_of: dt.date | None, what: str
) -> tuple[pd.DataFrame, dict[str, int]]:
    """Quote rows of a chain snapshot, minus the contracts without a usable quote (counted)."""
    quoted = [(symbol, snap) for symbol, snap in snapshots.items() if snap.latest_quote]
    if not quoted:
        raise DataError(f"alpaca: {what}: none of {len(snapshots)} contracts has a quote")
    raw = pd.DataFrame(
        [
            {
                "symbol": symbol,
                "date": snap.latest_quote.timestamp,
                "bid": snap.latest_quote.bid_price,
                "ask": snap.latest_quote.ask_price,
                "last": snap.latest_trade.price if snap.latest_trade else None,
                "iv": snap.implied_volatility,
                **{greek: getattr(snap.greeks, greek, None) for greek in _GREEKS},
            }
            for symbol, snap in quoted
        ]
    )
    raw["date"] = _ny_dates(raw["date"])
    snapshot_date = raw["date"].max()
    if as_of is not None and snapshot_date.date() != as_of:
        raise DataError(
            f"alpaca: {what} as of {as_of} is not cached, and Alpaca serves only the latest "
            f"snapshot (quotes dated {snapshot_date.date()})"
        )
    dropped = {"no quote": len(snapshots) - len(quoted)}
    keep = np.ones(len(raw), dtype=bool)
    for reason, bad in (
        ("stale quote", raw["date"] != snapshot_date),  # not quoted on the snapshot's day
        ("no ask", raw["ask"] <= 0),
        ("crossed", raw["bid"] > raw["ask"]),
    ):
        bad = bad.to_numpy() & keep
        dropped[reason] = int(bad.sum())
        keep &= ~bad
    raw = raw[keep].reset_index(drop=True)
    parsed = parse_occ_many(raw["symbol"])[["root", "expiry", "right", "strike"]]
    frame = pd.concat([raw, parsed], axis=1).assign(underlying_price=price)
    numeric = ["bid", "ask", "last", "iv", *_GREEKS]
    frame[numeric] = frame[numeric].apply(pd.to_numeric, errors="coerce").astype(float)
    frame = frame[[*QUOTE_COLUMNS, "symbol", "root", "last", "iv", *_GREEKS]]
    frame = frame.sort_values(["expiry", "strike", "right"], kind="stable").reset_index(drop=True)
    return frame, {reason: count for reason, count in dropped.items() if count}


def _validate_option_bars(frame: pd.DataFrame, origin: str) -> pd.DataFrame:
    """Each contract's bars must pass the bar rules on their own (sorted dates, prices...).

    The close-to-close limit is off: an out-of-the-money option can really rise 50x in a day.
    """
    if frame.empty:
        raise DataError(f"{origin}: no option bars")
    for symbol, group in frame.groupby("symbol", sort=False):
        validate_bars(group.set_index("date"), origin=f"{origin}:{symbol}", max_daily_move=None)
    return frame


def fetch_to_cache(
    kind: str,
    symbols: list[str],
    start: dt.date | None,
    end: dt.date | None,
    cache_dir: Path,
    env_file: Path | None = None,
) -> list[Path]:
    """Download into the cache for ``clstm-ppo data fetch --source alpaca``; return the files.

    ``bars`` writes one file per symbol and needs ``start`` and ``end``; ``option-bars`` writes
    one file for all the contracts and needs both dates; ``chain`` writes one file per
    underlying for the latest snapshot (``start``/``end``, if given, name the expected date).
    """
    if kind not in KINDS:
        raise ConfigError(f"--kind {kind!r}: must be one of {', '.join(KINDS)}")
    if not symbols:
        raise ConfigError(f"--symbols: give at least one symbol for --kind {kind}")
    if kind == "chain":
        if start is not None and end is not None and start != end:
            raise ConfigError("--start/--end: an option chain is one day's snapshot; give one date")
    elif start is None or end is None:
        raise ConfigError(f"--start/--end: both are required for --kind {kind}")
    source = AlpacaSource(AlpacaCredentials.load(env_file), Path(cache_dir))
    fetches: list[Callable[[], pd.DataFrame]]
    if kind == "chain":
        fetches = [lambda s=symbol: source.option_chain(s, start or end) for symbol in symbols]
    elif kind == "bars":
        fetches = [lambda s=symbol: source.stock_bars(s, start, end) for symbol in symbols]
    else:
        fetches = [lambda: source.option_bars(symbols, start, end)]
    paths: list[Path] = []
    for fetch in fetches:
        fetch()
        assert source.last_path is not None  # set by every successful call
        paths.append(source.last_path)
    return paths
