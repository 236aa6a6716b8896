"""Bar sources: bundled (arch), CSV/Parquet, synthetic; validation and provenance."""

from __future__ import annotations

import pandas as pd
import pytest

from clstm_ppo.config import Config
from clstm_ppo.data.bundled import load_bundled
from clstm_ppo.data.market import load_bars, load_spec, parse_spec
from clstm_ppo.data.splits import describe_splits, split_bars
from clstm_ppo.errors import DataError


def _write_bars(path, rows: int = 5, symbol: str | None = None) -> pd.DataFrame:
    dates = pd.bdate_range("2020-01-02", periods=rows)
    frame = pd.DataFrame(
        {
            "Date": dates.strftime("%Y-%m-%d"),
            "Open": 100.0,
            "High": 101.0,
            "Low": 99.0,
            "Close": 100.5,
            "Volume": 1000,
        }
    )
    if symbol:
        frame.insert(1, "Ticker", symbol)
    if path.suffix == ".parquet":
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return frame


def test_bundled_spx_is_the_real_arch_series() -> None:
    spx = load_bundled("SPX")
    assert spx.source == "bundled" and spx.origin == "arch.data.sp500"
    assert (str(spx.first_date.date()), str(spx.last_date.date())) == ("1999-01-04", "2018-12-31")
    assert len(spx.bars) == 5031
    # A fact about the real market: the S&P 500 closed at 903.25 on 2008-12-31 (Yahoo ^GSPC).
    assert spx.bars.loc["2008-12-31", "close"] == pytest.approx(903.25, abs=0.01)


def test_bundled_aliases_and_other_series() -> None:
    assert load_spec("^GSPC").symbol == "SPX"
    nasdaq = load_spec("bundled:NASDAQ")
    assert len(nasdaq.bars) == 5031
    vix = load_bundled("VIX")
    assert list(vix.bars.columns) == ["close"]
    assert str(vix.first_date.date()) == "2014-01-03"
    assert vix.notes and "holidays" in vix.notes[0]
    assert vix.bars["close"].notna().all()


def test_unknown_bundled_symbol_lists_choices() -> None:
    with pytest.raises(DataError, match="unknown symbol 'AAPL'.*SPX, NASDAQ, VIX"):
        load_bundled("AAPL")


def test_csv_file_round_trip(tmp_path) -> None:
    path = tmp_path / "XYZ.csv"
    _write_bars(path)
    market = load_bars("csv", path=path)
    assert market.symbol == "XYZ" and market.source == "csv" and market.origin == str(path)
    assert list(market.bars.columns) == ["open", "high", "low", "close", "volume"]
    assert market.bars.index.name == "date" and len(market.bars) == 5


def test_parquet_and_folder(tmp_path) -> None:
    _write_bars(tmp_path / "AAA.parquet")
    _write_bars(tmp_path / "BBB.csv", rows=7)
    assert len(load_bars("csv", symbol="BBB", path=tmp_path).bars) == 7
    assert load_bars("csv", symbol="aaa", path=tmp_path).symbol == "AAA"
    with pytest.raises(DataError, match="holds 2 files.*--symbol"):
        load_bars("csv", path=tmp_path)


def test_multi_symbol_file_needs_a_symbol_and_keeps_file_lines(tmp_path) -> None:
    path = tmp_path / "many.csv"
    first = _write_bars(tmp_path / "a.csv", rows=3, symbol="AAA")
    second = _write_bars(tmp_path / "b.csv", rows=3, symbol="BBB")
    second.loc[1, "Low"] = 200.0  # high < low on the 2nd BBB row = file line 6
    pd.concat([first, second]).to_csv(path, index=False)
    assert len(load_spec(f"csv:{path}#AAA").bars) == 3
    with pytest.raises(DataError, match="holds 2 symbols"):
        load_spec(f"csv:{path}")
    with pytest.raises(DataError, match=r"line 6 .*high 101 < low 200"):
        load_spec(f"csv:{path}#BBB")


def test_shared_yahoo_dow30_file(shared_data) -> None:
    market = load_spec(f"csv:{shared_data}/equities/dow30_daily_yahoo_2000_2024.csv.gz#AAPL")
    assert len(market.bars) == 6084
    assert "adj_close" in market.bars.columns


def test_synthetic_only_when_asked_and_labelled() -> None:
    market = load_spec("synthetic:gbm")
    assert market.source == "synthetic"
    assert "SIMULATED" in market.notes[0]
    again = load_bars("synthetic", symbol="gbm", seed=0)
    pd.testing.assert_frame_equal(market.bars, again.bars)
    assert not market.bars.equals(load_bars("synthetic", symbol="gbm", seed=1).bars)


def test_missing_csv_is_an_error_not_a_fallback(tmp_path) -> None:
    with pytest.raises(DataError, match="no such file"):
        load_bars("csv", path=tmp_path / "missing.csv")


def test_spec_parsing() -> None:
    assert parse_spec("csv:/a/b.csv") == ("csv", "/a/b.csv")
    assert parse_spec("SPX") == ("bundled", "SPX")
    with pytest.raises(DataError, match="unknown source 'yahoo'"):
        parse_spec("yahoo:SPY")


def test_splits_cover_the_bundled_data_without_overlap() -> None:
    spx = load_bundled("SPX")
    summaries = describe_splits(spx, Config().data.splits)
    assert [s.rows for s in summaries] == [3521, 756, 754]
    assert sum(s.rows for s in summaries) == len(spx.bars)
    train = split_bars(spx, Config().data.splits, "train")
    test = split_bars(spx, Config().data.splits, "test")
    assert train.index.max() < test.index.min()


def test_empty_split_names_the_config_key() -> None:
    with pytest.raises(DataError, match="data.splits.train"):
        split_bars(load_bundled("VIX"), Config().data.splits, "train")
