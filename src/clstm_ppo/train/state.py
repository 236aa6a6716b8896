"""What a training checkpoint carries besides the weights: counters, histories, bests, and
every random stream (so that a resumed run is bit-identical to an uninterrupted one)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch


@dataclass
class TrainState:
    """Counters and histories that a checkpoint carries."""

    episodes: int = 0
    updates: int = 0
    env_steps: int = 0
    next_validation: int = 0
    best: dict[str, float] = field(default_factory=dict)
    """Best value per metric over every validation: what the ``best_*`` links hold."""
    best_files: dict[str, str] = field(default_factory=dict)
    """``best_*`` link -> the checkpoint file it must point at (links are rebuilt from this)."""
    selection_best: float | None = None
    """Best composite of the scheduled validations only: early stopping's reference. An
    end-of-run validation moves ``best`` but not this, so stopping and resuming never changes
    what training does next."""
    best_episode: int = 0
    last_validation: dict[str, float] = field(default_factory=dict)
    """The latest validation's metrics, episode and update count, scheduled or end-of-run."""
    milestones: list[float] = field(default_factory=list)
    episode_history: list[dict[str, float]] = field(default_factory=list)
    validation_history: list[dict[str, float]] = field(default_factory=list)
    loss_history: list[dict[str, float]] = field(default_factory=list)


@dataclass
class TrainResult:
    episodes: int
    updates: int
    stop_reason: str
    validation: dict[str, float]
    rolling: dict[str, float]
    seconds: float
    checkpoint: Path | None


def _numpy_rng_state() -> dict[str, Any]:
    # numpy's state holds an ndarray, which weights_only loading refuses: store it as a tensor.
    name, key, pos, has_gauss, cached = np.random.get_state(legacy=True)
    return {
        "name": name,
        "key": torch.from_numpy(key.astype(np.int64)),
        "pos": int(pos),
        "has_gauss": int(has_gauss),
        "cached": float(cached),
    }


def _set_numpy_rng_state(state: dict[str, Any]) -> None:
    key = state["key"].numpy().astype(np.uint32)
    np.random.set_state((state["name"], key, state["pos"], state["has_gauss"], state["cached"]))


def capture_rng(generator: torch.Generator) -> dict[str, Any]:
    """Every random stream a training process draws from, as plain tensors and values."""
    return {
        "torch": torch.get_rng_state(),
        "generator": generator.get_state(),
        "numpy": _numpy_rng_state(),
        "python": random.getstate(),
    }


def restore_rng(rng: dict[str, Any], generator: torch.Generator) -> None:
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    _set_numpy_rng_state(rng["numpy"])
    random.setstate(rng["python"])
