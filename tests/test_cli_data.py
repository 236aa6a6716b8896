"""The data subcommands as a user runs them."""

from __future__ import annotations

import pandas as pd

from clstm_ppo.cli import main
from clstm_ppo.data.market import underlying_spec, vix_spec


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
    # VIX 20.70 is a variance-swap rate: the SSVI slice's ATM vol sits below it (x 0.944 more)
    assert "atm 30d iv  0.1705 from vix (bundled:VIX)" in out
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
