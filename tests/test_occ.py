"""OCC / OSI option symbols are parsed by position from the right, never by substring tests."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from clstm_ppo.data.occ import OccSymbol, parse_occ, parse_occ_many
from clstm_ppo.errors import DataError


@pytest.mark.parametrize(
    ("symbol", "root", "expiry", "right", "strike"),
    [
        ("AAPL240119C00190000", "AAPL", dt.date(2024, 1, 19), "C", 190.0),
        ("C240119P00050000", "C", dt.date(2024, 1, 19), "P", 50.0),  # Citigroup: root is "C"
        ("C240119C00047500", "C", dt.date(2024, 1, 19), "C", 47.5),
        ("CPB240315P00042500", "CPB", dt.date(2024, 3, 15), "P", 42.5),
        ("PCG240621C00017000", "PCG", dt.date(2024, 6, 21), "C", 17.0),
        ("PEP250620P00155500", "PEP", dt.date(2025, 6, 20), "P", 155.5),
        ("SPXW240119C04700000", "SPXW", dt.date(2024, 1, 19), "C", 4700.0),
        ("SPXW  240119C04700000", "SPXW", dt.date(2024, 1, 19), "C", 4700.0),  # OSI padded
        ("C     240119P00050000", "C", dt.date(2024, 1, 19), "P", 50.0),
        ("AAPL1240119C00190000", "AAPL1", dt.date(2024, 1, 19), "C", 190.0),  # adjusted root
        ("BRKB261218C00500000", "BRKB", dt.date(2026, 12, 18), "C", 500.0),
        ("GOOGL240119P00001500", "GOOGL", dt.date(2024, 1, 19), "P", 1.5),
        ("SPY991231C00001000", "SPY", dt.date(2099, 12, 31), "C", 1.0),  # yy is always 20yy
    ],
)
def test_parse_occ_fields(
    symbol: str, root: str, expiry: dt.date, right: str, strike: float
) -> None:
    parsed = parse_occ(symbol)
    assert parsed == OccSymbol(root=root, expiry=expiry, right=right, strike=strike)


@pytest.mark.parametrize(
    "symbol",
    [
        "AAPL240119C00190000",
        "C240119P00050000",
        "CPB240315P00042500",
        "PCG240621C00017000",
        "PEP250620P00155500",
        "SPXW240119C04700000",
        "AAPL1240119C00190000",
        "SPY240621C00540500",
    ],
)
def test_round_trip_compact_and_osi(symbol: str) -> None:
    parsed = parse_occ(symbol)
    assert parsed.format() == symbol
    assert str(parsed) == symbol
    osi = parsed.format_osi()
    assert len(osi) == 21
    assert parse_occ(osi) == parsed


def test_osi_input_formats_compact() -> None:
    assert parse_occ("SPXW  240119C04700000").format() == "SPXW240119C04700000"


@pytest.mark.parametrize(
    ("symbol", "problem"),
    [
        ("AAPL240230C00190000", "expiry '240230' is not a valid yymmdd date"),
        ("AAPL241301C00190000", "expiry '241301' is not a valid yymmdd date"),
        ("AAPL240119X00190000", "right 'X'"),
        ("AAPL240119c00190000", "right 'c'"),
        ("AAPL240119C0019000", "right '9' at position 10"),  # strike digit short: shifted
        ("AAPL240119C001900AB", "strike '001900AB' must be eight digits"),
        ("240119C00190000", "length 15"),  # no root
        ("TOOLONG240119C00190000", "length 22"),  # 7-character root
        ("AAPL240119C00190000X", "right"),  # trailing junk shifts the layout
        ("aapl240119C00190000", "root 'aapl'"),
        ("AB  240119C00100000", "padded to exactly 6"),  # padding but not 21 chars
        ("A B   240119C00100000", "padded to exactly 6"),  # space inside the root
        ("AAPL240119C00000000", "strike is zero"),
        ("AAPL24011AC00190000", "expiry"),
        ("", "length 0"),
    ],
)
def test_malformed_symbols_raise_one_line(symbol: str, problem: str) -> None:
    with pytest.raises(DataError) as info:
        parse_occ(symbol)
    message = str(info.value)
    assert repr(symbol) in message
    assert problem in message
    assert "\n" not in message


def test_non_string_rejected() -> None:
    with pytest.raises(DataError, match="must be a string"):
        parse_occ(12345)  # type: ignore[arg-type]


def test_occ_symbol_constructor_rejects_bad_fields() -> None:
    with pytest.raises(DataError, match="right"):
        OccSymbol("SPY", dt.date(2024, 1, 19), "X", 100.0)  # type: ignore[arg-type]
    with pytest.raises(DataError, match="strike"):
        OccSymbol("SPY", dt.date(2024, 1, 19), "C", 100.0005)
    with pytest.raises(DataError, match="root"):
        OccSymbol("TOOLONG", dt.date(2024, 1, 19), "C", 100.0)


def test_parse_many_matches_scalar_parser() -> None:
    symbols = [
        "C240119P00050000",
        "SPXW  240119C04700000",
        "PCG240621C00017000",
        "AAPL1240119C00190000",
        "PEP250620P00155500",
    ]
    frame = parse_occ_many(symbols)
    assert list(frame.columns) == ["symbol", "root", "expiry", "right", "strike"]
    assert frame["symbol"].tolist() == symbols
    for row, symbol in zip(frame.itertuples(index=False), symbols, strict=True):
        parsed = parse_occ(symbol)
        assert row.root == parsed.root
        assert row.expiry == pd.Timestamp(parsed.expiry)
        assert row.right == parsed.right
        assert row.strike == parsed.strike
    assert pd.api.types.is_datetime64_dtype(frame["expiry"])
    assert frame["expiry"].dt.tz is None


def test_parse_many_names_first_bad_symbol() -> None:
    with pytest.raises(DataError, match=r"'SPY240230C00470000': expiry '240230'"):
        parse_occ_many(["SPY240119C00470000", "SPY240230C00470000", "SPY240119Q00470000"])
    with pytest.raises(DataError, match="padded to exactly 6"):
        parse_occ_many(["SPY240119C00470000", "AB  240119C00100000"])


def test_parse_many_empty() -> None:
    frame = parse_occ_many([])
    assert frame.empty
    assert list(frame.columns) == ["symbol", "root", "expiry", "right", "strike"]
