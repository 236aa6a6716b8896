"""Multi-process training with DDP over gloo on the CPU (2 processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from clstm_ppo.agent.network import CLSTMActorCritic
from clstm_ppo.agent.ppo import Rollout, compute_gae, ppo_update
from clstm_ppo.config import AgentConfig, PPOConfig
from clstm_ppo.errors import CheckpointError
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.trainer import Trainer
from tiny import tiny_flags, tiny_overrides

AGENT = AgentConfig(lstm_hidden=8, feature_dim=8, policy_hidden=16)
PPO = PPOConfig(update_epochs=1, num_minibatches=1, norm_adv=False)
STEPS, ENVS, ACTIONS = 12, 3, 5


def _model() -> CLSTMActorCritic:
    torch.manual_seed(0)
    return CLSTMActorCritic(3, 6, AGENT, n_actions=ACTIONS)


def _rollout(model: CLSTMActorCritic, seed: int) -> tuple[Rollout, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(100 + seed)
    rollout = Rollout.allocate(
        STEPS, ENVS, 4, 3, 6, ACTIONS, None, model.initial_state(ENVS), torch.device("cpu")
    )
    rollout.market.normal_(generator=gen)
    rollout.portfolio.normal_(generator=gen)
    rollout.action_mask[:] = torch.rand(STEPS, ENVS, ACTIONS, generator=gen) > 0.3
    rollout.action_mask[..., 0] = True
    probs = rollout.action_mask.float()
    rollout.actions[:] = torch.multinomial(probs.view(-1, ACTIONS), 1, generator=gen).view(
        STEPS, ENVS
    )
    rollout.rewards.normal_(generator=gen)
    rollout.starts[0] = 1.0
    rollout.dones[STEPS // 2] = (torch.rand(ENVS, generator=gen) > 0.5).float()
    rollout.starts[STEPS // 2 + 1] = rollout.dones[STEPS // 2]
    with torch.no_grad():
        dist_, values, _ = model.evaluate(
            rollout.market, rollout.portfolio, rollout.action_mask, rollout.initial_state,
            rollout.starts,
        )  # fmt: skip
    rollout.log_probs[:] = model.log_prob(dist_, rollout.actions.flatten()).view(STEPS, ENVS)
    rollout.values[:] = values.view(STEPS, ENVS)
    advantages, returns = compute_gae(
        rollout.rewards, rollout.values, rollout.dones, torch.zeros(ENVS), 0.99, 0.95
    )
    return rollout, advantages, returns


def _update_worker(rank: int, world: int, folder: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{folder}/pg", rank=rank, world_size=world)
    try:
        model = _model()
        ddp = torch.nn.parallel.DistributedDataParallel(model)
        rollout, advantages, returns = _rollout(model, seed=rank)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
        for _ in range(3):
            ppo_update(ddp, optimizer, rollout, advantages, returns, PPO,
                       torch.Generator().manual_seed(7))  # fmt: skip
        torch.save(model.state_dict(), Path(folder) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_ddp_update_equals_single_process_on_combined_data(tmp_path) -> None:
    mp.spawn(_update_worker, args=(2, str(tmp_path)), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name  # identical on both ranks

    model = _model()
    parts = [_rollout(model, seed=rank) for rank in (0, 1)]

    def join(*tensors: torch.Tensor) -> torch.Tensor:
        return torch.cat(tensors, dim=1)

    first, second = parts[0][0], parts[1][0]
    combined = Rollout(
        market=join(first.market, second.market),
        portfolio=join(first.portfolio, second.portfolio),
        action_mask=join(first.action_mask, second.action_mask),
        actions=join(first.actions, second.actions),
        log_probs=join(first.log_probs, second.log_probs),
        values=join(first.values, second.values),
        rewards=join(first.rewards, second.rewards),
        starts=join(first.starts, second.starts),
        dones=join(first.dones, second.dones),
        initial_state=type(first.initial_state)(
            *(join(a, b) for a, b in zip(first.initial_state, second.initial_state, strict=True))
        ),
    )
    advantages = join(parts[0][1], parts[1][1])
    returns = join(parts[0][2], parts[1][2])
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, eps=1e-5)
    for _ in range(3):
        ppo_update(model, optimizer, combined, advantages, returns, PPO,
                   torch.Generator().manual_seed(7))  # fmt: skip
    for name, value in model.state_dict().items():
        torch.testing.assert_close(value, rank0[name], rtol=0, atol=1e-6)
    assert not torch.equal(_model().actor_head.weight, rank0["actor_head.weight"])


def _trainer_worker(rank: int, world: int, folder: str, resume: bool) -> None:
    from clstm_ppo.config import build_config

    dist.init_process_group("gloo", init_method=f"file://{folder}/pg{int(resume)}", rank=rank,
                            world_size=world)  # fmt: skip
    try:
        config = build_config(overrides=tiny_overrides(folder))
        trainer = Trainer(config, Path(folder) / "run", torch.device("cpu"), rank=rank,
                          world_size=world)  # fmt: skip
        target = 8
        if resume:
            trainer.load(ckpt.resolve(Path(folder) / "run" / "checkpoints", "latest"))
            target = 16
        trainer.train(target)
        torch.save(
            {"model": trainer.model.state_dict(), "episodes": trainer.state.episodes},
            Path(folder) / f"trainer{int(resume)}_rank{rank}.pt",
        )
        trainer.reporter.close()
    finally:
        dist.destroy_process_group()


def test_ddp_trainer_keeps_ranks_identical_writes_once_and_resumes(tmp_path) -> None:
    mp.spawn(_trainer_worker, args=(2, str(tmp_path), False), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "trainer0_rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "trainer0_rank1.pt", weights_only=True)
    assert rank0["episodes"] == rank1["episodes"] >= 8
    for name in rank0["model"]:
        assert torch.equal(rank0["model"][name], rank1["model"][name]), name
    run = tmp_path / "run"
    assert len(list((run / "logs").glob("*.log"))) == 1  # rank 1 wrote no log
    latest = ckpt.load(ckpt.resolve(run / "checkpoints", "latest"))
    assert latest["world_size"] == 2 and len(latest["ranks"]) == 2
    # Both ranks' environments are in it, and they differ (rank-dependent seeds).
    assert not torch.equal(
        latest["ranks"][0]["env_state"]["start_day"], latest["ranks"][1]["env_state"]["start_day"]
    )

    mp.spawn(_trainer_worker, args=(2, str(tmp_path), True), nprocs=2, join=True)
    resumed = torch.load(tmp_path / "trainer1_rank0.pt", weights_only=True)
    assert resumed["episodes"] >= 16

    from clstm_ppo.config import build_config

    single = Trainer(build_config(overrides=tiny_overrides(tmp_path)),
                     tmp_path / "single", torch.device("cpu"))  # fmt: skip
    with pytest.raises(CheckpointError, match="written by 2 training process"):
        single.load(ckpt.resolve(run / "checkpoints", "latest"))


def test_sigterm_stops_both_ranks_with_a_checkpoint(tmp_path) -> None:
    flags = [*tiny_flags(tmp_path), "--num-procs", "2", "--device", "cpu"]
    command = [sys.executable, "-m", "clstm_ppo", "train", "--episodes", "100000", *flags]
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, env=env)  # fmt: skip
    folder = tmp_path / "clstm_ppo" / "checkpoints"
    deadline = time.time() + 180
    while time.time() < deadline and not list(folder.glob("episode_*.pt")):
        time.sleep(0.5)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-2000:]
    assert "stopped by signal SIGTERM" in out.replace("\n", " ")
    latest = ckpt.load(ckpt.resolve(folder, "latest"))
    assert latest["world_size"] == 2
    episodes = latest["train_state"]["episodes"]
    resume = subprocess.run(
        [*command[:5], str(episodes + 4), *command[6:]],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr[-2000:]
    assert f"at episode {episodes}" in resume.stdout.replace("\n", " ")
