"""Implied-volatility surface per trading day, from the past only.

Inputs per day (:class:`IndexInputs`, e.g. :func:`clstm_ppo.data.indices.market_inputs`): the
CBOE VIX family (VIX9D, VIX, VIX3M, VIX6M, VIX1Y at 9, 30, 91, 182 and 365 days), SKEW, and the
T-bill rate. A day uses what it has and falls back, labelled in ``AtmLevels.source``:

``vix_term``  VIX and at least one other tenor of the family (``smile_model: ssvi`` only);
``vix``       VIX alone (or ``quadratic``): the 30-day level, with the mean-reverting term model;
``garch``     no VIX: a GARCH(1,1) forecast from the ``arch`` package, parameters refitted every
              ``garch_refit_every`` days on an expanding window of past log returns (the first
              fit after ``garch_min_history`` days), the conditional variance filtered forward,
              averaged over the next 21 trading days, annualised, times ``garch_iv_premium``
              (implied vol trades above forecast vol: the variance risk premium);
``""``        before the first GARCH fit: no level (NaN), the day cannot be traded.

Mean-reverting term model (Heston's expected average variance), used where the index term
structure is missing: ``atm(tau)^2 = LR^2 + (atm30^2 - LR^2) g(tau) / g(30d)``,
``g(tau) = (1 - e^{-k tau}) / (k tau)``, so a high VIX is inverted and a low one upward sloping.

``smile_model: ssvi`` (Gatheral & Jacquier 2014, "Arbitrage-free SVI volatility surfaces"):

* total implied variance ``w(k, tau) = theta/2 (1 + rho phi k + sqrt((phi k + rho)^2 + 1 - rho^2))``
  at log-moneyness ``k = ln(K / F)``, ``F = S e^{(r - q) tau}``, with ``theta(tau)`` the ATM total
  variance and ``phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))``;
* ``rho = clip(ssvi_rho + ssvi_rho_per_skew (SKEW - 120) / 10, -0.99, 0.99)`` where SKEW has the
  day, ``ssvi_rho`` otherwise (``AtmLevels.rho_source``);
* no butterfly arbitrage (their Theorem 4.2) needs ``theta phi (1 + |rho|) < 4`` and
  ``theta phi^2 (1 + |rho|) <= 4``: ``phi`` is capped at ``min(4 (1 - 1e-3) / (theta (1 + |rho|)),
  2 / sqrt(theta (1 + |rho|)))``. ``theta phi`` stays non-decreasing in ``theta`` under the cap
  (a minimum of non-decreasing functions) and ``d(theta phi)/d theta <= phi``, so with ``theta``
  non-decreasing in ``tau`` and one ``rho`` per day Theorem 4.1 rules out calendar arbitrage too;
* ATM total variance at the index tenors: an index is a variance-swap rate (the model-free
  integral over all out-of-the-money options), so it sits above ATM vol by an amount set by the
  smile. ``theta_j`` solves ``VS(theta_j; rho, phi) = (index_j / 100)^2 tau_j`` with ``VS`` the
  model's own variance swap (:func:`variance_swap_factor`), and is then scaled by
  ``vix_atm_ratio^2``: with ``vix_atm_ratio = 1`` the smile alone (rho, so SKEW, and phi) sets
  the ATM/VIX gap, which it does for most of it (about 0.88 at 30 days with the defaults);
* between tenors ``theta`` is linear in ``tau`` (total variance), beyond the ends the vol is flat,
  and the knots are made non-decreasing in ``tau`` (a later knot is lifted to an earlier one);
  missing tenors are filled by the same interpolation; ``vix`` and ``garch`` days sample the
  term model at the same tenors.

``smile_model: quadratic`` (the seed's, kept for comparison): ATM ``vix_atm_ratio x VIX``, the
term model, and ``iv = atm(tau) max(0.3, 1 + skew m + smile m^2)`` in standardised moneyness
``m = ln(K / F) / (atm(tau) sqrt(tau))`` clipped to +-4. Without inputs it reproduces the seed.

Rates: the day's T-bill rate from the inputs (``rate_source`` ``tbill``), ``risk_free_rate``
otherwise (``constant``). Everything on day ``t`` depends on data up to and including ``t`` only.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Protocol

import numpy as np
import pandas as pd
from arch import arch_model
from arch.utility.exceptions import StartingValueWarning
from scipy.signal import lfilter
from scipy.special import ndtr

from clstm_ppo.config import MarketConfig

TRADING_DAYS_PER_YEAR = 252
FORECAST_HORIZON_DAYS = 21  # trading days in the 30 calendar days that VIX spans
THIRTY_DAYS = 30.0 / 365.0
TERM_FIELDS = ("vix9d", "vix", "vix3m", "vix6m", "vix1y")
TENOR_DAYS = np.array([9.0, 30.0, 91.0, 182.0, 365.0])
TENORS = TENOR_DAYS / 365.0
SKEW_PIVOT = 120.0
RHO_LIMIT = 0.99
_VIX_COLUMN = 1  # position of VIX (30 days) in TERM_FIELDS
_KNOT_TAU = np.concatenate([[0.0], TENORS])  # total variance is 0 at tau = 0
_BUTTERFLY_MARGIN = 1e-3  # keeps theta phi (1 + |rho|) strictly below 4
_SMILE_FLOOR = 0.3
_MONEYNESS_CLIP = 4.0
_MIN_TAU = 1e-6
_BACKCAST_LAMBDA = 0.94  # arch's own backcast weighting of the first squared residuals
_BACKCAST_LENGTH = 75
# The variance-swap integral stops where d2 passes +-4: the index's own strike range ends where
# quotes vanish, and a capped (Lee-bound) wing would otherwise make the integral diverge.
_VS_Z_LIMIT = 4.0
_VS_LOG_THETA = np.linspace(np.log(1e-7), np.log(4.0), 64)
_VS_RHO = np.linspace(-RHO_LIMIT, RHO_LIMIT, 67)
_VS_U = 4.0 * np.sinh(np.linspace(-np.arcsinh(150.0), np.arcsinh(80.0), 801))  # k / sqrt(theta)
_VS_ITERATIONS = 6


class IndexInputs(Protocol):
    """Per-day index levels (points, NaN when missing) and rate (continuous decimal, NaN when
    missing), aligned to ``dates``: :class:`clstm_ppo.data.indices.MarketInputs` is one."""

    dates: pd.DatetimeIndex
    vix9d: np.ndarray
    vix: np.ndarray
    vix3m: np.ndarray
    vix6m: np.ndarray
    vix1y: np.ndarray
    skew: np.ndarray
    vvix: np.ndarray
    rate: np.ndarray


@dataclass(frozen=True)
class SurfaceInputs:
    """A plain :class:`IndexInputs` built from arrays (tests, benchmarks, other loaders)."""

    dates: pd.DatetimeIndex
    vix9d: np.ndarray
    vix: np.ndarray
    vix3m: np.ndarray
    vix6m: np.ndarray
    vix1y: np.ndarray
    skew: np.ndarray
    vvix: np.ndarray
    rate: np.ndarray

    @classmethod
    def from_arrays(
        cls, dates: pd.DatetimeIndex | list[str], **series: np.ndarray | list[float] | float
    ) -> SurfaceInputs:
        """Inputs on ``dates``; a series not given is missing (NaN) every day, a scalar is
        broadcast to every day."""
        index = pd.DatetimeIndex(dates)
        unknown = set(series) - set(cls.__dataclass_fields__) - {"dates"}
        if unknown:
            raise ValueError(f"unknown surface input(s): {sorted(unknown)}")
        arrays = {}
        for name in ("vix9d", "vix", "vix3m", "vix6m", "vix1y", "skew", "vvix", "rate"):
            values = np.asarray(series.get(name, np.nan), dtype=float)
            arrays[name] = np.broadcast_to(values, (len(index),)).copy()
        return cls(dates=index, **arrays)


def _aligned(inputs: IndexInputs, field_name: str, dates: pd.DatetimeIndex) -> np.ndarray:
    """``inputs.field`` on ``dates`` (same-day values only; NaN where the inputs lack a day)."""
    values = np.asarray(getattr(inputs, field_name), dtype=float)
    source = pd.DatetimeIndex(inputs.dates)
    if source.equals(dates):
        return values
    position = source.get_indexer(dates)
    return np.where(position >= 0, values[np.maximum(position, 0)], np.nan)


@dataclass(frozen=True)
class AtmLevels:
    """Each day's at-the-money term structure, smile correlation and rate, and their sources."""

    dates: pd.DatetimeIndex
    vol_30d: np.ndarray
    """Annualised 30-day ATM vol; NaN where no estimate exists yet (before the first GARCH fit)."""
    source: np.ndarray
    """``"vix_term"``, ``"vix"``, ``"garch"`` or ``""`` (no level) per day."""
    garch_fits: int
    """How many GARCH fits were made."""
    rate: np.ndarray
    """Continuously compounded rate used for discounting and forwards, per day."""
    rate_source: np.ndarray
    """``"tbill"`` or ``"constant"`` (``risk_free_rate``) per day."""
    rho: np.ndarray
    """SSVI correlation per day."""
    rho_source: np.ndarray
    """``"skew"`` or ``"constant"`` (``ssvi_rho``) per day."""
    knots: np.ndarray
    """ATM total variance at tau = 0 and at ``TENORS`` per day (ssvi), non-decreasing."""

    def source_counts(self) -> dict[str, int]:
        """Days per ATM source, for provenance."""
        labels = ("vix_term", "vix", "garch", "")
        return {label or "none": int(np.sum(self.source == label)) for label in labels}


def _backcast(eps2: np.ndarray) -> float:
    n = min(_BACKCAST_LENGTH, eps2.size)
    weights = _BACKCAST_LAMBDA ** np.arange(n)
    return float(np.sum(weights * eps2[:n]) / np.sum(weights))


def garch_forecast_vol(closes: np.ndarray, config: MarketConfig) -> tuple[np.ndarray, int]:
    """Annualised 21-day-average GARCH(1,1) forecast for each day, using returns up to that day.

    Returns the forecast per day (NaN before ``garch_min_history`` returns exist) and the number
    of fits. The variance recursion is a linear filter, so it runs through ``lfilter`` rather
    than a Python loop.
    """
    returns = 100.0 * np.diff(np.log(closes))  # returns[s - 1] is day s's return
    n_days = closes.size
    forecast = np.full(n_days, np.nan)
    first = config.garch_min_history
    if n_days <= first:
        return forecast, 0
    fits = 0
    start_values = None
    for fit_day in range(first, n_days, config.garch_refit_every):
        history = returns[:fit_day]  # day fit_day's own return is returns[fit_day - 1]
        model = arch_model(history, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
        with warnings.catch_warnings():
            # Warm starts from the previous fit can sit outside the constraints after a regime
            # change; arch then uses its own starting values, which is what we want.
            warnings.simplefilter("ignore", StartingValueWarning)
            result = model.fit(disp="off", starting_values=start_values, show_warning=False)
        start_values = result.params.to_numpy()
        fits += 1
        mu, omega, alpha, beta = start_values
        last_day = min(fit_day + config.garch_refit_every, n_days)
        eps2 = (returns[: last_day - 1] - mu) ** 2
        # sigma2[s] is the variance of returns[s]:
        # sigma2[s + 1] = omega + alpha eps2[s] + beta sigma2[s]
        drive = omega + alpha * eps2
        sigma2_next = lfilter([1.0], [1.0, -beta], drive, zi=[beta * _backcast(eps2)])[0]
        # On day d (index d in closes), the last return seen is returns[d - 1]; the one-step
        # forecast for day d + 1 is sigma2_next[d - 1].
        days = np.arange(fit_day, last_day)
        next_var = sigma2_next[days - 1]
        persistence = alpha + beta
        if persistence < 1.0:
            long_run = omega / (1.0 - persistence)
            h = FORECAST_HORIZON_DAYS
            decay = (1.0 - persistence**h) / ((1.0 - persistence) * h)
            mean_var = long_run + (next_var - long_run) * decay
        else:
            mean_var = next_var
        forecast[days] = np.sqrt(TRADING_DAYS_PER_YEAR * mean_var) / 100.0
    return forecast, fits


def atm_term(atm_30d: np.ndarray, tau: np.ndarray, config: MarketConfig) -> np.ndarray:
    """ATM vol at time to expiry ``tau`` (years) given the 30-day level."""
    kappa = config.term_reversion
    long_run_var = config.long_run_vol**2
    tau = np.maximum(tau, 1e-6)
    if kappa == 0.0:
        return np.broadcast_to(atm_30d, np.broadcast(atm_30d, tau).shape).astype(float)
    g = (1.0 - np.exp(-kappa * tau)) / (kappa * tau)
    g30 = (1.0 - np.exp(-kappa * THIRTY_DAYS)) / (kappa * THIRTY_DAYS)
    variance = long_run_var + (atm_30d**2 - long_run_var) * g / g30
    # Floor at a tenth of the 30-day variance so an extreme inversion never goes negative.
    return np.sqrt(np.maximum(variance, 0.01 * atm_30d**2))


def _phi(theta: np.ndarray, rho: np.ndarray, eta: float, gamma: float) -> np.ndarray:
    theta = np.maximum(theta, 1e-300)
    power_law = eta * np.exp(-gamma * np.log(theta) - (1.0 - gamma) * np.log1p(theta))
    scale = theta * (1.0 + np.abs(rho))
    lee = 4.0 * (1.0 - _BUTTERFLY_MARGIN) / scale  # theta phi (1 + |rho|) < 4
    curvature = 2.0 / np.sqrt(scale)  # theta phi^2 (1 + |rho|) <= 4
    return np.minimum(power_law, np.minimum(lee, curvature))


def ssvi_phi(theta: np.ndarray, rho: np.ndarray, config: MarketConfig) -> np.ndarray:
    """SSVI ``phi(theta)`` (power law), capped at the no-butterfly-arbitrage bounds."""
    return _phi(np.asarray(theta, dtype=float), np.asarray(rho), config.ssvi_eta, config.ssvi_gamma)


def _total_variance(
    k: np.ndarray, theta: np.ndarray, rho: np.ndarray, phi: np.ndarray
) -> np.ndarray:
    pk = phi * k
    return 0.5 * theta * (1.0 + rho * pk + np.sqrt((pk + rho) ** 2 + (1.0 - rho * rho)))


def ssvi_total_variance(
    k: np.ndarray, theta: np.ndarray, rho: np.ndarray, config: MarketConfig
) -> np.ndarray:
    """Total implied variance ``w(k)`` of the SSVI slice with ATM total variance ``theta``."""
    return _total_variance(k, theta, rho, ssvi_phi(theta, rho, config))


def ssvi_vol(
    k: np.ndarray, theta: np.ndarray, rho: np.ndarray, tau: np.ndarray, config: MarketConfig
) -> np.ndarray:
    """Implied vol ``sqrt(w(k) / tau)`` at log-moneyness ``k = ln(K / F)``."""
    return np.sqrt(ssvi_total_variance(k, theta, rho, config) / tau)


@lru_cache(maxsize=32)
def _variance_swap_table(eta: float, gamma: float) -> np.ndarray:
    """Variance swap / ATM total variance of the SSVI slice on the (log theta, rho) grid.

    Fair variance is the expected total variance over ``z = d2``: ``VS = int w(k(z)) N'(z) dz``
    (Gatheral, The Volatility Surface, ch. 11), summed on a sinh-spaced grid in
    ``u = k / sqrt(theta)`` as ``sum w N(z)`` differences; d2 falls with ``k`` on an
    arbitrage-free slice, so the differences are the probability masses.
    """
    table = np.empty((_VS_LOG_THETA.size, _VS_RHO.size))
    rho = _VS_RHO[:, None]
    for row, theta in enumerate(np.exp(_VS_LOG_THETA)):
        k = _VS_U[None, :] * np.sqrt(theta)
        w = _total_variance(k, theta, rho, _phi(np.asarray(theta), rho, eta, gamma))
        sd = np.sqrt(w)
        z = np.clip(-k / sd - 0.5 * sd, -_VS_Z_LIMIT, _VS_Z_LIMIT)
        cdf = ndtr(z)
        mass = cdf[:, :-1] - cdf[:, 1:]
        table[row] = np.sum(0.5 * (w[:, 1:] + w[:, :-1]) * mass, axis=1) / theta
    table.setflags(write=False)
    return table


def variance_swap_factor(theta: np.ndarray, rho: np.ndarray, config: MarketConfig) -> np.ndarray:
    """``VS / theta``: how far the slice's variance-swap rate sits above ATM (bilinear in
    ``ln theta`` and ``rho`` on a table computed once per ``eta``, ``gamma``)."""
    table = _variance_swap_table(config.ssvi_eta, config.ssvi_gamma)
    x = np.clip(np.log(np.maximum(theta, 1e-300)), _VS_LOG_THETA[0], _VS_LOG_THETA[-1])
    y = np.clip(rho, _VS_RHO[0], _VS_RHO[-1])
    i = np.clip(np.searchsorted(_VS_LOG_THETA, x) - 1, 0, _VS_LOG_THETA.size - 2)
    j = np.clip(np.searchsorted(_VS_RHO, y) - 1, 0, _VS_RHO.size - 2)
    fx = (x - _VS_LOG_THETA[i]) / (_VS_LOG_THETA[i + 1] - _VS_LOG_THETA[i])
    fy = (y - _VS_RHO[j]) / (_VS_RHO[j + 1] - _VS_RHO[j])
    low = table[i, j] + fy * (table[i, j + 1] - table[i, j])
    high = table[i + 1, j] + fy * (table[i + 1, j + 1] - table[i + 1, j])
    return low + fx * (high - low)


def atm_from_index(
    index_vol: np.ndarray, tau: np.ndarray, rho: np.ndarray, config: MarketConfig
) -> np.ndarray:
    """ATM total variance at ``tau`` of the day whose variance-swap index is ``index_vol``
    (a decimal, VIX / 100): the fixed point of ``theta = index_vol^2 tau / factor(theta)``, times
    ``vix_atm_ratio^2``. The factor moves slowly with theta, so a few steps converge."""
    target = np.asarray(index_vol, dtype=float) ** 2 * tau
    theta = 0.7 * target
    for _ in range(_VS_ITERATIONS):
        theta = target / variance_swap_factor(theta, rho, config)
    return theta * config.vix_atm_ratio**2


def skew_rho(skew: np.ndarray, config: MarketConfig) -> tuple[np.ndarray, np.ndarray]:
    """SSVI rho per day from SKEW, and whether SKEW had the day (else ``ssvi_rho``)."""
    skew = np.asarray(skew, dtype=float)
    has_skew = np.isfinite(skew)
    tied = config.ssvi_rho + config.ssvi_rho_per_skew * (skew - SKEW_PIVOT) / 10.0
    rho = np.where(has_skew, np.clip(tied, -RHO_LIMIT, RHO_LIMIT), config.ssvi_rho)
    return rho, has_skew


def _fill_tenors(theta: np.ndarray) -> np.ndarray:
    """Missing tenors (NaN) of each row, linear in total variance between the present ones and
    flat in vol beyond them; rows without any tenor stay NaN."""
    n, m = theta.shape
    prev_theta, prev_tau = np.full((n, m), np.nan), np.full((n, m), np.nan)
    next_theta, next_tau = np.full((n, m), np.nan), np.full((n, m), np.nan)
    last_theta, last_tau = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(m):
        present = np.isfinite(theta[:, j])
        last_theta = np.where(present, theta[:, j], last_theta)
        last_tau = np.where(present, TENORS[j], last_tau)
        prev_theta[:, j], prev_tau[:, j] = last_theta, last_tau
    last_theta, last_tau = np.full(n, np.nan), np.full(n, np.nan)
    for j in range(m - 1, -1, -1):
        present = np.isfinite(theta[:, j])
        last_theta = np.where(present, theta[:, j], last_theta)
        last_tau = np.where(present, TENORS[j], last_tau)
        next_theta[:, j], next_tau[:, j] = last_theta, last_tau
    with np.errstate(invalid="ignore", divide="ignore"):
        weight = (TENORS - prev_tau) / (next_tau - prev_tau)
        between = prev_theta + (next_theta - prev_theta) * np.where(next_tau > prev_tau, weight, 0)
        after = prev_theta * TENORS / prev_tau
        before = next_theta * TENORS / next_tau
    filled = np.where(np.isfinite(next_theta), before, np.nan)
    filled = np.where(np.isfinite(prev_theta), after, filled)
    filled = np.where(np.isfinite(prev_theta) & np.isfinite(next_theta), between, filled)
    return filled


def atm_levels(
    closes: pd.Series,
    vix: pd.Series | None,
    config: MarketConfig,
    inputs: IndexInputs | None = None,
) -> AtmLevels:
    """Per day of ``closes``: the ATM term structure, rho and rate (module docstring).

    ``vix`` (a close series) wins over ``inputs.vix`` on the days it has; ``inputs`` values are
    taken for the same day only (the loader has already done any past-only filling).
    """
    dates = pd.DatetimeIndex(closes.index)
    n = len(dates)
    garch, fits = garch_forecast_vol(closes.to_numpy(dtype=float), config)
    garch_level = garch * config.garch_iv_premium
    index = np.full((n, TENORS.size), np.nan)
    skew = np.full(n, np.nan)
    given_rate = np.full(n, np.nan)
    if inputs is not None:
        for j, name in enumerate(TERM_FIELDS):
            index[:, j] = _aligned(inputs, name, dates)
        skew = _aligned(inputs, "skew", dates)
        given_rate = _aligned(inputs, "rate", dates)
    if vix is not None:
        same_day = vix.reindex(dates).to_numpy(dtype=float)
        index[:, _VIX_COLUMN] = np.where(np.isnan(same_day), index[:, _VIX_COLUMN], same_day)
    index = np.where(index > 0, index / 100.0, np.nan)  # a zero or negative close is no close
    has_rate = np.isfinite(given_rate)
    rate = np.where(has_rate, given_rate, config.risk_free_rate)
    rho, has_skew = skew_rho(skew, config)
    has_vix = np.isfinite(index[:, _VIX_COLUMN])
    fallback = np.where(np.isnan(garch_level), "", "garch").astype(object)

    if config.smile_model == "quadratic":
        vol_30d = np.where(has_vix, index[:, _VIX_COLUMN] * config.vix_atm_ratio, garch_level)
        source = np.where(has_vix, "vix", fallback).astype(object)
        knots = atm_term(vol_30d[:, None], TENORS, config) ** 2 * TENORS
    else:
        index_theta = np.full_like(index, np.nan)
        present = np.isfinite(index)
        rows, cols = np.nonzero(present)
        index_theta[rows, cols] = atm_from_index(index[present], TENORS[cols], rho[rows], config)
        term_day = has_vix & (np.sum(present, axis=1) > 1)
        vix_30d = np.sqrt(index_theta[:, _VIX_COLUMN] / THIRTY_DAYS)
        vol_30d = np.where(has_vix, vix_30d, garch_level)
        modelled = atm_term(vol_30d[:, None], TENORS, config) ** 2 * TENORS
        knots = np.where(term_day[:, None], _fill_tenors(index_theta), modelled)
        source = np.where(term_day, "vix_term", np.where(has_vix, "vix", fallback)).astype(object)
    knots = np.fmax.accumulate(knots, axis=1)  # calendar arbitrage: theta non-decreasing in tau
    knots = np.where(np.isnan(vol_30d)[:, None], np.nan, knots)
    if config.smile_model == "ssvi":
        vol_30d = np.sqrt(knots[:, _VIX_COLUMN] / THIRTY_DAYS)
    return AtmLevels(
        dates=dates,
        vol_30d=vol_30d,
        source=source,
        garch_fits=fits,
        rate=rate,
        rate_source=np.where(has_rate, "tbill", "constant").astype(object),
        rho=rho,
        rho_source=np.where(has_skew, "skew", "constant").astype(object),
        knots=np.concatenate([np.zeros((n, 1)), knots], axis=1),
    )


def atm_total_variance(knots: np.ndarray, day: np.ndarray, tau: np.ndarray) -> np.ndarray:
    """ATM total variance of day ``day`` at ``tau`` (years) from :attr:`AtmLevels.knots`:
    linear between knots (flat vol below the first tenor), flat vol beyond the last."""
    width = knots.shape[1]
    segment = np.clip(np.searchsorted(_KNOT_TAU, tau, side="right") - 1, 0, width - 2)
    flat = knots.ravel()
    base = np.asarray(day, dtype=np.int64) * width
    low = flat[base + segment]
    high = flat[base + segment + 1]
    start = _KNOT_TAU[segment]
    theta = low + (high - low) * (tau - start) / (_KNOT_TAU[segment + 1] - start)
    last = _KNOT_TAU[-1]
    return np.where(tau > last, flat[base + width - 1] * (tau / last), theta)


def surface_vol(
    atm_30d: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    tau: np.ndarray,
    config: MarketConfig,
    rate: np.ndarray | float | None = None,
) -> np.ndarray:
    """Quadratic-model implied vol for each (day level, spot, strike, time to expiry),
    broadcast together; ``rate`` defaults to ``risk_free_rate``."""
    atm = atm_term(atm_30d, tau, config)
    tau = np.maximum(tau, _MIN_TAU)
    r = config.risk_free_rate if rate is None else rate
    forward = spot * np.exp((r - config.dividend_yield) * tau)
    m = np.log(strike / forward) / (atm * np.sqrt(tau))
    m = np.clip(m, -_MONEYNESS_CLIP, _MONEYNESS_CLIP)
    shape = np.maximum(_SMILE_FLOOR, 1.0 + config.skew * m + config.smile * m * m)
    return atm * shape
