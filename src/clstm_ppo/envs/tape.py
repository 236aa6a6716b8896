"""The market tape: everything about the market that the environments read, per trading day.

Built once per (data, config) and shared by every environment: spot closes, the option market
(implied-vol levels), technical indicators, the turbulence index, and the day ranges of the
splits. Nothing here is computed with future data:

- indicators come from ``stockstats`` (FinRL's library: MACD, RSI-30, CCI-30, DX-30, Bollinger
  bands), all trailing windows / causal EWMs;
- realised vol is a trailing 21-day standard deviation;
- implied vol is the option market's 30-day ATM level: from the VIX family of the same day's
  close where ``data.vol_indices`` gives it (CBOE publishes at 16:15 ET), else VIX, else a
  past-only GARCH forecast; the T-bill rate is the last DGS3MO dated before the day
  (:func:`clstm_ppo.data.indices.market_inputs`);
- turbulence (FinRL's definition) is the Mahalanobis distance of day ``t``'s vector (underlying
  log return, log change of implied vol, log change of volume) from the mean of the trailing
  ``turbulence_window`` days ``t - W .. t - 1`` under their covariance;
- the turbulence threshold is a percentile of the index over the train split only, and
  expanding: on a train day it uses the train days up to that day, after the train split the
  whole train split (so not even normalisation peeks ahead inside the train split);
- feature normalisation likewise uses the mean and standard deviation of the train-split days up
  to the decision day (the whole train split for validation and test days); a decision day's
  whole window is scaled with that day's statistics. The first tradable day needs
  ``NORMALISATION_MIN_DAYS`` of finite features and turbulence.

A source that must be told a date range (``alpaca``) is asked for the bars from
:func:`history_start` (the train split's start less :func:`warmup_trading_days` of history) to
the test split's end, clipped to yesterday (:func:`history_range`). Local sources (bundled, csv,
synthetic) are read whole, as before: the history before the train split enters the
normalisation statistics, so cutting it would change existing runs.

Feature columns (``FEATURE_NAMES``), z-scored and clipped to +-10:
``log_return, macd, rsi, cci, adx, bollinger_pct_b, realised_vol, implied_vol, turbulence``
(MACD is divided by the close so it is scale-free; turbulence enters as log1p).
"""

from __future__ import annotations

import datetime as dt
import math
import warnings
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd
import stockstats

from clstm_ppo.config import Config, config_from_key, config_key
from clstm_ppo.data.indices import MarketInputs, market_inputs
from clstm_ppo.data.market import (
    MarketData,
    load_spec,
    parse_spec,
    spec_fields,
    underlying_spec,
    vix_spec,
    vol_indices_spec,
)
from clstm_ppo.data.splits import SPLIT_NAMES, split_range
from clstm_ppo.errors import DataError
from clstm_ppo.options.chain import OptionMarket, build_option_market

FEATURE_NAMES = (
    "log_return",
    "macd",
    "rsi",
    "cci",
    "adx",
    "bollinger_pct_b",
    "realised_vol",
    "implied_vol",
    "turbulence",
)
INDICATOR_WARMUP_DAYS = 60  # longest indicator lookback (30-day windows plus their smoothing)
NORMALISATION_MIN_DAYS = 252  # a year of past features before statistics are trusted
WARMUP_MARGIN_DAYS = 63
"""Trading days of slack on top of the computed warm-up: a quarter, for a listing's sparse
first months and multi-day closures (2001-09-11, Hurricane Sandy in 2012-10)."""
CALENDAR_DAYS_PER_TRADING_DAY = 1.5
"""Calendar days per trading day when turning the warm-up into a request date: a year has about
252 NYSE sessions in 365.25 days (1.45); 1.5 leaves room for extra holidays."""
RANGED_SOURCES = ("alpaca",)
"""Sources that must be given a date range (a download); the others are read whole."""
_CLIP = 10.0


def indicator_frame(bars: pd.DataFrame) -> pd.DataFrame:
    """Raw (unnormalised) technical indicators per day; causal by construction."""
    frame = bars[["open", "high", "low", "close", "volume"]].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # stockstats' own pandas deprecation noise
        stats = stockstats.wrap(frame.copy())
        close = frame["close"]
        band = stats["boll_ub"] - stats["boll_lb"]
        result = pd.DataFrame(
            {
                "log_return": np.log(close).diff(),
                "macd": stats["macd"] / close,
                "rsi": stats["rsi_30"],
                "cci": stats["cci_30"],
                "adx": stats["dx_30"],
                "bollinger_pct_b": (close - stats["boll_lb"]) / band.where(band > 0),
            },
            index=bars.index,
        )
    result["realised_vol"] = result["log_return"].rolling(21).std() * np.sqrt(252)
    return result


def turbulence_index(vectors: np.ndarray, window: int) -> np.ndarray:
    """Mahalanobis distance of each row from the trailing ``window`` rows before it (not itself).

    Rolling means and covariances come from cumulative sums, so the whole history costs a few
    array passes; rows with any NaN in their window get NaN.
    """
    n, k = vectors.shape
    result = np.full(n, np.nan)
    if n <= window:
        return result
    finite = np.isfinite(vectors).all(axis=1)
    x = np.where(finite[:, None], vectors, 0.0)
    c1 = np.vstack([np.zeros((1, k)), np.cumsum(x, axis=0)])
    c2 = np.concatenate([np.zeros((1, k, k)), np.cumsum(x[:, :, None] * x[:, None, :], axis=0)])
    bad = np.concatenate([[0], np.cumsum(~finite)])
    days = np.arange(window, n)
    total = c1[days] - c1[days - window]
    mean = total / window
    outer = c2[days] - c2[days - window]
    cov = (outer - window * mean[:, :, None] * mean[:, None, :]) / (window - 1)
    cov += np.eye(k) * 1e-12  # guards a flat window (e.g. constant volume)
    diff = vectors[days] - mean
    solved = np.linalg.solve(cov, diff[:, :, None])[:, :, 0]
    distance = np.einsum("ij,ij->i", diff, solved)
    window_clean = (bad[days] - bad[days - window]) == 0
    result[days] = np.where(window_clean & finite[days], distance, np.nan)
    return result


def _expanding_train_stats(
    values: np.ndarray, train_last: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-day mean/std of each feature over the finite rows up to ``min(day, train_last)``."""
    finite = np.isfinite(values).all(axis=1)
    x = np.where(finite[:, None], values, 0.0)
    c1, c2 = np.cumsum(x, axis=0), np.cumsum(x * x, axis=0)
    cn = np.cumsum(finite)
    end = np.minimum(np.arange(len(values)), train_last)
    n = cn[end].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = c1[end] / n[:, None]
        var = (c2[end] - n[:, None] * mean * mean) / (n[:, None] - 1.0)
        std = np.sqrt(np.maximum(var, 0.0))
    std = np.where(std > 1e-12, std, 1.0)
    return mean, std, cn[end]


def _expanding_threshold(turbulence: np.ndarray, train_last: int, percentile: float) -> np.ndarray:
    """Turbulence threshold per day: the percentile of the train split's turbulence seen so far
    (at least ``NORMALISATION_MIN_DAYS`` values), frozen at its train-end value afterwards."""
    seen = pd.Series(turbulence[: train_last + 1])
    expanding = seen.expanding(min_periods=NORMALISATION_MIN_DAYS).quantile(percentile / 100.0)
    threshold = np.full(len(turbulence), np.nan)
    threshold[: train_last + 1] = expanding.to_numpy()
    threshold[train_last + 1 :] = threshold[train_last]
    return threshold


def _normalised_windows(
    values: np.ndarray, mean: np.ndarray, std: np.ndarray, window: int, first_usable: int
) -> np.ndarray:
    """The observation window of every decision day, scaled with that day's statistics."""
    days = np.arange(len(values))
    lags = np.arange(window - 1, -1, -1)
    index = np.clip(days[:, None] - lags[None, :], 0, None)
    scaled = (values[index] - mean[:, None, :]) / std[:, None, :]
    scaled[:first_usable] = 0.0
    return np.nan_to_num(np.clip(scaled, -_CLIP, _CLIP)).astype(np.float32)


@dataclass(frozen=True, eq=False)  # identity hashing: tapes key the per-process caches
class MarketTape:
    """Per-day market arrays shared by every environment built from the same data and config."""

    dates: pd.DatetimeIndex
    spot: np.ndarray
    volume: np.ndarray
    windows: np.ndarray
    """(days, window, len(FEATURE_NAMES)) float32: for decision day ``t`` the features of days
    ``t - window + 1 .. t``, normalised with the statistics known on day ``t``."""
    raw_features: pd.DataFrame
    turbulence: np.ndarray
    turbulence_threshold: np.ndarray
    """Threshold in force each day (expanding train-split percentile, frozen after train)."""
    turbulent: np.ndarray
    """True where turbulence is above the threshold: only hold and close are allowed."""
    option_market: OptionMarket
    first_usable_day: int
    """First day with every feature and an implied-vol level (earlier days cannot be traded)."""
    split_days: dict[str, tuple[int, int]]
    """First and last day index of each split (inclusive), clipped to the usable days."""
    provenance: dict[str, Any] = field(default_factory=dict)

    def split_bounds(self, split: str) -> tuple[int, int]:
        if split not in self.split_days:
            raise DataError(f"split {split!r}: not usable in this data ({self._coverage()})")
        return self.split_days[split]

    def _coverage(self) -> str:
        return ", ".join(
            f"{name} {self.dates[a].date()}..{self.dates[b].date()}"
            for name, (a, b) in self.split_days.items()
        )


def build_tape(
    market: MarketData,
    vix: MarketData | None,
    config: Config,
    inputs: MarketInputs | None = None,
) -> MarketTape:
    """Compute the tape of ``market`` (see the module docstring for every rule)."""
    option_market = build_option_market(market, vix, config.market, inputs)
    bars = market.bars
    raw = indicator_frame(bars)
    raw["implied_vol"] = option_market.levels.vol_30d
    iv = option_market.levels.vol_30d
    with np.errstate(divide="ignore", invalid="ignore"):
        volume = bars["volume"].to_numpy(dtype=float)
        vol_change = np.log(volume[1:] / volume[:-1])
        iv_change = np.log(iv[1:] / iv[:-1])
    vectors = np.column_stack([raw["log_return"].to_numpy()[1:], iv_change, vol_change])
    if not np.isfinite(vol_change).any():  # an index without volume: drop that component
        vectors = vectors[:, :2]
    turbulence = np.concatenate([[np.nan], turbulence_index(vectors, config.env.turbulence_window)])
    raw["turbulence"] = np.log1p(turbulence)

    dates = pd.DatetimeIndex(bars.index)
    train_window = config.data.splits.train
    train_last = int(np.searchsorted(dates, pd.Timestamp(train_window.end), side="right")) - 1
    if train_last < 0:
        raise DataError(
            f"data.splits.train: ends {train_window.end}, before {market.symbol}'s data starts "
            f"({dates[0].date()})"
        )
    values = raw[list(FEATURE_NAMES)].to_numpy(dtype=float)
    mean, std, counts = _expanding_train_stats(values, train_last)
    threshold = _expanding_threshold(turbulence, train_last, config.env.turbulence_percentile)
    ready = (counts >= NORMALISATION_MIN_DAYS) & np.isfinite(threshold)
    ready &= np.isfinite(values).all(axis=1)
    first_usable = int(np.argmax(ready)) if ready.any() else len(bars)
    first_usable = max(first_usable, INDICATOR_WARMUP_DAYS, config.env.window - 1)
    if first_usable >= len(bars):
        raise DataError(
            f"{market.origin}: not enough history for the indicators, implied vol, turbulence "
            f"and {NORMALISATION_MIN_DAYS} days of normalisation statistics ({len(bars)} days)"
        )
    windows = _normalised_windows(values, mean, std, config.env.window, first_usable)

    split_days: dict[str, tuple[int, int]] = {}
    for name in SPLIT_NAMES:
        window = split_range(config.data.splits, name)
        inside = np.flatnonzero(
            (dates >= pd.Timestamp(window.start)) & (dates <= pd.Timestamp(window.end))
        )
        inside = inside[inside >= first_usable]
        if inside.size >= 2:
            split_days[name] = (int(inside[0]), int(inside[-1]))
    if "train" not in split_days:
        raise DataError(
            f"data.splits.train: no usable day of {market.symbol} in "
            f"{train_window.start}..{train_window.end} (data "
            f"{dates[0].date()}..{dates[-1].date()}, usable from {dates[first_usable].date()})"
        )
    turbulent = np.nan_to_num(turbulence, nan=0.0) > np.nan_to_num(threshold, nan=np.inf)
    provenance = {
        "data": market.provenance(),
        "option_market": option_market.provenance,
        "splits": {
            name: {"first": str(dates[a].date()), "last": str(dates[b].date()), "days": b - a + 1}
            for name, (a, b) in split_days.items()
        },
        "first_usable_day": str(dates[first_usable].date()),
        "turbulence_threshold_after_train": float(threshold[train_last]),
        "normalisation_after_train": {
            "mean": mean[train_last].tolist(),
            "std": std[train_last].tolist(),
        },
    }
    return MarketTape(
        dates=dates,
        spot=bars["close"].to_numpy(dtype=float),
        volume=bars["volume"].to_numpy(dtype=float),
        windows=windows,
        raw_features=raw[list(FEATURE_NAMES)],
        turbulence=turbulence,
        turbulence_threshold=threshold,
        turbulent=turbulent,
        option_market=option_market,
        first_usable_day=first_usable,
        split_days=split_days,
        provenance=provenance,
    )


def warmup_trading_days(config: Config) -> int:
    """Trading days of bars :func:`build_tape` needs before the first train day can be traded.

    The rules of the module docstring chain one after the other, counted from the first bar:

    1. the implied-vol level exists from bar ``market.garch_min_history`` (the GARCH forecast;
       a VIX series gives it earlier), the indicators from about ``INDICATOR_WARMUP_DAYS``
       (30-day windows and their smoothing) and the observation window from ``env.window``;
       the longest of the three comes first;
    2. one more bar for the first log change of implied vol and volume;
    3. ``env.turbulence_window`` changes before the first finite turbulence value;
    4. ``NORMALISATION_MIN_DAYS`` finite feature rows (and turbulence values, for the threshold)
       before the statistics are trusted;

    plus ``WARMUP_MARGIN_DAYS`` of slack. With the defaults: 252 + 1 + 252 + 252 + 63 = 820.
    """
    first_features = max(config.market.garch_min_history, INDICATOR_WARMUP_DAYS, config.env.window)
    return (
        first_features
        + 1
        + config.env.turbulence_window
        + NORMALISATION_MIN_DAYS
        + WARMUP_MARGIN_DAYS
    )


def history_start(config: Config) -> dt.date:
    """First date to request: the train split's start less the warm-up, in calendar days."""
    days = math.ceil(warmup_trading_days(config) * CALENDAR_DAYS_PER_TRADING_DAY)
    return config.data.splits.train.start - dt.timedelta(days=days)


def history_range(config: Config, today: dt.date | None = None) -> tuple[dt.date, dt.date]:
    """``(start, end)`` of the bars a run needs from a ranged source such as Alpaca.

    From :func:`history_start` to the test split's end, clipped to yesterday: today's daily bar
    is not final before the close, and a range into the future asks for days no one has.
    """
    yesterday = (today or dt.date.today()) - dt.timedelta(days=1)
    splits = config.data.splits
    return history_start(config), min(splits.test.end, yesterday)


def _load_ranged(spec: str, config: Config, **kwargs: Any) -> MarketData:
    """``load_spec`` with :func:`history_range` for a source that needs one (else as before)."""
    kwargs["cache_dir"] = config.data.cache_dir  # downloads are cached for the next run
    if parse_spec(spec)[0] not in RANGED_SOURCES:
        return load_spec(spec, **kwargs)
    start, end = history_range(config)
    splits = config.data.splits
    if end < splits.train.start:
        raise DataError(
            f"data.splits: the train split starts {splits.train.start}, after yesterday "
            f"({end}): {spec} has no bars for it yet"
        )
    try:
        return load_spec(spec, start=start, end=end, **kwargs)
    except DataError as error:
        # The user never typed these dates: say where they come from, on the same line.
        raise DataError(
            f"{error} [{spec} was asked for {start}..{end}: data.splits.train.start "
            f"{splits.train.start} less {warmup_trading_days(config)} trading days of warm-up "
            f"(indicators, GARCH, turbulence, normalisation), to data.splits.test.end "
            f"{splits.test.end} clipped to yesterday]"
        ) from None


def surface_inputs(
    market: MarketData, indices_spec: str | None, config: Config
) -> MarketInputs | None:
    """The index family and T-bill rate on ``market``'s trading days (None: no indices)."""
    if indices_spec is None:
        return None
    try:
        return market_inputs(market.bars.index, indices_spec, config.data.cache_dir)
    except DataError as error:
        raise DataError(f"data.vol_indices (--vol-indices) {indices_spec!r}: {error}") from None


def run_specs(config: Config, data: str | None = None) -> tuple[str, str | None, str | None]:
    """``(underlying, vix, vol_indices)`` specs of a run: ``data`` (or the config's data
    section) with ``data.vix`` and ``data.vol_indices`` resolved for its symbol."""
    d = config.data
    spec = data or underlying_spec(d.source, d.symbol, d.path)
    source, symbol, _ = spec_fields(spec)
    if source != "bundled":
        symbol = d.symbol or symbol
    return spec, vix_spec(d.vix, source, symbol), vol_indices_spec(d.vol_indices, source, symbol)


@lru_cache(maxsize=4)
def _cached_tape(
    data_spec: str, vol_spec: str | None, indices_spec: str | None, config_json: str, seed: int
) -> MarketTape:
    config = config_from_key(config_json)
    market = _load_ranged(data_spec, config, seed=seed)
    vix = None if vol_spec is None else _load_ranged(vol_spec, config, required=("close",))
    return build_tape(market, vix, config, surface_inputs(market, indices_spec, config))


def tape_for(config: Config, data: str | None = None) -> MarketTape:
    """The tape of a config (or of an explicit ``data`` spec), built once per process."""
    spec, vix, indices = run_specs(config, data)
    relevant = config_key(config, {"data", "market", "env"})
    seed = config.train.seed if parse_spec(spec)[0] == "synthetic" else 0  # only simulated data
    return _cached_tape(spec, vix, indices, relevant, seed)


def option_market_for(
    config: Config, data: str | None = None, vix: str | None = "config"
) -> OptionMarket:
    """The option market alone (no indicators or splits) of a run's data, e.g. for ``data
    chain``; ``vix`` overrides ``data.vix`` unless left at ``"config"``."""
    spec, config_vix, indices = run_specs(config, data)
    vix_spec_used = config_vix if vix == "config" else vix
    market = _load_ranged(spec, config, seed=config.train.seed)
    vix_data = (
        None if vix_spec_used is None else _load_ranged(vix_spec_used, config, required=("close",))
    )
    return build_option_market(
        market, vix_data, config.market, surface_inputs(market, indices, config)
    )
