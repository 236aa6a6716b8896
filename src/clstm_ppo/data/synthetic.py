"""Simulated daily bars (GBM or Heston), generated only when the user asks for ``synthetic:``.

The result's ``source`` is ``"synthetic"`` and its notes name the model, parameters and seed, so
a simulated series can never be mistaken for market data. ``vol_index`` returns the model's own
annualised volatility in VIX points, the implied-vol input the option model needs.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from clstm_ppo.data.calendar import trading_days
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError

MODELS = ("gbm", "heston")
_DEFAULT_START = dt.date(2005, 1, 3)
_DEFAULT_END = dt.date(2018, 12, 31)
_PARAMS = {
    "gbm": {"s0": 1200.0, "mu": 0.07, "sigma": 0.18},
    # Heston with a negative spot-vol correlation produces the equity put skew.
    "heston": {
        "s0": 1200.0,
        "mu": 0.07,
        "v0": 0.03,
        "kappa": 3.0,
        "theta": 0.035,
        "xi": 0.5,
        "rho": -0.7,
    },
}


def _simulate(model: str, days: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Daily closes and the annualised variance in force each day."""
    rng = np.random.default_rng(seed)
    p = _PARAMS[model]
    dt_year = 1.0 / 252.0
    z1 = rng.standard_normal(days)
    if model == "gbm":
        variance = np.full(days, p["sigma"] ** 2)
    else:
        z2 = p["rho"] * z1 + np.sqrt(1 - p["rho"] ** 2) * rng.standard_normal(days)
        variance = np.empty(days)
        v = p["v0"]
        for i in range(days):  # full-truncation Euler: the variance path is inherently serial
            variance[i] = v
            v = max(
                v
                + p["kappa"] * (p["theta"] - v) * dt_year
                + p["xi"] * np.sqrt(v * dt_year) * z2[i],
                1e-6,
            )
    log_returns = (p["mu"] - 0.5 * variance) * dt_year + np.sqrt(variance * dt_year) * z1
    log_returns[0] = 0.0
    closes = p["s0"] * np.exp(np.cumsum(log_returns))
    return closes, variance


def _dates(start: dt.date | None, end: dt.date | None) -> pd.DatetimeIndex:
    dates = trading_days(start or _DEFAULT_START, end or _DEFAULT_END)
    if len(dates) < 2:
        raise DataError(f"synthetic data: fewer than 2 trading days between {start} and {end}")
    return dates.rename("date")


def _check_model(model: str) -> str:
    name = model.lower()
    if name not in MODELS:
        raise DataError(f"synthetic data: unknown model {model!r} (use one of {', '.join(MODELS)})")
    return name


def generate(
    model: str = "gbm", start: dt.date | None = None, end: dt.date | None = None, seed: int = 0
) -> MarketData:
    """OHLCV bars on NYSE trading days from the chosen model."""
    name = _check_model(model)
    dates = _dates(start, end)
    closes, variance = _simulate(name, len(dates), seed)
    rng = np.random.default_rng(seed + 1)
    daily_sd = np.sqrt(variance / 252.0)
    opens = np.concatenate([[closes[0]], closes[:-1]]) * np.exp(
        0.2 * daily_sd * rng.standard_normal(len(dates))
    )
    span = np.abs(rng.standard_normal(len(dates))) * daily_sd * 0.5
    highs = np.maximum(opens, closes) * np.exp(span)
    lows = np.minimum(opens, closes) * np.exp(-span)
    volume = np.round(np.exp(rng.normal(20.5, 0.3, len(dates))))
    bars = pd.DataFrame(
        {"open": opens, "high": highs, "low": lows, "close": closes, "volume": volume}, index=dates
    )
    note = f"SIMULATED {name} path, params {_PARAMS[name]}, seed {seed}: not market data"
    return MarketData(name.upper(), bars, "synthetic", f"clstm_ppo.data.synthetic:{name}", (note,))


def vol_index(
    model: str = "gbm", start: dt.date | None = None, end: dt.date | None = None, seed: int = 0
) -> MarketData:
    """The simulated path's annualised volatility in VIX points (same model, dates and seed)."""
    name = _check_model(model)
    dates = _dates(start, end)
    _, variance = _simulate(name, len(dates), seed)
    bars = pd.DataFrame({"close": 100.0 * np.sqrt(variance)}, index=dates)
    note = f"SIMULATED {name} volatility, seed {seed}: not market data"
    return MarketData("VIX", bars, "synthetic", f"clstm_ppo.data.synthetic:{name}", (note,))
