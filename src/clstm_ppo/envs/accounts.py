"""What the options and stock-portfolio simulators share about their batch of accounts: the
exact checkpoint state of their arrays, and how an env seeds them on reset."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch


def arrays_state_dict(owner: Any, names: Sequence[str]) -> dict[str, torch.Tensor]:
    """The named arrays as tensors, exact: datetimes and uint64 travel as their int64 bits."""
    state = {}
    for name in names:
        array = getattr(owner, name)
        if array.dtype.kind == "M" or array.dtype == np.uint64:
            array = array.view(np.int64)
        state[name] = torch.from_numpy(array.copy())
    return state


def load_arrays_state(owner: Any, names: Sequence[str], state: dict[str, torch.Tensor]) -> None:
    """Restore what :func:`arrays_state_dict` saved, in each array's own dtype."""
    for name in names:
        current = getattr(owner, name)
        restored = state[name].numpy()
        if restored.shape != current.shape:
            raise ValueError(f"environment state '{name}' has shape {restored.shape}")
        setattr(owner, name, restored.view(current.dtype).copy())


def seed_accounts(sim: Any, n_envs: int, seed: int | None, seeded: bool,
                  draw: Callable[[], int]) -> bool:  # fmt: skip
    """Seed account ``i`` with ``seed + i`` when a seed is given, or from ``draw()`` on the first
    reset only (a seed of 0 counts as given); later resets continue each account's stream.
    Returns the env's new ``seeded`` flag."""
    if seed is not None or not seeded:
        base = seed if seed is not None else draw()
        sim.seed(base + np.arange(n_envs, dtype=np.uint64))
    return True
