"""Alpaca source: the real alpaca-py SDK runs against recorded responses stubbed with `responses`.

Nothing here reaches the network: every HTTP call goes through ``responses.RequestsMock``, which
raises on any unregistered URL.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import responses
from responses import matchers

from clstm_ppo.data.alpaca import (
    KEY_ID_VAR,
    SECRET_KEY_VAR,
    AlpacaCredentials,
    AlpacaSource,
    fetch_to_cache,
)
from clstm_ppo.data.frames import validate_quotes
from clstm_ppo.errors import ApiError, ConfigError, DataError

FIXTURES = Path(__file__).parent / "fixtures" / "alpaca"
DATA = "https://data.alpaca.markets"
STOCK_BARS = f"{DATA}/v2/stocks/bars"
LATEST_TRADES = f"{DATA}/v2/stocks/trades/latest"
CHAIN_SPY = f"{DATA}/v1beta1/options/snapshots/SPY"
OPTION_BARS = f"{DATA}/v1beta1/options/bars"

KEY_ID = "PKTESTKEYID0000000001"
SECRET = "sk-TEST-secret-DO-NOT-LEAK-7f3a9c"
JAN2, JAN5 = dt.date(2024, 1, 2), dt.date(2024, 1, 5)
OPTIONS = ["SPY240621P00540000", "SPY240621C00540000"]


def fixture(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def source(tmp_path: Path, sleeps: list[float]) -> AlpacaSource:
    return AlpacaSource(AlpacaCredentials(KEY_ID, SECRET), tmp_path / "cache", sleep=sleeps.append)


@pytest.fixture(autouse=True)
def no_sdk_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK's own retry sleeps with time.sleep; with it disabled it must never be called."""

    def forbidden(seconds: float) -> None:
        raise AssertionError(f"alpaca-py slept {seconds}s: its internal retry is not disabled")

    monkeypatch.setattr("alpaca.common.rest.time.sleep", forbidden)


def add_chain(rsps: responses.RequestsMock) -> None:
    """The chain in two pages (page size 1000 is the SDK's) and the underlying's last trade."""
    rsps.get(
        CHAIN_SPY,
        json=fixture("option_chain_spy_page1.json"),
        match=[matchers.query_param_matcher({"limit": "1000"})],
    )
    rsps.get(
        CHAIN_SPY,
        json=fixture("option_chain_spy_page2.json"),
        match=[
            matchers.query_param_matcher(
                {"limit": "1000", "page_token": "U1BZMjQwNjIxQzAwNTQ1MDAw"}
            )
        ],
    )
    rsps.get(LATEST_TRADES, json=fixture("latest_trade_spy.json"))


# --------------------------------------------------------------------------- stock bars


def test_stock_bars_parsed_and_validated(rsps: responses.RequestsMock, source: AlpacaSource):
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    bars = source.stock_bars("SPY", JAN2, JAN5)
    assert list(bars.columns) == ["open", "high", "low", "close", "volume"]
    assert bars.index.name == "date"
    assert bars.index.tz is None
    assert list(bars.index) == list(
        pd.to_datetime(["2024-01-02", "2024-01-03", "2024-01-04", "2024-01-05"])
    )
    assert bars.loc["2024-01-03"].tolist() == [470.43, 471.19, 468.17, 468.79, 103585900.0]
    assert all(pd.api.types.is_float_dtype(t) for t in bars.dtypes)
    # The keys reach Alpaca as headers, passed explicitly by us (the SDK reads no environment).
    request = rsps.calls[0].request
    assert request.headers["APCA-API-KEY-ID"] == KEY_ID
    assert request.headers["APCA-API-SECRET-KEY"] == SECRET
    assert "timeframe=1Day" in request.url and "symbols=SPY" in request.url


def test_stock_bars_unknown_symbol_is_data_error(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    rsps.get(STOCK_BARS, json=fixture("stock_bars_empty.json"))
    with pytest.raises(DataError, match=r"^alpaca: no daily bars for ZZZZ from 2024-01-02"):
        source.stock_bars("ZZZZ", JAN2, JAN5)
    assert not list((source.cache_dir).rglob("*.parquet"))


def test_stock_bars_failing_validation_names_origin(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    body = fixture("stock_bars_spy.json")
    body["bars"]["SPY"][1]["h"] = 400.0  # high below low
    rsps.get(STOCK_BARS, json=body)
    with pytest.raises(DataError, match=r"^alpaca:SPY: line \d+ \(2024-01-03\): high 400 < low"):
        source.stock_bars("SPY", JAN2, JAN5)


def test_bad_range_and_symbol_rejected_without_request(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    with pytest.raises(DataError, match="end 2024-01-02 is before start 2024-01-05"):
        source.stock_bars("SPY", JAN5, JAN2)
    with pytest.raises(DataError, match="not an upper-case ticker"):
        source.stock_bars("spy; rm", JAN2, JAN5)
    assert len(rsps.calls) == 0


# --------------------------------------------------------------------------- option chain


def test_option_chain_paginated_parsed(rsps: responses.RequestsMock, source: AlpacaSource):
    add_chain(rsps)
    chain = source.option_chain("SPY")
    chain_calls = [c for c in rsps.calls if c.request.url.startswith(CHAIN_SPY)]
    assert len(chain_calls) == 2  # followed next_page_token
    assert "page_token=U1BZMjQwNjIxQzAwNTQ1MDAw" in chain_calls[1].request.url

    # 7 contracts: 1 without a quote, 1 stale (quoted the day before), 1 crossed are dropped.
    assert chain.attrs["dropped"] == {"no quote": 1, "stale quote": 1, "crossed": 1}
    assert source.last_dropped == chain.attrs["dropped"]
    assert "SPY240621C00545000" not in set(chain["symbol"])
    assert len(chain) == 4
    validate_quotes(chain, origin="test")  # what is returned passes the quote rules

    row = chain.set_index("symbol").loc["SPY240621P00540000"]
    assert row["date"] == pd.Timestamp("2024-06-14")
    assert row["expiry"] == pd.Timestamp("2024-06-21")
    assert (row["right"], row["strike"], row["root"]) == ("P", 540.0, "SPY")
    assert (row["bid"], row["ask"], row["last"]) == (2.36, 2.39, 2.37)
    assert row["iv"] == pytest.approx(0.1207)
    greeks = row[["delta", "gamma", "theta", "vega", "rho"]].tolist()
    assert greeks == pytest.approx([-0.3987, 0.0449, -0.2631, 0.2869, -0.0425])
    assert (chain["underlying_price"] == 542.78).all()
    # A contract whose snapshot has no greeks keeps its quote with NaN greeks.
    no_greeks = chain.set_index("symbol").loc["SPY240719C00550000"]
    assert no_greeks["iv"] == pytest.approx(0.1044)
    assert pd.isna(no_greeks["delta"])
    assert list(chain["expiry"]) == sorted(chain["expiry"])


def test_option_chain_cached_by_date(rsps: responses.RequestsMock, source: AlpacaSource):
    add_chain(rsps)
    first = source.option_chain("SPY", as_of=dt.date(2024, 6, 14))
    calls = len(rsps.calls)
    assert calls == 3
    again = source.option_chain("SPY", as_of=dt.date(2024, 6, 14))
    assert len(rsps.calls) == calls
    pd.testing.assert_frame_equal(first, again)
    assert again.attrs["dropped"] == first.attrs["dropped"]


def test_option_chain_past_date_not_served_as_latest(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    add_chain(rsps)
    with pytest.raises(DataError, match=r"as of 2024-03-01 is not cached.*dated 2024-06-14"):
        source.option_chain("SPY", as_of=dt.date(2024, 3, 1))


# --------------------------------------------------------------------------- option bars


def test_option_bars_parsed(rsps: responses.RequestsMock, source: AlpacaSource) -> None:
    rsps.get(OPTION_BARS, json=fixture("option_bars.json"))
    bars = source.option_bars(OPTIONS, dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    assert "symbols=SPY240621C00540000%2CSPY240621P00540000" in rsps.calls[0].request.url
    assert len(bars) == 9
    assert list(bars["symbol"].unique()) == sorted(OPTIONS)
    put = bars[bars["symbol"] == "SPY240621P00540000"]
    assert list(put["date"].dt.strftime("%Y-%m-%d")) == [
        "2024-06-10",
        "2024-06-11",
        "2024-06-12",
        "2024-06-14",
    ]
    assert set(put["right"]) == {"P"} and set(put["strike"]) == {540.0}
    assert set(bars["expiry"]) == {pd.Timestamp("2024-06-21")}
    first = bars.iloc[0]
    assert (first["open"], first["high"], first["low"], first["close"]) == (3.05, 3.62, 2.91, 3.58)
    assert first["volume"] == 21450 and first["vwap"] == pytest.approx(3.2871)


def test_option_bars_before_feb_2024_refused(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    with pytest.raises(DataError, match=r"only from 2024-02-01; start 2024-01-31 is earlier"):
        source.option_bars(OPTIONS, dt.date(2024, 1, 31), dt.date(2024, 6, 14))
    assert len(rsps.calls) == 0


def test_option_bars_bad_occ_symbol(rsps: responses.RequestsMock, source: AlpacaSource):
    with pytest.raises(DataError, match="OCC symbol 'SPY240631C00540000'"):
        source.option_bars(["SPY240631C00540000"], dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    assert len(rsps.calls) == 0


# --------------------------------------------------------------------------- cache


def test_second_identical_call_makes_no_request(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    rsps.get(OPTION_BARS, json=fixture("option_bars.json"))
    bars = source.stock_bars("SPY", JAN2, JAN5)
    options = source.option_bars(OPTIONS, dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    assert len(rsps.calls) == 2
    pd.testing.assert_frame_equal(source.stock_bars("SPY", JAN2, JAN5), bars)
    same = source.option_bars(list(reversed(OPTIONS)), dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    pd.testing.assert_frame_equal(same, options)
    assert len(rsps.calls) == 2
    files = sorted(p.relative_to(source.cache_dir).as_posix() for p in source.cache_dir.rglob("*"))
    assert "alpaca/stock-bars/SPY_2024-01-02_2024-01-05_raw.parquet" in files
    assert not [f for f in files if f.endswith(".tmp")]
    # A different range is a different key and does go to the network.
    source.stock_bars("SPY", JAN2, dt.date(2024, 1, 4))
    assert len(rsps.calls) == 3


def test_failed_cache_write_leaves_no_file(
    rsps: responses.RequestsMock, source: AlpacaSource, monkeypatch: pytest.MonkeyPatch
) -> None:
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))

    def broken_write(self: pd.DataFrame, path: str, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"PAR1 half a file")
        raise OSError("disk full")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", broken_write)
    with pytest.raises(OSError, match="disk full"):
        source.stock_bars("SPY", JAN2, JAN5)
    assert [p for p in source.cache_dir.rglob("*") if p.is_file()] == []


# --------------------------------------------------------------------------- retries


def test_429_then_success_is_retried(
    rsps: responses.RequestsMock, source: AlpacaSource, sleeps: list[float]
) -> None:
    rsps.get(STOCK_BARS, status=429, json={"message": "too many requests."})
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    bars = source.stock_bars("SPY", JAN2, JAN5)
    assert len(bars) == 4
    assert len(rsps.calls) == 2
    assert sleeps == [1.0]


def test_429_forever_gives_api_error_after_max_attempts(
    rsps: responses.RequestsMock, tmp_path: Path, sleeps: list[float]
) -> None:
    rsps.get(STOCK_BARS, status=429, json={"message": "too many requests."})
    source = AlpacaSource(
        AlpacaCredentials(KEY_ID, SECRET),
        tmp_path,
        max_attempts=4,
        backoff_seconds=0.5,
        sleep=sleeps.append,
    )
    with pytest.raises(ApiError) as info:
        source.stock_bars("SPY", JAN2, JAN5)
    assert str(info.value) == (
        "alpaca: stock bars for SPY failed after 4 attempts: HTTP 429 rate limited "
        "(too many requests.)"
    )
    assert len(rsps.calls) == 4
    assert sleeps == [0.5, 1.0, 2.0]  # exponential backoff, no sleep after the last attempt


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_server_errors_are_retried(
    rsps: responses.RequestsMock, source: AlpacaSource, sleeps: list[float], status: int
) -> None:
    rsps.get(STOCK_BARS, status=status, body="upstream trouble")
    rsps.get(STOCK_BARS, status=500, json={"message": "internal server error"})
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    assert len(source.stock_bars("SPY", JAN2, JAN5)) == 4
    assert len(rsps.calls) == 3
    assert sleeps == [1.0, 2.0]


def test_server_error_forever_reports_status(
    rsps: responses.RequestsMock, source: AlpacaSource
) -> None:
    rsps.get(OPTION_BARS, status=503, body="")
    with pytest.raises(ApiError, match=r"after 5 attempts: HTTP 503 server error$"):
        source.option_bars(OPTIONS, dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    assert len(rsps.calls) == 5


@pytest.mark.parametrize("status", [401, 403])
def test_rejected_credentials_not_retried(
    rsps: responses.RequestsMock, source: AlpacaSource, sleeps: list[float], status: int
) -> None:
    rsps.get(STOCK_BARS, status=status, json={"message": "forbidden."})
    with pytest.raises(ApiError) as info:
        source.stock_bars("SPY", JAN2, JAN5)
    message = str(info.value)
    assert message.startswith(f"alpaca: credentials rejected (HTTP {status}) for stock bars")
    assert KEY_ID_VAR in message and "\n" not in message
    assert len(rsps.calls) == 1
    assert sleeps == []


def test_other_client_errors_are_data_errors(
    rsps: responses.RequestsMock, source: AlpacaSource, sleeps: list[float]
) -> None:
    rsps.get(STOCK_BARS, status=422, json={"code": 42210000, "message": "invalid symbol: X!"})
    with pytest.raises(DataError, match=r"stock bars for SPY rejected \(HTTP 422\): invalid"):
        source.stock_bars("SPY", JAN2, JAN5)
    assert len(rsps.calls) == 1 and sleeps == []


# --------------------------------------------------------------------------- credentials


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ID_VAR, raising=False)
    monkeypatch.delenv(SECRET_KEY_VAR, raising=False)


def test_missing_keys(clean_env: None, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    with pytest.raises(ApiError) as info:
        AlpacaCredentials.load(env_file)
    message = str(info.value)
    assert KEY_ID_VAR in message and SECRET_KEY_VAR in message
    assert str(env_file) in message and "does not exist" in message
    env_file.write_text(f"{KEY_ID_VAR}=only-the-key\n")
    with pytest.raises(ApiError, match="lacks one or both"):
        AlpacaCredentials.load(env_file)


def test_keys_from_env_file(clean_env: None, tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"# alpaca\n{KEY_ID_VAR}={KEY_ID}\n{SECRET_KEY_VAR}='{SECRET}'\n")
    credentials = AlpacaCredentials.load(env_file)
    assert (credentials.key_id, credentials.secret_key) == (KEY_ID, SECRET)
    assert KEY_ID_VAR not in os.environ and SECRET_KEY_VAR not in os.environ  # not mutated


def test_environment_wins_over_env_file(
    clean_env: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"{KEY_ID_VAR}=file-key\n{SECRET_KEY_VAR}=file-secret\n")
    monkeypatch.setenv(KEY_ID_VAR, "env-key")
    monkeypatch.setenv(SECRET_KEY_VAR, "env-secret")
    assert AlpacaCredentials.load(env_file) == AlpacaCredentials("env-key", "env-secret")
    # Half a pair in the environment is not mixed with the file's other half.
    monkeypatch.delenv(SECRET_KEY_VAR)
    assert AlpacaCredentials.load(env_file) == AlpacaCredentials("file-key", "file-secret")


def test_secret_never_leaks(
    rsps: responses.RequestsMock,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    clean_env: None,
) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, urllib3 and the SDK included
    env_file = tmp_path / ".env"
    env_file.write_text(f"{KEY_ID_VAR}={KEY_ID}\n{SECRET_KEY_VAR}={SECRET}\n")
    credentials = AlpacaCredentials.load(env_file)
    cache = tmp_path / "cache"
    source = AlpacaSource(credentials, cache, max_attempts=2, sleep=lambda _: None)
    texts = [repr(credentials), str(credentials), repr(source), str(source)]

    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    rsps.get(OPTION_BARS, json=fixture("option_bars.json"))
    add_chain(rsps)
    source.stock_bars("SPY", JAN2, JAN5)
    source.option_bars(OPTIONS, dt.date(2024, 6, 10), dt.date(2024, 6, 14))
    source.option_chain("SPY")
    rsps.replace(responses.GET, STOCK_BARS, status=429, json={"message": "too many requests."})
    with pytest.raises(ApiError) as rate_limited:
        source.stock_bars("QQQ", JAN2, JAN5)
    rsps.replace(responses.GET, STOCK_BARS, status=403, json={"message": "forbidden."})
    with pytest.raises(ApiError) as forbidden:
        source.stock_bars("IWM", JAN2, JAN5)
    with pytest.raises(ApiError) as missing:
        AlpacaCredentials.load(tmp_path / "absent.env")
    texts += [str(rate_limited.value), str(forbidden.value), str(missing.value), caplog.text]

    # The secret really was used (so this test is not vacuous) ...
    assert any(c.request.headers.get("APCA-API-SECRET-KEY") == SECRET for c in rsps.calls)
    assert caplog.records  # ... and something was logged.
    for text in texts:
        assert SECRET not in text
    files = [p for p in cache.rglob("*") if p.is_file()]
    assert len(files) == 3
    for path in files:
        assert SECRET.encode() not in path.read_bytes()


# --------------------------------------------------------------------------- CLI helper


def test_fetch_to_cache_writes_files(
    rsps: responses.RequestsMock,
    tmp_path: Path,
    clean_env: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env_file = tmp_path / "keys.env"
    env_file.write_text(f"{KEY_ID_VAR}={KEY_ID}\n{SECRET_KEY_VAR}={SECRET}\n")
    rsps.get(STOCK_BARS, json=fixture("stock_bars_spy.json"))
    rsps.get(OPTION_BARS, json=fixture("option_bars.json"))
    add_chain(rsps)
    cache = tmp_path / "cache"
    bars = fetch_to_cache("bars", ["SPY"], JAN2, JAN5, cache, env_file)
    option_bars = fetch_to_cache(
        "option-bars", OPTIONS, dt.date(2024, 6, 10), dt.date(2024, 6, 14), cache, env_file
    )
    chain = fetch_to_cache("chain", ["SPY"], None, None, cache, env_file)
    assert chain == [cache / "alpaca" / "option-chain" / "SPY_2024-06-14.parquet"]
    for path in bars + option_bars + chain:
        assert path.is_file() and len(pd.read_parquet(path)) > 0
    assert len(pd.read_parquet(bars[0])) == 4


def test_fetch_to_cache_rejects_bad_flags(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--kind 'quotes'"):
        fetch_to_cache("quotes", ["SPY"], JAN2, JAN5, tmp_path)
    with pytest.raises(ConfigError, match="--start/--end: both are required for --kind bars"):
        fetch_to_cache("bars", ["SPY"], None, JAN5, tmp_path)
    with pytest.raises(ConfigError, match="--symbols"):
        fetch_to_cache("option-bars", [], JAN2, JAN5, tmp_path)


def test_sdk_internal_retry_is_off(source: AlpacaSource) -> None:
    for client in (source._stock, source._options):
        assert client._retry == 0


def test_equity_panel_from_alpaca_adjusted_bars(
    rsps: responses.RequestsMock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``alpaca:TICKERS`` for the stock-portfolio env: one adjusted-bars request per ticker
    through alpaca-py, a ticker Alpaca has no bars for is dropped and named, and the panel holds
    the returned closes (the recorded SPY days, relabelled, stand in for two tickers)."""
    from clstm_ppo.data.equities import load_equity_panel

    monkeypatch.setenv(KEY_ID_VAR, KEY_ID)
    monkeypatch.setenv(SECRET_KEY_VAR, SECRET)
    spy = fixture("stock_bars_spy.json")["bars"]["SPY"]
    for name, scale in (("AAA", 1.0), ("BBB", 0.5)):
        bars = [{**bar, **{k: bar[k] * scale for k in "ohlc"}} for bar in spy]
        rsps.get(
            STOCK_BARS,
            json={"bars": {name: bars}, "next_page_token": None},
            match=[
                matchers.query_param_matcher(
                    {"symbols": name, "adjustment": "all"}, strict_match=False
                )
            ],
        )
    rsps.get(
        STOCK_BARS,
        json=fixture("stock_bars_empty.json"),
        match=[matchers.query_param_matcher({"symbols": "ZZZ"}, strict_match=False)],
    )
    panel = load_equity_panel(
        "alpaca:AAA,BBB,ZZZ", None, JAN2, JAN2, JAN5, "close", cache_dir=tmp_path / "cache"
    )
    assert panel.tickers == ("AAA", "BBB")
    assert panel.dropped == {"ZZZ": "not in the data"}
    closes = [bar["c"] for bar in spy]
    assert panel.close[:, 0].tolist() == pytest.approx(closes)
    assert panel.close[:, 1].tolist() == pytest.approx([c * 0.5 for c in closes])
    assert [d.date() for d in panel.dates] == [dt.date.fromisoformat(bar["t"][:10]) for bar in spy]
    assert "adjustment=all" in panel.origin
    assert SECRET not in repr(panel.provenance())
