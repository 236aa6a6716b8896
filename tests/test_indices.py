"""CBOE/FRED index histories: parser, snapshot, folder and cache specs, past-only alignment, fetch.

HTTP never leaves the process: downloads go through ``responses.RequestsMock``, which raises on
any URL not registered.
"""

from __future__ import annotations

import datetime as dt
import gzip
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import requests
import responses

from clstm_ppo.cli import main
from clstm_ppo.data.calendar import trading_days
from clstm_ppo.data.index_fetch import fetch_indices, index_url
from clstm_ppo.data.indices import (
    FIELDS,
    INDEX_SYMBOLS,
    MAX_FILL_DAYS,
    index_cache_path,
    load_index,
    market_inputs,
    parse_index_csv,
    rate_from_percent,
    read_index_file,
    snapshot_dir,
)
from clstm_ppo.errors import ApiError, ConfigError, DataError

CBOE_VIX = index_url("cboe", "VIX")
FRED_DGS3MO = index_url("fred", "DGS3MO")
SHARED_FILES = {
    "VIX": "vix_daily_cboe_1990_2026.csv",
    "VIX9D": "vix9d_daily_cboe.csv.gz",
    "VIX3M": "vix3m_daily_cboe.csv.gz",
    "VIX6M": "vix6m_daily_cboe.csv.gz",
    "VIX1Y": "vix1y_daily_cboe.csv.gz",
    "SKEW": "skew_daily_cboe.csv.gz",
    "VVIX": "vvix_daily_cboe.csv.gz",
    "DGS3MO": "dgs3mo_daily_fred.csv.gz",
}
OHLC = "DATE,OPEN,HIGH,LOW,CLOSE\n"


def write(path: Path, text: str, *, newline: str = "\n", bom: bool = False) -> Path:
    data = text.replace("\n", newline).encode()
    path.write_bytes((b"\xef\xbb\xbf" if bom else b"") + data)
    return path


def one_line_error(exc: pytest.ExceptionInfo[BaseException], *parts: str) -> str:
    message = str(exc.value)
    assert "\n" not in message
    for part in parts:
        assert part in message, (part, message)
    return message


# ---------------------------------------------------------------------------------- parser


def test_cboe_ohlc_uses_close_and_us_dates() -> None:
    text = OHLC + "01/02/1990,17.24,17.24,17.24,17.24\n01/03/1990,18.0,99.0,1.0,18.19\n"
    values = parse_index_csv(text, "v.csv", "VIX")
    assert list(values.index) == [pd.Timestamp("1990-01-02"), pd.Timestamp("1990-01-03")]
    assert values.tolist() == [17.24, 18.19]  # the HIGH/LOW spikes are not read
    assert values.index.name == "date" and values.dtype == float


def test_single_value_column_and_iso_dates() -> None:
    values = parse_index_csv("DATE,SKEW\n2020-01-02,125.3\n", "s.csv", "SKEW")
    assert values.iloc[0] == 125.3
    values = parse_index_csv("DATE,VVIX\n01/03/2007,68.1\n", "v.csv", "vvix")
    assert values.name == "VVIX"


def test_bom_and_crlf_load(tmp_path: Path) -> None:
    path = write(
        tmp_path / "VIX_History.csv",
        OHLC + "01/02/2020,1,1,1,12.47\n01/03/2020,1,1,1,14.02\n",
        newline="\r\n",
        bom=True,
    )
    values = read_index_file(path, "VIX")
    assert values.tolist() == [12.47, 14.02]


def test_fred_dot_marker_is_dropped_and_realtime_columns_ignored(tmp_path: Path) -> None:
    text = (
        "observation_date,value,realtime_start,realtime_end\n"
        "2001-09-10,3.4,2026-09-27,2026-09-27\n"
        "2001-09-11,.,2026-09-27,2026-09-27\n"
        "2001-09-12,.,2026-09-27,2026-09-27\n"
        "2001-09-13,2.9,2026-09-27,2026-09-27\n"
    )
    path = tmp_path / "DGS3MO.csv.gz"
    path.write_bytes(gzip.compress(text.replace("\n", "\r\n").encode()))
    values = read_index_file(path, "DGS3MO")
    assert values.to_dict() == {pd.Timestamp("2001-09-10"): 3.4, pd.Timestamp("2001-09-13"): 2.9}
    # The layout fredgraph.csv serves today: DATE column, series-named value column.
    assert (
        parse_index_csv("observation_date,DGS3MO\n2020-01-02,1.5\n", "f", "DGS3MO").iloc[0] == 1.5
    )


def test_zero_and_slightly_negative_rates_are_valid() -> None:
    values = parse_index_csv("DATE,DGS3MO\n2015-01-02,0\n2015-01-05,-0.02\n", "f", "DGS3MO")
    assert values.tolist() == [0.0, -0.02]


def test_unsorted_dates_are_sorted() -> None:
    text = "DATE,SKEW\n01/06/2020,120\n01/02/2020,118\n01/03/2020,119\n"
    values = parse_index_csv(text, "s.csv", "SKEW")
    assert values.index.is_monotonic_increasing
    assert values.tolist() == [118.0, 119.0, 120.0]


def test_duplicate_dates_are_refused_naming_both_lines() -> None:
    text = "DATE,SKEW\n01/02/2020,118\n01/03/2020,119\n2020-01-02,118\n"
    with pytest.raises(DataError) as exc:
        parse_index_csv(text, "s.csv", "SKEW")
    one_line_error(exc, "s.csv: line 4", "2020-01-02", "line 2", "duplicate")


@pytest.mark.parametrize(
    ("symbol", "row", "words"),
    [
        ("VIX", "01/02/2020,1,1,1,0", ["must be positive"]),
        ("VIX", "01/02/2020,1,1,1,-3.5", ["must be positive"]),
        ("VIX", "01/02/2020,1,1,1,nan", ["not finite"]),
        ("VIX", "01/02/2020,1,1,1,inf", ["not finite"]),
        ("VIX", "01/02/2020,1,1,1,abc", ["'abc' is not a number"]),
        ("VIX", "13/45/2020,1,1,1,12", ["not a calendar date"]),
        ("VIX", "Jan 2 2020,1,1,1,12", ["neither MM/DD/YYYY nor YYYY-MM-DD"]),
        ("VIX", "01/02/2020,1,1", ["3 fields"]),
        ("VIX", "01/02/2020,1,1,1,2500", ["at most 1000"]),
        ("DGS3MO", "2020-01-02,530", ["outside +-25%"]),
        ("DGS3MO", "2020-01-02,-30", ["outside +-25%"]),
    ],
)
def test_bad_rows_are_one_line_errors_naming_file_and_line(
    tmp_path: Path, symbol: str, row: str, words: list[str]
) -> None:
    header = OHLC if symbol == "VIX" else "DATE,DGS3MO\n"
    good = "01/01/2020,1,1,1,13\n" if symbol == "VIX" else "2020-01-01,1.5\n"
    path = write(tmp_path / f"{symbol}.csv", header + good + row + "\n")
    with pytest.raises(DataError) as exc:
        read_index_file(path, symbol)
    one_line_error(exc, f"{path}: line 3", *words)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("", ["empty file"]),
        ("<!DOCTYPE html><html>busy</html>\n", ["line 1", "no DATE"]),
        ("DATE,OPEN,HIGH\n01/02/2020,1,2\n", ["no CLOSE or VIX value column"]),
        (OHLC, ["no VIX values"]),
    ],
)
def test_bad_layouts_are_refused(text: str, words: list[str]) -> None:
    with pytest.raises(DataError) as exc:
        parse_index_csv(text, "x.csv", "VIX")
    one_line_error(exc, "x.csv", *words)


def test_unknown_symbol_lists_the_known_ones() -> None:
    with pytest.raises(DataError) as exc:
        load_index("VXN", "bundled")
    one_line_error(exc, "'VXN'", "VIX9D", "DGS3MO")


# ---------------------------------------------------------------------------------- snapshot


def test_snapshot_is_package_data_and_small() -> None:
    folder = snapshot_dir()
    names = {entry.name for entry in folder.iterdir()}
    assert names >= {f"{symbol}.csv.gz" for symbol in INDEX_SYMBOLS} | {"README.md"}
    size = sum(len((folder / f"{s}.csv.gz").read_bytes()) for s in INDEX_SYMBOLS)
    assert size < 400_000
    readme = (folder / "README.md").read_text()
    for needed in ("No licence stated; CBOE/FRED terms apply; research use", "DGS3MO", "2007"):
        assert needed in readme


def test_snapshot_series_and_origins() -> None:
    vix = load_index("VIX", "bundled")
    assert vix.origin == "snapshot (to 2026-07-07)"
    assert vix.values[pd.Timestamp("2020-03-16")] == 82.69
    assert vix.first_date == pd.Timestamp("1990-01-02")
    rate = load_index("DGS3MO", "bundled")
    assert rate.origin == "snapshot (to 2026-09-24)"
    assert pd.Timestamp("2001-09-11") not in rate.values.index  # FRED's "." day
    vvix = load_index("VVIX", "bundled")
    assert vvix.first_date >= pd.Timestamp("2007-01-01")  # 2006's implausible values dropped
    assert vvix.values.min() > 50 and "before 2007-01-01" in vvix.notes[0]


@pytest.mark.shared_data
def test_snapshot_equals_the_real_files(shared_data: Path) -> None:
    folder = shared_data / "indices"
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    for symbol, name in SHARED_FILES.items():
        real = read_index_file(folder / name, symbol)
        snap = load_index(symbol, "bundled").values
        common = real.index.intersection(snap.index)
        assert len(common) >= len(snap) - 1, symbol
        assert np.array_equal(real[common].to_numpy(), snap[common].to_numpy()), symbol
        # The loader reads the ../shared naming too, with the same VVIX cut.
        assert load_index(symbol, str(folder)).values.equals(snap), symbol


# ---------------------------------------------------------------------------------- specs


def test_folder_spec_reads_cboe_and_fred_download_names(tmp_path: Path) -> None:
    write(tmp_path / "vix_history.csv", OHLC + "01/02/2020,1,1,1,12.47\n")
    write(tmp_path / "SKEW_History.csv", "DATE,SKEW\n01/02/2020,118.2\n")
    write(tmp_path / "DGS3MO.csv", "observation_date,DGS3MO\n2019-12-31,1.55\n")
    (tmp_path / "VVIX.csv.gz").write_bytes(gzip.compress(b"DATE,VVIX\n01/02/2020,95.1\n"))
    vix = load_index("VIX", f"folder:{tmp_path}")
    assert vix.origin == f"folder:{tmp_path} (vix_history.csv, to 2020-01-02)"
    assert load_index("VVIX", str(tmp_path)).values.iloc[0] == 95.1
    with pytest.raises(DataError) as exc:
        load_index("VIX3M", str(tmp_path))
    one_line_error(exc, "no file for VIX3M", "VIX3M_History.csv")
    inputs = market_inputs(pd.DatetimeIndex(["2020-01-02"]), str(tmp_path))
    assert inputs.vix[0] == 12.47 and inputs.skew[0] == 118.2 and inputs.vvix[0] == 95.1
    assert inputs.rate[0] == pytest.approx(rate_from_percent(np.array([1.55]))[0])
    assert np.isnan(inputs.vix3m[0]) and inputs.origins["vix3m"].startswith("none (no VIX3M")


def test_folder_spec_that_is_missing_or_a_file(tmp_path: Path) -> None:
    with pytest.raises(DataError) as exc:
        load_index("VIX", str(tmp_path / "nope"))
    one_line_error(exc, "does not exist")
    path = write(tmp_path / "VIX.csv", OHLC)
    with pytest.raises(DataError) as exc:
        load_index("VIX", str(path))
    one_line_error(exc, "is a file")


def test_rate_conversion() -> None:
    # Bond-equivalent 5% on a 3-month bill: (1 + 0.05/4) over a quarter, continuously compounded.
    assert rate_from_percent(np.array([5.0]))[0] == pytest.approx(4 * np.log(1.0125))
    assert rate_from_percent(np.array([0.0]))[0] == 0.0
    assert rate_from_percent(np.array([-0.04]))[0] < 0


def test_gaps_fill_at_most_five_trading_days_and_are_counted(tmp_path: Path) -> None:
    days = trading_days("2020-01-02", "2020-01-31")
    kept = [d for i, d in enumerate(days) if i < 3 or i > 11]  # 9 trading days missing
    rows = "".join(f"{d:%m/%d/%Y},1,1,1,{10 + i}\n" for i, d in enumerate(kept))
    write(tmp_path / "VIX_History.csv", OHLC + rows)
    inputs = market_inputs(days, str(tmp_path))
    vix = inputs.vix
    assert vix[2] == 12.0  # the last value before the gap...
    assert (vix[3 : 3 + MAX_FILL_DAYS] == 12.0).all()  # ...carried 5 days
    assert np.isnan(vix[3 + MAX_FILL_DAYS : 12]).all()  # then missing
    assert vix[12] == 13.0
    assert inputs.filled["vix"] == MAX_FILL_DAYS and inputs.missing["vix"] == 4


def test_values_before_the_window_age_by_weekdays(tmp_path: Path) -> None:
    write(tmp_path / "SKEW.csv", "DATE,SKEW\n2019-12-02,120\n2019-12-31,121\n")
    inputs = market_inputs(trading_days("2020-01-02", "2020-01-03"), str(tmp_path))
    assert inputs.skew.tolist() == [121.0, 121.0] and inputs.filled["skew"] == 2
    late = market_inputs(trading_days("2020-01-13", "2020-01-14"), str(tmp_path))
    assert np.isnan(late.skew).all()  # 2019-12-31 is 9 weekdays old: not carried


def test_rate_is_from_the_day_before(tmp_path: Path) -> None:
    write(
        tmp_path / "DGS3MO.csv",
        "DATE,DGS3MO\n2020-01-03,1.50\n2020-01-06,1.60\n2020-01-07,1.70\n2020-01-08,.\n",
    )
    days = pd.DatetimeIndex(["2020-01-06", "2020-01-07", "2020-01-08", "2020-01-09"])
    inputs = market_inputs(days, str(tmp_path))
    expected = rate_from_percent(np.array([1.50, 1.60, 1.70, 1.70]))
    assert np.allclose(inputs.rate, expected)  # Monday gets Friday's; Thursday carries Tuesday's
    assert inputs.filled["rate"] == 1


def test_spec_none_override_and_provenance(tmp_path: Path) -> None:
    days = trading_days("2016-01-04", "2016-01-08")
    none = market_inputs(days, None)
    for name in FIELDS:
        assert np.isnan(getattr(none, name)).all() and none.origins[name] == "none"
        assert none.missing[name] == len(days)
    override = pd.Series([20.0, 21.0], index=pd.DatetimeIndex(["2016-01-04", "2016-01-05"]))
    inputs = market_inputs(days, "bundled", vix_override=override.rename("bundled:VIX"))
    assert inputs.vix[:2].tolist() == [20.0, 21.0] and inputs.filled["vix"] == 3
    assert inputs.origins["vix"] == "override (bundled:VIX)"
    assert inputs.skew[0] == load_index("SKEW", "bundled").values[days[0]]
    record = json.loads(json.dumps(inputs.provenance()))
    assert record["series"]["vix"]["filled"] == 3 and record["days"] == 5
    assert record["series"]["rate"]["origin"].startswith("snapshot (to ")
    with pytest.raises(ValueError):
        inputs.vix[0] = 1.0  # read-only


# ---------------------------------------------------------------------------------- past-only


def _write_folder(folder: Path, series: dict[str, pd.Series]) -> Path:
    folder.mkdir()
    for symbol, values in series.items():
        if values.empty:  # e.g. VIX9D before 2011: no file, so the series is missing
            continue
        lines = "".join(f"{d:%Y-%m-%d},{v!r}\n" for d, v in values.items())
        write(folder / f"{symbol}.csv", f"DATE,{symbol}\n{lines}")
    return folder


@pytest.mark.parametrize(
    "day", ["2008-09-15", "2008-10-10", "2011-08-08", "2015-08-24", "2020-03-16", "2020-03-23"]
)
def test_the_future_does_not_change_a_day(tmp_path: Path, day: str) -> None:
    t = pd.Timestamp(day)
    start, end = t - pd.Timedelta(days=60), t + pd.Timedelta(days=60)
    real = {
        symbol: load_index(symbol, "bundled").values.loc[start - pd.Timedelta(days=30) : end]
        for symbol in INDEX_SYMBOLS
    }
    changed = {}
    for symbol, values in real.items():
        # Every value after t (for the rate: on or after t) changes, and some rows vanish.
        future = values.index >= t if symbol == "DGS3MO" else values.index > t
        moved = values.copy()
        moved[future] = moved[future] + 1.0 if symbol == "DGS3MO" else moved[future] * 1.37
        gone = future & (np.arange(len(values)) % 3 == 0)
        changed[symbol] = moved[~gone]
    days = trading_days(start, end)
    base = market_inputs(days, str(_write_folder(tmp_path / "real", real)))
    other = market_inputs(days, str(_write_folder(tmp_path / "moved", changed)))
    upto = days.get_loc(t) + 1
    for name in FIELDS:
        before, after = getattr(base, name), getattr(other, name)
        assert np.array_equal(before[:upto], after[:upto], equal_nan=True), name
        if np.isfinite(before[upto:]).any():  # the perturbation did reach the later days
            assert not np.array_equal(before[upto:], after[upto:], equal_nan=True), name
    assert np.isfinite(base.vix[:upto]).all() and np.isfinite(base.rate[:upto]).all()


# ---------------------------------------------------------------------------------- fetch


@pytest.fixture
def rsps() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=True) as mock:
        yield mock


VIX_BODY = OHLC + "11/30/2026,1,1,1,17.1\r\n12/01/2026,1,1,1,18.2\r\n12/02/2026,1,1,1,16.9\r\n"
NOW = dt.datetime(2026, 12, 3, 21, 5, tzinfo=dt.timezone.utc)


def fetch(cache: Path, source: str, symbols: list[str], sleeps: list[float]) -> list:
    return fetch_indices(source, symbols, cache, sleep=sleeps.append, now=lambda: NOW)


def test_good_download_is_cached_and_wins_in_auto(tmp_path: Path, rsps) -> None:
    cache = tmp_path / "cache"
    assert load_index("VIX", "auto", cache).origin.startswith("snapshot")
    rsps.get(CBOE_VIX, body=VIX_BODY.encode("utf-8-sig"))
    [(path, values)] = fetch(cache, "cboe", ["VIX"], [])
    assert path == index_cache_path(cache, "VIX") and path.is_file()
    assert len(values) == 3
    history = load_index("VIX", "auto", cache)
    assert history.origin == "cache cboe fetched 2026-12-03 (to 2026-12-02)"
    assert history.values.tolist() == [17.1, 18.2, 16.9]
    assert pd.read_parquet(path).attrs["url"] == CBOE_VIX
    assert load_index("VIX", "bundled", cache).origin.startswith("snapshot")


def test_a_cache_older_than_the_snapshot_does_not_hide_it(tmp_path: Path, rsps) -> None:
    rsps.get(FRED_DGS3MO, body="observation_date,DGS3MO\n2020-01-02,1.5\n")
    fetch(tmp_path, "fred", ["DGS3MO"], [])
    assert load_index("DGS3MO", "auto", tmp_path).origin.startswith("snapshot (to 2026")


def test_503_then_200_is_retried_with_backoff(tmp_path: Path, rsps) -> None:
    rsps.get(CBOE_VIX, status=503)
    rsps.get(CBOE_VIX, body=requests.ConnectionError("reset"))
    rsps.get(CBOE_VIX, status=429)
    rsps.get(CBOE_VIX, body=VIX_BODY)
    sleeps: list[float] = []
    fetch(tmp_path, "cboe", ["VIX"], sleeps)
    assert sleeps == [1.0, 2.0, 4.0]
    assert index_cache_path(tmp_path, "VIX").is_file()


def test_retries_run_out_with_one_line(tmp_path: Path, rsps) -> None:
    for _ in range(5):
        rsps.get(FRED_DGS3MO, status=502)
    with pytest.raises(ApiError) as exc:
        fetch(tmp_path, "fred", ["DGS3MO"], [])
    one_line_error(exc, "fred.stlouisfed.org", "5 attempts", "HTTP 502")
    assert not index_cache_path(tmp_path, "DGS3MO").exists()


def test_404_is_one_line_on_the_command_line(tmp_path: Path, rsps, capsys) -> None:
    rsps.get(index_url("cboe", "VIX3M"), status=404)
    argv = ["data", "fetch", "--source", "cboe", "--symbols", "VIX3M"]
    assert main([*argv, "--set", f"data.cache_dir={tmp_path}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "cdn.cboe.com" in err and "HTTP 404" in err


@pytest.mark.parametrize(
    "body",
    [
        "<html><body>Access denied</body></html>",
        OHLC + "12/03/2026,1,1,1,-1\n",
        OHLC + "12/03/2026,1,1,1,17.1\n12/04/20",  # cut mid-line
    ],
)
def test_malformed_download_keeps_the_previous_cache(tmp_path: Path, rsps, body: str) -> None:
    rsps.get(CBOE_VIX, body=VIX_BODY)
    fetch(tmp_path, "cboe", ["VIX"], [])
    path = index_cache_path(tmp_path, "VIX")
    before = path.read_bytes()
    rsps.get(CBOE_VIX, body=body)
    with pytest.raises(DataError) as exc:
        fetch(tmp_path, "cboe", ["VIX"], [])
    one_line_error(exc, "malformed download, cache kept", CBOE_VIX)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["VIX.parquet"]  # no temp left


def test_a_shorter_download_keeps_the_cache(tmp_path: Path, rsps) -> None:
    rsps.get(CBOE_VIX, body=VIX_BODY)
    fetch(tmp_path, "cboe", ["VIX"], [])
    rsps.get(CBOE_VIX, body=OHLC + "11/30/2026,1,1,1,17.1\n")
    with pytest.raises(DataError) as exc:
        fetch(tmp_path, "cboe", ["VIX"], [])
    one_line_error(exc, "ends 2026-11-30", "2026-12-02", "cache kept")
    assert len(load_index("VIX", "auto", tmp_path).values) == 3


def test_command_line_fetches_a_comma_list(tmp_path: Path, rsps, capsys) -> None:
    rsps.get(CBOE_VIX, body=VIX_BODY)
    rsps.get(index_url("cboe", "SKEW"), body="DATE,SKEW\n12/02/2026,150.2\n")
    argv = ["data", "fetch", "--source", "cboe", "--symbols", "vix,SKEW"]
    assert main([*argv, "--set", f"data.cache_dir={tmp_path}"]) == 0
    out = capsys.readouterr().out
    assert "VIX.parquet (3 rows, 2026-11-30 to 2026-12-02)" in out
    assert load_index("SKEW", "auto", tmp_path).origin.startswith("cache cboe fetched ")


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--source", "cboe", "--symbols", "VIX,VXN"], ["VXN", "known: VIX9D, VIX"]),
        (["--source", "cboe", "--symbols", "DGS3MO"], ["--source fred"]),
        (["--source", "fred", "--symbols", "VIX"], ["--source cboe"]),
        (["--source", "cboe", "--symbols", "VIX", "--start", "2020-01-02"], ["--start"]),
        (["--source", "fred", "--symbols", "DGS3MO", "--kind", "bars"], ["--kind"]),
    ],
)
def test_flag_errors_make_no_request(rsps, capsys, argv: list[str], words: list[str]) -> None:
    assert main(["data", "fetch", *argv]) == 2  # rsps raises on any request
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and all(word in err for word in words), err


def test_fetcher_refuses_unknown_symbols_directly(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        fetch_indices("cboe", [], tmp_path)
    with pytest.raises(ConfigError):
        fetch_indices("yahoo", ["VIX"], tmp_path)
