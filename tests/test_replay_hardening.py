"""Hostile recorded-chain input for ``data chain --replay``: one line on stderr naming the file,
line and column (exit code 2), never a traceback or a hang."""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import pytest

from clstm_ppo.cli import main
from clstm_ppo.errors import DataError
from clstm_ppo.options.replay import ChainReplay, detect_layout, read_chain

HEADER = "symbol,date,stock_price_close,option_symbol,option_expiration,strike,call/put,bid,ask,iv"
HEADER_V = HEADER + ",volume"
BIG = "1" * 400
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")


def _row(strike: str = "100", und: str = "101.5", bid: str = "1.0", ask: str = "1.2") -> str:
    # The OSI symbol only gives the root (all but its last 15 characters): one fits every row.
    return f"XYZ,01/02/2024,{und},XYZ   240119C00100000,01/19/2024,{strike},C,{bid},{ask},0.2"


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


def _replay(path: Path, capsys) -> str:
    """``data chain --replay PATH`` expecting a user error; its single stderr line."""
    code = main(["data", "chain", "--replay", str(path), "--date", "2024-01-02"])
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


@needs_fifo
@pytest.mark.timeout(60)  # a regression would block in open() until a writer appears
def test_fifo_is_refused_before_it_is_opened(tmp_path: Path, capsys) -> None:
    fifo = tmp_path / "chain.csv"
    os.mkfifo(fifo)
    assert f"{fifo}: is not a regular file or folder" in _replay(fifo, capsys)
    link = tmp_path / "link.csv"
    link.symlink_to(fifo)
    assert f"{link}: is not a regular file or folder" in _replay(link, capsys)
    for read in (read_chain, detect_layout):
        with pytest.raises(DataError, match="is not a regular file or folder"):
            read(fifo)


@needs_fifo
@pytest.mark.timeout(60)
def test_fifo_inside_a_folder_is_never_opened(tmp_path: Path, capsys) -> None:
    _write(tmp_path / "a.csv", [HEADER, _row()])
    os.mkfifo(tmp_path / "b.csv")
    code = main(["data", "chain", "--replay", str(tmp_path), "--date", "2024-01-02"])
    assert code == 0, capsys.readouterr().err
    assert "contracts   1 over 1 expiries" in capsys.readouterr().out
    assert list(ChainReplay(tmp_path).layouts) == [tmp_path / "a.csv"]


def test_missing_path_and_folder_given_as_file(tmp_path: Path, capsys) -> None:
    assert f"{tmp_path / 'nope.csv'}: no such file or folder" in _replay(
        tmp_path / "nope.csv", capsys
    )
    with pytest.raises(DataError, match="is a folder, not an option-chain file"):
        read_chain(tmp_path)


@pytest.mark.parametrize(
    ("row", "column"),
    [
        (_row(strike=BIG), "strike"),
        (_row(und=BIG), "stock_price_close"),
        (_row(bid=BIG, ask=BIG + "0"), "bid"),
        (_row(und="-" + BIG), "stock_price_close"),
        (_row(und="1e400"), "stock_price_close"),
        (_row(ask="inf"), "ask"),
    ],
    ids=["strike", "underlying", "bid", "negative", "exponent", "inf"],
)
def test_oversized_number_names_file_line_and_column(
    tmp_path: Path, capsys, row: str, column: str
) -> None:
    path = _write(tmp_path / "chain.csv", [HEADER, _row("105"), row])
    err = _replay(path, capsys)
    assert f"{path}: line 3: column '{column}': " in err
    assert "is not a finite number (rule: every numeric value must be finite)" in err
    assert BIG not in err  # shortened: the line stays readable


def test_oversized_optional_column(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "chain.csv", [HEADER_V, _row() + f",{BIG}"])
    assert f"{path}: line 2: column 'volume': 1111" in _replay(path, capsys)


def test_damaged_gzip_is_one_line(tmp_path: Path, capsys) -> None:
    data = gzip.compress(("\n".join([HEADER, *[_row(str(k)) for k in range(90, 200)]])).encode())
    damaged = data[:30] + bytes(b ^ 0xFF for b in data[30:60]) + data[60:]
    path = tmp_path / "chain.csv.gz"
    path.write_bytes(damaged)
    assert f"{path}: cannot read as CSV (" in _replay(path, capsys)
    path.write_bytes(data[: len(data) // 2])
    assert f"{path}: cannot read as CSV (" in _replay(path, capsys)


def test_header_only_file_is_one_line(tmp_path: Path, capsys) -> None:
    path = _write(tmp_path / "chain.csv", [HEADER, ""])
    assert _replay(path, capsys).endswith(f"{path}: no data rows after the header")


def test_blank_symbol_is_left_out_of_the_underlyings(tmp_path: Path) -> None:
    path = _write(tmp_path / "chain.csv", [HEADER, _row(), _row("105").replace("XYZ,", ",", 1)])
    assert ChainReplay(path).underlyings() == ["XYZ"]


def test_unlistable_folder_is_one_line(tmp_path: Path, capsys, monkeypatch) -> None:
    """A folder without read permission (chmod cannot show it when the tests run as root)."""
    _write(tmp_path / "a.csv", [HEADER, _row()])

    def refuse(self: Path):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    assert f"{tmp_path}: cannot list the folder (Permission denied)" in _replay(tmp_path, capsys)
