"""The model beside recorded quotes: contracts priced the same way, errors in the right buckets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clstm_ppo.config import MarketConfig
from clstm_ppo.errors import DataError
from clstm_ppo.options.chain import option_market_for_spec
from clstm_ppo.options.compare import bucket_errors, buckets_table, price_recorded
from clstm_ppo.options.replay import read_chain

DAY = "2016-03-01"


@pytest.fixture(scope="module")
def market():
    return option_market_for_spec("bundled:SPX", "bundled:VIX", MarketConfig())


def _recorded(market, scale: float = 1.0) -> pd.DataFrame:
    """The model's own chain of DAY as if it had been recorded, mids scaled by ``scale``."""
    chain = market.chain(DAY)
    half = (chain["ask"] - chain["bid"]) / 2.0
    mid = chain["mid"] * scale
    return chain.assign(bid=mid - half, ask=mid + half)[
        ["date", "expiry", "strike", "right", "bid", "ask", "underlying_price"]
    ]


def test_the_model_against_itself_has_no_error(market) -> None:
    result = bucket_errors(price_recorded(_recorded(market), market))
    assert result["buckets"], "no bucket filled"
    for bucket in result["buckets"]:
        assert bucket["median_abs_pct_error_mid"] == pytest.approx(0.0, abs=1e-9)
        assert bucket["median_real_spread"] == pytest.approx(bucket["median_model_spread"])
    assert result["near_money"]["n"] > 0


def test_errors_carry_sign_and_land_in_the_right_buckets(market) -> None:
    recorded = _recorded(market, scale=1.25)  # the real market 25% dearer than the model
    result = bucket_errors(price_recorded(recorded, market))
    for bucket in result["buckets"]:
        # model / real - 1 = 1 / 1.25 - 1 = -20%, wherever the mid is two-sided after scaling
        assert bucket["median_signed_pct_error_mid"] == pytest.approx(-20.0, abs=1e-6)
    wings = {(b["right"], b["moneyness"]) for b in result["buckets"]}
    assert ("P", "-0.05..-0.03") in wings and ("C", "+0.03..+0.05") in wings
    assert ("C", "-0.05..-0.03") not in wings and ("P", "+0.01..+0.03") not in wings
    assert {("P", "-0.01..+0.01"), ("C", "-0.01..+0.01")} <= wings
    labels = {b["dte"] for b in result["buckets"]}
    assert labels <= {"0..10", "10..45", "45..120"}
    # Counted once each: every compared contract within 5% and 120 days is in one bucket.
    priced = price_recorded(recorded, market)
    inside = priced[priced.moneyness.ge(-0.05) & priced.moneyness.lt(0.05) & priced.dte.lt(120)]
    otm_or_atm = inside[
        inside.moneyness.between(-0.01, 0.01, inclusive="left")
        | ((inside.right == "P") & (inside.moneyness < -0.01))
        | ((inside.right == "C") & (inside.moneyness >= 0.01))
    ]
    assert sum(b["n"] for b in result["buckets"]) == len(otm_or_atm)
    table = buckets_table(result)
    assert list(table["right"])[-1] == "both" and len(table) == len(result["buckets"]) + 1


def test_a_quote_day_outside_the_data_is_one_line(market) -> None:
    recorded = _recorded(market).assign(date=pd.Timestamp("2030-01-02"))
    with pytest.raises(DataError, match="2030-01-02"):
        price_recorded(recorded, market)


@pytest.mark.shared_data
def test_the_real_spx_chain_is_compared(shared_data) -> None:
    real = read_chain(shared_data / "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz")
    market = option_market_for_spec("bundled:SPX", None, MarketConfig())
    priced = price_recorded(real, market)
    result = bucket_errors(priced)
    assert result["near_money"]["n"] > 100
    # SPX's own close and the file's underlying agree: moneyness means the same contracts.
    spot = market.spot[[market.day_index(d) for d in priced.date.unique()]]
    recorded = priced.groupby("date").underlying_price.first().to_numpy()
    np.testing.assert_allclose(spot, recorded, rtol=2e-3)
