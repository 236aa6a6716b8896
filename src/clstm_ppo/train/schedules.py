"""Learning-rate schedules: constant, linear warmup then cosine decay, reduce-on-plateau."""

from __future__ import annotations

import math
from typing import Any

import torch

from clstm_ppo.config import Config


def build_scheduler(optimizer: torch.optim.Optimizer, config: Config) -> Any:
    """The learning-rate schedule of ``ppo.lr_schedule`` (None for a constant rate)."""
    ppo = config.ppo
    if ppo.lr_schedule == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(
            optimizer,
            mode="max",
            factor=0.5,
            patience=ppo.plateau_patience,
            min_lr=ppo.learning_rate * ppo.min_lr_fraction,
        )
    if ppo.lr_schedule == "warmup_cosine":
        steps_per_update = config.train.num_envs * ppo.rollout_length
        total = max(
            1,
            math.ceil(config.train.episodes * config.env.episode_length / steps_per_update),
        )
        warmup, floor = ppo.warmup_updates, ppo.min_lr_fraction

        def factor(update: int) -> float:
            if update < warmup:
                return (update + 1) / warmup
            progress = min(1.0, (update - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return None
