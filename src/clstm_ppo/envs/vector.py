"""The batched environment: ``num_envs`` accounts in one :class:`OptionsSimulator`, stepped
with array operations (no per-environment Python loop, no pandas in ``step``).

It follows Gymnasium's ``VectorEnv`` API with same-step autoreset: when an account's episode
ends, the observation returned is already its next episode's first one, and
``info["final_obs"]`` / ``info["final_info"]`` (with ``_final_obs`` / ``_final_info`` masks) hold
the last observation and the episode summary. Account ``i`` reset with ``seed`` behaves exactly
like a single :class:`~clstm_ppo.envs.single.OptionsTradingEnv` reset with ``seed + i``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from clstm_ppo.config import Config
from clstm_ppo.envs.accounts import seed_accounts
from clstm_ppo.envs.factory import env_config, make_simulator
from clstm_ppo.envs.observation import encode, observation_space


class BatchedOptionsEnv(VectorEnv):
    """Many option accounts stepped together; same rules as the single environment."""

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int,
        data: str | None = None,
        split: str = "train",
        episode_length: int | None = None,
        initial_capital: float | None = None,
        window: int | None = None,
        multi_leg: bool = False,
        config: Config | None = None,
        random_start: bool = True,
    ) -> None:
        self.config = env_config(config, data, initial_capital, window, None)
        self.window = self.config.env.window
        self.num_envs = num_envs
        self.sim = make_simulator(
            self.config, num_envs, multi_leg, split, episode_length, random_start
        )
        self.n_actions = self.sim.n_actions
        self.single_action_space = spaces.Discrete(self.n_actions)
        self.single_observation_space = observation_space(self.window, self.n_actions)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self._rng = np.random.default_rng()
        self._seeded = False

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "action_mask": sim.mask.copy(),
            "portfolio_value": sim.value.copy(),
            "turbulent": sim.tape.turbulent[sim.day],
            "invalid_actions": sim.invalid_actions.copy(),
            "costs_paid": sim.costs_paid.copy(),
        }

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        self._seeded = seed_accounts(self.sim, self.num_envs, seed, self._seeded,
                                     lambda: int(self._rng.integers(2**62)))  # fmt: skip
        self.sim.reset()
        return encode(self.sim, self.window), self._info()

    def state_dict(self) -> dict[str, torch.Tensor]:
        """The accounts' exact state, for checkpoints that resume bit-identically."""
        return self.sim.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.sim.load_state_dict(state)

    def observe(self) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """The current observation and info without stepping (after ``load_state_dict``)."""
        return encode(self.sim, self.window), self._info()

    def step(
        self, actions: np.ndarray
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        result = self.sim.step(actions)
        terminated, truncated = result["terminated"], result["truncated"]
        info = self._info()
        info["invalid_action"] = result["invalid_action"]
        done = terminated | truncated
        if done.any():
            info["final_obs"] = encode(self.sim, self.window)
            info["_final_obs"] = done.copy()
            # One summary per finished episode: built once per episode, not per step.
            final = np.empty(self.num_envs, dtype=object)
            for row in np.flatnonzero(done):
                final[row] = self.sim.episode_summary(int(row))
            info["final_info"] = final
            info["_final_info"] = done.copy()
            self.sim.reset(done)
            info["action_mask"] = self.sim.mask.copy()
        observation = encode(self.sim, self.window)
        return observation, result["reward"], terminated, truncated, info
