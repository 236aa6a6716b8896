"""Vectorised Black-Scholes-Merton pricing, greeks and implied volatility (numpy, float64).

Every function broadcasts its arguments against each other like a numpy ufunc, so a whole option
chain (or a batch of chains) is priced in one call without a Python loop over options. The model
is European exercise on an underlying with a continuous dividend yield ``q``::

    call = S e^{-qt} N(d1) - K e^{-rt} N(d2),   put = K e^{-rt} N(-d2) - S e^{-qt} N(-d1)
    d1 = (ln(S/K) + (r - q + sigma^2/2) t) / (sigma sqrt(t)),   d2 = d1 - sigma sqrt(t)

Conventions (these are the raw mathematical derivatives, chosen so that nothing downstream has to
remember a hidden scale factor):

* ``t`` is in years; ``rate`` and ``div_yield`` are continuously compounded annual rates.
* ``theta`` is dV/d(calendar time) per YEAR, i.e. ``-dV/dt`` of time to expiry (negative for a long
  option in most cases).
* ``vega`` is dV/d(sigma) per 1.00 of volatility; ``rho`` is dV/d(rate) per 1.00 of rate.

``vollib`` (the independent reference used in the tests) reports theta per calendar DAY (divided by
365), and vega and rho per 1 % (multiplied by 0.01), so ``ours = vollib * 365`` for theta and
``ours = vollib * 100`` for vega and rho.

Degenerate inputs never raise and never emit numpy warnings: at ``t <= 0`` or ``sigma == 0`` the
price is the discounted intrinsic value of the forward, delta is a step (half a step exactly at the
money), and gamma and vega are 0 (the Dirac mass at the strike is dropped so downstream features
stay finite). Inputs outside the model's domain (spot or strike <= 0, sigma < 0, NaN) give NaN.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
from numpy.typing import ArrayLike
from scipy.special import ndtr

__all__ = ["Greeks", "bsm_greeks", "bsm_price", "implied_vol", "intrinsic_value"]

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)
_SQRT_2PI = np.sqrt(2.0 * np.pi)


class Greeks(NamedTuple):
    """First- and second-order sensitivities, each an array broadcast from the inputs.

    Units: delta per 1.00 of spot, gamma per 1.00 of spot squared, theta per YEAR of calendar time,
    vega per 1.00 of volatility (0.01 = one vol point), rho per 1.00 of rate.
    """

    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    rho: np.ndarray


def _as_flag(is_call: ArrayLike) -> np.ndarray:
    """Booleans only: a string such as ``"p"`` would silently cast to True, so it is refused."""
    flag = np.asarray(is_call)
    if flag.dtype.kind not in "bui":
        raise TypeError(f"is_call must be bool (True = call), got dtype {flag.dtype}")
    return flag.astype(bool)


def _pdf(x: np.ndarray) -> np.ndarray:
    return _INV_SQRT_2PI * np.exp(-0.5 * x * x)


class _Setup(NamedTuple):
    """Shared intermediate quantities for price and greeks (all broadcast to one shape)."""

    spot: np.ndarray
    strike: np.ndarray
    t: np.ndarray  # clipped at 0: an expired option is worth its intrinsic value
    rate: np.ndarray
    div: np.ndarray
    sigma: np.ndarray
    theta_sign: np.ndarray  # +1 call, -1 put
    disc_spot: np.ndarray  # S e^{-qt}
    disc_strike: np.ndarray  # K e^{-rt}
    stdev: np.ndarray  # sigma sqrt(t)
    diffusive: np.ndarray  # stdev > 0: the closed form applies; else the sigma = 0 limit
    cdf1: np.ndarray  # N(theta d1), with the step limit where not diffusive
    cdf2: np.ndarray  # N(theta d2), likewise
    pdf1: np.ndarray  # phi(d1), 0 where not diffusive
    valid: np.ndarray


def _setup(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> _Setup:
    s, k, tt, r, q, v, call = np.broadcast_arrays(
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(div_yield, dtype=np.float64),
        np.asarray(sigma, dtype=np.float64),
        _as_flag(is_call),
    )
    valid = (
        (s > 0)
        & (k > 0)
        & (v >= 0)
        & np.isfinite(s)
        & np.isfinite(k)
        & np.isfinite(v)
        & np.isfinite(r)
        & np.isfinite(q)
        & np.isfinite(tt)
    )
    tt = np.maximum(tt, 0.0)
    theta_sign = np.where(call, 1.0, -1.0)
    with np.errstate(all="ignore"):
        disc_spot = s * np.exp(-q * tt)
        disc_strike = k * np.exp(-r * tt)
        stdev = v * np.sqrt(tt)
        diffusive = valid & (stdev > 0) & np.isfinite(stdev)
        safe_sd = np.where(diffusive, stdev, 1.0)
        log_moneyness = np.log(disc_spot / disc_strike)  # ln(F/K)
        d1 = log_moneyness / safe_sd + 0.5 * safe_sd
        d2 = d1 - safe_sd
        # sigma -> 0 limit: N(theta d) -> step(theta ln(F/K)), 1/2 exactly at the forward.
        step = np.where(theta_sign * log_moneyness > 0, 1.0, 0.0)
        step = np.where(log_moneyness == 0, 0.5, step)
    cdf1 = np.where(diffusive, ndtr(theta_sign * d1), step)
    cdf2 = np.where(diffusive, ndtr(theta_sign * d2), step)
    pdf1 = np.where(diffusive, _pdf(d1), 0.0)
    return _Setup(
        spot=s,
        strike=k,
        t=tt,
        rate=r,
        div=q,
        sigma=v,
        theta_sign=theta_sign,
        disc_spot=disc_spot,
        disc_strike=disc_strike,
        stdev=stdev,
        diffusive=diffusive,
        cdf1=cdf1,
        cdf2=cdf2,
        pdf1=pdf1,
        valid=valid,
    )


def intrinsic_value(spot: ArrayLike, strike: ArrayLike, is_call: ArrayLike) -> np.ndarray:
    """Exercise value ``max(S - K, 0)`` for calls and ``max(K - S, 0)`` for puts (settlement)."""
    s = np.asarray(spot, dtype=np.float64)
    k = np.asarray(strike, dtype=np.float64)
    return np.where(_as_flag(is_call), np.maximum(s - k, 0.0), np.maximum(k - s, 0.0))


def bsm_price(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> np.ndarray:
    """European option value per share under Black-Scholes-Merton (continuous dividend yield).

    Puts use their own formula rather than put-call parity so that far out-of-the-money puts keep
    full relative precision. The result is clipped at 0 to hide round-off of order 1e-16 * spot.
    """
    z = _setup(spot, strike, t, rate, div_yield, sigma, is_call)
    price = z.theta_sign * (z.disc_spot * z.cdf1 - z.disc_strike * z.cdf2)
    price = np.maximum(price, 0.0)
    return np.where(z.valid, price, np.nan)


def bsm_greeks(
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    sigma: ArrayLike,
    is_call: ArrayLike,
) -> Greeks:
    """Analytic delta, gamma, theta (per year), vega (per 1.00 vol) and rho (per 1.00 rate).

    See the module docstring for units and for the limits used at expiry and at zero volatility.
    """
    z = _setup(spot, strike, t, rate, div_yield, sigma, is_call)
    with np.errstate(all="ignore"):
        sqrt_t = np.sqrt(z.t)
        delta = z.theta_sign * np.exp(-z.div * z.t) * z.cdf1
        safe_sd = np.where(z.diffusive, z.stdev, 1.0)
        gamma = np.where(z.diffusive, z.disc_spot * z.pdf1 / (z.spot * z.spot * safe_sd), 0.0)
        vega = z.disc_spot * z.pdf1 * sqrt_t
        decay = np.where(
            z.diffusive,
            z.disc_spot * z.pdf1 * z.sigma / (2.0 * np.where(z.diffusive, sqrt_t, 1.0)),
            0.0,
        )
        theta = -decay + z.theta_sign * (
            z.div * z.disc_spot * z.cdf1 - z.rate * z.disc_strike * z.cdf2
        )
        rho = z.theta_sign * z.t * z.disc_strike * z.cdf2

    def finish(a: np.ndarray) -> np.ndarray:
        return np.where(z.valid, a + 0.0, np.nan)  # "+ 0.0" turns -0.0 into 0.0

    return Greeks(finish(delta), finish(gamma), finish(theta), finish(vega), finish(rho))


def _normalised_otm_call(x: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Jäckel's normalised out-of-the-money Black price and its derivative in ``s``.

    ``b(x, s) = e^{x/2} N(x/s + s/2) - e^{-x/2} N(x/s - s/2)`` for ``x = -|ln(F/K)| <= 0`` and total
    standard deviation ``s = sigma sqrt(t) > 0``; ``db/ds = e^{x/2} phi(x/s + s/2)``.
    """
    with np.errstate(all="ignore"):
        ratio = np.where(x == 0.0, 0.0, x / s)
        h1 = ratio + 0.5 * s
        h2 = ratio - 0.5 * s
        ex = np.exp(0.5 * x)
        price = ex * ndtr(h1) - ndtr(h2) / ex
        slope = ex * _pdf(h1)
    return np.maximum(price, 0.0), slope


def implied_vol(
    price: ArrayLike,
    spot: ArrayLike,
    strike: ArrayLike,
    t: ArrayLike,
    rate: ArrayLike,
    div_yield: ArrayLike,
    is_call: ArrayLike,
    *,
    max_iter: int = 100,
    rel_step_tol: float = 1e-14,
) -> np.ndarray:
    """Volatility that reproduces ``price`` under :func:`bsm_price`; NaN where none exists.

    NaN is returned where ``t <= 0``, an input is invalid, the price is below the discounted
    intrinsic value ``max(+/-(S e^{-qt} - K e^{-rt}), 0)`` (an arbitrage, and common for deep ITM
    American puts quoted on the market), or at/above the upper bound (``S e^{-qt}`` for a call,
    ``K e^{-rt}`` for a put), which no finite volatility reaches. A price exactly at the lower bound
    gives 0.

    Method (vectorised; iterations only run over the still-unconverged elements):

    1. Put-call parity turns every quote into the out-of-the-money option of the same strike,
       whose price is the time value ``price - intrinsic``; this keeps precision for deep ITM
       quotes. Dividing by ``sqrt(S e^{-qt} K e^{-rt})`` leaves Jäckel's normalised price
       ``b(x, s)`` with ``x = -|ln(F/K)|`` and ``s = sigma sqrt(t)`` the only unknown.
    2. Halley's method (Newton with the analytic second derivative) in ``s`` starts at the
       inflection point ``s_c = sqrt(2|x|)`` (Manaster & Koehler's start, from which plain Newton
       is already monotone). Below ``b(s_c)`` the price is exponentially flat in ``s``, so the
       iteration runs on ``ln b`` there instead, which behaves like a quadratic in ``1/s``.
    3. A bracket ``[lo, hi]`` is kept on every element; a step that leaves it (or a zero slope) is
       replaced by bisection (doubling while no upper end is known), so the loop always converges.

    On 1e5 random quotes (spot 1-5000, moneyness 0.5-1.5, 1 day-3 years, sigma 5%-150%) this
    takes 4.4 iterations on average and 8 at the 99th percentile. Iteration stops when the step is
    below ``rel_step_tol`` relative to ``s`` or the bracket has collapsed to that width, which
    reprices to ~1e-12 for ordinary quotes. Elements still unconverged after ``max_iter`` keep
    their best estimate.
    """
    p, sp, k, tt, r, q, call = np.broadcast_arrays(
        np.asarray(price, dtype=np.float64),
        np.asarray(spot, dtype=np.float64),
        np.asarray(strike, dtype=np.float64),
        np.asarray(t, dtype=np.float64),
        np.asarray(rate, dtype=np.float64),
        np.asarray(div_yield, dtype=np.float64),
        _as_flag(is_call),
    )
    out = np.full(p.shape, np.nan)
    with np.errstate(all="ignore"):
        ok = (
            np.isfinite(p)
            & np.isfinite(sp)
            & np.isfinite(k)
            & np.isfinite(tt)
            & np.isfinite(r)
            & np.isfinite(q)
            & (sp > 0)
            & (k > 0)
            & (tt > 0)
        )
        disc_spot = sp * np.exp(-q * tt)
        disc_strike = k * np.exp(-r * tt)
        theta_sign = np.where(call, 1.0, -1.0)
        intrinsic = np.maximum(theta_sign * (disc_spot - disc_strike), 0.0)
        upper = np.where(call, disc_spot, disc_strike)
        scale = np.sqrt(disc_spot * disc_strike)
        x = -np.abs(np.log(disc_spot / disc_strike))
        b = (p - intrinsic) / scale
        b_max = np.exp(0.5 * x)
    ok &= (p >= intrinsic) & (p < upper) & (b < b_max)
    out[ok & (b <= 0.0)] = 0.0
    todo = np.flatnonzero(ok & (b > 0.0))
    if todo.size == 0:
        return out

    x_a = x.ravel()[todo]
    b_a = b.ravel()[todo]
    sqrt_t = np.sqrt(tt.ravel()[todo])
    s_c = np.sqrt(2.0 * np.abs(x_a))
    b_c, _ = _normalised_otm_call(x_a, np.maximum(s_c, 1e-300))
    use_log = b_a < b_c  # lower (convex) branch: Newton on ln b
    log_b = np.log(b_a)
    s = np.where(x_a == 0.0, b_a * _SQRT_2PI, s_c)  # ATM: Brenner-Subrahmanyam guess
    lo = np.zeros_like(s)
    hi = np.full_like(s, np.inf)
    result = np.empty_like(s)
    idx = np.arange(s.size)

    for _ in range(max_iter):
        val, slope = _normalised_otm_call(x_a, np.maximum(s, 1e-300))
        with np.errstate(all="ignore"):
            f = np.where(use_log, np.log(val) - log_b, val - b_a)
            fprime = np.where(use_log, slope / val, slope)
            curv = slope * (x_a * x_a / (s * s * s) - 0.25 * s)  # d2b/ds2
            fsecond = np.where(use_log, curv / val - fprime * fprime, curv)
            above = f > 0
            lo = np.where(above, lo, s)
            hi = np.where(above, s, hi)
            newton = f / fprime
            step = newton / (1.0 - 0.5 * newton * fsecond / fprime)  # Halley
            raw = s - step
        converged = (f == 0) | (np.abs(step) <= rel_step_tol * s)
        bad = ~np.isfinite(raw) | (raw < lo) | (raw > hi)
        fallback = np.where(np.isfinite(hi), 0.5 * (lo + hi), 2.0 * np.maximum(s, lo) + 1e-3)
        nxt = np.where(bad, fallback, raw)
        collapsed = np.isfinite(hi) & (hi - lo <= rel_step_tol * hi)
        done = converged | collapsed
        s = np.where(converged, np.where(bad, s, raw), nxt)
        if done.any():
            result[idx[done]] = s[done]
            keep = ~done
            idx, s, lo, hi = idx[keep], s[keep], lo[keep], hi[keep]
            x_a, b_a, log_b, use_log = x_a[keep], b_a[keep], log_b[keep], use_log[keep]
        if idx.size == 0:
            break
    result[idx] = s  # not converged within max_iter: best estimate so far

    flat = out.ravel()
    flat[todo] = result / sqrt_t
    return flat.reshape(out.shape)


def bsm_mark(
    spot: np.ndarray,
    strike: np.ndarray,
    t: np.ndarray,
    rate: float | np.ndarray,
    div_yield: float,
    sigma: np.ndarray,
    is_call: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Price, delta, gamma, theta and vega in one pass, for the environments' daily marks.

    The hot path of every simulation step: equal-shape float64 1-D arrays (the rate may also be
    one per contract: the day's T-bill rate), a scalar dividend yield, and only
    live contracts (``t > 0``, ``sigma > 0``, positive spot and strike; the caller guarantees
    it), so none of :func:`bsm_greeks`' domain handling is repeated. Same formulas and units; the
    tests check it against :func:`bsm_price` and :func:`bsm_greeks`. It runs on torch's CPU
    kernels (float64, zero-copy from numpy), which vectorise exp/log/erf about three times
    faster than numpy's here.
    """
    s, k, tt, v = (
        torch.from_numpy(np.ascontiguousarray(a, dtype=np.float64))
        for a in (spot, strike, t, sigma)
    )
    sign = torch.from_numpy(np.where(is_call, 1.0, -1.0))
    r: float | torch.Tensor = (
        float(rate)
        if np.ndim(rate) == 0
        else torch.from_numpy(np.ascontiguousarray(rate, dtype=np.float64))
    )
    sqrt_t = torch.sqrt(tt)
    stdev = v * sqrt_t
    carry = torch.exp(-div_yield * tt)
    disc_spot = s * carry
    disc_strike = k * torch.exp(-r * tt)
    d1 = torch.log(disc_spot / disc_strike) / stdev + 0.5 * stdev
    d2 = d1 - stdev
    cdf1 = torch.special.ndtr(sign * d1)
    cdf2 = torch.special.ndtr(sign * d2)
    pdf1 = _INV_SQRT_2PI * torch.exp(-0.5 * d1 * d1)
    price = torch.clamp(sign * (disc_spot * cdf1 - disc_strike * cdf2), min=0.0)
    delta = sign * carry * cdf1
    gamma = disc_spot * pdf1 / (s * s * stdev)
    vega = disc_spot * pdf1 * sqrt_t
    theta = -disc_spot * pdf1 * v / (2.0 * sqrt_t) + sign * (
        div_yield * disc_spot * cdf1 - r * disc_strike * cdf2
    )
    return price.numpy(), delta.numpy(), gamma.numpy(), theta.numpy(), vega.numpy()
