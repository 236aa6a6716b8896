"""SSVI surface: static no-arbitrage, the index term structure, fallbacks, rates and references."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.special import ndtr
from vollib.black_scholes_merton import black_scholes_merton as vl_price

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.bundled import load_bundled
from clstm_ppo.data.market import MarketData
from clstm_ppo.options.chain import OptionMarket, build_option_market
from clstm_ppo.options.surface import (
    TENORS,
    SurfaceInputs,
    atm_from_index,
    skew_rho,
    ssvi_phi,
    ssvi_total_variance,
)

SSVI = MarketConfig(smile_model="ssvi", garch_min_history=100, garch_refit_every=1000)
# Far outside the fitted values: the uncapped power law has butterfly arbitrage on every regime
# day here (negative butterflies in the grid below), so only the phi cap keeps these prices sane.
EXTREME = SSVI.model_copy(update={"ssvi_eta": 4.0, "ssvi_gamma": 0.5, "ssvi_rho": -0.9})
WARMUP = 120  # trading days of returns before the surface days (GARCH's first fit at 100)
# Index closes per regime: term structure, SKEW and the 3-month T-bill rate (decimal).
REGIMES = {
    "crash_2008_10": dict(vix9d=90, vix=80, vix3m=60, vix6m=50, vix1y=45, skew=115, rate=0.002),
    "covid_2020_03": dict(vix9d=94, vix=82.7, vix3m=64, vix6m=50, vix1y=41, skew=118, rate=0.003),
    "calm_2017": dict(vix9d=8, vix=10, vix3m=12, vix6m=14, vix1y=16, skew=150, rate=0.01),
    "normal_2011": dict(vix9d=15, vix=17.6, vix3m=20.6, vix6m=23.4, vix1y=26.3, skew=122.7),
    "vix_only": dict(vix=22.0, skew=135),
    "garch": dict(),
}


def _market(config: MarketConfig = SSVI, vix: MarketData | None = None) -> OptionMarket:
    """A random-walk underlying with WARMUP days of history, then one day per regime."""
    days = WARMUP + len(REGIMES)
    dates = pd.bdate_range("2019-01-02", periods=days)
    returns = np.random.default_rng(7).normal(0.0, 0.012, days)
    bars = pd.DataFrame({"close": 3000.0 * np.exp(np.cumsum(returns))}, index=dates)
    series: dict[str, list[float]] = {}
    for name in ("vix9d", "vix", "vix3m", "vix6m", "vix1y", "skew", "rate"):
        series[name] = [np.nan] * WARMUP + [r.get(name, np.nan) for r in REGIMES.values()]
    inputs = SurfaceInputs.from_arrays(dates, **series)
    underlying = MarketData("SPX", bars.rename_axis("date"), "csv", "test")
    return build_option_market(underlying, vix, config, inputs)


def _day(regime: str) -> int:
    return WARMUP + list(REGIMES).index(regime)


def _quote_grid(market: OptionMarket, day: int, strikes: np.ndarray, days: np.ndarray):
    """Quotes of calls on an (expiry x strike) grid of one day."""
    expiry = market.dates[day].to_datetime64() + days.astype("timedelta64[D]")
    e, k = np.meshgrid(expiry, strikes, indexing="ij")
    n = e.size
    quotes = market.quote(np.full(n, day), k.ravel(), e.ravel(), np.ones(n, bool))
    return quotes, e.shape


@pytest.fixture(scope="module")
def market() -> OptionMarket:
    return _market()


@pytest.mark.parametrize("config", [SSVI, EXTREME], ids=["fitted", "cap-binding"])
@pytest.mark.parametrize("regime", list(REGIMES))
def test_calls_fall_and_are_convex_in_strike_and_variance_grows_with_maturity(config, regime):
    market = _market(config)
    day = _day(regime)
    spot = market.spot[day]
    strikes = spot * np.linspace(0.5, 1.5, 401)
    expiries = np.arange(1, 401)
    quotes, shape = _quote_grid(market, day, strikes, expiries)
    calls = quotes.mid.reshape(shape)
    tolerance = 1e-9 * spot
    assert np.all(np.isfinite(calls))
    assert np.all(np.diff(calls, axis=1) <= tolerance)  # a call spread never costs less than 0
    assert np.all(np.diff(calls, 2, axis=1) >= -tolerance)  # butterflies are never negative
    # Calendar: at fixed k = ln(K/F), total variance never falls as expiry grows.
    tau = expiries / 365.0
    rate = market.levels.rate[day]
    log_moneyness = np.linspace(-0.7, 0.4, 111)
    forward = spot * np.exp((rate - config.dividend_yield) * tau)
    fixed_k = forward[:, None] * np.exp(log_moneyness)[None, :]
    t_grid = np.broadcast_to(expiries[:, None], fixed_k.shape).ravel()
    expiry = market.dates[day].to_datetime64() + t_grid.astype("timedelta64[D]")
    iv = market.quote(
        np.full(t_grid.size, day), fixed_k.ravel(), expiry, np.ones(t_grid.size, bool)
    ).iv
    total = iv.reshape(fixed_k.shape) ** 2 * tau[:, None]
    assert np.all(np.diff(total, axis=0) >= -1e-12)


def test_phi_cap_enforces_the_gatheral_jacquier_conditions() -> None:
    rng = np.random.default_rng(3)
    theta = np.exp(rng.uniform(np.log(1e-6), np.log(4.0), 20_000))
    rho = rng.uniform(-0.99, 0.99, theta.size)
    for eta, gamma in ((0.5, 0.5), (1.2, 0.463), (5.0, 0.1), (10.0, 0.9)):
        config = SSVI.model_copy(update={"ssvi_eta": eta, "ssvi_gamma": gamma})
        phi = ssvi_phi(theta, rho, config)
        assert np.all(theta * phi * (1 + np.abs(rho)) < 4.0)
        assert np.all(theta * phi**2 * (1 + np.abs(rho)) <= 4.0 * (1 + 1e-12))
        power_law = eta / (theta**gamma * (1 + theta) ** (1 - gamma))
        assert np.all(phi <= power_law * (1 + 1e-12))
    # Where the conditions hold already (fitted constants, ordinary variances) nothing is capped.
    ordinary = np.array([0.0005, 0.002, 0.02, 0.1])
    power_law = 1.2 / (ordinary**0.463 * (1 + ordinary) ** 0.537)
    np.testing.assert_allclose(ssvi_phi(ordinary, np.full(4, -0.5), SSVI), power_law)


def test_atm_total_variance_is_the_interpolated_index_level(market) -> None:
    day = _day("normal_2011")
    regime = REGIMES["normal_2011"]
    rho = market.levels.rho[day]
    levels = np.array([regime[n] for n in ("vix9d", "vix", "vix3m", "vix6m", "vix1y")])
    knots = atm_from_index(levels / 100.0, TENORS, np.full(5, rho), SSVI)
    assert np.all(np.diff(knots) > 0)  # an upward term structure: no calendar lift needed

    def atm_variance(days: np.ndarray) -> np.ndarray:
        spot = market.spot[day]
        tau = days / 365.0
        forward = spot * np.exp((market.levels.rate[day] - SSVI.dividend_yield) * tau)
        expiry = market.dates[day].to_datetime64() + days.astype("timedelta64[D]")
        iv = market.quote(np.full(days.size, day), forward, expiry, np.ones(days.size, bool)).iv
        return iv**2 * tau

    np.testing.assert_allclose(atm_variance(np.array([9, 30, 91, 182, 365])), knots, rtol=1e-10)
    between = knots[1] + (knots[2] - knots[1]) * (60 - 30) / (91 - 30)
    np.testing.assert_allclose(atm_variance(np.array([60])), between, rtol=1e-10)
    # Flat vol outside the index tenors.
    np.testing.assert_allclose(atm_variance(np.array([3, 400])), knots[[0, 4]] * [3 / 9, 400 / 365])
    assert market.levels.vol_30d[day] == pytest.approx(np.sqrt(knots[1] / TENORS[1]))


def test_an_index_is_the_variance_swap_of_the_model_smile() -> None:
    """Independent check of the index -> ATM conversion: the fair variance of the converted slice,
    2 x the integral of out-of-the-money prices / K^2 (Demeterfi et al.), is the index squared."""
    config = SSVI.model_copy(update={"vix_atm_ratio": 1.0})
    for vix, tau, rho in ((17.0, 30 / 365, -0.5), (80.0, 9 / 365, -0.5), (12.0, 1.0, -0.8)):
        theta = atm_from_index(np.array(vix / 100.0), tau, np.array(rho), config)
        k = np.linspace(-4.0, 2.0, 400_001)
        sd = np.sqrt(ssvi_total_variance(k, theta, rho, config))
        d1 = -k / sd + sd / 2
        call = ndtr(d1) - np.exp(k) * ndtr(d1 - sd)  # per unit forward
        put = np.exp(k) * ndtr(sd - d1) - ndtr(-d1)
        otm = np.where(k >= 0, call, put)
        fair = 2.0 * np.trapezoid(otm * np.exp(-k), k)
        assert fair == pytest.approx((vix / 100.0) ** 2 * tau, rel=2e-3)
        assert np.sqrt(theta / tau) < vix / 100.0  # ATM below the index: the skew's premium


def test_inverted_knots_are_lifted_to_stay_free_of_calendar_arbitrage() -> None:
    dates = pd.bdate_range("2020-03-16", periods=1)
    inputs = SurfaceInputs.from_arrays(dates, vix9d=200.0, vix=80.0, vix3m=60.0)
    bars = pd.DataFrame({"close": [2400.0]}, index=dates.rename("date"))
    levels = build_option_market(MarketData("SPX", bars, "csv", "t"), None, SSVI, inputs).levels
    knots = levels.knots[0, 1:]  # (the first column is tau = 0)
    assert np.all(np.diff(knots) >= 0)
    assert knots[1] == knots[0]  # the 30-day knot is lifted to the 9-day total variance
    assert levels.vol_30d[0] > 0.80 * np.sqrt(9 / 30)


@pytest.mark.parametrize("regime", ["crash_2008_10", "covid_2020_03", "calm_2017", "normal_2011"])
def test_put_wing_is_steeper_and_the_call_wing_falls(market, regime) -> None:
    """The real SPX/SPY shape: puts rise all the way out; calls fall from ATM to a minimum that
    lies further out the longer the expiry and the higher the vol (in the real chains about +2-3%
    at 2 weeks, +4-6% at 1 month and +6-9% at 2-3 months), so by 6 months, or at 1 month in a
    crash, the call wing falls all the way to +10%."""
    day = _day(regime)
    moneyness = np.linspace(0.9, 1.3, 161)
    spot = market.spot[day]
    expiries = np.array([14, 30, 91, 182])
    quotes, shape = _quote_grid(market, day, spot * moneyness, expiries)
    iv = quotes.iv.reshape(shape)
    atm = np.argmin(np.abs(moneyness - 1.0))
    five, ten = np.searchsorted(moneyness, [0.95, 1.05]), np.searchsorted(moneyness, 1.1)
    for row in iv[1:]:
        put_rise, call_drop = row[five[0]] - row[atm], row[atm] - row[five[1]]
        assert put_rise > call_drop > 0  # steep put wing; calls still below ATM at +5%
    assert np.all(np.diff(iv[:, : atm + 1], axis=1) < 0)  # the put wing rises all the way out
    call_minimum = moneyness[atm + np.argmin(iv[:, atm:], axis=1)]
    assert np.all(call_minimum >= 1.015) and np.all(np.diff(call_minimum) > 0)
    # 6 months: past +10% (+7% when calm, as SPY's 2-month minimum at VIX 12 was +6-7%).
    assert call_minimum[-1] >= (1.07 if regime == "calm_2017" else 1.10)
    if regime.startswith(("crash", "covid")):
        assert np.all(np.diff(iv[1, atm : ten + 1]) < 0)  # 1 month, falling to +10% in a crash


def test_quadratic_model_reproduces_the_seed() -> None:
    """Values computed with the seed's code before SSVI existed (bundled SPX and VIX)."""
    config = MarketConfig(
        smile_model="quadratic", vix_atm_ratio=0.9, skew=-0.1, smile=0.06,
        risk_free_rate=0.02, dividend_yield=0.02, long_run_vol=0.2, term_reversion=2.0,
        garch_refit_every=63, garch_iv_premium=1.1, garch_min_history=252,
    )  # fmt: skip
    spx, vix = load_bundled("SPX"), load_bundled("VIX")
    market = MarketData("SPX", spx.between("2012-01-01", "2016-12-31"), "bundled", spx.origin)
    vix_data = MarketData("VIX", vix.between("2012-01-01", "2016-12-31"), "bundled", vix.origin)
    call = np.array([False, False, True, True, True])
    cases = [
        (
            vix_data, "2016-01-04", [1610.0, 1910.0, 2015.0, 2115.0, 2415.0],
            ["2016-01-15", "2016-02-19", "2016-03-18", "2016-06-17", "2016-12-16"],
            [0.06528605684472089, 20.445547399024633, 66.4020717899773, 58.489570626027785,
             32.10382308341724],
            [0.4379077310274643, 0.20861745482365274, 0.18757863297826785, 0.18466052273882988,
             0.1856175973305512],
        ),
        (
            None, "2013-06-03", [1310.0, 1560.0, 1640.0, 1720.0, 1970.0],
            ["2013-06-21", "2013-07-19", "2013-09-20", "2013-12-20", "2014-06-20"],
            [0.012995101784889607, 9.269428411744514, 52.6850851761626, 42.70881116280805,
             21.39156553968212],
            [0.30745348212886897, 0.15944632602885214, 0.1476714327818307, 0.15423365605443107,
             0.16605580894529487],
        ),
    ]  # fmt: skip
    for vix_index, date, strikes, expiries, mids, ivs in cases:
        option_market = build_option_market(market, vix_index, config)
        day = np.full(5, option_market.day_index(date))
        expiry = np.array(expiries, dtype="datetime64[ns]")
        quotes = option_market.quote(day, np.array(strikes), expiry, call)
        # The GARCH day goes through arch's optimiser, whose last digits vary with the BLAS
        # thread count; the VIX day is exact.
        rtol = 1e-12 if vix_index is not None else 1e-7
        np.testing.assert_allclose(quotes.mid, mids, rtol=rtol)
        np.testing.assert_allclose(quotes.iv, ivs, rtol=rtol)
        marked = option_market.mark(day, np.array(strikes), expiry.astype(np.int64), call)
        np.testing.assert_allclose(marked[0], mids, rtol=max(rtol, 1e-9))


def test_sources_fall_back_per_day_and_are_counted(market) -> None:
    levels = market.levels
    expected = ["vix_term"] * 4 + ["vix", "garch"]
    assert list(levels.source[WARMUP:]) == expected
    assert set(levels.source[:WARMUP]) == {"", "garch"}  # before and after the first GARCH fit
    assert np.isnan(levels.vol_30d[0]) and np.isfinite(levels.vol_30d[WARMUP:]).all()
    counts = market.provenance["days_by_atm_source"]
    assert counts["vix_term"] == 4 and counts["vix"] == 1
    assert counts["garch"] + counts["none"] == WARMUP + 1
    # The rate: the day's T-bill where given, else the constant, counted.
    assert list(levels.rate_source[WARMUP:]) == ["tbill"] * 3 + ["constant"] * 3
    assert levels.rate[_day("calm_2017")] == 0.01
    assert levels.rate[_day("garch")] == SSVI.risk_free_rate
    assert market.provenance["rate"]["days_from_series"] == 3
    assert market.provenance["rate"]["days_fallback_constant"] == WARMUP + 3
    # rho from SKEW where given; the term model where only VIX is given.
    assert market.provenance["skew"]["days_rho_from_skew"] == 5
    tied = SSVI.model_copy(update={"ssvi_rho_per_skew": -0.1})
    rho, has = skew_rho(np.array([150.0, np.nan, 400.0]), tied)
    np.testing.assert_allclose(rho, [SSVI.ssvi_rho - 0.3, SSVI.ssvi_rho, -0.99])
    assert has.tolist() == [True, False, True]
    # The quadratic model keeps the seed's labels: VIX days are "vix" whatever else is given.
    quadratic = _market(SSVI.model_copy(update={"smile_model": "quadratic"})).levels
    assert list(quadratic.source[WARMUP:]) == ["vix"] * 5 + ["garch"]


def test_a_vix_series_overrides_the_inputs_vix() -> None:
    base = _market()
    day = _day("normal_2011")
    dates = base.dates[[day]]
    vix = MarketData("VIX", pd.DataFrame({"close": [30.0]}, index=dates.rename("date")), "csv", "t")
    overridden = _market(vix=vix)
    assert overridden.levels.vol_30d[day] > base.levels.vol_30d[day] * 1.5
    assert overridden.levels.vol_30d[day + 1] == base.levels.vol_30d[day + 1]


def test_the_days_rate_sets_discounting_and_the_forward(market) -> None:
    for regime in ("calm_2017", "vix_only"):
        day = _day(regime)
        spot, rate, div = market.spot[day], market.levels.rate[day], SSVI.dividend_yield
        strikes = spot * np.array([0.9, 1.0, 1.1])
        expiry = np.full(3, market.dates[day].to_datetime64() + np.timedelta64(91, "D"))
        calls = market.quote(np.full(3, day), strikes, expiry, np.ones(3, bool)).mid
        puts = market.quote(np.full(3, day), strikes, expiry, np.zeros(3, bool)).mid
        tau = 91 / 365
        parity = spot * np.exp(-div * tau) - strikes * np.exp(-rate * tau)
        np.testing.assert_allclose(calls - puts, parity, atol=1e-8 * spot)


def test_mark_is_the_vectorised_quote_and_matches_vollib(market) -> None:
    rng = np.random.default_rng(5)
    n = 400
    day = rng.integers(WARMUP, WARMUP + len(REGIMES), n)
    spot = market.spot[day]
    strike = np.round(spot * rng.uniform(0.7, 1.3, n))
    expiry_ns = market.dates.as_unit("ns").asi8[day] + rng.integers(1, 400, n) * 86_400 * 10**9
    is_call = rng.random(n) < 0.5
    mid, bid, ask, delta, *_ = market.mark(day, strike, expiry_ns, is_call)
    expiry = expiry_ns.astype("datetime64[ns]")
    one_by_one = [market.quote(day[[i]], strike[[i]], expiry[[i]], is_call[[i]]) for i in range(n)]
    for name, values in (("mid", mid), ("bid", bid), ("ask", ask), ("delta", delta)):
        scalar = np.concatenate([getattr(q, name) for q in one_by_one])
        np.testing.assert_allclose(values, scalar, rtol=1e-9, atol=1e-9)
    iv = np.concatenate([q.iv for q in one_by_one])
    tau = np.concatenate([q.days_to_expiry for q in one_by_one]) / 365.0
    rate = market.levels.rate[day]
    reference = [
        vl_price("c" if c else "p", s, k, t, r, v, SSVI.dividend_yield)
        for c, s, k, t, r, v in zip(is_call, spot, strike, tau, rate, iv, strict=True)
    ]
    np.testing.assert_allclose(mid, reference, rtol=1e-8, atol=1e-8)


def test_no_look_ahead_in_the_index_inputs(market) -> None:
    """Every later index value and rate perturbed: day t's chain is unchanged."""
    day = _day("calm_2017")
    base = _market()
    dates = base.dates
    rng = np.random.default_rng(2)
    series = {}
    for name in ("vix9d", "vix", "vix3m", "vix6m", "vix1y", "skew", "rate"):
        values = np.array([np.nan] * WARMUP + [r.get(name, np.nan) for r in REGIMES.values()])
        scale = 0.01 if name == "rate" else 1.0
        values[day + 1 :] = rng.uniform(5, 90, values.size - day - 1) * scale
        series[name] = values
    bars = pd.DataFrame({"close": base.spot}, index=dates.rename("date"))
    changed = build_option_market(
        MarketData("SPX", bars, "csv", "t"), None, SSVI, SurfaceInputs.from_arrays(dates, **series)
    )
    strikes = base.spot[day] * np.linspace(0.8, 1.2, 9)
    expiry = np.full(9, dates[day].to_datetime64() + np.timedelta64(45, "D"))
    for right in (True, False):
        args = (np.full(9, day), strikes, expiry, np.full(9, right))
        assert np.array_equal(base.quote(*args).mid, changed.quote(*args).mid)
    later = np.full(9, day + 1), strikes, expiry, np.full(9, True)
    assert not np.array_equal(base.quote(*later).mid, changed.quote(*later).mid)


SHARED = Path(__file__).resolve().parents[2] / "shared/data"


@pytest.mark.skipif(not (SHARED / "options").is_dir(), reason="../shared/data is absent")
def test_fits_the_real_spx_smile_of_2011_better_than_the_seed() -> None:
    """The defaults price the out-of-the-money SPX options of 2011-01-05 (10-120 days,
    |K/S-1| <= 5%) within a median 1 vol point, with the CBOE indices of that day."""
    from clstm_ppo.data.indices import market_inputs

    raw = pd.read_csv(SHARED / "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz")
    raw = raw[(raw.date == "01/05/2011") & (raw.bid > 0) & (raw.ask > raw.bid)]
    spot = float(raw.stock_price_close.iloc[0])
    expiry = pd.to_datetime(raw.option_expiration, format="%m/%d/%Y").to_numpy()
    days = (expiry - np.datetime64("2011-01-05")) / np.timedelta64(1, "D")
    call = (raw["call/put"] == "C").to_numpy()
    strike = raw.strike.to_numpy()
    keep = (np.abs(strike / spot - 1) <= 0.05) & (days >= 10) & (days <= 120)
    keep &= np.where(call, strike >= spot, strike < spot)
    dates = pd.DatetimeIndex(["2011-01-05"])
    bars = pd.DataFrame({"close": [spot]}, index=dates.rename("date"))
    inputs = market_inputs(dates, spec=str(SHARED / "indices"))
    errors = {}
    for model in ("ssvi", "quadratic"):
        config = MarketConfig(smile_model=model, vix_atm_ratio=0.944 if model == "ssvi" else 0.9)
        option_market = build_option_market(
            MarketData("SPX", bars, "csv", "t"), None, config, inputs
        )
        quotes = option_market.quote(
            np.zeros(keep.sum(), int), strike[keep], expiry[keep], call[keep]
        )
        errors[model] = np.median(np.abs(quotes.iv - raw.iv.to_numpy()[keep]))
    assert errors["ssvi"] < 0.01
    assert errors["ssvi"] < 0.6 * errors["quadratic"]
