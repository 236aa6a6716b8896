"""The one typed configuration of a run.

Defaults are the paper's (Zou et al., arXiv 2212.02721). Precedence, lowest first: these
defaults, a YAML file (``--config FILE``), then command-line flags. Every key is validated; a bad
value, a wrong type or an unknown key is a :class:`~clstm_ppo.errors.ConfigError` whose one line
names the key. :func:`config_hash` identifies the effective config in checkpoints and reports.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from clstm_ppo.errors import ConfigError
from clstm_ppo.options.costs import CostModel


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True)


class DateRange(_Section):
    start: dt.date
    """First calendar date of the range (inclusive)."""
    end: dt.date
    """Last calendar date of the range (inclusive)."""

    @model_validator(mode="after")
    def _ordered(self) -> DateRange:
        if self.end < self.start:
            raise ValueError(f"end {self.end} is before start {self.start}")
        return self


class Splits(_Section):
    train: DateRange = DateRange(start=dt.date(1999, 1, 1), end=dt.date(2012, 12, 31))
    """Dates the agent learns from; also the only source of normalisation statistics."""
    validation: DateRange = DateRange(start=dt.date(2013, 1, 1), end=dt.date(2015, 12, 31))
    """Dates for model selection (best checkpoints, early stopping)."""
    test: DateRange = DateRange(start=dt.date(2016, 1, 1), end=dt.date(2018, 12, 31))
    """Dates never seen in training or selection; evaluation defaults to them."""

    @model_validator(mode="after")
    def _disjoint(self) -> Splits:
        ordered = [("train", self.train), ("validation", self.validation), ("test", self.test)]
        for i, (name_a, a) in enumerate(ordered):
            for name_b, b in ordered[i + 1 :]:
                if a.start <= b.end and b.start <= a.end:
                    raise ValueError(
                        f"splits '{name_a}' ({a.start}..{a.end}) and '{name_b}' "
                        f"({b.start}..{b.end}) overlap"
                    )
        return self


class DataConfig(_Section):
    source: Literal["bundled", "csv", "alpaca", "synthetic"] = "bundled"
    """Where daily bars come from. ``synthetic`` is used only when asked for, never as fallback."""
    symbol: str | None = None
    """Underlying symbol (bundled: SPX (default), NASDAQ; csv: needed only when a file holds
    several symbols; synthetic: the model, gbm or heston)."""
    path: Path | None = None
    """CSV/Parquet file or folder for ``source: csv``."""
    vix: str | None = "auto"
    """Implied-vol index that sets the ATM level (``bundled:VIX``, ``csv:PATH``, or null for a
    GARCH forecast only). ``auto``: the bundled VIX for the bundled SPX, none otherwise."""
    cache_dir: Path = Path(".cache/clstm_ppo")
    """Parquet cache for downloads (Alpaca)."""
    splits: Splits = Splits()
    """Train / validation / test date ranges; they must not overlap."""


class MarketConfig(_Section):
    risk_free_rate: float = Field(0.02, ge=-0.05, le=0.25)
    """Continuously compounded risk-free rate used for pricing (annual)."""
    dividend_yield: float = Field(0.02, ge=0.0, le=0.25)
    """Continuous dividend yield of the underlying (annual)."""
    vix_atm_ratio: float = Field(0.9, gt=0.0, le=2.0)
    """ATM 30-day implied vol as a fraction of VIX. VIX is a variance-swap rate that includes the
    put skew, so it sits above ATM vol: 0.91 on the real SPX chain of 2011-01-03 (train split)."""
    garch_iv_premium: float = Field(1.1, gt=0.0, le=5.0)
    """Implied/forecast vol ratio applied to the GARCH forecast where no VIX exists."""
    garch_min_history: int = Field(252, ge=100)
    """Trading days of past returns required before the first GARCH fit."""
    garch_refit_every: int = Field(21, ge=1)
    """Refit the GARCH(1,1) parameters every this many trading days (expanding window)."""
    skew: float = Field(-0.1, ge=-1.0, le=1.0)
    """Slope of IV in standardised moneyness ln(K/F)/(atm*sqrt(tau)); negative = put skew.
    Fitted on the real SPX chain of 2011-01-03 (train split): -0.06 to -0.16 at 1-3 months."""
    smile: float = Field(0.06, ge=0.0, le=1.0)
    """Curvature of IV in standardised moneyness (0.05-0.08 on the same chain)."""
    long_run_vol: float = Field(0.2, gt=0.0, le=3.0)
    """ATM vol that the term structure mean-reverts to at long expiries."""
    term_reversion: float = Field(2.0, ge=0.0, le=50.0)
    """Speed (per year) at which ATM vol reverts from the 30-day level to ``long_run_vol``."""
    weekly_expiries: bool = True
    """List weekly Friday expiries besides the monthly third Fridays."""
    max_expiry_days: int = Field(400, ge=7)
    """Longest listed expiry, in calendar days from the quote date."""
    strike_range: float = Field(0.3, gt=0.0, le=1.0)
    """Strikes listed within spot*(1 +/- strike_range)."""
    spread_base: float = Field(0.07, ge=0.0, le=1.0)
    """Bid-ask spread as a fraction of time value for an ATM 30-day option. 0.07 puts the
    median near-the-money 30-day SPX spread at $1.80 against $1.95 in the real 2011-01 chain."""
    spread_intrinsic: float = Field(0.01, ge=0.0, le=1.0)
    """Extra spread as a fraction of intrinsic value (in-the-money options)."""
    spread_min: float = Field(0.05, ge=0.0)
    """Smallest bid-ask spread in dollars (one tick each side of mid is typical)."""
    spread_moneyness: float = Field(1.0, ge=0.0)
    """Relative widening per standard deviation away from the money."""
    spread_short_dated: float = Field(0.5, ge=0.0)
    """Extra relative widening as sqrt(30 / days to expiry) grows for short-dated options."""


class EnvConfig(_Section):
    window: int = Field(30, ge=1, le=512)
    """Lookback T: days of market features in each observation (paper: 30)."""
    episode_length: int = Field(252, ge=2)
    """Trading days per training episode."""
    initial_capital: float = Field(1_000_000.0, gt=0.0)
    """Starting cash in USD (paper: 1,000,000)."""
    reward_scaling: float = Field(1e-4, gt=0.0)
    """Reward = change in portfolio value x this (paper: 1e-4)."""
    turbulence_percentile: float = Field(90.0, gt=0.0, le=100.0)
    """Training-split percentile of the turbulence index above which only hold/close is allowed."""
    turbulence_window: int = Field(252, ge=20)
    """Trailing trading days in the turbulence covariance (past only)."""
    enable_multi_leg: bool = False
    """Use the 91-action multi-leg space instead of the legacy 31 actions."""
    contracts_per_trade: int = Field(1, ge=1, le=1000)
    """Contracts per option leg of each opened structure (a butterfly's body trades twice this)."""
    drawdown_penalty: float = Field(0.0, ge=0.0)
    """Reward shaping, off by default: subtract this x the increase in drawdown (fraction of the
    peak value) x initial capital x reward scaling."""
    volatility_penalty: float = Field(0.0, ge=0.0)
    """Reward shaping, off by default (Sharpe-style): subtract this x the squared daily return x
    initial capital x reward scaling."""


class PortfolioConfig(_Section):
    """The stock-portfolio setting of Zou et al. after Yang et al. 2020 (30 Dow stocks)."""

    data: str | None = None
    """``csv:PATH`` (long file with a ticker column, or a folder) or ``alpaca:TICKERS``."""
    tickers: str = "DOW30"
    """``DOW30`` (FinRL's list) or comma-separated tickers; incomplete ones are dropped."""
    prices: Literal["adjusted", "close"] = "adjusted"
    """Trade at the dividend- and split-adjusted close (FinRL) or at the file's close."""
    history_days: int = Field(730, ge=0)
    """Calendar days loaded before the train split for indicator and turbulence warm-up."""
    splits: Splits = Splits(
        train=DateRange(start=dt.date(2009, 1, 1), end=dt.date(2014, 12, 31)),
        validation=DateRange(start=dt.date(2015, 1, 1), end=dt.date(2015, 12, 31)),
        test=DateRange(start=dt.date(2016, 1, 1), end=dt.date(2020, 5, 8)),
    )
    """Paper: train 2009-2015, trade 2016-01-01..2020-05-08. 2015 is held out here for
    checkpoint selection so that nothing is tuned on the trading period."""
    window: int = Field(30, ge=1, le=512)
    """Days T of market features the stage-1 LSTM reads (paper: 30)."""
    hmax: int = Field(100, ge=1)
    """Most shares bought or sold per stock per day (action 1.0)."""
    cost_pct: float = Field(0.001, ge=0.0, le=0.1)
    """Cost as a fraction of traded value, on buys and sells (paper: 0.1%)."""
    initial_capital: float = Field(1_000_000.0, gt=0.0)
    """Starting cash in USD."""
    reward_scaling: float = Field(1e-4, gt=0.0)
    """Reward = change in portfolio value x this."""
    turbulence_percentile: float = Field(90.0, gt=0.0, le=100.0)
    """Above this percentile of the train split's turbulence: sell everything, buy nothing."""
    turbulence_window: int = Field(252, ge=20)
    """Trailing trading days in the turbulence covariance (past only)."""
    episode_length: int | None = Field(None, ge=2)
    """Trading days per training episode from a random start; null walks the whole split."""


class AgentConfig(_Section):
    architecture: Literal["clstm", "mlp"] = "clstm"
    """``clstm``: the cascaded LSTM; ``mlp``: a feed-forward PPO baseline on the last day's
    features (no recurrence), as FinRL's and Stable-Baselines3's default PPO."""
    mlp_hidden: int = Field(64, ge=1)
    """Units of each of the two hidden layers of the ``mlp`` actor and critic (SB3: 64)."""
    lstm_hidden: int = Field(128, ge=1)
    """Stage-1 LSTM hidden size over the T-day window (paper: 128)."""
    feature_dim: int = Field(128, ge=1)
    """Stage-1 output features after Linear+Tanh (paper: 128)."""
    policy_hidden: int = Field(512, ge=1)
    """Stage-2 actor/critic LSTM hidden size (paper's best: 512)."""


class PPOConfig(_Section):
    learning_rate: float = Field(3e-4, gt=0.0, le=1.0)
    """Adam learning rate (paper: 3e-4)."""
    gamma: float = Field(0.99, gt=0.0, le=1.0)
    """Discount factor."""
    gae_lambda: float = Field(0.95, ge=0.0, le=1.0)
    """GAE lambda."""
    clip_coef: float = Field(0.2, gt=0.0, le=1.0)
    """PPO surrogate clipping range."""
    vf_coef: float = Field(0.5, ge=0.0)
    """Value-loss weight."""
    ent_coef: float = Field(0.01, ge=0.0)
    """Entropy bonus weight."""
    max_grad_norm: float = Field(0.5, gt=0.0)
    """Global gradient-norm clip."""
    rollout_length: int = Field(128, ge=1)
    """Environment steps per environment between updates (paper: 128)."""
    update_epochs: int = Field(4, ge=1)
    """Passes over each rollout."""
    num_minibatches: int = Field(4, ge=1)
    """Minibatches per pass; each is a set of whole environment sequences."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values (CleanRL default)."""
    grad_accum_steps: int = Field(1, ge=1)
    """Minibatches whose gradients are accumulated before one optimiser step."""
    lr_schedule: Literal["constant", "warmup_cosine", "plateau"] = "constant"
    """constant; linear warmup then cosine decay over the run; or reduce-on-plateau of the
    validation composite score."""
    warmup_updates: int = Field(10, ge=0)
    """Updates of linear warmup for ``warmup_cosine``."""
    min_lr_fraction: float = Field(0.1, ge=0.0, le=1.0)
    """Cosine floor, and the smallest reduce-on-plateau learning rate, as a fraction of lr."""
    plateau_patience: int = Field(5, ge=1)
    """Validations without improvement before reduce-on-plateau halves the learning rate."""


class TrainConfig(_Section):
    seed: int = Field(0, ge=0)
    """Base random seed (environments, torch, numpy)."""
    episodes: int = Field(5000, ge=1)
    """Completed training episodes to run (counted across all environments)."""
    num_envs: int = Field(8, ge=1)
    """Episodes simulated in parallel by the batched environment."""
    run_dir: Path = Path("runs")
    """Folder that holds one sub-folder per run (checkpoints, logs, TensorBoard)."""
    run_name: str = Field("clstm_ppo", min_length=1)
    """Sub-folder of ``run_dir``; a run continues there unless ``--fresh-start``."""
    validate_every: int = Field(50, ge=1)
    """Validate after every this many completed training episodes (and at the end)."""
    validation_episodes: int = Field(4, ge=1)
    """Deterministic-policy episodes per validation, at fixed start days of the validation split."""
    early_stopping_patience: int = Field(500, ge=0)
    """Stop after this many training episodes without a better validation composite (0: off)."""
    early_stopping_min_delta: float = Field(0.001, ge=0.0)
    """Smallest composite-score gain that counts as better."""
    risk_free_rate: float = Field(0.0, ge=-0.05, le=0.25)
    """Annual risk-free rate for Sharpe and Sortino."""
    rolling_window: int = Field(50, ge=1)
    """Episodes in the rolling training metrics."""
    stats_every: int = Field(100, ge=1)
    """Print a statistics block every this many training episodes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when --num_gpus >= 1 and a GPU exists, else CPU."""
    num_gpus: int = Field(0, ge=0)
    """GPUs to use (0: CPU); more than one starts one DDP process per GPU (NCCL)."""
    num_procs: int = Field(1, ge=1)
    """Training processes on the CPU (DDP over gloo), for --device cpu."""
    amp: Literal["off", "fp16", "bf16"] = "off"
    """Mixed precision: fp16 with a grad scaler (CUDA only) or bf16 autocast."""
    ensemble_temperature: float = Field(0.05, gt=0.0)
    """Softmax temperature of ensemble weights over validation composite scores."""
    keep_checkpoints: int = Field(3, ge=1)
    """Plain periodic checkpoints kept besides the bests, latest and milestones."""


class Config(_Section):
    data: DataConfig = DataConfig()
    """Market data source and date splits."""
    market: MarketConfig = MarketConfig()
    """Option market model: rates, implied-vol surface, listed expiries and strikes, spreads."""
    costs: CostModel = CostModel()
    """Commissions, exchange/regulatory fees and slippage (fields documented in options.costs)."""
    env: EnvConfig = EnvConfig()
    """Trading environment."""
    portfolio: PortfolioConfig = PortfolioConfig()
    """Stock-portfolio environment (paper reproduction)."""
    agent: AgentConfig = AgentConfig()
    """CLSTM network sizes."""
    ppo: PPOConfig = PPOConfig()
    """PPO hyperparameters."""
    train: TrainConfig = TrainConfig()
    """Training loop."""


def _describe_error(error: ValidationError, origin: str) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"]) or "(top level)"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown key"
    elif "input" in first and not isinstance(first["input"], Mapping):
        message = f"{message} (got {first['input']!r})"
    return f"{origin}: key '{key}': {message}"


def _deep_update(target: dict[str, Any], updates: Mapping[str, Any]) -> None:
    # Merge section by section so a file or flag that sets one date of a range keeps the other.
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _set_dotted(target: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"override '{dotted}': '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def build_config(
    values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    origin: str = "config",
) -> Config:
    """Validate nested ``values`` with dotted-key ``overrides`` applied on top."""
    merged = config_to_dict(Config())
    _deep_update(merged, json.loads(json.dumps(dict(values or {}), default=str)))
    for dotted, value in (overrides or {}).items():
        _set_dotted(merged, dotted, value)
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe_error(error, origin)) from None
    except ConfigError as error:  # raised by a section's own checks (e.g. CostModel)
        raise ConfigError(f"{origin}: {error}") from None


def load_config(path: Path | None = None, overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then dotted-key ``overrides``."""
    values: Any = {}
    origin = "config"
    if path is not None:
        origin = str(path)
        try:
            text = Path(path).read_text()
        except OSError as error:
            raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
        try:
            values = yaml.safe_load(text) or {}
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f" line {mark.line + 1}" if mark is not None else ""
            raise ConfigError(f"{path}:{where} invalid YAML") from None
        if not isinstance(values, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
    return build_config(values, overrides, origin=origin)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``--set key=value``; the value is read as YAML (numbers, booleans, dates, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. ppo.learning_rate=1e-4")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        value = raw
    return key.strip(), value


def config_to_dict(config: Config) -> dict[str, Any]:
    """Plain JSON-compatible form (dates and paths as strings), for files and checkpoints."""
    return config.model_dump(mode="json")


def config_key(config: Config, sections: set[str] | None = None) -> str:
    """Canonical JSON of some sections (all by default): a cache key that round-trips through
    :func:`config_from_key` (infinite fee caps survive, unlike pydantic's JSON)."""
    return json.dumps(config.model_dump(mode="json", include=sections), sort_keys=True)


def config_from_key(key: str) -> Config:
    return Config.model_validate(json.loads(key))


def config_hash(config: Config) -> str:
    """Stable short hash of the effective config: canonical JSON, sorted keys, SHA-256."""
    canonical = json.dumps(config_to_dict(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]
