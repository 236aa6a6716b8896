"""The Gymnasium environments ``clstm_ppo/OptionsTrading-v0`` (31 actions) and
``clstm_ppo/MultiLegOptions-v0`` (91 actions): one account, the rules of
:mod:`clstm_ppo.envs.simulator`, the observation of :mod:`clstm_ppo.envs.observation`."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from clstm_ppo.config import Config
from clstm_ppo.envs.accounts import seed_accounts
from clstm_ppo.envs.factory import env_config, make_simulator
from clstm_ppo.envs.observation import encode, observation_space


class OptionsTradingEnv(gym.Env):
    """Trade options on one underlying; see the package docs for actions and accounting.

    Keyword arguments: ``data`` (``"bundled:SPX"``, ``"csv:/path/file.csv"``...), ``split``
    (train / validation / test), ``episode_length`` (default the config's, 252; 0 walks the
    whole split from its first day), ``initial_capital``, ``window`` (T), ``multi_leg``,
    ``config`` (a Config; the other arguments override it), ``random_start`` (False starts at
    the split's first day).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": []}

    def __init__(
        self,
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
        self.sim = make_simulator(self.config, 1, multi_leg, split, episode_length, random_start)
        self.n_actions = self.sim.n_actions
        self.action_space = spaces.Discrete(self.n_actions)
        self.observation_space = observation_space(self.window, self.n_actions)
        self._seeded = False

    def _observation(self) -> dict[str, np.ndarray]:
        return {key: value[0] for key, value in encode(self.sim, self.window).items()}

    def _info(self) -> dict[str, Any]:
        sim = self.sim
        return {
            "action_mask": sim.mask[0].copy(),
            "date": str(sim.tape.dates[sim.day[0]].date()),
            "portfolio_value": float(sim.value[0]),
            "cash": float(sim.cash[0]),
            "reserved": float(sim.reserved[0]),
            "turbulent": bool(sim.tape.turbulent[sim.day[0]]),
            "invalid_actions": int(sim.invalid_actions[0]),
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

    def step(self, action: int) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        result = self.sim.step(np.array([int(action)]))
        info = self._info()
        info["invalid_action"] = bool(result["invalid_action"][0])
        terminated = bool(result["terminated"][0])
        truncated = bool(result["truncated"][0])
        if terminated or truncated:
            info["episode"] = self.sim.episode_summary(0)
        return self._observation(), float(result["reward"][0]), terminated, truncated, info

    def action_masks(self) -> np.ndarray:
        """The current mask (the name sb3-contrib's MaskablePPO looks for)."""
        return self.sim.mask[0].copy()


class MultiLegOptionsEnv(OptionsTradingEnv):
    """The 91-action space: single legs plus covered calls, cash-secured puts and spreads."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs["multi_leg"] = True
        super().__init__(**kwargs)
