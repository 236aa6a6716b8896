"""Tiny training runs on a toy environment whose best policy is known (tests/toy_env.py).

The trainer, the CLSTM network and PPO run end to end (rollouts, GAE, updates, validation,
checkpoints); the validation score must go from a policy that ignores the signal to the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from clstm_ppo.config import build_config
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.trainer import Trainer
from toy_env import (
    INITIAL_VALUE,
    N_ACTIONS,
    N_SIGNALS,
    TRAP_ACTION,
    ToyEnvFactory,
    ToyVectorEnv,
    optimal_return,
)

EPISODE_LENGTH = 8
OPTIMUM = optimal_return(EPISODE_LENGTH)  # +8%: every step a winning bet


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny networks train faster on one thread; the setting is restored for other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _config(episodes: int, seed: int, memory: bool) -> Any:
    return build_config(
        overrides={
            "agent.lstm_hidden": 16,
            "agent.feature_dim": 16,
            "agent.policy_hidden": 32,
            "ppo.rollout_length": 20,  # not a multiple of 8: episodes straddle rollouts
            "ppo.learning_rate": 3e-3,
            "ppo.gamma": 0.5,  # rewards do not depend on the past: a short horizon learns faster
            "train.num_envs": 8,
            "train.seed": seed,
            "train.episodes": episodes,
            "train.validate_every": episodes // 2,
            "train.validation_episodes": 16,
            "train.early_stopping_patience": 0,
            "env.episode_length": EPISODE_LENGTH,
            # Memory mode shows the signal only on an episode's first day: a one-day window
            # means the network can only get it right later by remembering it.
            "env.window": 1 if memory else 3,
        }
    )


def _train(
    run_dir: Path, episodes: int, seed: int, memory: bool
) -> tuple[dict[str, float], dict[str, float], Trainer, ToyEnvFactory]:
    factory = ToyEnvFactory(memory=memory)
    trainer = Trainer(
        _config(episodes, seed, memory), run_dir, torch.device("cpu"), env_factory=factory
    )
    try:
        before = trainer.validate()
        result = trainer.train(episodes)
        after = trainer.validate()
    finally:
        trainer.reporter.close()
    assert result.episodes >= episodes
    assert _same(result.validation, after)  # train() ends on a validation of the final weights
    return before, after, trainer, factory


def _same(a: dict[str, float], b: dict[str, float]) -> bool:
    """Metric dicts equal, NaN (e.g. a Sortino ratio with no losing day) equal to NaN."""
    return a.keys() == b.keys() and all(
        a[k] == b[k] or (math.isnan(a[k]) and math.isnan(b[k])) for k in a
    )


def _assert_learned(
    before: dict[str, float], after: dict[str, float], factory: ToyEnvFactory, share: float
) -> None:
    assert before["episodes"] == after["episodes"] == 16
    # Before: the near-uniform initial network's argmax ignores the signal and loses money.
    assert before["mean_return"] < 0.25 * OPTIMUM, before
    # After: close to the known optimum, and clearly better on every score.
    assert after["mean_return"] >= share * OPTIMUM, after
    assert after["mean_return"] <= OPTIMUM + 1e-9
    assert after["win_rate"] >= 0.9, after
    assert after["profit_rate"] >= 0.9, after
    assert after["composite"] >= before["composite"] + 0.3, (before, after)
    assert after["composite"] >= 0.85, after
    # The always-masked trap (+2 if taken) was never taken, in training or validation.
    assert factory.steps_taken() > 0
    assert factory.invalid_taken() == 0


# ---------------------------------------------------------------------------------- the toy env


def test_toy_env_best_policy_reaches_the_known_optimum() -> None:
    """The oracle (action 1 + signal) earns +1 a step; a wrong bet costs 1; the trap is masked."""
    for memory in (False, True):
        window = 1 if memory else 3
        env = ToyVectorEnv(5, episode_length=EPISODE_LENGTH, window=window, memory=memory)
        space = env.single_observation_space
        obs, _ = env.reset(seed=3)
        assert obs["market"].shape == (5, *space["market"].shape)
        assert obs["market"].dtype == np.float32
        assert obs["portfolio"].shape == (5, *space["portfolio"].shape)
        assert obs["action_mask"].shape == (5, N_ACTIONS)
        remembered = obs["market"][:, -1].argmax(-1)
        finals = []
        for step in range(2 * EPISODE_LENGTH):
            assert np.all(obs["action_mask"][:, TRAP_ACTION] == 0)
            assert np.all(obs["action_mask"][:, 1 : N_SIGNALS + 1] == 1)
            shown = obs["market"][:, -1]
            if memory and step % EPISODE_LENGTH:
                assert np.all(obs["market"] == 0), "memory mode must hide the signal after day 0"
                signal = remembered
            else:
                assert np.all(shown.sum(-1) == 1)
                signal = shown.argmax(-1)
                remembered = signal
            obs, reward, terminated, truncated, info = env.step(1 + signal)
            assert np.all(reward == 1.0)
            assert not truncated.any()
            assert terminated.all() == ((step + 1) % EPISODE_LENGTH == 0)
            if terminated.any():
                assert set(info["final_obs"]) == {"market", "portfolio", "action_mask"}
                finals.extend(info["final_info"])
                assert np.all(obs["portfolio"][:, 0] == 0.0)  # same-step autoreset
        assert len(finals) == 10
        for summary in finals:
            values = summary["portfolio_values"]
            assert len(values) == EPISODE_LENGTH + 1
            assert values[-1] / values[0] - 1 == pytest.approx(OPTIMUM)
            assert [t["pnl"] for t in summary["closed_trades"]] == [1.0] * EPISODE_LENGTH
        assert env.invalid_taken == 0

    env = ToyVectorEnv(3, episode_length=EPISODE_LENGTH)
    obs, _ = env.reset(seed=0)
    wrong = (obs["market"][:, -1].argmax(-1) + 1) % N_SIGNALS
    _, reward, *_ = env.step(1 + wrong)
    assert np.all(reward == -1.0)
    _, reward, *_ = env.step(np.full(3, TRAP_ACTION))
    assert np.all(reward == 2.0) and env.invalid_taken == 3
    assert env.values[0, 2] == INITIAL_VALUE + 1.0


def test_toy_env_state_round_trips() -> None:
    env = ToyVectorEnv(4, episode_length=5)
    env.reset(seed=1)
    for _ in range(7):
        env.step(np.ones(4, dtype=np.int64))
    copy = ToyVectorEnv(4, episode_length=5)
    copy.load_state_dict(env.state_dict())
    for _ in range(9):
        a, b = env.observe()[0], copy.observe()[0]
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        out_a, out_b = env.step(np.full(4, 2)), copy.step(np.full(4, 2))
        np.testing.assert_array_equal(out_a[1], out_b[1])


# ---------------------------------------------------------------------------------- learning


def test_training_learns_the_signal(tmp_path: Path) -> None:
    """~5 s: 600 episodes (30 PPO updates) take validation from a losing policy to the optimum."""
    before, after, trainer, factory = _train(tmp_path, 600, seed=0, memory=False)
    _assert_learned(before, after, factory, share=0.85)
    # The best checkpoint loads through the safe loader, and its weights score what was recorded.
    best = ckpt.load(ckpt.resolve(trainer.checkpoint_dir, "best"))
    assert trainer.state.best["composite"] >= after["composite"] - 1e-12
    trainer.model.load_state_dict(best["model"])
    assert trainer.validate()["composite"] == pytest.approx(trainer.state.best["composite"])


def test_training_learns_to_remember(tmp_path: Path) -> None:
    """~11 s: the signal is shown on day 0 only, so only the recurrent state can carry it to
    the 7 later days; reaching the optimum needs the stage-2 state to run across steps in the
    rollout and to be replayed identically in the PPO update."""
    before, after, _, factory = _train(tmp_path, 1600, seed=0, memory=True)
    _assert_learned(before, after, factory, share=0.85)


def test_training_is_deterministic(tmp_path: Path) -> None:
    runs = []
    for name in ("a", "b"):
        before, after, trainer, _ = _train(tmp_path / name, 96, seed=5, memory=False)
        runs.append((before, after, trainer.model.state_dict(), trainer.state.loss_history))
    (before_a, after_a, weights_a, loss_a), (before_b, after_b, weights_b, loss_b) = runs
    assert _same(before_a, before_b)
    assert _same(after_a, after_b)
    assert loss_a == loss_b
    for key, value in weights_a.items():
        torch.testing.assert_close(weights_b[key], value, rtol=0, atol=0)
    # A different seed is a different run.
    _, _, other, _ = _train(tmp_path / "c", 96, seed=6, memory=False)
    assert other.state.loss_history != loss_a


@pytest.mark.slow
@pytest.mark.parametrize("memory", [False, True], ids=["signal", "memory"])
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_training_learns_across_seeds(tmp_path: Path, seed: int, memory: bool) -> None:
    """~10-20 s each: the fast tests' result is not one lucky seed."""
    before, after, _, factory = _train(tmp_path, 2400 if memory else 1200, seed=seed, memory=memory)
    _assert_learned(before, after, factory, share=0.85)
