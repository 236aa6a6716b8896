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
import os
import stat
from collections.abc import Mapping
from pathlib import Path, PureWindowsPath
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from clstm_ppo.errors import ConfigError
from clstm_ppo.options.costs import CostModel

MAX_CONFIG_BYTES = 1 << 20
"""Largest config file read (1 MiB); a real one is a few KiB."""
MAX_YAML_NODES = 100_000
"""Most values a YAML document may hold once its aliases are expanded (refuses alias bombs)."""
MAX_YAML_DEPTH = 64
"""Deepest nesting of a YAML document, aliases expanded (deeper recursion would crash)."""
MAX_ROLLOUT_TRANSITIONS = 1 << 24
"""Most ``train.num_envs x ppo.rollout_length`` transitions in one rollout buffer."""


class _Section(BaseModel):
    # Infinite or NaN numbers are never meant (an infinite capital or horizon hangs or poisons
    # every metric); Config itself allows them only for the costs dataclass (fee caps).
    model_config = ConfigDict(
        extra="forbid", frozen=True, use_attribute_docstrings=True, allow_inf_nan=False
    )


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
    vol_indices: str | None = "auto"
    """Daily CBOE volatility indices (VIX9D, VIX, VIX3M, VIX6M, VIX1Y, SKEW, VVIX) and FRED's
    3-month T-bill rate (DGS3MO) that set the surface's ATM term structure, skew and the rate:
    ``auto`` (a fresh ``data fetch --source cboe|fred`` cache if present, else the snapshot
    shipped in the package, for an S&P 500 underlying; none for others), ``bundled`` (the
    snapshot only), a folder of index files, or null (GARCH and the constants below only).
    ``vix`` still overrides the VIX series alone."""
    cache_dir: Path = Path(".cache/clstm_ppo")
    """Parquet cache for downloads (Alpaca, CBOE, FRED)."""
    splits: Splits = Splits()
    """Train / validation / test date ranges; they must not overlap."""


class MarketConfig(_Section):
    risk_free_rate: float = Field(0.02, ge=-0.05, le=0.25)
    """Continuously compounded risk-free rate (annual): the labelled fallback on days without a
    T-bill rate (``data.vol_indices``)."""
    cash_interest: bool = False
    """Idle cash and collateral earn the day's T-bill rate in the simulators and every baseline
    (only where a rate series is present; the fallback constant never pays interest)."""
    smile_model: Literal["ssvi", "quadratic"] = "ssvi"
    """``ssvi``: Gatheral-Jacquier SSVI, free of static arbitrage, steep put wing and a call wing
    that falls to a minimum a few % out of the money (further at longer expiries), ATM term
    structure from the VIX family; ``quadratic``: the seed's ``1 + skew m + smile m^2`` in
    standardised moneyness on ``vix_atm_ratio`` x VIX (kept for comparison)."""
    # The five constants below were fitted together by benchmarks/calibrate_surface.py on the
    # real chains in ../shared/data/options with the CBOE/FRED indices of the same days: SPX
    # iVolatility 2011-01-03..07 mids, Lean SPX 2015-12-22/23 traded closes, SPY DoltHub
    # 2024-07 mids (out-of-the-money, 7-120 days, |K/S-1| <= 10%, mean abs IV error, chains
    # weighted equally): 0.70 vol points against 1.81 for the seed's quadratic model.
    ssvi_rho: float = Field(-0.507, gt=-1.0, lt=1.0)
    """SSVI correlation (skew direction), and its value at SKEW = 120."""
    ssvi_rho_per_skew: float = Field(0.0, ge=-1.0, le=1.0)
    """Change of rho per 10 points of SKEW above 120 (SKEW = 100 - 10 x risk-neutral skewness).
    Fitted +0.001 across SKEW 121-157 (0 kept): SKEW measures the far tail, and the
    near-the-money smile did not steepen with it in these chains."""
    ssvi_eta: float = Field(1.2, gt=0.0, le=10.0)
    """SSVI curvature level eta of phi(theta) = eta / (theta^gamma (1 + theta)^(1 - gamma))."""
    ssvi_gamma: float = Field(0.463, gt=0.0, le=1.0)
    """SSVI power-law exponent gamma (how the ATM skew decays with total variance)."""
    dividend_yield: float = Field(0.02, ge=0.0, le=0.25)
    """Continuous dividend yield of the underlying (annual)."""
    vix_atm_ratio: float = Field(0.944, gt=0.0, le=2.0)
    """ATM vol as a fraction of the VIX-family index. ``ssvi``: applied after converting each
    index (a variance-swap rate) to the ATM level at which the model's own smile has that
    variance swap, which already puts 30-day ATM about 12% below VIX (at VIX 17); the fitted
    0.944 is what the smile leaves unexplained (the index's strike truncation, wings beyond
    SSVI's shape). ``quadratic``: the whole ratio (0.9 was fitted on the SPX chain of 2011-01-03
    and reproduces the seed)."""
    garch_iv_premium: float = Field(1.1, gt=0.0, le=5.0)
    """Implied/forecast vol ratio applied to the GARCH forecast where no VIX exists."""
    garch_min_history: int = Field(252, ge=100, le=100_000)
    """Trading days of past returns required before the first GARCH fit."""
    garch_refit_every: int = Field(21, ge=1, le=100_000)
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
    max_expiry_days: int = Field(400, ge=7, le=3660)
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
    episode_length: int = Field(252, ge=2, le=100_000)
    """Trading days per training episode."""
    initial_capital: float = Field(1_000_000.0, gt=0.0)
    """Starting cash in USD (paper: 1,000,000)."""
    reward_scaling: float = Field(1e-4, gt=0.0)
    """Reward = change in portfolio value x this (paper: 1e-4)."""
    turbulence_percentile: float = Field(90.0, gt=0.0, le=100.0)
    """Training-split percentile of the turbulence index above which only hold/close is allowed."""
    turbulence_window: int = Field(252, ge=20, le=100_000)
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
    history_days: int = Field(730, ge=0, le=36_600)
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
    hmax: int = Field(100, ge=1, le=1_000_000_000)
    """Most shares bought or sold per stock per day (action 1.0)."""
    cost_pct: float = Field(0.001, ge=0.0, le=0.1)
    """Cost as a fraction of traded value, on buys and sells (paper: 0.1%)."""
    initial_capital: float = Field(1_000_000.0, gt=0.0)
    """Starting cash in USD."""
    reward_scaling: float = Field(1e-4, gt=0.0)
    """Reward = change in portfolio value x this."""
    turbulence_percentile: float = Field(90.0, gt=0.0, le=100.0)
    """Above this percentile of the train split's turbulence: sell everything, buy nothing."""
    turbulence_window: int = Field(252, ge=20, le=100_000)
    """Trailing trading days in the turbulence covariance (past only)."""
    episode_length: int | None = Field(None, ge=2, le=100_000)
    """Trading days per training episode from a random start; null walks the whole split."""


class AgentConfig(_Section):
    architecture: Literal["clstm", "mlp"] = "clstm"
    """``clstm``: the cascaded LSTM; ``mlp``: a feed-forward PPO baseline on the last day's
    features (no recurrence), as FinRL's and Stable-Baselines3's default PPO."""
    mlp_hidden: int = Field(64, ge=1, le=4096)
    """Units of each of the two hidden layers of the ``mlp`` actor and critic (SB3: 64)."""
    lstm_hidden: int = Field(128, ge=1, le=4096)
    """Stage-1 LSTM hidden size over the T-day window (paper: 128)."""
    feature_dim: int = Field(128, ge=1, le=4096)
    """Stage-1 output features after Linear+Tanh (paper: 128)."""
    policy_hidden: int = Field(512, ge=1, le=4096)
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
    rollout_length: int = Field(128, ge=1, le=100_000)
    """Environment steps per environment between updates (paper: 128)."""
    update_epochs: int = Field(4, ge=1, le=1000)
    """Passes over each rollout."""
    num_minibatches: int = Field(4, ge=1, le=65_536)
    """Minibatches per pass; each is a set of whole environment sequences."""
    norm_adv: bool = True
    """Normalise advantages per minibatch."""
    clip_vloss: bool = True
    """Clip the value loss around the rollout's values (CleanRL default)."""
    grad_accum_steps: int = Field(1, ge=1, le=65_536)
    """Minibatches whose gradients are accumulated before one optimiser step."""
    lr_schedule: Literal["constant", "warmup_cosine", "plateau"] = "constant"
    """constant; linear warmup then cosine decay over the run; or reduce-on-plateau of the
    validation composite score."""
    warmup_updates: int = Field(10, ge=0, le=100_000_000)
    """Updates of linear warmup for ``warmup_cosine``."""
    min_lr_fraction: float = Field(0.1, ge=0.0, le=1.0)
    """Cosine floor, and the smallest reduce-on-plateau learning rate, as a fraction of lr."""
    plateau_patience: int = Field(5, ge=1, le=1_000_000)
    """Validations without improvement before reduce-on-plateau halves the learning rate."""


def check_run_name(name: str) -> str | None:
    """Why ``name`` cannot be a run folder, or None when it is a single plain folder name.

    A run is written to ``run_dir / run_name``: a separator, ``..``, an absolute path or a drive
    would put it (and its deletions of old checkpoints) outside ``run_dir``.
    """
    if "\0" in name:
        return "must not contain a NUL character"
    if "/" in name or "\\" in name:
        return "must be a single folder name inside train.run_dir, without '/' or '\\'"
    if name in (".", ".."):
        return "must be a folder name inside train.run_dir, not '.' or '..'"
    if PureWindowsPath(name).drive:
        return "must be a folder name inside train.run_dir, not a drive"
    return None


class TrainConfig(_Section):
    env: Literal["options", "portfolio"] = "options"
    """Which environment ``train`` trains: the options env, or the paper's stock-portfolio env
    which needs ``portfolio.data``."""
    seed: int = Field(0, ge=0, le=2**32 - 1)
    """Base random seed (environments, torch, numpy; numpy takes at most 2**32 - 1)."""
    episodes: int = Field(5000, ge=1, le=1_000_000_000)
    """Completed training episodes to run (counted across all environments)."""
    num_envs: int = Field(8, ge=1, le=65_536)
    """Episodes simulated in parallel by the batched environment."""
    run_dir: Path = Path("runs")
    """Folder that holds one sub-folder per run (checkpoints, logs, TensorBoard)."""
    run_name: str = Field("clstm_ppo", min_length=1)
    """Sub-folder of ``run_dir``; a run continues there unless ``--fresh-start``."""
    validate_every: int = Field(50, ge=1, le=1_000_000_000)
    """Validate after every this many completed training episodes (and at the end)."""
    validation_episodes: int = Field(4, ge=1, le=100_000)
    """Deterministic-policy episodes per validation, at fixed start days of the validation split."""
    early_stopping_patience: int = Field(500, ge=0, le=1_000_000_000)
    """Stop after this many training episodes without a better validation composite (0: off)."""
    early_stopping_min_delta: float = Field(0.001, ge=0.0)
    """Smallest composite-score gain that counts as better."""
    risk_free_rate: float = Field(0.0, ge=-0.05, le=0.25)
    """Annual risk-free rate for Sharpe and Sortino."""
    rolling_window: int = Field(50, ge=1, le=1_000_000)
    """Episodes in the rolling training metrics."""
    stats_every: int = Field(100, ge=1, le=1_000_000_000)
    """Print a statistics block every this many training episodes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when --num_gpus >= 1 and a GPU exists, else CPU."""
    num_gpus: int = Field(0, ge=0, le=1024)
    """GPUs to use (0: CPU); more than one starts one DDP process per GPU (NCCL)."""
    num_procs: int = Field(1, ge=1, le=1024)
    """Training processes on the CPU (DDP over gloo), for --device cpu."""
    amp: Literal["off", "fp16", "bf16"] = "off"
    """Mixed precision: fp16 with a grad scaler (CUDA only) or bf16 autocast."""
    ensemble_temperature: float = Field(0.05, gt=0.0)
    """Softmax temperature of ensemble weights over validation composite scores."""
    keep_checkpoints: int = Field(3, ge=1, le=100_000)
    """Plain periodic checkpoints kept besides the bests, latest and milestones."""

    @field_validator("run_name")
    @classmethod
    def _plain_run_name(cls, name: str) -> str:
        problem = check_run_name(name)
        if problem is not None:
            raise ValueError(problem)
        return name


class Config(_Section):
    # The costs dataclass inherits this setting: its fee caps may be infinite.
    model_config = ConfigDict(allow_inf_nan=True)

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

    @model_validator(mode="after")
    def _consistent(self) -> Config:
        # PydanticCustomError's ctx carries the key to blame: a model-level error has no loc.
        if self.train.env == "portfolio" and self.portfolio.data is None:
            raise PydanticCustomError(
                "cross_section",
                "'portfolio' needs portfolio.data (--data csv:PATH or alpaca:TICKERS)",
                {"key": "train.env"},
            )
        transitions = self.train.num_envs * self.ppo.rollout_length
        if transitions > MAX_ROLLOUT_TRANSITIONS:
            raise PydanticCustomError(
                "cross_section",
                f"train.num_envs x ppo.rollout_length = {transitions:,} transitions per rollout, "
                f"more than {MAX_ROLLOUT_TRANSITIONS:,}",
                {"key": "ppo.rollout_length"},
            )
        return self


_MERGE_TAG = "tag:yaml.org,2002:merge"


class _YAMLRefused(yaml.MarkedYAMLError):
    """A document :class:`StrictLoader` refuses: duplicate key, alias bomb, too deep."""


class StrictLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that refuses duplicate keys, bad dates and documents that explode
    once their aliases are expanded (a few hundred bytes of nested anchors can stand for billions
    of values, which hang whatever walks them)."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        # Composing recurses once per nesting level: refuse before Python's stack overflows.
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _YAMLRefused(
                    problem=f"nested deeper than {MAX_YAML_DEPTH} levels",
                    problem_mark=self.peek_event().start_mark,
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        # Checked on the composed node, before merge keys ('<<') are flattened into it: a key
        # that overrides a merged one is not a duplicate.
        node = super().compose_mapping_node(anchor)
        seen: set[Any] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == _MERGE_TAG:
                continue
            key = self.construct_object(key_node)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # unhashable: the constructor reports it
                continue
            if duplicate:
                problem = f"duplicate key {key!r}"
                raise _YAMLRefused(problem=problem, problem_mark=key_node.start_mark)
        return node

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expansion(node)
        return node

    def construct_yaml_timestamp(self, node: Any) -> Any:  # type: ignore[override]
        # datetime's ValueError (month 13) would otherwise escape as a traceback.
        try:
            return super().construct_yaml_timestamp(node)
        except ValueError as error:
            raise yaml.constructor.ConstructorError(
                None, None, f"bad date {node.value!r} ({error})", node.start_mark
            ) from None


StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", StrictLoader.construct_yaml_timestamp)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _check_expansion(root: yaml.Node) -> None:
    """Refuse a node graph that expands past :data:`MAX_YAML_NODES` values or
    :data:`MAX_YAML_DEPTH` levels, or whose aliases refer to themselves.

    An alias is the same node object as its anchor, so the graph is walked once per distinct node
    (memoised sizes); expanding it, as ``json.dumps`` would, is what must not happen.
    """
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values expanded, depth)
    in_progress: set[int] = set()  # the nodes on the current path (their ancestors)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        if children_done:
            sizes = [measured[id(child)] for child in _children(node)]
            size = 1 + sum(count for count, _ in sizes)
            depth = 1 + max((levels for _, levels in sizes), default=0)
            if size > MAX_YAML_NODES:
                problem = f"more than {MAX_YAML_NODES:,} values once aliases are expanded"
                raise _YAMLRefused(problem=problem, problem_mark=node.start_mark)
            if depth > MAX_YAML_DEPTH:
                problem = f"nested deeper than {MAX_YAML_DEPTH} levels once aliases are expanded"
                raise _YAMLRefused(problem=problem, problem_mark=node.start_mark)
            measured[id(node)] = (size, depth)
            in_progress.discard(id(node))
        elif id(node) not in measured:
            if id(node) in in_progress:
                raise _YAMLRefused(problem="alias refers to itself", problem_mark=node.start_mark)
            in_progress.add(id(node))
            stack.append((node, True))
            stack.extend((child, False) for child in _children(node))


def _blame(loc: str, sources: Mapping[str, str]) -> tuple[str, str] | None:
    """The (override key, flag) behind an error at ``loc``: the override of that very key, else
    one inside it (a section-level check) or above it (a whole section set at once)."""
    if not loc:
        return None
    latest_first = list(sources.items())[::-1]
    for key, flag in latest_first:
        if key == loc:
            return key, flag
    for key, flag in latest_first:
        if key.startswith(loc + ".") or loc.startswith(key + "."):
            return key, flag
    return None


def _describe_error(
    error: ValidationError, origin: str, sources: Mapping[str, str] | None = None
) -> str:
    first = error.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    if not key and isinstance(first.get("ctx"), Mapping):
        key = str(first["ctx"].get("key", ""))  # a cross-section check names its key
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] in ("extra_forbidden", "unexpected_keyword_argument"):
        message = "unknown key"
    elif "input" in first and not isinstance(first["input"], Mapping):
        message = f"{message} (got {first['input']!r})"
    blamed = _blame(key, sources or {})
    if blamed is not None:
        set_key, flag = blamed
        return f"{flag}: {message}" if set_key == key else f"{flag}: key '{key}': {message}"
    return f"{origin}: key '{key or '(top level)'}': {message}"


def _deep_update(target: dict[str, Any], updates: Mapping[str, Any]) -> None:
    # Merge section by section so a file or flag that sets one date of a range keeps the other.
    for key, value in updates.items():
        if isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _deep_update(target[key], value)
        else:
            target[key] = value


def _text_keys(value: Any) -> Any:
    # YAML keys may be dates or other non-text scalars, which json.dumps refuses.
    if isinstance(value, Mapping):
        return {k if isinstance(k, str) else str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_text_keys(item) for item in value]
    return value


def _set_dotted(target: dict[str, Any], dotted: str, value: Any, blame: str) -> None:
    parts = dotted.split(".")
    node = target
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{blame}: '{part}' is not a section")
        node = child
    node[parts[-1]] = value


def build_config(
    values: Mapping[str, Any] | None = None,
    overrides: Mapping[str, Any] | None = None,
    origin: str = "config",
    sources: Mapping[str, str] | None = None,
) -> Config:
    """Validate nested ``values`` with dotted-key ``overrides`` applied on top.

    ``origin`` (a file name) is blamed for errors in ``values``; ``sources`` maps an override key
    to the flag that set it (``--episodes``, ``--set train.episodes``), blamed for its errors.
    """
    sources = sources or {}
    merged = config_to_dict(Config())
    _deep_update(merged, json.loads(json.dumps(_text_keys(dict(values or {})), default=str)))
    for dotted, value in (overrides or {}).items():
        _set_dotted(merged, dotted, value, sources.get(dotted, f"{origin}: key '{dotted}'"))
    try:
        return Config.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(_describe_error(error, origin, sources)) from None
    except ConfigError as error:  # a section's own checks (CostModel): "costs.KEY must be ..."
        blamed = _blame(str(error).split(" ", 1)[0], sources)
        raise ConfigError(f"{blamed[1] if blamed else origin}: {error}") from None


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise ConfigError(f"{path}: is a folder, expected a YAML config file")
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{path}: not a regular file (FIFO, device or socket), expected YAML")


def _read_config_text(path: Path) -> str:
    try:
        info = path.stat()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    # Before opening: reading a FIFO waits for a writer forever.
    _check_regular(path, info.st_mode)
    limit = f"more than the {MAX_CONFIG_BYTES:,}-byte (1 MiB) limit of a config file"
    if info.st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {info.st_size:,} bytes, {limit}")
    try:
        # O_NONBLOCK and a second check: the path may have been swapped for a FIFO since.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
        with os.fdopen(fd, "rb") as handle:
            _check_regular(path, os.fstat(handle.fileno()).st_mode)
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except OSError as error:
        raise ConfigError(f"{path}: cannot read config file ({error.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {limit}")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        byte = raw[error.start]
        raise ConfigError(f"{path}: line {line}: not UTF-8 text (byte 0x{byte:02x})") from None


def read_config_file(path: Path) -> dict[str, Any]:
    """The nested values of the YAML config file at ``path`` (not yet validated).

    Refused with a one-line :class:`ConfigError` naming the file: anything but a regular file,
    more than :data:`MAX_CONFIG_BYTES`, not UTF-8, invalid YAML, a duplicate key, more than
    :data:`MAX_YAML_NODES` values or :data:`MAX_YAML_DEPTH` levels once aliases are expanded, or
    a top level that is not a mapping.
    """
    text = _read_config_text(Path(path))
    try:
        values = yaml.load(text, Loader=StrictLoader) or {}  # StrictLoader is a SafeLoader
    except _YAMLRefused as error:
        mark = error.problem_mark
        where = f" line {mark.line + 1}:" if mark is not None else ""
        raise ConfigError(f"{path}:{where} {error.problem}") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(error, "problem", None) or getattr(error, "reason", None)
        detail = f" ({str(problem).splitlines()[0]})" if problem else ""
        raise ConfigError(f"{path}:{where} invalid YAML{detail}") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    return values


def load_config(
    path: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    sources: Mapping[str, str] | None = None,
) -> Config:
    """Defaults, then the YAML file at ``path`` (if any), then dotted-key ``overrides``
    (``sources``: the flag behind each override, see :func:`build_config`)."""
    if path is None:
        return build_config({}, overrides, sources=sources)
    return build_config(read_config_file(path), overrides, origin=str(path), sources=sources)


def parse_override(text: str) -> tuple[str, Any]:
    """Parse ``--set key=value``; the value is read as YAML (numbers, booleans, dates, lists)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. ppo.learning_rate=1e-4")
    try:
        value = yaml.load(raw, Loader=StrictLoader)  # StrictLoader is a SafeLoader
    except _YAMLRefused as error:
        raise ConfigError(f"--set {key.strip()}: {error.problem}") from None
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
