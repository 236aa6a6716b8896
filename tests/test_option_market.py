"""Implied-vol surface and modelled chains: realism, consistency, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.bundled import load_bundled
from clstm_ppo.data.calendar import is_trading_day
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError
from clstm_ppo.options.chain import build_option_market, option_market_for_spec, strike_step
from clstm_ppo.options.surface import (
    THIRTY_DAYS,
    atm_from_index,
    atm_term,
    garch_forecast_vol,
)

FAST = MarketConfig(garch_refit_every=63)


def _spx(start: str, end: str) -> MarketData:
    spx = load_bundled("SPX")
    return MarketData("SPX", spx.between(start, end), "bundled", spx.origin)


def _vix(start: str, end: str) -> MarketData:
    vix = load_bundled("VIX")
    return MarketData("VIX", vix.between(start, end), "bundled", vix.origin)


def _perturb_after(market: MarketData, date: str, seed: int) -> MarketData:
    bars = market.bars.copy()
    later = bars.index > pd.Timestamp(date)
    factor = np.random.default_rng(seed).uniform(0.5, 1.5, size=later.sum())
    for column in bars.columns:
        if column != "volume":
            bars.loc[later, column] = bars.loc[later, column].to_numpy() * factor
    return MarketData(market.symbol, bars, market.source, market.origin)


@pytest.fixture(scope="module")
def spx_market():
    return option_market_for_spec("bundled:SPX", "bundled:VIX", MarketConfig())


@pytest.mark.parametrize(
    ("start", "end", "day", "with_vix"),
    [
        ("1999-01-01", "2006-12-31", "2004-06-15", False),
        ("2012-01-01", "2016-12-31", "2015-03-02", True),
    ],
    ids=["garch-era", "vix-era"],
)
def test_no_look_ahead_in_surface_and_chain(start, end, day, with_vix) -> None:
    spx = _spx(start, end)
    vix = _vix(start, end) if with_vix else None
    original = build_option_market(spx, vix, FAST)
    perturbed = build_option_market(
        _perturb_after(spx, day, 1), None if vix is None else _perturb_after(vix, day, 2), FAST
    )
    t = original.day_index(day)
    assert original.levels.vol_30d[t] == perturbed.levels.vol_30d[t]
    pd.testing.assert_frame_equal(original.chain(day), perturbed.chain(day))
    # The perturbation did reach later days, so the comparison above had teeth.
    later = original.dates[t + 30]
    assert not original.chain(later).equals(perturbed.chain(later))


def test_vix_days_use_vix_and_garch_fills_earlier_days(spx_market) -> None:
    levels = spx_market.levels
    day = spx_market.day_index("2016-01-04")
    assert levels.source[day] == "vix"
    vix_close = load_bundled("VIX").bars.loc["2016-01-04", "close"]
    # SSVI: the ATM level at which the model smile's variance swap is VIX (x vix_atm_ratio).
    config = MarketConfig()
    theta = atm_from_index(np.array(vix_close / 100.0), THIRTY_DAYS, levels.rho[day], config)
    assert levels.vol_30d[day] == pytest.approx(np.sqrt(theta / THIRTY_DAYS), rel=1e-12)
    assert levels.vol_30d[day] < vix_close / 100.0 * config.vix_atm_ratio
    early = spx_market.day_index("2008-10-10")
    assert levels.source[early] == "garch"
    assert levels.vol_30d[early] > 0.4  # the October 2008 crash
    assert np.isnan(levels.vol_30d[0])  # no history yet on the first day
    assert spx_market.first_priced_day == MarketConfig().garch_min_history


def test_garch_tracks_the_volatility_regime() -> None:
    closes = load_bundled("SPX").bars["close"]
    forecast, fits = garch_forecast_vol(closes.to_numpy(), FAST)
    assert fits > 50
    series = pd.Series(forecast, index=closes.index)
    assert series["2008-10-01":"2008-12-31"].mean() > 2 * series["2006-01-01":"2006-12-31"].mean()


def test_put_skew_and_term_structure(spx_market) -> None:
    chain = spx_market.chain("2016-01-04")
    month = chain[(chain.expiry == pd.Timestamp("2016-02-19")) & (chain.right == "P")]
    by_strike = month.sort_values("strike")
    assert by_strike.iv.iloc[0] > by_strike.iv.iloc[-1]  # low strikes trade at higher vol
    high, low = np.array([0.45]), np.array([0.11])
    short, long = np.array([7 / 365]), np.array([1.0])
    assert atm_term(high, short, FAST) > atm_term(high, long, FAST)  # inverted in stress
    assert atm_term(low, short, FAST) < atm_term(low, long, FAST)  # upward sloping when calm


def test_chain_quotes_are_consistent(spx_market) -> None:
    chain = spx_market.chain("2016-01-04")
    assert (chain.bid >= 0).all() and (chain.bid <= chain.mid + 1e-9).all()
    assert (chain.mid <= chain.ask + 1e-9).all() and (chain.bid < chain.ask).all()
    assert is_trading_day(pd.DatetimeIndex(chain.expiry.unique())).all()
    assert np.allclose(np.diff(np.sort(chain.strike.unique())), strike_step(2012.66))
    # Put-call parity on the model mids.
    calls = chain[chain.right == "C"].set_index(["expiry", "strike"]).mid
    puts = chain[chain.right == "P"].set_index(["expiry", "strike"]).mid
    frame = pd.DataFrame({"c": calls, "p": puts}).reset_index()
    tau = (frame.expiry - pd.Timestamp("2016-01-04")).dt.days / 365.0
    cfg = spx_market.config
    parity = 2012.660034 * np.exp(-cfg.dividend_yield * tau) - frame.strike * np.exp(
        -cfg.risk_free_rate * tau
    )
    assert np.allclose(frame.c - frame.p, parity, atol=1e-6)


def test_spreads_widen_for_wings_short_dates_and_cheap_options(spx_market) -> None:
    chain = spx_market.chain("2016-01-04")
    chain = chain.assign(rel=(chain.ask - chain.bid) / chain.mid)
    otm_calls = chain[(chain.right == "C") & (chain.strike > chain.underlying_price)]
    month = otm_calls[otm_calls.expiry == pd.Timestamp("2016-02-19")].sort_values("strike")
    near, far = month.iloc[0], month[month.mid > 0.5].iloc[-1]
    assert far.rel > near.rel
    atm = otm_calls.loc[otm_calls.groupby("expiry").strike.idxmin()].set_index("expiry")
    assert atm.rel.iloc[0] > atm.loc[pd.Timestamp("2016-03-18")].rel


def test_quote_is_vectorised_and_settles_at_intrinsic(spx_market) -> None:
    day = spx_market.day_index("2016-01-15")  # a monthly expiration day
    expiry = np.array(["2016-01-15", "2016-01-15", "2016-02-19"], dtype="datetime64[ns]")
    strikes = np.array([1800.0, 2000.0, 1900.0])
    quotes = spx_market.quote(np.full(3, day), strikes, expiry, np.array([True, False, True]))
    spot = spx_market.spot[day]
    assert quotes.mid[0] == pytest.approx(max(spot - 1800, 0))
    assert quotes.mid[1] == pytest.approx(max(2000 - spot, 0))
    assert quotes.days_to_expiry.tolist() == [0.0, 0.0, 35.0]


def test_dates_outside_data_or_before_warmup_are_errors(spx_market) -> None:
    with pytest.raises(DataError, match="not a trading day"):
        spx_market.chain("2016-01-02")
    with pytest.raises(DataError, match="no implied-vol level"):
        spx_market.chain("1999-03-01")
