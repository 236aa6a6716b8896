"""A tiny batched environment whose best policy is known, for learning tests of the trainer.

It has the interface :class:`~clstm_ppo.train.trainer.Trainer` expects of an environment
(the same as :class:`~clstm_ppo.envs.vector.BatchedOptionsEnv`): a ``single_observation_space``
Dict with ``market`` (T, F), ``portfolio`` (P,) and ``action_mask`` MultiBinary(A), a Discrete
``single_action_space``, ``reset(seed=)``, ``step(actions)`` with same-step autoreset and
``info["final_obs"]`` / ``info["final_info"]``, plus ``state_dict`` / ``load_state_dict`` /
``observe`` so a trainer checkpoint can carry it.

The game (a contextual bandit): each step a signal ``s`` in {0, ..., K-1} (``K = N_SIGNALS``) is
drawn; the last row of the market window is its one-hot code (earlier rows hold earlier signals).
Actions:

- 0 hold: reward 0 (masked on about half of the steps),
- ``1 + k`` bet on ``s = k``: reward +1 when right, -1 when wrong (a policy that ignores the
  signal wins one bet in K and loses money),
- ``TRAP_ACTION = K + 1`` is always masked: it would pay +2, so a mask that leaks shows up as the
  agent learning to take it; every time it is taken is counted in ``invalid_taken``.

With ``memory=True`` the signal is drawn once per episode and shown only on its first step (the
market window is blank afterwards), so the best policy must remember it: only the stage-2 LSTM
state that runs across steps can carry it.

Episodes last ``episode_length`` steps and end as terminated. The portfolio value starts at
``INITIAL_VALUE`` and moves by each reward; every bet is a closed trade whose P&L is its reward.
The best valid policy (action ``1 + s``) earns ``+1`` every step: an episode return of
``episode_length / INITIAL_VALUE``, every trade a win.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from gymnasium import spaces

INITIAL_VALUE = 100.0
N_SIGNALS = 4
N_ACTIONS = N_SIGNALS + 2
N_FEATURES = N_SIGNALS
PORTFOLIO_SIZE = 2
TRAP_ACTION = N_SIGNALS + 1
TRAP_REWARD = 2.0


def optimal_return(episode_length: int) -> float:
    """The episode return of the best valid policy."""
    return episode_length / INITIAL_VALUE


class ToyVectorEnv:
    """``num_envs`` copies of the game, stepped together (see the module docstring)."""

    def __init__(
        self, num_envs: int, episode_length: int = 8, window: int = 3, memory: bool = False
    ) -> None:
        self.num_envs = num_envs
        self.memory = memory
        self.episode_length = episode_length
        self.window = window
        self.single_action_space = spaces.Discrete(N_ACTIONS)
        self.single_observation_space = spaces.Dict(
            {
                "market": spaces.Box(0.0, 1.0, (window, N_FEATURES), np.float32),
                "portfolio": spaces.Box(-1.0, 1.0, (PORTFOLIO_SIZE,), np.float32),
                "action_mask": spaces.MultiBinary(N_ACTIONS),
            }
        )
        n, length = num_envs, episode_length
        self.base_seed = 0
        self.episode_index = np.zeros(n, dtype=np.int64)  # episodes started per env
        self.t = np.zeros(n, dtype=np.int64)
        self.signals = np.zeros((n, length), dtype=np.int64)
        self.hold_ok = np.ones((n, length), dtype=bool)
        self.values = np.full((n, length + 1), INITIAL_VALUE)
        self.rewards = np.zeros((n, length))
        self.traded = np.zeros((n, length), dtype=bool)
        self.invalid_taken = 0
        self.steps_taken = 0

    # ----------------------------------------------------------------- episodes
    def _start(self, rows: np.ndarray) -> None:
        for row in rows:
            rng = np.random.default_rng([self.base_seed, int(row), int(self.episode_index[row])])
            self.signals[row] = rng.integers(
                0, N_SIGNALS, 1 if self.memory else self.episode_length
            )
            self.hold_ok[row] = rng.integers(0, 2, self.episode_length).astype(bool)
            self.episode_index[row] += 1
        self.t[rows] = 0
        self.values[rows] = INITIAL_VALUE
        self.rewards[rows] = 0.0
        self.traded[rows] = False

    def _mask(self) -> np.ndarray:
        rows = np.arange(self.num_envs)
        mask = np.ones((self.num_envs, N_ACTIONS), dtype=np.int8)
        mask[:, 0] = self.hold_ok[rows, self.t]
        mask[:, TRAP_ACTION] = 0
        return mask

    def _encode(self) -> dict[str, np.ndarray]:
        n, rows = self.num_envs, np.arange(self.num_envs)
        market = np.zeros((n, self.window, N_FEATURES), dtype=np.float32)
        for lag in range(self.window):
            step = self.t - lag
            live = (step == 0) if self.memory else (step >= 0)
            signal = self.signals[rows, np.maximum(step, 0)]
            market[live, self.window - 1 - lag, signal[live]] = 1.0
        portfolio = np.stack(
            [
                self.t / self.episode_length,
                (self.values[rows, self.t] - INITIAL_VALUE) / self.episode_length,
            ],
            axis=1,
        ).astype(np.float32)
        return {"market": market, "portfolio": portfolio, "action_mask": self._mask()}

    # ----------------------------------------------------------------- vector-env API
    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        if seed is not None:
            self.base_seed = int(seed)
        self.episode_index[:] = 0
        self._start(np.arange(self.num_envs))
        return self._encode(), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        actions = np.asarray(actions, dtype=np.int64)
        rows = np.arange(self.num_envs)
        mask = self._mask()
        self.invalid_taken += int(np.sum(mask[rows, actions] == 0))
        self.steps_taken += self.num_envs
        signal = self.signals[rows, self.t]
        bet = (actions >= 1) & (actions <= N_SIGNALS)
        right = actions == 1 + signal
        reward = np.where(bet, np.where(right, 1.0, -1.0), 0.0)
        reward = np.where(actions == TRAP_ACTION, TRAP_REWARD, reward)
        self.rewards[rows, self.t] = reward
        self.traded[rows, self.t] = bet
        self.values[rows, self.t + 1] = self.values[rows, self.t] + reward
        self.t += 1
        terminated = self.t >= self.episode_length
        truncated = np.zeros(self.num_envs, dtype=bool)
        info: dict[str, Any] = {}
        if terminated.any():
            done_rows = np.flatnonzero(terminated)
            final_obs = {
                "market": np.zeros((self.num_envs, self.window, N_FEATURES), dtype=np.float32),
                "portfolio": np.zeros((self.num_envs, PORTFOLIO_SIZE), dtype=np.float32),
                "action_mask": np.ones((self.num_envs, N_ACTIONS), dtype=np.int8),
            }
            final = np.empty(self.num_envs, dtype=object)
            for row in done_rows:
                final[row] = {
                    "portfolio_values": self.values[row].tolist(),
                    "closed_trades": [
                        {"pnl": float(p)} for p in self.rewards[row][self.traded[row]]
                    ],
                    "costs_paid": 0.0,
                }
            info.update(
                final_obs=final_obs,
                _final_obs=terminated.copy(),
                final_info=final,
                _final_info=terminated.copy(),
            )
            self._start(done_rows)
        return self._encode(), reward.astype(np.float32), terminated, truncated, info

    # ----------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {
            "base_seed": torch.tensor(self.base_seed),
            "episode_index": torch.from_numpy(self.episode_index.copy()),
            "t": torch.from_numpy(self.t.copy()),
            "signals": torch.from_numpy(self.signals.copy()),
            "hold_ok": torch.from_numpy(self.hold_ok.copy()),
            "values": torch.from_numpy(self.values.copy()),
            "rewards": torch.from_numpy(self.rewards.copy()),
            "traded": torch.from_numpy(self.traded.copy()),
        }

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if state["t"].shape[0] != self.num_envs:
            raise ValueError(f"saved state has {state['t'].shape[0]} envs, not {self.num_envs}")
        self.base_seed = int(state["base_seed"])
        for key in ("episode_index", "t", "signals", "hold_ok", "values", "rewards", "traded"):
            setattr(self, key, state[key].numpy().copy())

    def observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        return self._encode(), {}


class ToyEnvFactory:
    """A Trainer ``env_factory`` that builds :class:`ToyVectorEnv` and remembers what it built."""

    def __init__(self, memory: bool = False) -> None:
        self.memory = memory
        self.built: list[tuple[str, ToyVectorEnv]] = []

    def __call__(self, config: Any, split: str, n_envs: int) -> ToyVectorEnv:
        env = ToyVectorEnv(n_envs, config.env.episode_length, config.env.window, self.memory)
        self.built.append((split, env))
        return env

    def invalid_taken(self) -> int:
        return sum(env.invalid_taken for _, env in self.built)

    def steps_taken(self) -> int:
        return sum(env.steps_taken for _, env in self.built)
