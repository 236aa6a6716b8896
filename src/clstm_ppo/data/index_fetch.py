"""``clstm-ppo data fetch --source cboe|fred``: refresh the index histories into the user's cache.

Each series is downloaded whole from its official CSV endpoint, validated with the loader's own
parser (:func:`clstm_ppo.data.indices.parse_index_csv`), and only then written, atomically, to
``cache_dir/indices/SYMBOL.parquet`` with the URL and fetch time in the frame's ``attrs``. A
malformed or shorter download raises and leaves the previous cache as it was.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd
import requests

from clstm_ppo.data.indices import (
    CBOE_SYMBOLS,
    FRED_SYMBOLS,
    SOURCE_OF,
    index_cache_path,
    parse_index_csv,
    read_cached_index,
)
from clstm_ppo.errors import ApiError, ConfigError, DataError

log = logging.getLogger(__name__)

URLS = {
    "cboe": "https://cdn.cboe.com/api/global/us_indices/daily_prices/{symbol}_History.csv",
    "fred": "https://fred.stlouisfed.org/graph/fredgraph.csv?id={symbol}",
}
KNOWN = {"cboe": CBOE_SYMBOLS, "fred": FRED_SYMBOLS}
# Some CDNs refuse the default python-requests agent; say who we are instead.
USER_AGENT = "clstm-ppo index fetch (research; python-requests)"


def index_url(source: str, symbol: str) -> str:
    return URLS[source].format(symbol=symbol)


def check_symbols(source: str, symbols: Sequence[str]) -> list[str]:
    """Upper-cased, de-duplicated symbols (comma lists allowed); unknown ones fail listing all."""
    if source not in URLS:
        raise ConfigError(f"--source {source}: index downloads come from cboe or fred")
    wanted: list[str] = []
    for item in symbols:
        for name in str(item).split(","):
            name = name.strip().upper().lstrip("^")
            if name and name not in wanted:
                wanted.append(name)
    if not wanted:
        raise ConfigError(f"--symbols: give at least one of {', '.join(KNOWN[source])}")
    for name in wanted:
        if name not in KNOWN[source]:
            other = SOURCE_OF.get(name)
            hint = f" (it is a {other} series: --source {other})" if other else ""
            raise ConfigError(
                f"--symbols {name}: not a {source} index this package knows{hint}; known: "
                f"{', '.join(KNOWN[source])}"
            )
    return wanted


def _atomic_write(frame: pd.DataFrame, path: Path) -> None:
    """Write beside the target and ``os.replace`` it: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        frame.to_parquet(temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


class IndexFetcher:
    """Downloads with a timeout and retries: connection errors, timeouts, HTTP 429 and 5xx are
    tried ``max_attempts`` times with waits of ``backoff_seconds * 2**k`` (``sleep`` is
    injectable so tests never wait); any other HTTP status fails at once. Failures are one-line
    :class:`ApiError` naming the host and the status."""

    def __init__(
        self,
        cache_dir: Path,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        backoff_seconds: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        now: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc),
    ) -> None:
        if max_attempts < 1:
            raise ConfigError(f"index fetch: max_attempts must be >= 1, got {max_attempts}")
        self.cache_dir = Path(cache_dir)
        self.session = session or requests.Session()
        self.timeout = timeout
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self._now = now

    def download(self, source: str, url: str) -> bytes:
        host = urlsplit(url).hostname or url
        failure = ""
        for attempt in range(1, self.max_attempts + 1):
            try:
                response = self.session.get(
                    url, timeout=self.timeout, headers={"User-Agent": USER_AGENT}
                )
            except (requests.ConnectionError, requests.Timeout) as exc:
                failure = f"network error ({type(exc).__name__})"
            else:
                status = response.status_code
                if status == 200:
                    return response.content
                if status != 429 and status < 500:
                    raise ApiError(f"{source}: {host} answered HTTP {status} for {url}")
                failure = f"HTTP {status}"
            if attempt < self.max_attempts:
                delay = self.backoff_seconds * 2 ** (attempt - 1)
                log.warning(
                    "%s: %s: %s; try %d/%d, again in %gs",
                    source,
                    host,
                    failure,
                    attempt,
                    self.max_attempts,
                    delay,
                )
                self._sleep(delay)
        raise ApiError(
            f"{source}: {host} failed after {self.max_attempts} attempts ({failure}) for {url}"
        )

    def fetch(self, source: str, symbol: str) -> tuple[Path, pd.Series]:
        """Download, validate and cache one series; return the cache file and the values."""
        (symbol,) = check_symbols(source, [symbol])
        url = index_url(source, symbol)
        body = self.download(source, url)
        path = index_cache_path(self.cache_dir, symbol)
        try:
            values = parse_index_csv(body, url, symbol)
        except DataError as error:
            raise DataError(f"{source}: malformed download, cache kept: {error}") from None
        previous = read_cached_index(self.cache_dir, symbol)
        if previous is not None and values.index[-1] < previous[0].index[-1]:
            raise DataError(
                f"{source}: {url} ends {values.index[-1]:%Y-%m-%d}, before the cached "
                f"{symbol} ({previous[0].index[-1]:%Y-%m-%d}); cache kept"
            )
        frame = values.rename("value").to_frame()
        frame.attrs = {
            "symbol": symbol,
            "source": source,
            "url": url,
            "fetched_at": self._now().astimezone(dt.timezone.utc).isoformat(timespec="seconds"),
        }
        _atomic_write(frame, path)
        log.info("%s: cached %d %s rows in %s", source, len(values), symbol, path)
        return path, values


def fetch_indices(
    source: str, symbols: Sequence[str], cache_dir: Path, **fetcher_options: object
) -> list[tuple[Path, pd.Series]]:
    """Refresh each symbol into ``cache_dir/indices``; every symbol is checked before any
    download, so a typo costs no request."""
    wanted = check_symbols(source, symbols)
    fetcher = IndexFetcher(cache_dir, **fetcher_options)  # type: ignore[arg-type]
    return [fetcher.fetch(source, symbol) for symbol in wanted]
