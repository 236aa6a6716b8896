"""The deterministic walk that validation (and the ensemble's weighting) runs: the same fixed
episodes of a split every call, so validation scores are comparable across a run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from clstm_ppo.config import Config
from clstm_ppo.train.metrics import EpisodeMetrics, aggregate, summary_metrics

EnvFactory = Callable[[Config, str, int], Any]
VALIDATION_SEED = 20_240_601  # fixed: every validation sees the same episodes


def default_env_factory(config: Config, split: str, n_envs: int) -> Any:
    from clstm_ppo.envs import BatchedOptionsEnv

    return BatchedOptionsEnv(
        n_envs, split=split, multi_leg=config.env.enable_multi_leg, config=config
    )


def obs_tensors(obs: dict[str, np.ndarray], device: torch.device) -> tuple[torch.Tensor, ...]:
    market = torch.as_tensor(obs["market"], device=device)
    portfolio = torch.as_tensor(obs["portfolio"], device=device)
    mask = obs.get("action_mask")
    return market, portfolio, None if mask is None else torch.as_tensor(mask, device=device).bool()


def run_policy(
    policy: Any,
    config: Config,
    env_factory: EnvFactory = default_env_factory,
    device: torch.device | None = None,
    split: str = "validation",
    episodes: int | None = None,
) -> dict[str, float]:
    """Aggregate metrics of a deterministic policy (a model or an ensemble) over ``episodes``
    fixed episodes of ``split`` (the same episodes every call)."""
    device = device or torch.device("cpu")
    n = episodes or config.train.validation_episodes
    env = env_factory(config, split, n)
    obs, _ = env.reset(seed=VALIDATION_SEED)
    state = policy.initial_state(n, device)
    starts = torch.ones(n, device=device)
    done_rows = np.zeros(n, dtype=bool)
    results: list[EpisodeMetrics] = []
    while not done_rows.all():
        market, portfolio, mask = obs_tensors(obs, device)
        action, state, _ = policy.act(market, portfolio, mask, state, starts)
        obs, _, terminated, truncated, info = env.step(action.cpu().numpy())
        starts = torch.zeros(n, device=device)
        for row in np.flatnonzero(np.logical_or(terminated, truncated) & ~done_rows):
            results.append(summary_metrics(info["final_info"][row], config.train.risk_free_rate))
            done_rows[row] = True
    return aggregate(results)
