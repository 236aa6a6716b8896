"""Training on ``data.source: alpaca``: the tape asks Alpaca for the range the run needs.

The real alpaca-py SDK sends the requests; ``responses`` answers them (any unregistered URL
raises, so nothing reaches the network). The long-history answers are built in Alpaca's v2
``/stocks/bars`` format (the fields of ``fixtures/alpaca/stock_bars_spy.json``) from the bundled
S&P 500 closes, because a recording of 1,800 daily bars would be a large fixture; the short
answer is that recording itself. Keys come from the environment and must never be printed.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pandas as pd
import pytest
import responses

from clstm_ppo.cli import main
from clstm_ppo.config import Config, build_config
from clstm_ppo.data.alpaca import KEY_ID_VAR, SECRET_KEY_VAR
from clstm_ppo.data.bundled import load_bundled
from clstm_ppo.data.calendar import trading_days
from clstm_ppo.envs import tape as tape_module
from clstm_ppo.envs.tape import history_range, history_start, tape_for, warmup_trading_days
from clstm_ppo.train.run import data_provenance

STOCK_BARS = "https://data.alpaca.markets/v2/stocks/bars"
RECORDED_SPY = Path(__file__).parent / "fixtures" / "alpaca" / "stock_bars_spy.json"
KEY_ID = "PKTAPEKEYID0000000042"
SECRET = "sk-TAPE-secret-DO-NOT-LEAK-41c7e2"
# Short splits in the bundled SPX's span, with years of it before the train split for warm-up.
SPLITS = {
    "train": {"start": "2006-01-01", "end": "2008-12-31"},
    "validation": {"start": "2009-01-01", "end": "2009-06-30"},
    "test": {"start": "2009-07-01", "end": "2009-12-31"},
}


@pytest.fixture
def keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Keys only in the environment; a .env in the working folder must not be needed."""
    monkeypatch.setenv(KEY_ID_VAR, KEY_ID)
    monkeypatch.setenv(SECRET_KEY_VAR, SECRET)
    monkeypatch.chdir(tmp_path)


@pytest.fixture(autouse=True)
def fresh_tapes() -> Iterator[None]:
    """Tapes are cached per process: each test must really build (and request) its own."""
    tape_module._cached_tape.cache_clear()
    yield
    tape_module._cached_tape.cache_clear()


@pytest.fixture(autouse=True)
def no_sdk_sleep(monkeypatch: pytest.MonkeyPatch) -> None:
    """As in test_alpaca.py: the SDK's own retry (time.sleep) must be switched off."""

    def forbidden(seconds: float) -> None:
        raise AssertionError(f"alpaca-py slept {seconds}s: its internal retry is not disabled")

    monkeypatch.setattr("alpaca.common.rest.time.sleep", forbidden)


def _config(tmp_path: Path, **data: object) -> Config:
    values = {"source": "alpaca", "symbol": "SPY", "vix": None, "splits": SPLITS, **data}
    return build_config({"data": {**values, "cache_dir": str(tmp_path / "cache")}})


def _bars_json(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Rows in Alpaca's wire format; daily bars are stamped at New York midnight (UTC here)."""
    stamps = frame.index.tz_localize("America/New_York").tz_convert("UTC")
    return [
        {
            "t": stamp.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "o": row.open,
            "h": row.high,
            "l": row.low,
            "c": row.close,
            "v": int(row.volume),
            "n": 1000,
            "vw": row.close,
        }
        for stamp, row in zip(stamps, frame.itertuples(), strict=True)
    ]


def _vixy_like(index: pd.DatetimeIndex) -> pd.DataFrame:
    """A positive, gently moving series for the implied-vol symbol (levels 15..25)."""
    close = 20.0 + 5.0 * np.sin(np.arange(len(index)) / 15.0)
    return pd.DataFrame(
        {"open": close, "high": close * 1.01, "low": close * 0.99, "close": close, "volume": 1e6},
        index=index,
    )


def _serve_history(rsps: responses.RequestsMock) -> None:
    """Answer each request with the bars of its own start..end, as Alpaca does."""
    spx = load_bundled("SPX").bars

    def answer(request) -> tuple[int, dict[str, str], str]:
        query = {k: v[0] for k, v in parse_qs(urlparse(request.url).query).items()}
        lo = pd.Timestamp(query["start"]).tz_convert("UTC").tz_localize(None).normalize()
        hi = pd.Timestamp(query["end"]).tz_convert("UTC").tz_localize(None)
        rows = spx[(spx.index >= lo) & (spx.index <= hi)]
        symbol = query["symbols"]
        if symbol != "SPY":
            rows = _vixy_like(rows.index)
        body = {"bars": {symbol: _bars_json(rows)}, "next_page_token": None}
        return 200, {"Content-Type": "application/json"}, json.dumps(body)

    rsps.add_callback(responses.GET, STOCK_BARS, callback=answer)


def _no_keys_anywhere(tmp_path: Path, *texts: str) -> None:
    """Neither key in any text the run printed or logged, nor in any file it wrote."""
    for text in texts:
        assert KEY_ID not in text and SECRET not in text
    for path in tmp_path.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert KEY_ID.encode() not in content and SECRET.encode() not in content, path


# --------------------------------------------------------------------------- the range


def test_warmup_counts_every_history_rule() -> None:
    config = Config()
    # max(GARCH 252, indicators 60, window 30) + 1 + turbulence 252 + normalisation 252 + 63
    assert warmup_trading_days(config) == 820
    longer = config.model_copy(
        update={"env": config.env.model_copy(update={"turbulence_window": 500})}
    )
    assert warmup_trading_days(longer) == 820 + 248
    garch = config.model_copy(
        update={"market": config.market.model_copy(update={"garch_min_history": 1000})}
    )
    assert warmup_trading_days(garch) == 820 + 748
    days = math.ceil(820 * 1.5)
    assert history_start(config) == dt.date(1999, 1, 1) - dt.timedelta(days=days)


def test_history_range_ends_at_the_test_split_or_yesterday() -> None:
    config = Config()  # test split 2016-01-01..2018-12-31
    start = history_start(config)
    assert history_range(config, today=dt.date(2030, 1, 1)) == (start, dt.date(2018, 12, 31))
    assert history_range(config, today=dt.date(2017, 6, 15)) == (start, dt.date(2017, 6, 14))


# --------------------------------------------------------------------------- Alpaca requests


@pytest.mark.timeout(120)
def test_training_tape_requests_the_run_range_from_alpaca(
    tmp_path: Path, keys: None, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    caplog.set_level(logging.DEBUG)
    config = _config(tmp_path)
    start, end = history_range(config)
    assert end == dt.date(2009, 12, 31)
    with responses.RequestsMock() as rsps:
        _serve_history(rsps)
        provenance = data_provenance(config)  # what run_training builds before training
        tape = tape_for(config)  # the same tape, from the cache: no second request
        calls = list(rsps.calls)
    assert len(calls) == 1
    query = calls[0].request.params
    assert query["symbols"] == "SPY" and query["timeframe"] == "1Day"
    assert query["start"].startswith(f"{start}T00:00:00")
    assert query["end"].startswith(f"{end}T23:59:59")
    # The warm-up is enough: the first train session is tradable, not a year or two later.
    first_train = trading_days(pd.Timestamp("2006-01-01"), pd.Timestamp("2006-01-31"))[0]
    train_first, _ = tape.split_bounds("train")
    assert tape.dates[train_first] == first_train
    assert tape.dates[tape.first_usable_day] <= first_train
    assert tape.dates[-1] == pd.Timestamp("2009-12-31")
    assert provenance["data"]["source"] == "alpaca"
    assert provenance["data"]["first_date"] >= str(start)
    assert provenance["splits"]["train"]["first"] == str(first_train.date())
    out, err = capsys.readouterr()
    _no_keys_anywhere(tmp_path, out, err, caplog.text, json.dumps(provenance, default=str))


@pytest.mark.timeout(120)
def test_an_alpaca_implied_vol_index_gets_the_same_range(tmp_path: Path, keys: None) -> None:
    config = _config(tmp_path, vix="alpaca:VIXY")
    start, end = history_range(config)
    with responses.RequestsMock() as rsps:
        _serve_history(rsps)
        tape = tape_for(config)
        queries = [call.request.params for call in rsps.calls]
    assert sorted(q["symbols"] for q in queries) == ["SPY", "VIXY"]
    for query in queries:
        assert query["start"].startswith(f"{start}T00:00:00")
        assert query["end"].startswith(f"{end}T23:59:59")
    assert tape.provenance["option_market"]["implied_vol_index"]["symbol"] == "VIXY"
    assert tape.provenance["option_market"]["days_from_vix"] == len(tape.dates)


@pytest.mark.timeout(120)
def test_train_without_alpaca_history_for_the_warmup_is_one_line(
    tmp_path: Path, keys: None, caplog: pytest.LogCaptureFixture, capsys
) -> None:
    """Alpaca's history starts after the warm-up start: the error says which dates were asked
    for and why, since the user never typed them."""
    caplog.set_level(logging.DEBUG)
    recorded = json.loads(RECORDED_SPY.read_text())  # SPY 2024-01-02..2024-01-05
    splits = {
        "train": {"start": "2024-01-02", "end": "2024-01-03"},
        "validation": {"start": "2024-01-04", "end": "2024-01-04"},
        "test": {"start": "2024-01-05", "end": "2024-01-05"},
    }
    argv = ["train", "--source", "alpaca", "--symbol", "SPY", "--device", "cpu"]
    argv += ["--run-dir", str(tmp_path / "runs"), "--set", f"data.cache_dir={tmp_path / 'c'}"]
    argv += ["--set", "data.vix=null"]
    for name, part in splits.items():
        for side, day in part.items():
            argv += ["--set", f"data.splits.{name}.{side}={day}"]
    with responses.RequestsMock() as rsps:
        rsps.get(STOCK_BARS, json=recorded)
        code = main(argv)
        query = rsps.calls[0].request.params
    out, err = capsys.readouterr()
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    config = build_config({"data": {"splits": splits, "vix": None}})
    start = history_start(config)
    assert query["start"].startswith(f"{start}T00:00:00")
    assert query["end"].startswith("2024-01-05T23:59:59")
    assert f"start {start} is before the data (the data covers 2024-01-02..2024-01-05)" in line
    assert f"was asked for {start}..2024-01-05" in line
    assert "data.splits.train.start 2024-01-02 less 820 trading days of warm-up" in line
    _no_keys_anywhere(tmp_path, out, err, caplog.text)
