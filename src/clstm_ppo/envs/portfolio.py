"""``clstm_ppo/StockPortfolio-v0``: the paper's stock-trading setting (Yang et al. 2020, as used
by Zou et al. 2022), single and batched over one array-based simulator.

Each day, at the close: the action ``a`` in ``[-1, 1]^N`` becomes ``int(a * hmax)`` shares per
stock (FinRL's truncation). Sells go first (at most the shares held), then buys in order of
the largest action, each limited by the cash left (``cash // (price * (1 + cost))``). Trades pay
``cost_pct`` of their value. On a turbulent day (turbulence above the train-split threshold)
every holding is sold and nothing is bought. The day advances; the reward is the change in
portfolio value (cash + shares at the next close) times ``reward_scaling``. No shorting, no
leverage, whole shares.

Observation (a Dict):
- ``state``: the paper's vector, ``1 + 6N`` numbers (181 for 30 stocks): cash, prices,
  holdings, MACD, RSI, CCI, ADX;
- ``market``: the last T days of normalised market features ``(T, 5N + 1)`` for stage 1;
- ``portfolio``: cash / value, value / initial - 1, the turbulence flag and each stock's weight
  (``N + 3``) for stage 2.

An episode walks the whole split from its first day (``episode_length`` null) or a random
window of ``episode_length`` days; it ends truncated (a time limit), so learners bootstrap.
A "closed trade" for win rates is each sell, with P&L against the average cost of the shares.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from clstm_ppo.config import Config, PortfolioConfig, build_config
from clstm_ppo.envs.accounts import arrays_state_dict, load_arrays_state, seed_accounts
from clstm_ppo.envs.portfolio_tape import PortfolioTape, portfolio_tape_for
from clstm_ppo.envs.simulator import _splitmix64
from clstm_ppo.errors import DataError


class PortfolioSimulator:
    """``n_envs`` stock accounts stepped with array operations (loops run over stocks only)."""

    def __init__(
        self, tape: PortfolioTape, config: PortfolioConfig, n_envs: int, split: str,
        random_start: bool = True,
    ) -> None:  # fmt: skip
        self.tape, self.config, self.n_envs = tape, config, n_envs
        self.split_first, self.split_last = tape.split_bounds(split)
        if self.split_first < config.window - 1:
            raise DataError(f"portfolio.window={config.window}: not enough days before '{split}'")
        span = self.split_last - self.split_first
        self.episode_length = span if config.episode_length is None else config.episode_length
        if self.episode_length > span:
            raise DataError(
                f"portfolio.episode_length={self.episode_length}: split '{split}' has only "
                f"{span} steps"
            )
        self.random_start = random_start and config.episode_length is not None
        n, k = n_envs, tape.n_stocks
        self.seeds = np.zeros(n, dtype=np.uint64)
        self.episodes = np.zeros(n, dtype=np.uint64)
        self.day = np.zeros(n, dtype=np.int64)
        self.start_day = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.cash = np.zeros(n)
        self.holdings = np.zeros((n, k), dtype=np.int64)
        self.avg_cost = np.zeros((n, k))
        self.value = np.zeros(n)
        self.costs_paid = np.zeros(n)
        horizon = self.episode_length + 1
        self.equity = np.zeros((n, horizon))
        self.sell_pnl = np.full((n, horizon, k), np.nan)
        self.traded_shares = np.zeros((n, horizon, k), dtype=np.int64)

    _STATE = (
        "seeds", "episodes", "day", "start_day", "steps", "cash", "holdings", "avg_cost", "value",
        "costs_paid", "equity", "sell_pnl", "traded_shares",
    )  # fmt: skip

    def state_dict(self) -> dict[str, torch.Tensor]:
        return arrays_state_dict(self, self._STATE)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_arrays_state(self, self._STATE, state)

    def seed(self, seeds: np.ndarray) -> None:
        self.seeds = np.asarray(seeds, dtype=np.uint64).copy()
        self.episodes = np.zeros(self.n_envs, dtype=np.uint64)

    def reset(self, which: np.ndarray | None = None) -> None:
        rows = np.arange(self.n_envs) if which is None else np.flatnonzero(which)
        if rows.size == 0:
            return
        if self.random_start:
            span = self.split_last - self.episode_length - self.split_first + 1
            draw = _splitmix64(self.seeds[rows] * np.uint64(1_000_003) + self.episodes[rows])
            start = self.split_first + (draw % np.uint64(span)).astype(np.int64)
        else:
            start = np.full(rows.size, self.split_first, dtype=np.int64)
        self.episodes[rows] += np.uint64(1)
        self.day[rows] = start
        self.start_day[rows] = start
        self.steps[rows] = 0
        self.cash[rows] = self.config.initial_capital
        self.holdings[rows] = 0
        self.avg_cost[rows] = 0.0
        self.value[rows] = self.config.initial_capital
        self.costs_paid[rows] = 0.0
        self.equity[rows] = np.nan
        self.equity[rows, 0] = self.config.initial_capital
        self.sell_pnl[rows] = np.nan
        self.traded_shares[rows] = 0

    def set_account(
        self, row: int, cash: float, holdings: np.ndarray, avg_cost: np.ndarray
    ) -> None:
        """Carry an account into a freshly reset episode (e.g. from the previous quarter)."""
        self.cash[row] = cash
        self.holdings[row] = holdings
        self.avg_cost[row] = avg_cost
        self.value[row] = cash + float(holdings @ self.tape.prices[self.day[row]])
        self.equity[row, 0] = self.value[row]

    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        cfg = self.config
        actions = np.clip(np.asarray(actions, dtype=np.float64), -1.0, 1.0)
        if actions.shape != self.holdings.shape:
            raise ValueError(f"actions have shape {actions.shape}, expected {self.holdings.shape}")
        rows = np.arange(self.n_envs)
        prices = self.tape.prices[self.day]  # (n, N) today's close
        wanted = (actions * cfg.hmax).astype(np.int64)  # truncation toward zero, as FinRL
        turbulent = self.tape.turbulent[self.day]
        sell = np.where(wanted < 0, np.minimum(-wanted, self.holdings), 0)
        sell[turbulent] = self.holdings[turbulent]
        proceeds = sell * prices * (1.0 - cfg.cost_pct)
        sell_cost = sell * prices * cfg.cost_pct
        step_index = self.steps
        pnl = np.where(sell > 0, proceeds - sell * self.avg_cost, np.nan)
        self.sell_pnl[rows, step_index] = pnl
        self.cash += proceeds.sum(axis=1)
        self.holdings -= sell
        self.avg_cost[self.holdings == 0] = 0.0
        buy = np.where((wanted > 0) & ~turbulent[:, None], wanted, 0)
        bought = np.zeros_like(buy)
        buy_cost = np.zeros(self.n_envs)
        # Buys in order of the largest action; each limited by the cash the earlier ones left.
        order = np.argsort(-actions, axis=1, kind="stable")
        for rank in range(order.shape[1]):
            stock = order[:, rank]
            price = prices[rows, stock]
            unit = price * (1.0 + cfg.cost_pct)
            # Clamped: float rounding can leave cash a hair below 0, and floor(-tiny) is -1.
            afford = np.maximum(np.floor(self.cash / unit), 0.0).astype(np.int64)
            shares = np.minimum(buy[rows, stock], afford)
            self.cash -= shares * unit
            buy_cost += shares * price * cfg.cost_pct
            bought[rows, stock] = shares
        held = self.holdings + bought
        with np.errstate(invalid="ignore", divide="ignore"):
            self.avg_cost = np.where(
                bought > 0,
                (self.avg_cost * self.holdings + bought * prices * (1.0 + cfg.cost_pct)) / held,
                self.avg_cost,
            )
        self.holdings = held
        self.traded_shares[rows, step_index] = bought - sell
        self.costs_paid += sell_cost.sum(axis=1) + buy_cost
        before = self.value
        self.day += 1
        self.steps += 1
        self.value = self.cash + (self.holdings * self.tape.prices[self.day]).sum(axis=1)
        self.equity[rows, self.steps] = self.value
        reward = (self.value - before) * cfg.reward_scaling
        truncated = self.steps >= self.episode_length
        return {
            "reward": reward,
            "terminated": np.zeros(self.n_envs, dtype=bool),
            "truncated": truncated,
        }

    def episode_summary(self, row: int) -> dict[str, Any]:
        steps = int(self.steps[row])
        pnls = self.sell_pnl[row, :steps]
        first = int(self.start_day[row])
        return {
            "portfolio_values": self.equity[row, : steps + 1].tolist(),
            "closed_trades": [{"pnl": float(p)} for p in pnls[np.isfinite(pnls)]],
            "costs_paid": float(self.costs_paid[row]),
            "first_date": str(self.tape.dates[first].date()),
            "last_date": str(self.tape.dates[first + steps].date()),
            "traded_shares": self.traded_shares[row, :steps].copy(),
        }

    # ------------------------------------------------------------------ observation
    def observe(self) -> dict[str, np.ndarray]:
        tape, cfg = self.tape, self.config
        days = self.day
        prices = tape.prices[days]
        window = days[:, None] + np.arange(1 - cfg.window, 1)
        value = self.value[:, None]
        weights = self.holdings * prices / value
        portfolio = np.concatenate(
            [
                self.cash[:, None] / value,
                value / cfg.initial_capital - 1.0,
                tape.turbulent[days][:, None].astype(float),
                weights,
            ],
            axis=1,
        )
        state = np.concatenate(
            [
                self.cash[:, None],
                prices,
                self.holdings,
                *(np.nan_to_num(tape.indicators[days, :, k]) for k in range(4)),
            ],
            axis=1,
        )
        return {
            "state": state.astype(np.float32),
            "market": tape.features[window],
            "portfolio": portfolio.astype(np.float32),
        }


def observation_space(window: int, n_stocks: int) -> spaces.Dict:
    features = 5 * n_stocks + 1
    inf = np.float32(np.inf)
    return spaces.Dict(
        {
            "state": spaces.Box(-inf, inf, (1 + 6 * n_stocks,), np.float32),
            "market": spaces.Box(-10.0, 10.0, (window, features), np.float32),
            "portfolio": spaces.Box(-inf, inf, (n_stocks + 3,), np.float32),
        }
    )


def portfolio_config(config: Config | None, data: str | None, **overrides: Any) -> Config:
    values: dict[str, object] = {f"portfolio.{k}": v for k, v in overrides.items() if v is not None}
    if data is not None:
        values["portfolio.data"] = data
    base = (config or Config()).model_dump(mode="json")
    return build_config(base, values, origin="env")


def make_portfolio_simulator(
    config: Config, n_envs: int, split: str, random_start: bool = True
) -> PortfolioSimulator:
    return PortfolioSimulator(
        portfolio_tape_for(config), config.portfolio, n_envs, split, random_start
    )


class StockPortfolioEnv(gym.Env):
    """One account; keyword arguments ``data`` (``csv:PATH`` or ``alpaca:TICKERS``),
    ``split``, ``config`` and any :class:`PortfolioConfig` field (``window``, ``hmax``...)."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self, data: str | None = None, split: str = "train", config: Config | None = None,
        random_start: bool = True, **overrides: Any,
    ) -> None:  # fmt: skip
        self.config = portfolio_config(config, data, **overrides)
        self.sim = make_portfolio_simulator(self.config, 1, split, random_start)
        n = self.sim.tape.n_stocks
        self.tickers = self.sim.tape.panel.tickers
        self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.observation_space = observation_space(self.config.portfolio.window, n)
        self._seeded = False

    def _observation(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in self.sim.observe().items()}

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "date": str(sim.tape.dates[sim.day[0]].date()),
            "portfolio_value": float(sim.value[0]),
            "cash": float(sim.cash[0]),
            "turbulent": bool(sim.tape.turbulent[sim.day[0]]),
            "costs_paid": float(sim.costs_paid[0]),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._seeded = seed_accounts(self.sim, 1, seed, self._seeded,
                                     lambda: int(self.np_random.integers(2**63)))  # fmt: skip
        self.sim.reset()
        return self._observation(), self._info()

    def step(
        self, action: np.ndarray
    ) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        result = self.sim.step(np.asarray(action, dtype=np.float64)[None])
        info = self._info()
        truncated = bool(result["truncated"][0])
        if truncated:
            info["episode"] = self.sim.episode_summary(0)
        return self._observation(), float(result["reward"][0]), False, truncated, info


class BatchedStockPortfolioEnv(VectorEnv):
    """``num_envs`` accounts in one simulator (Gymnasium VectorEnv, same-step autoreset);
    account ``i`` reset with ``seed`` behaves like a single env reset with ``seed + i``."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self, num_envs: int, data: str | None = None, split: str = "train",
        config: Config | None = None, random_start: bool = True, **overrides: Any,
    ) -> None:  # fmt: skip
        self.config = portfolio_config(config, data, **overrides)
        self.num_envs = num_envs
        self.sim = make_portfolio_simulator(self.config, num_envs, split, random_start)
        n = self.sim.tape.n_stocks
        self.single_action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        self.single_observation_space = observation_space(self.config.portfolio.window, n)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rng = np.random.default_rng()
        self._seeded = False

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "portfolio_value": sim.value.copy(),
            "turbulent": sim.tape.turbulent[sim.day],
            "costs_paid": sim.costs_paid.copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._seeded = seed_accounts(self.sim, self.num_envs, seed, self._seeded,
                                     lambda: int(self._rng.integers(2**62)))  # fmt: skip
        self.sim.reset()
        return self.sim.observe(), self._info()

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.sim.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sim.load_state_dict(state)

    def observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self.sim.observe(), self._info()

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.sim.step(actions)
        truncated = result["truncated"]
        info = self._info()
        if truncated.any():
            info["final_obs"] = self.sim.observe()
            info["_final_obs"] = truncated.copy()
            final = np.empty(self.num_envs, dtype=object)
            for row in np.flatnonzero(truncated):
                final[row] = self.sim.episode_summary(int(row))
            info["final_info"] = final
            info["_final_info"] = truncated.copy()
            self.sim.reset(truncated)
        return self.sim.observe(), result["reward"], result["terminated"], truncated, info


def portfolio_env_factory(config: Config, split: str, n_envs: int) -> BatchedStockPortfolioEnv:
    """The trainer's environment factory for the stock-portfolio setting."""
    return BatchedStockPortfolioEnv(n_envs, split=split, config=config)
