"""Replay of recorded EOD option chains: the real files in ../shared/data and bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from clstm_ppo.data.frames import QUOTE_COLUMNS
from clstm_ppo.errors import DataError
from clstm_ppo.options import replay
from clstm_ppo.options.replay import ChainReplay, detect_layout, read_chain, read_lean_quote_bars

SPX = "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz"
AAPL = "options/aapl_chain_ivolatility_2014-08-07.csv"
VXX = "options/vxx_chain_2016-12.csv.gz"
AGILENT = "options/a_agilent_chain_2016-01-05.csv"
VIX = "options/vix_options_cboe_eod_2016-06-01.csv"
LEAN = "options/lean_aapl_option_daily_bars_2014-06.csv.gz"
ORDER = ["date", "expiry", "right", "strike", "root"]


@pytest.fixture(scope="module")
def aapl_bars(shared_data: Path) -> pd.DataFrame:
    """Lean's raw (unsplit) AAPL closes, matching the raw strikes of Lean's option files."""
    bars = pd.read_csv(shared_data / "equities/lean_equity_daily_raw_1998_2021.csv.gz")
    bars = bars[bars["ticker"] == "AAPL"]
    return bars.set_index(pd.DatetimeIndex(bars["date"], name="date"))[["close"]]


def _check(frame: pd.DataFrame) -> None:
    """Schema and sanity rules every real chain must meet."""
    assert list(frame.columns[: len(QUOTE_COLUMNS)]) == list(QUOTE_COLUMNS)
    assert (frame["bid"] <= frame["ask"]).all()
    assert (frame["bid"] >= 0).all()
    assert (frame["strike"] > 0).all()
    assert (frame["expiry"] >= frame["date"]).all()
    assert frame["date"].dtype == "datetime64[ns]"
    for _, day in frame.groupby("date"):
        assert set(day["right"]) == {"C", "P"}
    assert frame.equals(frame.sort_values(ORDER).reset_index(drop=True))
    if "iv" in frame:
        assert not (frame["iv"] <= replay.IV_PLACEHOLDER_MAX).any()


def _per_day(frame: pd.DataFrame) -> dict[str, int]:
    return {str(d.date()): n for d, n in frame.groupby("date").size().items()}


def test_spx_ivolatility_five_days(shared_data: Path) -> None:
    frame = read_chain(shared_data / SPX)
    _check(frame)
    assert len(frame) == 9832
    assert _per_day(frame) == {
        "2011-01-03": 1936,
        "2011-01-04": 1942,
        "2011-01-05": 1942,
        "2011-01-06": 2006,
        "2011-01-07": 2006,
    }
    first = frame[frame["date"] == "2011-01-03"]
    assert first["underlying_price"].unique().tolist() == [1271.87]
    assert set(frame["root"]) == {"SPX", "SPXW", "SPXPM"}
    assert set(frame["symbol"]) == {"SPX"}
    assert frame["iv"].isna().sum() == 216  # iVolatility's -1 placeholder
    assert frame.loc[frame["iv"].isna(), "delta"].isna().all()
    assert ((frame["bid"] == 0) & (frame["ask"] == 0)).sum() == 1  # kept: no market


def test_aapl_ivolatility_single_digit_dates(shared_data: Path) -> None:
    frame = read_chain(shared_data / AAPL)
    _check(frame)
    assert _per_day(frame) == {"2014-08-07": 1822}
    assert frame["underlying_price"].unique().tolist() == [94.48]
    assert frame["expiry"].max() == pd.Timestamp("2016-01-15")
    assert (frame["right"] == "C").sum() == 911


def test_vxx_historicaloptiondata_with_bom(shared_data: Path) -> None:
    frame = read_chain(shared_data / VXX)
    _check(frame)
    assert len(frame) == 27940
    days = _per_day(frame)
    assert len(days) == 20 and "2016-12-08" not in days
    assert days["2016-12-01"] == 1472
    assert set(frame["symbol"]) == {"VXX"}
    assert frame.groupby("date")["underlying_price"].first().iloc[0] == pytest.approx(28.95)
    assert frame["iv"].isna().sum() == 311  # 310 x 0.01 and one 0.0 placeholder


def test_agilent_deltaneutral(shared_data: Path) -> None:
    frame = read_chain(shared_data / AGILENT)
    _check(frame)
    assert _per_day(frame) == {"2016-01-05": 208}
    assert frame["underlying_price"].unique().tolist() == [40.55]
    assert set(frame["symbol"]) == {"A"}
    assert frame["iv"].notna().all()


def test_vix_cboe_eod_underlying_is_spot_index_mid(shared_data: Path) -> None:
    frame = read_chain(shared_data / VIX)
    _check(frame)
    assert _per_day(frame) == {"2016-06-01": 882}
    assert set(frame["symbol"]) == {"VIX"}
    assert frame["underlying_price"].unique().tolist() == [14.65]
    assert frame.attrs["layout"] == "cboe_eod"
    # The BVZ root repeats 158 VIX contracts, all without a market; the root keeps them apart.
    assert frame["root"].value_counts().to_dict() == {"VIX": 724, "BVZ": 158}
    assert ((frame["bid"] == 0) & (frame["ask"] == 0)).sum() == 234


def test_lean_quote_bars_need_and_use_underlying(shared_data: Path, aapl_bars) -> None:
    with pytest.raises(DataError, match="no underlying price"):
        read_chain(shared_data / LEAN)
    frame = read_lean_quote_bars(shared_data / LEAN, aapl_bars)
    _check(frame)
    assert _per_day(frame) == {"2014-06-06": 2195, "2014-06-09": 1982}
    closes = frame.groupby("date")["underlying_price"].first()
    assert closes.tolist() == [645.57, 93.70]  # the 7:1 split; strikes are raw too
    assert frame.loc[frame["date"] == "2014-06-09", "strike"].median() < 100
    with pytest.raises(DataError, match=r"no close for AAPL on 2014-06-09"):
        read_lean_quote_bars(shared_data / LEAN, {"AAPL": aapl_bars.loc[:"2014-06-06"]})


@pytest.mark.parametrize(
    ("name", "layout"),
    [
        (SPX, "ivolatility"),
        (AAPL, "ivolatility"),
        (VXX, "historicaloptiondata"),
        (AGILENT, "deltaneutral"),
        (VIX, "cboe_eod"),
        (LEAN, "lean_quote_bars"),
    ],
)
def test_detect_layout(shared_data: Path, name: str, layout: str) -> None:
    assert detect_layout(shared_data / name) == layout


@pytest.mark.parametrize(
    "name",
    ["options/lean_option_universes_daily.csv.gz", "options/spy_option_mid_dolthub_2024-07.csv"],
)
def test_files_without_bid_ask_are_unknown_layouts(shared_data: Path, name: str) -> None:
    with pytest.raises(DataError, match=r"unknown option-chain layout.*iVolatility.*CBOE"):
        read_chain(shared_data / name)


def test_replay_of_the_real_folder_is_lazy(shared_data: Path, aapl_bars, monkeypatch) -> None:
    loaded: list[str] = []
    real_read = replay._read
    monkeypatch.setattr(
        replay, "_read", lambda path, *a: loaded.append(Path(path).name) or real_read(path, *a)
    )
    with pytest.raises(DataError, match="Lean quote bars need `underlying`"):
        ChainReplay(shared_data / "options")
    with pytest.raises(DataError, match="unknown option-chain layout"):
        ChainReplay(shared_data / "options", underlying=aapl_bars)
    chains = ChainReplay(shared_data / "options", underlying=aapl_bars, skip_unknown=True)
    assert len(chains.skipped) == 2
    dates = chains.dates()
    assert len(dates) == 5 + 1 + 20 + 1 + 1 + 2
    assert chains.underlyings() == ["A", "AAPL", "SPX", "VIX", "VXX"]
    assert loaded == []
    day = chains.chain("2016-12-09")
    assert len(day) == 1408 and loaded == [Path(VXX).name]
    assert len(chains.chain(pd.Timestamp("2016-12-12"))) == 1436 and len(loaded) == 1
    assert len(chains.chain("2014-06-09")) == 1982
    assert chains.dropped_crossed[shared_data / VXX] == 0
    with pytest.raises(DataError, match=r"2016-12-08.*2011-01-03 to 2016-12-30.*2016-12-07"):
        chains.chain("2016-12-08")


# --- bad input ------------------------------------------------------------------------------

HEADER = "symbol,date,stock_price_close,option_symbol,option_expiration,strike,call/put,bid,ask"


def _row(strike: float = 100, right: str = "C", bid: float = 1.0, ask: float = 1.2) -> str:
    osi = f"XYZ   240119{right}{int(strike * 1000):08d}"
    return f"XYZ,01/02/2024,101.5,{osi},01/19/2024,{strike},{right},{bid},{ask}"


def _write(tmp_path: Path, lines: list[str], name: str = "chain.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n")
    return path


def test_synthetic_file_reads(tmp_path: Path) -> None:
    frame = read_chain(_write(tmp_path, [HEADER, _row(105, "P"), _row(100), _row(100, "P")]))
    assert frame[["strike", "right"]].values.tolist() == [[100, "C"], [100, "P"], [105, "P"]]
    assert frame["root"].unique().tolist() == ["XYZ"]


def test_empty_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"chain\.csv: empty file"):
        read_chain(_write(tmp_path, []))
    with pytest.raises(DataError, match="no data rows"):
        read_chain(_write(tmp_path, [HEADER]))


def test_missing_column(tmp_path: Path) -> None:
    header = HEADER.replace(",bid", "")
    rows = [",".join(r.split(",")[:7] + r.split(",")[8:]) for r in [_row()]]
    with pytest.raises(DataError, match=r"chain\.csv: line 1: missing column 'bid'"):
        read_chain(_write(tmp_path, [header, *rows]))


def test_crossed_quote_names_its_line(tmp_path: Path) -> None:
    lines = [HEADER, _row(100), "", _row(105, bid=2.0, ask=1.5), _row(110)]
    path = _write(tmp_path, lines)
    with pytest.raises(DataError, match=r"chain\.csv: line 4: crossed quote, bid 2 > ask 1\.5"):
        read_chain(path)
    frame = read_chain(path, drop_crossed=True)
    assert len(frame) == 2 and frame.attrs["dropped_crossed"] == 1
    chains = ChainReplay(path, drop_crossed=True)
    assert len(chains.chain("2024-01-02")) == 2
    assert chains.dropped_crossed == {path: 1}


def test_unknown_layout(tmp_path: Path) -> None:
    path = _write(tmp_path, ["a,b,c", "1,2,3"])
    with pytest.raises(DataError, match=r"chain\.csv: unknown option-chain layout") as info:
        read_chain(path)
    for label in ("iVolatility", "HistoricalOptionData", "DeltaNeutral", "CBOE", "Lean"):
        assert label in str(info.value)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (_row().replace("01/02/2024", "13/45/2024"), r"line 3: column 'date': cannot parse date"),
        (_row().replace(",101.5,", ",abc,"), r"line 3: column 'stock_price_close': cannot parse"),
        (_row(right="X"), r"line 3: right must be 'C' or 'P'"),
        (_row(), r"line 3: contract XYZ 2024-01-19 100C already quoted"),
        (_row().replace("01/19/2024", "12/29/2023"), r"line 3: expiry before quote date"),
    ],
)
def test_bad_rows_name_their_line(tmp_path: Path, bad: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_chain(_write(tmp_path, [HEADER, _row(), bad]))


def test_replay_folder_errors(tmp_path: Path) -> None:
    _write(tmp_path, [HEADER, _row(), _row(105)], "a.csv")
    _write(tmp_path, [HEADER, _row(105)], "b.csv")
    chains = ChainReplay(tmp_path)
    assert chains.dates() == [pd.Timestamp("2024-01-02")]
    with pytest.raises(DataError, match=r"2024-01-02: contract XYZ 2024-01-19 105C .*twice"):
        chains.chain("2024-01-02")
    with pytest.raises(DataError, match="cannot parse date 'soon'"):
        chains.chain("soon")
    _write(tmp_path, ["a,b", "1,2"], "c.csv")
    with pytest.raises(DataError, match=r"c\.csv: unknown option-chain layout"):
        ChainReplay(tmp_path)
    assert list(ChainReplay(tmp_path, skip_unknown=True).skipped) == [tmp_path / "c.csv"]
    with pytest.raises(DataError, match="no such file"):
        ChainReplay(tmp_path / "nope")
    assert chains.underlyings() == ["XYZ"]
