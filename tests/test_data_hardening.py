"""Hostile data files and range flags: each is one line on stderr naming the file, row and rule
(exit code 2), never a traceback, a hang or a silently accepted value that breaks training later.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import responses

from clstm_ppo.cli import main
from clstm_ppo.data.alpaca import (
    KEY_ID_VAR,
    SECRET_KEY_VAR,
    AlpacaCredentials,
    AlpacaSource,
    _validate_option_bars,
)
from clstm_ppo.data.csv_source import load_csv
from clstm_ppo.data.equities import load_equity_panel
from clstm_ppo.data.frames import MAX_DAILY_MOVE, validate_bars, validate_quotes
from clstm_ppo.data.market import load_bars, load_spec
from clstm_ppo.errors import DataError

HEADER = "date,open,high,low,close,volume\n"
GOOD = "2020-01-02,100,101,99,100,1000\n"
STOCK_BARS = "https://data.alpaca.markets/v2/stocks/bars"
ALPACA_BARS = Path(__file__).parent / "fixtures" / "alpaca" / "stock_bars_spy.json"
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _fails(argv: list[str], capsys) -> str:
    """Run the CLI expecting a user error; return its single stderr line."""
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and "\n" not in err, err
    assert "Traceback" not in err
    return err


def _show_csv(tmp_path: Path, capsys, content: str, *flags: str) -> str:
    path = tmp_path / "bars.csv"
    path.write_text(content)
    err = _fails(["data", "show", "--source", "csv", "--path", str(path), *flags], capsys)
    assert str(path) in err
    return err


def _day(close: str, volume: str = "1000") -> str:
    """The 2020-01-03 row (line 3, after GOOD) with this close and volume."""
    return f"2020-01-03,100,{close},1,{close},{volume}\n"


# ------------------------------------------------------------------ 1. non-finite, absurd values


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        (_day("inf"), "'high' is inf (rule: every numeric value must be finite)"),
        ("2020-01-03,100,101,99,-inf,1000\n", "'close' is -inf (rule: every numeric value"),
        ("2020-01-03,100,1e309,99,100,1000\n", "'high' is inf (rule: every numeric value"),
        (_day("1e308"), "price 'high' is 1e+308 (rule: prices at most 1e+07)"),
        (_day("2e7"), "price 'high' is 2e+07 (rule: prices at most 1e+07)"),
        (_day("100", "inf"), "'volume' is inf (rule: every numeric value must be finite)"),
        (_day("100", "2e13"), "volume is 2e+13 (rule: volume at most 1e+13 a day)"),
        (_day("100", "-1"), "volume must be >= 0, got -1"),
        ("2020-01-03,100,101,99,100,1000,inf\n", "'adj_close' is inf"),
    ],
    ids=[
        "inf",
        "minus-inf",
        "1e309",
        "1e308",
        "above-ceiling",
        "inf-volume",
        "huge-volume",
        "negative-volume",
        "inf-adj-close",
    ],
)
def test_non_finite_and_absurd_values_refused(tmp_path, capsys, row, expected) -> None:
    header, good = HEADER, GOOD
    if row.count(",") == 6:  # the adj_close case
        header, good = "date,open,high,low,close,volume,adj_close\n", GOOD.strip() + ",100\n"
    err = _show_csv(tmp_path, capsys, header + good + row)
    assert "line 3 (2020-01-03)" in err
    assert expected in err


@pytest.mark.parametrize(
    ("close", "expected"),
    [
        ("100000", "close moves 1000x up to 100000 from 100 on the previous row (2020-01-02)"),
        ("0.1", "close moves 1000x down to 0.1 from 100"),
        ("2500", "close moves 25x up"),
    ],
)
def test_absurd_daily_move_refused(tmp_path, capsys, close, expected) -> None:
    err = _show_csv(
        tmp_path, capsys, HEADER + GOOD + f"2020-01-03,{close},{close},{close},{close},1\n"
    )
    assert "line 3 (2020-01-03)" in err
    assert expected in err
    assert "rule: at most 20x up or down from one trading day to the next" in err


def test_real_sized_crash_still_passes(tmp_path) -> None:
    """Lehman closed at 1/17 of the previous day's close on 2008-09-15: real, so accepted."""
    path = tmp_path / "crash.csv"
    path.write_text(HEADER + "2008-09-12,3.7,3.8,3.5,3.65,1\n2008-09-15,0.3,0.4,0.13,0.21,1\n")
    assert len(load_csv(path).bars) == 2
    assert MAX_DAILY_MOVE > 3.65 / 0.21


def test_move_rule_applies_to_adjusted_close(tmp_path) -> None:
    path = tmp_path / "adj.csv"
    path.write_text(
        "date,open,high,low,close,volume,adj_close\n"
        "2020-01-02,100,101,99,100,1000,50\n2020-01-03,100,101,99,100,1000,5000\n"
    )
    with pytest.raises(DataError, match=r"line 3 \(2020-01-03\): adj_close moves 100x up"):
        load_csv(path)


def test_option_bars_are_exempt_from_the_move_rule() -> None:
    """A far out-of-the-money option can go from 0.01 to 0.50 in a day (50x)."""
    frame = pd.DataFrame(
        {
            "symbol": "SPY240621C00600000",
            "date": pd.to_datetime(["2024-03-01", "2024-03-04"]),
            "open": [0.01, 0.5],
            "high": [0.01, 0.5],
            "low": [0.01, 0.5],
            "close": [0.01, 0.5],
            "volume": [10.0, 10.0],
        }
    )
    assert _validate_option_bars(frame, "alpaca") is frame
    with pytest.raises(DataError, match="close moves 50x up"):
        validate_bars(frame.set_index("date"), "stock")


def test_equity_panel_gets_the_rules(tmp_path) -> None:
    """The csv: spec of the stock-portfolio env goes through the same validation."""
    rows = ["Date,Ticker,Open,High,Low,Close,Adj Close,Volume"]
    for ticker in ("AAA", "BBB"):
        for day in ("2020-01-02", "2020-01-03", "2020-01-06"):
            rows.append(f"{day},{ticker},100,101,99,100,90,1000")
    rows[5] = "2020-01-03,BBB,100,101,99,100,inf,1000"  # file line 6
    path = tmp_path / "panel.csv"
    path.write_text("\n".join(rows) + "\n")
    day = dt.date(2020, 1, 2)
    with pytest.raises(DataError, match=r"line 6 \(2020-01-03\): 'adj_close' is inf") as caught:
        load_equity_panel(f"csv:{path}", None, day, day, dt.date(2020, 1, 6))
    assert str(path) in str(caught.value)


def test_alpaca_bars_get_the_rules(tmp_path) -> None:
    body = json.loads(ALPACA_BARS.read_text())
    body["bars"]["SPY"][2]["c"] = 1e308
    source = AlpacaSource(AlpacaCredentials("PKTEST", "sk-test"), tmp_path, sleep=lambda _: None)
    with responses.RequestsMock() as rsps:
        rsps.get(STOCK_BARS, json=body)
        with pytest.raises(DataError, match=r"^alpaca:SPY: line 4 \(2024-01-04\): price 'close'"):
            source.stock_bars("SPY", dt.date(2024, 1, 2), dt.date(2024, 1, 5))


@pytest.mark.parametrize("column", ["bid", "ask", "strike", "underlying_price", "iv"])
def test_quotes_must_be_finite(column) -> None:
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(["2024-03-01"] * 2),
            "expiry": pd.to_datetime(["2024-03-15"] * 2),
            "strike": [500.0, 510.0],
            "right": ["C", "P"],
            "bid": [1.0, 2.0],
            "ask": [1.1, 2.2],
            "underlying_price": [505.0, 505.0],
            "iv": [0.2, np.nan],  # NaN in an optional column stays allowed
        }
    )
    validate_quotes(frame, "chain.csv")
    frame.loc[1, column] = np.inf
    with pytest.raises(DataError, match=rf"^chain.csv: line 3: '{column}' is inf \(rule: every"):
        validate_quotes(frame, "chain.csv")


def test_infinite_ask_in_a_chain_file(tmp_path, capsys) -> None:
    header = (
        "symbol,exchange,company_name,date,stock_price_close,option_symbol,option_expiration,"
        "strike,call/put,style,ask,bid,mean_price,settlement,iv,volume,open_interest,"
        "stock_price_for_iv,forward_price,isinterpolated,delta,vega,gamma,theta,rho\n"
    )
    row = (
        "SPX,CBOE,S&P 500,01/03/2011,1271.87,SPX   110122C01275000,01/22/2011,1275,C,E,"
        "{ask},20,20.5,0,0.15,10,100,1271.87,1271.6,,0.5,1.2,0.001,-0.3,0.4\n"
    )
    path = tmp_path / "chain.csv"
    path.write_text(header + row.format(ask=21) + row.format(ask="inf"))
    err = _fails(["data", "chain", "--replay", str(path), "--date", "2011-01-03"], capsys)
    assert str(path) in err and "line 3" in err
    assert "'ask'" in err and "inf is not a finite number" in err


# ------------------------------------------------------------------ 2. overflowing integers


def test_four_hundred_digit_volume(tmp_path, capsys) -> None:
    err = _show_csv(tmp_path, capsys, HEADER + GOOD + _day("100", "9" * 400))
    assert "line 3: 'volume' value 99999999999999999999... (400 digits) is too large" in err


# ------------------------------------------------------------------ 3. not a regular file


@needs_fifo
@pytest.mark.timeout(60)  # a regression would block on open() until a writer appears
def test_fifo_path_is_refused(tmp_path, capsys) -> None:
    fifo = tmp_path / "bars.csv"
    os.mkfifo(fifo)
    err = _fails(["data", "show", "--source", "csv", "--path", str(fifo)], capsys)
    assert f"{fifo}: is not a regular file or folder" in err
    err = _fails(["data", "show", "--data", f"csv:{fifo}"], capsys)
    assert f"{fifo}: is not a regular file or folder" in err


@needs_fifo
@pytest.mark.timeout(60)
def test_fifo_in_equity_panel_spec_is_refused(tmp_path) -> None:
    fifo = tmp_path / "panel.csv"
    os.mkfifo(fifo)
    day = dt.date(2020, 1, 2)
    with pytest.raises(DataError, match=re.escape(f"{fifo}: is not a regular file or folder")):
        load_equity_panel(f"csv:{fifo}", None, day, day, day)


def test_device_path_is_refused(capsys) -> None:
    if not Path("/dev/null").exists():
        pytest.skip("no /dev/null")
    err = _fails(["data", "show", "--source", "csv", "--path", "/dev/null"], capsys)
    assert "/dev/null: is not a regular file or folder" in err


# ------------------------------------------------------------------ 4. --start / --end


def _shown(capsys) -> dict[str, str]:
    fields = {}
    for line in capsys.readouterr().out.splitlines():
        name, _, value = line.partition("  ")
        fields[name.strip()] = value.strip()
    return fields


def test_data_show_limits_the_range(capsys) -> None:
    argv = ["data", "show", "--source", "bundled", "--symbol", "SPX"]
    assert main([*argv, "--start", "2016-01-04", "--end", "2016-01-08"]) == 0
    fields = _shown(capsys)
    assert fields["rows"] == "5"
    assert (fields["first date"], fields["last date"]) == ("2016-01-04", "2016-01-08")
    # A bound on a weekend or holiday next to the data is not outside it.
    assert main([*argv, "--start", "1999-01-01", "--end", "1999-01-08"]) == 0
    assert _shown(capsys)["rows"] == "5"


def test_csv_range_with_one_bound(tmp_path, capsys) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + GOOD + "2020-01-03,100,101,99,100,1\n2020-01-06,100,101,99,100,1\n")
    assert main(["data", "show", "--data", f"csv:{path}", "--start", "2020-01-03"]) == 0
    assert _shown(capsys)["rows"] == "2"


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--start", "2016-01-08", "--end", "2016-01-04"], "--end 2016-01-04 is before --start"),
        (["--start", "1998-06-01"], "start 1998-06-01 is before the data"),
        (["--end", "2019-06-28"], "end 2019-06-28 is after the data"),
        (["--start", "2020-01-02"], "start 2020-01-02 is after the data"),
        (["--start", "2016-01-09", "--end", "2016-01-10"], "no rows from 2016-01-09 to"),
    ],
    ids=["end-before-start", "before", "after", "entirely-after", "weekend-only"],
)
def test_data_show_range_errors(capsys, flags, expected) -> None:
    err = _fails(["data", "show", "--source", "bundled", "--symbol", "SPX", *flags], capsys)
    assert expected in err
    if "--end" not in expected:
        assert "the data covers 1999-01-04..2018-12-31" in err


def test_data_fetch_checks_the_range_before_the_keys(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv(KEY_ID_VAR, raising=False)
    monkeypatch.delenv(SECRET_KEY_VAR, raising=False)
    argv = ["data", "fetch", "--symbols", "SPY", "--start", "2024-03-08", "--end", "2024-03-01"]
    err = _fails([*argv, "--env-file", str(tmp_path / ".env")], capsys)
    assert "--end 2024-03-01 is before --start 2024-03-08" in err


@pytest.fixture
def alpaca_env(tmp_path, monkeypatch) -> list[str]:
    monkeypatch.setenv(KEY_ID_VAR, "PKTESTKEYID0000000001")
    monkeypatch.setenv(SECRET_KEY_VAR, "sk-TEST-secret")
    return ["--set", f"data.cache_dir={tmp_path / 'cache'}"]


def test_data_show_alpaca_sends_the_dates(alpaca_env, capsys) -> None:
    with responses.RequestsMock() as rsps:
        rsps.get(STOCK_BARS, json=json.loads(ALPACA_BARS.read_text()))
        argv = ["data", "show", "--data", "alpaca:SPY", "--start", "2024-01-02"]
        assert main([*argv, "--end", "2024-01-05", *alpaca_env]) == 0
        query = rsps.calls[0].request.params
    assert query["start"].startswith("2024-01-02T00:00:00")
    assert query["end"].startswith("2024-01-05T23:59:59")
    fields = _shown(capsys)
    assert fields["rows"] == "4" and fields["source"].startswith("alpaca")


def test_data_show_alpaca_range_before_the_listing(alpaca_env, capsys) -> None:
    """Alpaca answers with what it has; a start weeks before the first bar is an error."""
    with responses.RequestsMock() as rsps:
        rsps.get(STOCK_BARS, json=json.loads(ALPACA_BARS.read_text()))
        argv = ["data", "show", "--source", "alpaca", "--symbol", "SPY", *alpaca_env]
        err = _fails([*argv, "--start", "2023-12-01", "--end", "2024-01-05"], capsys)
    assert "start 2023-12-01 is before the data (the data covers 2024-01-02..2024-01-05)" in err


def test_alpaca_without_dates_names_the_flags(alpaca_env, capsys) -> None:
    err = _fails(["data", "show", "--source", "alpaca", "--symbol", "SPY", *alpaca_env], capsys)
    assert "--start/--end" in err


def test_load_bars_refuses_end_before_start() -> None:
    with pytest.raises(DataError, match="end 2016-01-01 is before start 2016-02-01"):
        load_bars("synthetic", "gbm", start=dt.date(2016, 2, 1), end=dt.date(2016, 1, 1))


# ------------------------------------------------------------------ 5. --data SPEC


def test_data_spec_equals_the_flags(tmp_path, capsys) -> None:
    assert main(["data", "show", "--source", "bundled", "--symbol", "NASDAQ"]) == 0
    by_flags = capsys.readouterr().out
    assert main(["data", "show", "--data", "bundled:NASDAQ"]) == 0
    assert capsys.readouterr().out == by_flags

    path = tmp_path / "two.csv"
    path.write_text(
        "date,ticker,open,high,low,close,volume\n"
        "2020-01-02,AAA,1,1,1,1,1\n2020-01-02,BBB,2,2,2,2,2\n"
    )
    assert main(["data", "show", "--data", f"csv:{path}#bbb"]) == 0
    fields = _shown(capsys)
    assert fields["symbol"] == "BBB" and fields["source"] == f"csv ({path})"
    assert main(["data", "show", "--data", "synthetic:gbm", "--end", "2005-02-01"]) == 0
    assert _shown(capsys)["source"].startswith("synthetic")


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--data", "bundled:SPX", "--source", "csv"], "--data and --source both name the data"),
        (["--data", "csv:x.csv", "--path", "y.csv"], "--data and --path both name the data"),
        (["--data", "yahoo:SPY"], "--data: data spec 'yahoo:SPY': unknown source 'yahoo'"),
        (["--data", "csv:#AAA"], "missing the file or folder after 'csv:'"),
    ],
)
def test_bad_data_spec(capsys, flags, expected) -> None:
    assert expected in _fails(["data", "show", *flags], capsys)


def test_load_spec_refuses_empty_csv_path() -> None:
    """``csv:#AAA`` used to read the current folder (Path('') is '.')."""
    with pytest.raises(DataError, match="missing the file or folder"):
        load_spec("csv:#AAA")
