"""Modelled option chains: any day of an underlying's history, priced from the past only.

:class:`OptionMarket` holds, per trading day, the spot close, the ATM term structure, smile
correlation and rate (:mod:`clstm_ppo.options.surface`). Quotes are a pure vectorised function of
(day, strike, expiry, right): Black-Scholes-Merton mid at the surface vol with the day's rate for
discounting and the forward, and a bid/ask from the spread model.
The environments price thousands of legs per step through :meth:`OptionMarket.quote`;
:meth:`OptionMarket.chain` lays out a whole listed chain for people and for the replay check.

Spread model (the only place the spread enters; the cost model fills at these bid/ask):
``spread = max(spread_min, spread_base * time_value * (1 + spread_moneyness * |m|)
* (1 + spread_short_dated * max(0, sqrt(30 / days) - 1)) + spread_intrinsic * intrinsic)``,
with ``m`` the standardised moneyness ``ln(K / F) / (ATM vol sqrt(tau))`` (market makers quote
the time value; the intrinsic part is hedged with the underlying, so it adds only a little); bid
rounded down and ask up to the listing tick ($0.05 under $3, $0.10 above). So
far-from-the-money, short-dated and cheap options have wider relative spreads, as in real
markets. A worthless option quotes 0 bid.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.calendar import listed_expiries
from clstm_ppo.data.market import MarketData
from clstm_ppo.errors import DataError
from clstm_ppo.options.bsm import bsm_greeks, bsm_mark, bsm_price, intrinsic_value
from clstm_ppo.options.surface import (
    AtmLevels,
    IndexInputs,
    atm_levels,
    atm_term,
    atm_total_variance,
    ssvi_vol,
    surface_vol,
)

_NICE_STEPS = np.array([0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0])
_STRIKE_STEP_FRACTION = 0.003  # listed strike spacing is roughly 0.3% of spot near the money
_NS_PER_DAY = 86_400 * 10**9
_MIN_TAU = 1e-6


class Quotes(NamedTuple):
    """Vectorised quotes, one entry per requested contract (per share, not x100)."""

    bid: np.ndarray
    ask: np.ndarray
    mid: np.ndarray
    iv: np.ndarray
    delta: np.ndarray
    gamma: np.ndarray
    theta: np.ndarray
    vega: np.ndarray
    days_to_expiry: np.ndarray


def strike_step(spot: float) -> float:
    """Listing increment for an underlying at ``spot`` (0.5, 1, 2.5, 5, 10, 25 ...)."""
    target = spot * _STRIKE_STEP_FRACTION
    index = min(int(np.searchsorted(_NICE_STEPS, target)), _NICE_STEPS.size - 1)
    return float(_NICE_STEPS[index])


def spread_quotes(
    mid: np.ndarray,
    intrinsic: np.ndarray,
    moneyness_sd: np.ndarray,
    days: np.ndarray,
    config: MarketConfig,
) -> tuple[np.ndarray, np.ndarray]:
    """Bid and ask around ``mid`` (see the module docstring for the formula)."""
    short_dated = np.maximum(0.0, np.sqrt(30.0 / np.maximum(days, 1.0)) - 1.0)
    relative = (
        config.spread_base
        * (1.0 + config.spread_moneyness * np.abs(moneyness_sd))
        * (1.0 + config.spread_short_dated * short_dated)
    )
    time_value = np.maximum(mid - intrinsic, 0.0)
    spread = np.maximum(
        config.spread_min, relative * time_value + config.spread_intrinsic * intrinsic
    )
    tick = np.where(mid < 3.0, 0.05, 0.10)
    bid = np.floor((mid - spread / 2.0) / tick + 1e-9) * tick
    ask = np.ceil((mid + spread / 2.0) / tick - 1e-9) * tick
    bid = np.maximum(bid, 0.0)
    ask = np.maximum(ask, bid + tick)
    return np.round(bid, 2), np.round(ask, 2)


@dataclass(frozen=True)
class OptionMarket:
    """Spot and implied-vol level of each trading day of one underlying, and its option quotes."""

    symbol: str
    dates: pd.DatetimeIndex
    spot: np.ndarray
    levels: AtmLevels
    config: MarketConfig
    provenance: dict[str, Any]

    @property
    def first_priced_day(self) -> int:
        """Index of the first day with an implied-vol level (earlier days cannot be traded)."""
        priced = np.flatnonzero(~np.isnan(self.levels.vol_30d))
        if priced.size == 0:
            raise DataError(f"{self.symbol}: no day has an implied-vol level (too little history)")
        return int(priced[0])

    def day_index(self, date: pd.Timestamp | str) -> int:
        """Position of trading day ``date``; a date outside the data names the data's range."""
        stamp = pd.Timestamp(date).normalize()
        position = self.dates.searchsorted(stamp)
        if position >= len(self.dates) or self.dates[position] != stamp:
            raise DataError(
                f"date {stamp.date()}: not a trading day of {self.symbol} "
                f"({self.dates[0].date()}..{self.dates[-1].date()})"
            )
        return int(position)

    def quote(
        self,
        day: np.ndarray,
        strike: np.ndarray,
        expiry: np.ndarray,
        is_call: np.ndarray,
    ) -> Quotes:
        """Quotes for contracts given by day index, strike, expiry (datetime64) and right."""
        day = np.asarray(day, dtype=np.int64)
        strike = np.asarray(strike, dtype=float)
        quote_ns = self.dates.as_unit("ns").asi8[day]
        expiry_ns = np.asarray(expiry, dtype="datetime64[ns]").astype(np.int64)
        days = (expiry_ns - quote_ns) / _NS_PER_DAY
        if np.any(days < 0):
            raise ValueError("quote requested for an option past its expiry")
        tau = days / 365.0
        spot = self.spot[day]
        iv, moneyness_sd, rate = self._surface(day, spot, strike, tau)
        div = self.config.dividend_yield
        expired = days <= 0
        live_tau = np.where(expired, 1.0, tau)  # placeholder for rows settled at intrinsic
        price = bsm_price(spot, strike, live_tau, rate, div, iv, is_call)
        greeks = bsm_greeks(spot, strike, live_tau, rate, div, iv, is_call)
        intrinsic = intrinsic_value(spot, strike, is_call)
        mid = np.where(expired, intrinsic, price)
        bid, ask = spread_quotes(mid, intrinsic, moneyness_sd, days, self.config)
        itm = intrinsic > 0
        step_delta = np.where(itm, np.where(np.asarray(is_call, bool), 1.0, -1.0), 0.0)
        zero = np.zeros_like(mid)
        return Quotes(
            bid=bid,
            ask=ask,
            mid=mid,
            iv=np.where(expired, np.nan, iv),  # a settled contract has no implied vol
            delta=np.where(expired, step_delta, greeks.delta),
            gamma=np.where(expired, zero, greeks.gamma),
            theta=np.where(expired, zero, greeks.theta),
            vega=np.where(expired, zero, greeks.vega),
            days_to_expiry=days,
        )

    def _surface(
        self, day: np.ndarray, spot: np.ndarray, strike: np.ndarray, tau: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Implied vol, standardised moneyness (for the spread) and rate of each contract."""
        cfg = self.config
        levels = self.levels
        rate = levels.rate[day]
        if cfg.smile_model == "quadratic":
            atm30 = levels.vol_30d[day]
            iv = surface_vol(atm30, spot, strike, tau, cfg, rate)
            forward = spot * np.exp((rate - cfg.dividend_yield) * tau)
            sd = atm_term(atm30, tau, cfg) * np.sqrt(np.maximum(tau, _MIN_TAU))
            return iv, np.log(strike / forward) / sd, rate
        tau = np.maximum(tau, _MIN_TAU)  # an expiring contract still gets a (tiny) smile
        theta = atm_total_variance(levels.knots, day, tau)
        k = np.log(strike / spot) - (rate - cfg.dividend_yield) * tau
        iv = ssvi_vol(k, theta, levels.rho[day], tau, cfg)
        return iv, k / np.sqrt(theta), rate

    def mark(
        self, day: np.ndarray, strike: np.ndarray, expiry_ns: np.ndarray, is_call: np.ndarray
    ) -> tuple[np.ndarray, ...]:
        """Mid, bid, ask, delta, gamma, theta, vega of live contracts (expiry after ``day``):
        the values of :meth:`quote` through the one-pass kernel, for the environments' marks."""
        days = (expiry_ns - self._dates_ns[day]) / _NS_PER_DAY
        tau = days / 365.0
        spot = self.spot[day]
        iv, moneyness_sd, rate = self._surface(day, spot, strike, tau)
        mid, delta, gamma, theta, vega = bsm_mark(
            spot, strike, tau, rate, self.config.dividend_yield, iv, is_call
        )
        intrinsic = intrinsic_value(spot, strike, is_call)
        bid, ask = spread_quotes(mid, intrinsic, moneyness_sd, days, self.config)
        return mid, bid, ask, delta, gamma, theta, vega

    @property
    def _dates_ns(self) -> np.ndarray:
        return self.dates.as_unit("ns").asi8

    def listed_expiries(self, day: int) -> pd.DatetimeIndex:
        """Expiries listed on trading day ``day``."""
        return listed_expiries(
            self.dates[day],
            max_days=self.config.max_expiry_days,
            weeklies=self.config.weekly_expiries,
        )

    def listed_strikes(self, day: int) -> np.ndarray:
        """Strike grid around the day's close, spaced by :func:`strike_step`."""
        spot = float(self.spot[day])
        step = strike_step(spot)
        low = np.ceil(spot * (1.0 - self.config.strike_range) / step) * step
        high = np.floor(spot * (1.0 + self.config.strike_range) / step) * step
        return np.round(np.arange(low, high + step / 2, step), 4)

    def chain(self, date: pd.Timestamp | str) -> pd.DataFrame:
        """The full listed chain of ``date`` in the quote-frame schema (see data.frames)."""
        day = self.day_index(date)
        if np.isnan(self.levels.vol_30d[day]):
            raise DataError(
                f"date {self.dates[day].date()}: no implied-vol level yet for {self.symbol} "
                f"(first priced day {self.dates[self.first_priced_day].date()})"
            )
        expiries = self.listed_expiries(day)
        strikes = self.listed_strikes(day)
        exp_grid, strike_grid, call_grid = np.meshgrid(
            expiries.to_numpy(), strikes, np.array([True, False]), indexing="ij"
        )
        flat = exp_grid.ravel(), strike_grid.ravel(), call_grid.ravel()
        quotes = self.quote(np.full(flat[0].size, day), flat[1], flat[0], flat[2])
        frame = pd.DataFrame(
            {
                "date": self.dates[day],
                "expiry": pd.DatetimeIndex(flat[0]),
                "strike": flat[1],
                "right": np.where(flat[2], "C", "P"),
                "bid": quotes.bid,
                "ask": quotes.ask,
                "mid": quotes.mid,
                "underlying_price": self.spot[day],
                "iv": quotes.iv,
                "delta": quotes.delta,
                "gamma": quotes.gamma,
                "theta": quotes.theta,
                "vega": quotes.vega,
                "days_to_expiry": quotes.days_to_expiry,
            }
        )
        return frame.sort_values(["expiry", "right", "strike"], ignore_index=True)


def build_option_market(
    market: MarketData,
    vix: MarketData | None,
    config: MarketConfig,
    inputs: IndexInputs | None = None,
) -> OptionMarket:
    """Compute every day's surface of ``market``: from the index family and rate in ``inputs``
    where given (:func:`clstm_ppo.data.indices.market_inputs`), VIX where given, GARCH otherwise.
    ``vix`` wins over ``inputs.vix`` on the days it has."""
    closes = market.bars["close"]
    levels = atm_levels(closes, None if vix is None else vix.bars["close"], config, inputs)
    by_source = levels.source_counts()
    describe = getattr(inputs, "provenance", None)
    provenance = {
        "underlying": market.provenance(),
        "implied_vol_index": None if vix is None else vix.provenance(),
        "surface_inputs": None
        if inputs is None
        else (describe() if callable(describe) else type(inputs).__name__),
        "smile_model": config.smile_model,
        "days_by_atm_source": by_source,
        "days_from_vix": by_source["vix"] + by_source["vix_term"],
        "days_from_garch": by_source["garch"],
        "garch_fits": levels.garch_fits,
        "rate": {
            "days_from_series": int(np.sum(levels.rate_source == "tbill")),
            "days_fallback_constant": int(np.sum(levels.rate_source == "constant")),
            "fallback_rate": config.risk_free_rate,
        },
        "skew": {
            "days_rho_from_skew": int(np.sum(levels.rho_source == "skew")),
            "days_rho_constant": int(np.sum(levels.rho_source == "constant")),
        },
        "market_config": config.model_dump(mode="json"),
    }
    return OptionMarket(
        market.symbol,
        pd.DatetimeIndex(market.bars.index),
        closes.to_numpy(dtype=float),
        levels,
        config,
        provenance,
    )


@lru_cache(maxsize=8)
def _cached_market(underlying_spec: str, vix_spec: str | None, config_json: str) -> OptionMarket:
    from clstm_ppo.data.market import load_spec

    config = MarketConfig.model_validate_json(config_json)
    market = load_spec(underlying_spec)
    vix = None if vix_spec is None else load_spec(vix_spec, required=("close",))
    return build_option_market(market, vix, config)


def option_market_for_spec(
    underlying_spec: str, vix_spec: str | None, config: MarketConfig
) -> OptionMarket:
    """Build (once per process) the option market of a ``SOURCE:ARG`` data spec."""
    return _cached_market(underlying_spec, vix_spec, json.dumps(config.model_dump(mode="json")))
