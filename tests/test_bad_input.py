"""Each kind of bad input is one line on stderr naming the file/key and the rule, exit code 2."""

from __future__ import annotations

import subprocess
import sys

import pytest

from clstm_ppo.cli import main

HEADER = "date,open,high,low,close,volume\n"
GOOD = "2020-01-02,100,101,99,100.5,1000\n"


def _run(argv, capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and "\n" not in err, err
    assert "Traceback" not in err
    return err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "empty file"),
        (HEADER, "no data rows"),
        ("date,open,high,low,volume\n2020-01-02,1,1,1,1\n", "missing required column 'close'"),
        (
            HEADER + GOOD + "2020-01-03,100,101,99,,1000\n",
            "line 3 (2020-01-03): NaN in required column 'close'",
        ),
        (
            HEADER + GOOD + "2020-01-03,100,101,99,-5,1000\n",
            "line 3 (2020-01-03): price 'close' must be positive",
        ),
        (
            HEADER + GOOD + "2020-01-03,100,98,99,100,1000\n",
            "line 3 (2020-01-03): high 98 < low 99",
        ),
        (HEADER + GOOD + GOOD, "line 3: duplicate date 2020-01-02"),
        (
            HEADER + "2020-01-03,100,101,99,100.5,1000\n" + GOOD,
            "line 3: dates not sorted ascending",
        ),
        (
            HEADER + GOOD + "2020-13-45,100,101,99,100.5,1000\n",
            "line 3: cannot parse date '2020-13-45'",
        ),
        (
            HEADER + GOOD + "2020-01-03,100,101,99,100.5,-7\n",
            "line 3 (2020-01-03): volume must be >= 0",
        ),
    ],
    ids=[
        "empty",
        "header-only",
        "missing-column",
        "nan",
        "negative-price",
        "high-below-low",
        "duplicate-date",
        "unsorted",
        "bad-date",
        "negative-volume",
    ],
)
def test_bad_csv(tmp_path, capsys, content, expected) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(content)
    err = _run(["data", "show", "--source", "csv", "--path", str(path)], capsys)
    assert str(path) in err
    assert expected in err


def test_unknown_symbol_in_file(tmp_path, capsys) -> None:
    path = tmp_path / "bars.csv"
    path.write_text("date,ticker,open,high,low,close,volume\n2020-01-02,AAA,1,1,1,1,1\n")
    err = _run(["data", "show", "--source", "csv", "--path", str(path), "--symbol", "ZZZ"], capsys)
    assert "unknown symbol 'ZZZ'" in err and "AAA" in err


def test_unknown_bundled_symbol(capsys) -> None:
    err = _run(["data", "show", "--source", "bundled", "--symbol", "FOO"], capsys)
    assert "unknown symbol 'FOO'" in err


def test_missing_file(tmp_path, capsys) -> None:
    err = _run(["data", "show", "--source", "csv", "--path", str(tmp_path / "nope.csv")], capsys)
    assert "no such file" in err


def test_bad_config_value_flag(capsys) -> None:
    err = _run(["data", "show", "--set", "env.window=-3"], capsys)
    assert "env.window" in err


def test_bad_flag_value(capsys) -> None:
    with pytest.raises(SystemExit) as caught:
        main(["data", "show", "--source", "yahoo"])
    assert caught.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "--source" in err


def test_console_script_reports_one_line(tmp_path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(HEADER + GOOD + "2020-01-03,100,98,99,100,1000\n")
    result = subprocess.run(
        [sys.executable, "-m", "clstm_ppo", "data", "show", "--source", "csv", "--path", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "high 98 < low 99" in result.stderr


QUOTES_HEADER = (
    "symbol,exchange,company_name,date,stock_price_close,option_symbol,option_expiration,"
    "strike,call/put,style,ask,bid,mean_price,settlement,iv,volume,open_interest,"
    "stock_price_for_iv,forward_price,isinterpolated,delta,vega,gamma,theta,rho\n"
)


def _quote_row(bid: float, ask: float) -> str:
    return (
        f"SPX,CBOE,S&P 500,01/03/2011,1271.87,SPX   110122C01275000,01/22/2011,1275,C,E,"
        f"{ask},{bid},{(bid + ask) / 2},0,0.15,10,100,1271.87,1271.6,,0.5,1.2,0.001,-0.3,0.4\n"
    )


def test_crossed_quote_in_a_chain_file(tmp_path, capsys) -> None:
    path = tmp_path / "chain.csv"
    path.write_text(QUOTES_HEADER + _quote_row(20.0, 21.0) + _quote_row(22.5, 21.0))
    err = _run(["data", "chain", "--replay", str(path), "--date", "2011-01-03"], capsys)
    assert str(path) in err and "line 3" in err and "crossed quote" in err


def test_missing_alpaca_keys(tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.delenv("APCA_API_KEY_ID", raising=False)
    monkeypatch.delenv("APCA_API_SECRET_KEY", raising=False)
    argv = ["data", "fetch", "--symbols", "SPY", "--start", "2024-03-01", "--end", "2024-03-08"]
    err = _run([*argv, "--env-file", str(tmp_path / ".env")], capsys)
    assert "APCA_API_KEY_ID" in err


def test_date_outside_the_data(capsys) -> None:
    err = _run(["data", "chain", "--date", "2030-01-02"], capsys)
    assert "2030-01-02" in err and "1999-01-04..2018-12-31" in err
