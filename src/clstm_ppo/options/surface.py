"""Implied-volatility surface per trading day, from the past only.

At-the-money 30-day level:
- ``vix_atm_ratio`` x VIX / 100 on days where the implied-vol index has a close (the market's
  own 30-day implied vol; VIX includes the skew, so ATM vol is a little below it);
- otherwise a GARCH(1,1) forecast from the ``arch`` package: parameters refitted every
  ``garch_refit_every`` days on an expanding window of past log returns (the first fit after
  ``garch_min_history`` days), the conditional variance filtered forward with the latest fitted
  parameters, averaged over the next 21 trading days, annualised, and multiplied by
  ``garch_iv_premium`` (implied vol trades above forecast vol: the variance risk premium).
Days before the first fit have no level (NaN) and cannot be traded.

Term structure: expected average variance of a mean-reverting variance (as in Heston),
``atm(tau)^2 = LR^2 + (atm30^2 - LR^2) * g(tau) / g(30d)``, ``g(tau) = (1 - e^{-k tau}) / (k tau)``,
so a high VIX is inverted and a low one upward sloping.

Skew and smile in standardised moneyness ``m = ln(K / F) / (atm(tau) sqrt(tau))``:
``iv = atm(tau) * max(floor, 1 + skew * m + smile * m^2)`` with ``m`` clipped to +-4.

Everything on day ``t`` depends on closes up to and including ``t`` only (a test perturbs every
later price and checks the surface on day ``t`` is unchanged).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch import arch_model
from arch.utility.exceptions import StartingValueWarning
from scipy.signal import lfilter

from clstm_ppo.config import MarketConfig

TRADING_DAYS_PER_YEAR = 252
FORECAST_HORIZON_DAYS = 21  # trading days in the 30 calendar days that VIX spans
THIRTY_DAYS = 30.0 / 365.0
_SMILE_FLOOR = 0.3
_MONEYNESS_CLIP = 4.0
_BACKCAST_LAMBDA = 0.94  # arch's own backcast weighting of the first squared residuals
_BACKCAST_LENGTH = 75


@dataclass(frozen=True)
class AtmLevels:
    """The 30-day at-the-money implied vol of each day and where it came from."""

    dates: pd.DatetimeIndex
    vol_30d: np.ndarray
    """Annualised; NaN where no estimate exists yet (before the first GARCH fit)."""
    source: np.ndarray
    """``"vix"``, ``"garch"`` or ``""`` (no level) per day."""
    garch_fits: int
    """How many GARCH fits were made."""


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


def atm_levels(closes: pd.Series, vix: pd.Series | None, config: MarketConfig) -> AtmLevels:
    """30-day ATM vol per day of ``closes``: VIX where it has that day, GARCH otherwise."""
    dates = pd.DatetimeIndex(closes.index)
    garch, fits = garch_forecast_vol(closes.to_numpy(dtype=float), config)
    level = garch * config.garch_iv_premium
    source = np.where(np.isnan(level), "", "garch").astype(object)
    if vix is not None:
        same_day = vix.reindex(dates).to_numpy(dtype=float) / 100.0 * config.vix_atm_ratio
        has_vix = ~np.isnan(same_day)
        level = np.where(has_vix, same_day, level)
        source[has_vix] = "vix"
    return AtmLevels(dates, level, source, fits)


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


def surface_vol(
    atm_30d: np.ndarray,
    spot: np.ndarray,
    strike: np.ndarray,
    tau: np.ndarray,
    config: MarketConfig,
) -> np.ndarray:
    """Implied vol for each (day level, spot, strike, time to expiry), broadcast together."""
    atm = atm_term(atm_30d, tau, config)
    tau = np.maximum(tau, 1e-6)
    forward = spot * np.exp((config.risk_free_rate - config.dividend_yield) * tau)
    m = np.log(strike / forward) / (atm * np.sqrt(tau))
    m = np.clip(m, -_MONEYNESS_CLIP, _MONEYNESS_CLIP)
    shape = np.maximum(_SMILE_FLOOR, 1.0 + config.skew * m + config.smile * m * m)
    return atm * shape
