"""Black-Scholes-Merton pricing, greeks and implied volatility against vollib and first principles.

vollib (Jäckel's LetsBeRational, per element) is the independent reference. Its greeks use
market units: theta per calendar day (/365) and vega and rho per 1 % (x 0.01); ours are raw
derivatives, so the comparison rescales vollib by 365, 100 and 100.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from vollib.black_scholes_merton import black_scholes_merton as vl_price
from vollib.black_scholes_merton.greeks import analytical as vl_greeks
from vollib.black_scholes_merton.implied_volatility import implied_volatility as vl_iv

from clstm_ppo.options.bsm import Greeks, bsm_greeks, bsm_price, implied_vol, intrinsic_value

N_CASES = 20_000


@pytest.fixture(scope="module")
def cases() -> dict[str, np.ndarray]:
    """Seeded random options over the full range the simulator can produce, and then some."""
    rng = np.random.default_rng(20240611)
    spot = np.exp(rng.uniform(np.log(1.0), np.log(5000.0), N_CASES))
    return {
        "spot": spot,
        "strike": spot * rng.uniform(0.5, 1.5, N_CASES),
        "t": rng.uniform(1.0 / 365.0, 3.0, N_CASES),
        "rate": rng.uniform(0.0, 0.08, N_CASES),
        "div": rng.uniform(0.0, 0.05, N_CASES),
        "sigma": rng.uniform(0.05, 1.5, N_CASES),
        "call": rng.random(N_CASES) < 0.5,
    }


def _args(c: dict[str, np.ndarray]) -> tuple[np.ndarray, ...]:
    return c["spot"], c["strike"], c["t"], c["rate"], c["div"], c["sigma"], c["call"]


def _vollib(fn, c: dict[str, np.ndarray], idx: np.ndarray | None = None) -> np.ndarray:
    """Call a per-element vollib function (flag, S, K, t, r, sigma, q) over the cases."""
    idx = np.arange(N_CASES) if idx is None else idx
    return np.array(
        [
            fn(
                "c" if c["call"][i] else "p",
                c["spot"][i],
                c["strike"][i],
                c["t"][i],
                c["rate"][i],
                c["sigma"][i],
                c["div"][i],
            )
            for i in idx
        ]
    )


def test_price_matches_vollib(cases: dict[str, np.ndarray]) -> None:
    ours = bsm_price(*_args(cases))
    ref = _vollib(vl_price, cases)
    # Round-off of a few ulps of spot is all we allow (observed: < 1e-15 * spot).
    tol = 1e-9 * np.abs(ref) + 1e-13 * cases["spot"]
    assert np.all(np.abs(ours - ref) <= tol)


@pytest.mark.parametrize(
    ("name", "ref_fn", "to_raw"),
    [
        ("delta", vl_greeks.delta, 1.0),
        ("gamma", vl_greeks.gamma, 1.0),
        ("theta", vl_greeks.theta, 365.0),  # vollib: per calendar day
        ("vega", vl_greeks.vega, 100.0),  # vollib: per 1 vol point
        ("rho", vl_greeks.rho, 100.0),  # vollib: per 1 % of rate
    ],
)
def test_greeks_match_vollib(
    cases: dict[str, np.ndarray], name: str, ref_fn, to_raw: float
) -> None:
    ours = getattr(bsm_greeks(*_args(cases)), name)
    ref = _vollib(ref_fn, cases) * to_raw
    s, k, t = cases["spot"], cases["strike"], cases["t"]
    natural_scale = {"delta": 1.0, "gamma": 1.0 / s, "theta": s, "vega": s, "rho": k * t}[name]
    tol = 1e-9 * np.abs(ref) + 1e-13 * natural_scale
    assert np.all(np.abs(ours - ref) <= tol)


def test_hull_textbook_example_fixes_units() -> None:
    """Hull, Options Futures and Other Derivatives, examples 17.1-17.7 (S=49, K=50, 20 weeks)."""
    args = (49.0, 50.0, 0.3846, 0.05, 0.0, 0.2, True)
    assert bsm_price(*args) == pytest.approx(2.4005, abs=1e-4)
    g = bsm_greeks(*args)
    assert g.delta == pytest.approx(0.522, abs=1e-3)
    assert g.gamma == pytest.approx(0.066, abs=1e-3)
    assert g.theta == pytest.approx(-4.31, abs=1e-2)  # per year, not per day
    assert g.vega == pytest.approx(12.1, abs=0.1)  # per 1.00 of vol, not per point
    assert g.rho == pytest.approx(8.91, abs=1e-2)  # per 1.00 of rate, not per %


def test_greeks_are_the_derivatives_of_the_price(cases: dict[str, np.ndarray]) -> None:
    """Central differences of bsm_price confirm each greek's sign and unit convention."""
    s, k, t, r, q, v, call = (a[:2000] for a in _args(cases))
    g = bsm_greeks(s, k, t, r, q, v, call)
    hs, ht, hv, hr = 1e-4 * s, 1e-5, 1e-5, 1e-5
    price = bsm_price
    fd_delta = (price(s + hs, k, t, r, q, v, call) - price(s - hs, k, t, r, q, v, call)) / (2 * hs)
    fd_gamma = (
        price(s + hs, k, t, r, q, v, call)
        - 2 * price(s, k, t, r, q, v, call)
        + price(s - hs, k, t, r, q, v, call)
    ) / hs**2
    # theta is d/d(calendar time) = -d/d(time to expiry)
    fd_theta = -(price(s, k, t + ht, r, q, v, call) - price(s, k, t - ht, r, q, v, call)) / (2 * ht)
    fd_vega = (price(s, k, t, r, q, v + hv, call) - price(s, k, t, r, q, v - hv, call)) / (2 * hv)
    fd_rho = (price(s, k, t, r + hr, q, v, call) - price(s, k, t, r - hr, q, v, call)) / (2 * hr)
    np.testing.assert_allclose(g.delta, fd_delta, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.gamma * s, fd_gamma * s, rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(g.theta / s, fd_theta / s, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.vega / s, fd_vega / s, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g.rho / s, fd_rho / s, rtol=1e-5, atol=1e-7)


def test_put_call_parity_with_dividends(cases: dict[str, np.ndarray]) -> None:
    s, k, t, r, q, v, _ = _args(cases)
    call = bsm_price(s, k, t, r, q, v, True)
    put = bsm_price(s, k, t, r, q, v, False)
    forward_gap = s * np.exp(-q * t) - k * np.exp(-r * t)
    assert np.all(np.abs(call - put - forward_gap) <= 1e-12 * (s + k))
    gc, gp = bsm_greeks(s, k, t, r, q, v, True), bsm_greeks(s, k, t, r, q, v, False)
    np.testing.assert_allclose(gc.delta - gp.delta, np.exp(-q * t), rtol=0, atol=1e-14)
    np.testing.assert_allclose(gc.gamma, gp.gamma, rtol=1e-13, atol=0)
    np.testing.assert_allclose(gc.vega, gp.vega, rtol=1e-13, atol=0)
    # d/dr and d/dt of the parity relation
    np.testing.assert_allclose(gc.rho - gp.rho, k * t * np.exp(-r * t), rtol=1e-12)
    theta_gap = q * s * np.exp(-q * t) - r * k * np.exp(-r * t)
    assert np.all(np.abs(gc.theta - gp.theta - theta_gap) <= 1e-12 * (s + k))


def _identifiable(cases: dict[str, np.ndarray]) -> np.ndarray:
    """Cases where the price pins down the volatility: one vol point moves the price by at least
    1e-8 of spot (vega per 1.00 >= 1e-6 * spot). Excluded are deep ITM/OTM short-dated options
    whose price equals intrinsic (or 0) to float precision, where any sigma reprices equally well.
    """
    return bsm_greeks(*_args(cases)).vega >= 1e-6 * cases["spot"]


def test_implied_vol_round_trip(cases: dict[str, np.ndarray]) -> None:
    s, k, t, r, q, v, call = _args(cases)
    price = bsm_price(s, k, t, r, q, v, call)
    iv = implied_vol(price, s, k, t, r, q, call)
    keep = _identifiable(cases)
    assert keep.mean() > 0.95  # the filter only removes the degenerate tail
    assert np.all(np.abs(iv[keep] - v[keep]) <= 1e-8)
    # Every solved case reprices to 1e-8; NaN only where the price is intrinsic to float precision.
    solved = np.isfinite(iv)
    assert np.all(np.abs(bsm_price(s, k, t, r, q, iv, call)[solved] - price[solved]) <= 1e-8)
    assert np.all(solved | ~keep)


def test_implied_vol_matches_vollib_solver(cases: dict[str, np.ndarray]) -> None:
    idx = np.flatnonzero(_identifiable(cases))[:3000]
    s, k, t, r, q, v, call = (a[idx] for a in _args(cases))
    price = bsm_price(s, k, t, r, q, v, call)
    ours = implied_vol(price, s, k, t, r, q, call)
    ref = np.array(
        [
            vl_iv(price[i], s[i], k[i], t[i], r[i], q[i], "c" if call[i] else "p")
            for i in range(idx.size)
        ]
    )
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-8)


def test_implied_vol_is_nan_outside_no_arbitrage_bounds() -> None:
    s, k, t, r, q = 100.0, 90.0, 0.5, 0.05, 0.02
    disc_s, disc_k = s * np.exp(-q * t), k * np.exp(-r * t)
    lower_call = disc_s - disc_k  # ITM call: discounted intrinsic
    prices = np.array(
        [
            lower_call - 0.01,  # below intrinsic under discounting
            -0.5,  # negative
            disc_s,  # call at its upper bound: infinite vol
            disc_s + 1.0,  # above the upper bound
            np.nan,
            lower_call + 5.0,  # fine
        ]
    )
    iv = implied_vol(prices, s, k, t, r, q, True)
    assert np.all(np.isnan(iv[:5]))
    assert np.isfinite(iv[5]) and iv[5] > 0
    # Puts: bounded by the discounted strike above and 0 below for this OTM put.
    put_iv = implied_vol(np.array([disc_k, disc_k + 1.0, 1.0]), s, k, t, r, q, False)
    assert np.isnan(put_iv[0]) and np.isnan(put_iv[1]) and np.isfinite(put_iv[2])
    # A price exactly at the lower bound is sigma 0, not an error.
    assert implied_vol(lower_call, s, k, t, r, q, True) == 0.0
    # Expired or invalid contracts have no implied vol.
    for bad in ((5.0, s, k, 0.0), (5.0, s, k, -0.1), (5.0, -1.0, k, t), (5.0, s, 0.0, t)):
        assert np.isnan(implied_vol(*bad, r, q, True))


def test_implied_vol_extreme_but_valid_quotes() -> None:
    """Deep OTM tiny premiums, exact-forward ATM, and very high vol all solve and reprice."""
    s = np.array([100.0, 100.0, 100.0, 100.0, 50.0])
    k = np.array([200.0, 60.0, 100.0 * np.exp(0.03 * 0.25), 100.0, 50.0])
    t = np.array([0.02, 0.03, 0.25, 2.0, 1.0 / 365.0])
    v = np.array([1.0, 0.9, 0.3, 3.0, 0.05])
    call = np.array([True, False, True, True, False])
    price = bsm_price(s, k, t, 0.03, 0.0, v, call)
    assert price[0] < 1e-5 and price[1] < 1e-2  # genuinely tiny premiums
    iv = implied_vol(price, s, k, t, 0.03, 0.0, call)
    np.testing.assert_allclose(iv, v, rtol=1e-7)


def test_expiry_and_zero_vol_limits_without_warnings() -> None:
    s = np.array([90.0, 100.0, 110.0])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # At expiry: intrinsic value, delta a step (1/2 at the strike), no gamma or vega.
        for call, step in ((True, [0.0, 0.5, 1.0]), (False, [-1.0, -0.5, 0.0])):
            np.testing.assert_array_equal(
                bsm_price(s, 100.0, 0.0, 0.05, 0.02, 0.3, call), intrinsic_value(s, 100.0, call)
            )
            g = bsm_greeks(s, 100.0, 0.0, 0.05, 0.02, 0.3, call)
            np.testing.assert_array_equal(g.delta, step)
            np.testing.assert_array_equal(g.gamma, 0.0)
            np.testing.assert_array_equal(g.vega, 0.0)
        # Zero vol: the discounted forward's intrinsic value.
        disc_s, disc_k = s * np.exp(-0.02), 100.0 * np.exp(-0.05)
        np.testing.assert_allclose(
            bsm_price(s, 100.0, 1.0, 0.05, 0.02, 0.0, True), np.maximum(disc_s - disc_k, 0)
        )
        np.testing.assert_allclose(
            bsm_price(s, 100.0, 1.0, 0.05, 0.02, 0.0, False), np.maximum(disc_k - disc_s, 0)
        )
        # Tiny time and tiny vol converge to those limits and stay finite.
        for t, sigma in ((1e-12, 0.3), (1.0, 1e-12), (1e-9, 1e-9)):
            p = bsm_price(s, 100.0, t, 0.05, 0.02, sigma, True)
            g = bsm_greeks(s, 100.0, t, 0.05, 0.02, sigma, True)
            assert np.all(np.isfinite(p)) and all(np.all(np.isfinite(x)) for x in g)
        # Deep ITM / OTM over extreme ranges: finite, bounded, no warnings.
        p = bsm_price([1.0, 5000.0], [5000.0, 1.0], 3.0, 0.08, 0.05, 1.5, True)
        assert p[0] >= 0 and p[1] <= 5000.0 and np.all(np.isfinite(p))
        assert np.all(
            np.isfinite(bsm_greeks([1.0, 5000.0], [5000.0, 1.0], 3.0, 0.08, 0.05, 1.5, True))
        )


def test_invalid_inputs_give_nan_not_errors() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        p = bsm_price([-1.0, 100.0, np.nan, 100.0], [100.0, 0.0, 100.0, 100.0], 1.0, 0.0, 0.0,
                      [0.2, 0.2, 0.2, -0.1], True)  # fmt: skip
        assert np.all(np.isnan(p))
        assert all(np.all(np.isnan(x)) for x in bsm_greeks(-1.0, 100.0, 1.0, 0.0, 0.0, 0.2, True))


def test_broadcasting_over_a_chain_grid() -> None:
    spots = np.array([[90.0], [100.0], [110.0]])
    strikes = np.array([80.0, 90.0, 100.0, 110.0, 120.0])
    is_call = np.array([True, True, False, False, False])
    prices = bsm_price(spots, strikes, 0.25, 0.04, 0.01, 0.25, is_call)
    assert prices.shape == (3, 5)
    assert prices[1, 2] == pytest.approx(bsm_price(100.0, 100.0, 0.25, 0.04, 0.01, 0.25, False))
    greeks = bsm_greeks(spots, strikes, 0.25, 0.04, 0.01, 0.25, is_call)
    assert isinstance(greeks, Greeks) and greeks.delta.shape == (3, 5)
    assert implied_vol(prices, spots, strikes, 0.25, 0.04, 0.01, is_call) == pytest.approx(
        np.full((3, 5), 0.25), abs=1e-10
    )
    # Calls rise and puts fall with spot.
    assert np.all(np.diff(prices[:, :2], axis=0) > 0) and np.all(np.diff(prices[:, 2:], axis=0) < 0)


def test_flag_must_be_boolean() -> None:
    with pytest.raises(TypeError, match="is_call"):
        bsm_price(100.0, 100.0, 1.0, 0.0, 0.0, 0.2, "c")  # "c" would silently cast to True


def test_intrinsic_value() -> None:
    np.testing.assert_array_equal(intrinsic_value([90.0, 110.0], 100.0, True), [0.0, 10.0])
    np.testing.assert_array_equal(intrinsic_value([90.0, 110.0], 100.0, False), [10.0, 0.0])


def test_bsm_mark_matches_price_and_greeks() -> None:
    """The environments' one-pass kernel gives the same numbers as the general functions."""
    from clstm_ppo.options.bsm import bsm_mark

    rng = np.random.default_rng(11)
    n = 5_000
    spot = rng.uniform(5, 4000, n)
    strike = spot * rng.uniform(0.6, 1.4, n)
    t = rng.uniform(1 / 365, 2.0, n)
    sigma = rng.uniform(0.05, 1.2, n)
    is_call = rng.random(n) < 0.5
    price, delta, gamma, theta, vega = bsm_mark(spot, strike, t, 0.03, 0.015, sigma, is_call)
    greeks = bsm_greeks(spot, strike, t, 0.03, 0.015, sigma, is_call)
    np.testing.assert_allclose(
        price,
        bsm_price(spot, strike, t, 0.03, 0.015, sigma, is_call),
        rtol=1e-10,
        atol=1e-8,
    )
    for ours, reference in (
        (delta, greeks.delta),
        (gamma, greeks.gamma),
        (theta, greeks.theta),
        (vega, greeks.vega),
    ):
        np.testing.assert_allclose(ours, reference, rtol=1e-9, atol=1e-12)
