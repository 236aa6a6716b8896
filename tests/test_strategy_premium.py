"""The put-write / buy-write walk of benchmarks/strategy_premium.py on the model's SPX market."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import strategy_premium as sp


@pytest.fixture(scope="module")
def market():
    return sp.build_market()


@pytest.fixture(scope="module")
def puts(market) -> pd.DataFrame:
    return sp.put_write(market, 2010, 2010)


def test_one_roll_a_month_on_third_fridays(puts):
    assert len(puts) == 12
    assert list(puts["sale"].dt.month) == list(range(1, 13))
    # third Friday, or the Thursday before it when the exchange is closed that Friday
    assert puts["sale"].dt.day_of_week.isin([3, 4]).all()
    assert puts["sale"].dt.day.between(14, 21).all()
    assert (puts["expiry"] > puts["sale"]).all()
    assert puts["days"].isin([28.0, 35.0]).all()  # one month: four or five weeks
    assert puts["settled"].all()


def test_collateral_strike_and_premium(puts):
    assert np.array_equal(puts["collateral"], puts["strike"])
    # CBOE PUT: the strike at or just below the index, on the 5-point grid
    assert (puts["strike"] <= puts["spot"]).all()
    assert (puts["spot"] - puts["strike"] < sp.SPX_STRIKE_STEP).all()
    assert (puts["premium_yield"] > 0).all()
    assert (puts["premium_yield"] < 0.05).all()


def test_payoff_is_the_sellers_liability(puts):
    assert (puts["payoff"] >= 0).all()
    intrinsic = np.maximum(puts["strike"] - puts["settle"], 0.0)
    np.testing.assert_allclose(puts["payoff"], intrinsic, atol=1e-9)
    np.testing.assert_allclose(
        puts["net_yield"], (puts["premium"] - puts["payoff"]) / puts["strike"]
    )


def test_bid_is_below_mid(market, puts):
    at_bid = sp.put_write(market, 2010, 2010, price="bid")
    assert (at_bid["premium"] <= puts["premium"]).all()
    assert (at_bid["premium"] < puts["premium"]).any()


def test_tbill_excess_uses_the_days_rate(market, puts):
    rate = market.levels.rate
    np.testing.assert_allclose(puts["tbill"], np.exp(puts["rate"] * puts["days"] / 365.0) - 1.0)
    np.testing.assert_allclose(puts["rate"], rate[puts["d0"]])
    bumped = sp.put_write(market, 2010, 2010, rate=rate + 0.01)
    tbill = np.exp((rate[puts["d0"]] + 0.01) * puts["days"] / 365.0) - 1.0
    np.testing.assert_allclose(bumped["tbill"], tbill)
    # collateral and premium both earn the higher rate; the excess gains only the premium's part
    np.testing.assert_allclose(
        bumped["excess"] - puts["excess"],
        puts["premium"] * (bumped["tbill"] - puts["tbill"]) / puts["strike"],
    )
    assert (bumped["excess"] > puts["excess"]).all()
    np.testing.assert_allclose(bumped["total"], bumped["tbill"] + bumped["excess"])


def test_daily_values_compound_the_rolls(market):
    values = sp.daily_values(market, "put-write", 2010, 2010)
    rolls = sp.put_write(market, 2009, 2010)
    rolls = rolls[rolls["sale"] >= "2009-12-01"]
    growth = np.cumprod(1.0 + rolls["total"].to_numpy())
    np.testing.assert_allclose(values.loc[rolls["expiry"]].to_numpy(), growth, rtol=1e-10)
    table = sp.by_year(sp.put_write(market, 2010, 2010), values)
    assert table.loc[2010, "rolls"] == 12
    assert np.isfinite(table.loc[2010, "calendar_year_return_pct"])


def test_buy_write_sells_the_call_at_or_above_spot(market):
    calls = sp.buy_write(market, 2010, 2010)
    assert len(calls) == 12
    assert (calls["strike"] >= calls["spot"]).all()
    assert (calls["strike"] - calls["spot"] < sp.SPX_STRIKE_STEP).all()
    assert ((calls["premium_yield"] > 0) & (calls["premium_yield"] < 0.05)).all()
    assert (calls["payoff"] >= 0).all()
    # BXM return on the cost S0 - C0, the index with its dividends reinvested; above the
    # strike the gain is capped at K
    grown = calls["settle"] * np.exp(market.config.dividend_yield * calls["days"] / 365.0)
    cost = calls["spot"] - calls["premium"]
    np.testing.assert_allclose(calls["total"], (grown - calls["payoff"]) / cost - 1.0)
    rallied = calls["settle"] > calls["strike"]
    assert rallied.any()
    capped = (grown - calls["settle"] + calls["strike"]) / cost - 1.0
    np.testing.assert_allclose(calls.loc[rallied, "total"], capped[rallied])
