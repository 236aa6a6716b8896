"""The tiny training setting shared by the training, evaluation, ensemble and DDP tests: small
networks, short rollouts and episodes, so that a whole run takes seconds."""

from __future__ import annotations

from pathlib import Path

TINY: dict[str, object] = {
    "agent.lstm_hidden": 8,
    "agent.feature_dim": 8,
    "agent.policy_hidden": 16,
    "ppo.rollout_length": 16,
    "ppo.num_minibatches": 2,
    "ppo.update_epochs": 2,
    "train.num_envs": 2,
    "train.validation_episodes": 2,
    "train.validate_every": 4,
    "env.episode_length": 20,
}


def tiny_overrides(run_dir: Path | str, **extra: object) -> dict[str, object]:
    """Dotted config overrides (``extra`` keys use ``__`` for dots: ``env__window=5``)."""
    overrides = {**TINY, "train.run_dir": str(run_dir)}
    overrides.update({key.replace("__", "."): value for key, value in extra.items()})
    return overrides


def tiny_flags(run_dir: Path | str, **extra: object) -> list[str]:
    """The same setting as command-line flags (``--run-dir`` and ``--set KEY=VALUE``)."""
    flags = ["--run-dir", str(run_dir)]
    for key, value in tiny_overrides(run_dir, **extra).items():
        if key == "train.run_dir":
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        flags += ["--set", f"{key}={text}"]
    return flags
