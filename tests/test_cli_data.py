"""The data subcommands as a user runs them."""

from __future__ import annotations

import json

import pandas as pd

from clstm_ppo.cli import main
from clstm_ppo.data.market import underlying_spec, vix_spec, vol_indices_spec

SPX_2011 = "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz"


def _fails(argv: list[str], capsys) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert err and "\n" not in err and "Traceback" not in err, err
    return err


def test_days_before_arch_vix_are_priced_from_the_shipped_indices(capsys) -> None:
    # arch ships VIX from 2014 only; the package's CBOE/FRED snapshot covers 1990 onwards.
    assert main(["data", "chain", "--date", "2005-10-10", "--expiries", "0"]) == 0
    out = capsys.readouterr().out
    assert "from vix (VIX close)" in out  # VIX only: VIX3M starts in 2009
    assert "rate         0.0361 (tbill)" in out
    argv = ["data", "chain", "--date", "2005-10-10", "--expiries", "0", "--vol-indices", "none"]
    assert main([*argv, "--vix", "none"]) == 0
    out = capsys.readouterr().out
    assert "from garch" in out and "rate         0.0200 (constant)" in out


def test_missing_index_folder_is_a_one_line_error(tmp_path, capsys) -> None:
    argv = ["data", "chain", "--date", "2005-10-10", "--vol-indices", str(tmp_path / "nope")]
    err = _fails(argv, capsys)
    assert "data.vol_indices (--vol-indices)" in err and "does not exist" in err


def test_vol_indices_auto_means_the_sp500_family_only() -> None:
    assert vol_indices_spec("auto", "bundled", "SPX") == "auto"
    assert vol_indices_spec("auto", "csv", "SPY") == "auto"
    assert vol_indices_spec("auto", "alpaca", "spy") == "auto"
    assert vol_indices_spec("auto", "csv", "AAPL") is None
    assert vol_indices_spec("auto", "bundled", "NASDAQ") is None
    assert vol_indices_spec("/my/indices", "csv", "AAPL") == "/my/indices"
    assert vol_indices_spec(None, "bundled", "SPX") is None


def test_compare_prints_the_bucketed_errors_as_json(shared_data, capsys) -> None:
    path = shared_data / SPX_2011
    argv = ["data", "chain", "--compare", str(path), "--json"]
    assert main(argv) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["days"] == [f"2011-01-0{d}" for d in range(3, 8)]
    assert set(result["model"]["atm_source_by_day"].values()) == {"vix_term"}
    buckets = {(b["right"], b["moneyness"], b["dte"]): b for b in result["buckets"]}
    assert ("P", "-0.05..-0.03", "10..45") in buckets and (
        "C",
        "+0.03..+0.05",
        "45..120",
    ) in buckets
    assert all(b["moneyness"] != "+0.01..+0.03" or b["right"] == "C" for b in result["buckets"])
    near = result["near_money"]
    assert near["n"] > 100
    assert near["median_abs_pct_error_mid"] < 3.0  # measured 0.95% (issue 13 target: 5%)
    assert set(near) == {
        "n", "median_abs_pct_error_mid", "median_signed_pct_error_mid",
        "median_real_spread", "median_model_spread",
    }  # fmt: skip
    assert main(["data", "chain", "--compare", str(path), "--date", "2011-01-05"]) == 0
    out = capsys.readouterr().out
    assert "1 days" in out and "|K/S-1|<=0.05" in out


def test_compare_refuses_another_underlying(shared_data, capsys) -> None:
    path = shared_data / "options/aapl_chain_ivolatility_2014-08-07.csv"
    err = _fails(["data", "chain", "--compare", str(path)], capsys)
    assert str(path) in err and "94.48" in err and "pass --data" in err


def test_chain_flags_that_need_each_other(capsys) -> None:
    assert "--json: only with --compare" in _fails(["data", "chain", "--json"], capsys)
    assert "--date: required" in _fails(["data", "chain"], capsys)


def test_data_show_prints_range_splits_and_source(capsys) -> None:
    assert main(["data", "show", "--source", "bundled", "--symbol", "SPX"]) == 0
    out = capsys.readouterr().out
    for expected in (
        "symbol",
        "SPX",
        "rows              5031",
        "1999-01-04",
        "2018-12-31",
        "bundled (arch.data.sp500)",
        "split train       1999-01-01..2012-12-31: 3521 rows",
        "split validation  2013-01-01..2015-12-31: 756 rows",
        "split test        2016-01-01..2018-12-31: 754 rows",
    ):
        assert expected in out


def test_data_chain_prices_a_day_from_vix(tmp_path, capsys) -> None:
    output = tmp_path / "chain.csv"
    code = main(["data", "chain", "--date", "2016-01-04", "--output", str(output)])
    assert code == 0
    out = capsys.readouterr().out
    # VIX 20.70 is a variance-swap rate: the SSVI slice's ATM vol sits below it (x 0.944 more);
    # VIX9D, VIX3M, VIX6M and VIX1Y of the day set the rest of the term structure.
    assert "atm 30d iv   0.1705 from vix_term (VIX family)" in out
    assert "rate         0.0016 (tbill)" in out  # DGS3MO 0.16% of 2015-12-31
    assert "expiry 2016-01-08" in out
    chain = pd.read_csv(output)
    assert {"bid", "ask", "strike", "right", "iv", "delta"} <= set(chain.columns)
    assert (chain.bid <= chain.ask).all()


def test_specs_from_config_values() -> None:
    assert underlying_spec("bundled", None, None) == "bundled:SPX"
    assert underlying_spec("csv", "AAPL", "/d/x.csv") == "csv:/d/x.csv#AAPL"
    assert vix_spec("auto", "bundled", None) == "bundled:VIX"
    assert vix_spec("auto", "csv", "AAPL") is None  # VIX is the S&P 500's vol, not AAPL's
    assert vix_spec("csv:/v.csv", "csv", "SPY") == "csv:/v.csv"


def test_data_chain_replays_real_quotes(shared_data, capsys) -> None:
    path = shared_data / "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz"
    assert main(["data", "chain", "--replay", str(path), "--date", "2011-01-03"]) == 0
    out = capsys.readouterr().out
    assert "underlying  1271.87" in out
    assert "recorded quotes" in out
    assert "1936 over" in out  # 1,936 contracts quoted that day
