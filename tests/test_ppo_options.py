"""Training options: gradient accumulation, mixed precision on CPU, learning-rate schedules."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from clstm_ppo.agent.network import CLSTMActorCritic
from clstm_ppo.agent.ppo import Rollout, compute_gae, ppo_update
from clstm_ppo.config import AgentConfig, PPOConfig, build_config
from clstm_ppo.train.trainer import Trainer

AGENT = AgentConfig(lstm_hidden=8, feature_dim=8, policy_hidden=16)


def _rollout(steps: int = 12, envs: int = 4, n_actions: int = 5) -> tuple:
    gen = torch.Generator().manual_seed(0)
    model = CLSTMActorCritic(3, 6, AGENT, n_actions=n_actions)
    rollout = Rollout.allocate(
        steps, envs, 4, 3, 6, n_actions, None, model.initial_state(envs), torch.device("cpu")
    )
    rollout.market.normal_(generator=gen)
    rollout.portfolio.normal_(generator=gen)
    rollout.action_mask[:] = True
    rollout.actions[:] = torch.randint(0, n_actions, (steps, envs), generator=gen)
    rollout.rewards.normal_(generator=gen)
    rollout.starts[0] = 1.0
    with torch.no_grad():
        dist, values, _ = model.evaluate(
            rollout.market, rollout.portfolio, rollout.action_mask, rollout.initial_state,
            rollout.starts,
        )  # fmt: skip
    rollout.log_probs[:] = model.log_prob(dist, rollout.actions.flatten()).view(steps, envs)
    rollout.values[:] = values.view(steps, envs)
    advantages, returns = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, torch.zeros(envs), 0.99, 0.95
    )
    return model, rollout, advantages, returns


class _CountingAdam(torch.optim.Adam):
    steps = 0

    def step(self, closure=None):
        type(self).steps += 1
        return super().step(closure)


@pytest.mark.parametrize("accumulate", [1, 2, 4])
def test_gradient_accumulation_steps_the_optimiser_less_often(accumulate) -> None:
    model, rollout, advantages, returns = _rollout()
    _CountingAdam.steps = 0
    optimizer = _CountingAdam(model.parameters(), lr=1e-3, eps=1e-5)
    config = PPOConfig(update_epochs=2, num_minibatches=4)
    ppo_update(
        model, optimizer, rollout, advantages, returns, config, torch.Generator().manual_seed(1),
        grad_accum_steps=accumulate,
    )  # fmt: skip
    assert _CountingAdam.steps == math.ceil(2 * 4 / accumulate)


def test_accumulating_two_halves_equals_one_full_batch() -> None:
    """Two minibatches of 2 envs accumulated give the same step as one minibatch of 4 envs
    (each half's loss is averaged over the same number of samples, then divided by 2)."""
    model_a, rollout, advantages, returns = _rollout()
    model_b = CLSTMActorCritic(3, 6, AGENT, n_actions=5)
    model_b.load_state_dict(model_a.state_dict())
    sgd_a = torch.optim.SGD(model_a.parameters(), lr=0.1)
    sgd_b = torch.optim.SGD(model_b.parameters(), lr=0.1)
    base = {"update_epochs": 1, "norm_adv": False, "max_grad_norm": 1e9}
    ppo_update(model_a, sgd_a, rollout, advantages, returns, PPOConfig(**base, num_minibatches=1),
               torch.Generator().manual_seed(3))  # fmt: skip
    ppo_update(model_b, sgd_b, rollout, advantages, returns, PPOConfig(**base, num_minibatches=2),
               torch.Generator().manual_seed(3), grad_accum_steps=2)  # fmt: skip
    for a, b in zip(model_a.parameters(), model_b.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_trains_on_cpu(tmp_path) -> None:
    model, rollout, advantages, returns = _rollout()
    before = [p.detach().clone() for p in model.parameters()]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    stats = ppo_update(
        model, optimizer, rollout, advantages, returns, PPOConfig(),
        torch.Generator().manual_seed(1), autocast_dtype=torch.bfloat16,
    )  # fmt: skip
    assert math.isfinite(stats.policy_loss) and math.isfinite(stats.value_loss)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def _trainer(tmp_path, schedule: str) -> Trainer:
    config = build_config(
        overrides={
            "ppo.lr_schedule": schedule, "ppo.warmup_updates": 4, "ppo.plateau_patience": 1,
            "agent.lstm_hidden": 8, "agent.feature_dim": 8, "agent.policy_hidden": 16,
            "train.num_envs": 2, "train.episodes": 40, "env.episode_length": 20,
            "ppo.rollout_length": 16, "train.run_dir": str(tmp_path),
        }
    )  # fmt: skip
    return Trainer(config, tmp_path / schedule, torch.device("cpu"))


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step")
def test_warmup_cosine_schedule(tmp_path) -> None:
    trainer = _trainer(tmp_path, "warmup_cosine")
    lr = trainer.config.ppo.learning_rate
    seen = []
    for _ in range(60):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        trainer.scheduler.step()
    assert seen[0] == pytest.approx(lr / 4)  # warmup starts at 1/4 with 4 warmup updates
    assert seen[3] == pytest.approx(lr)
    assert seen[-1] == pytest.approx(lr * trainer.config.ppo.min_lr_fraction)
    assert all(b <= a + 1e-12 for a, b in itertools.pairwise(seen[3:]))


def test_reduce_on_plateau_halves_after_stale_validations(tmp_path) -> None:
    trainer = _trainer(tmp_path, "plateau")
    lr = trainer.config.ppo.learning_rate
    for score in (0.5, 0.4, 0.4, 0.4):
        trainer.scheduler.step(score)
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(lr / 2)
