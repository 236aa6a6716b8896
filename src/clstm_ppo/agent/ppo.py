"""PPO for the recurrent actor-critic, after CleanRL's ``ppo_atari_lstm.py``.

A rollout stores ``steps x envs`` transitions plus the stage-2 LSTM state at its first step.
Updates replay whole sequences (minibatches are sets of environments, never shuffled steps)
from that stored state, resetting it with the same episode-start mask the rollout used.

Implementation details (Huang et al., "The 37 implementation details of PPO"): GAE, advantage
normalisation per minibatch, clipped surrogate, clipped value loss, entropy bonus, global
gradient-norm clipping, Adam with eps 1e-5 (set by the trainer), gradient accumulation over
minibatches, optional mixed precision (fp16 autocast with a GradScaler on CUDA, bf16 autocast on
CPU). Truncated episodes (time limits) are bootstrapped: the trainer adds ``gamma * V(final
observation)`` to their last reward, so a time limit is not mistaken for a terminal state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from clstm_ppo.agent.network import CLSTMActorCritic, RecurrentState
from clstm_ppo.config import PPOConfig


@dataclass
class Rollout:
    """One rollout of ``steps`` transitions from ``envs`` environments (time-major tensors)."""

    market: torch.Tensor  # (S, E, T, F)
    portfolio: torch.Tensor  # (S, E, P)
    action_mask: torch.Tensor | None  # (S, E, A)
    actions: torch.Tensor  # (S, E) or (S, E, D)
    log_probs: torch.Tensor  # (S, E)
    values: torch.Tensor  # (S, E)
    rewards: torch.Tensor  # (S, E)
    starts: torch.Tensor  # (S, E): 1 where step s begins a new episode (state is reset)
    dones: torch.Tensor  # (S, E): 1 where the episode ended at step s (no bootstrap through it)
    initial_state: RecurrentState

    @classmethod
    def allocate(
        cls,
        steps: int,
        envs: int,
        window: int,
        n_features: int,
        portfolio_size: int,
        n_actions: int | None,
        action_dim: int | None,
        initial_state: RecurrentState,
        device: torch.device,
    ) -> Rollout:
        def zeros(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
            return torch.zeros(shape, dtype=dtype, device=device)

        discrete = n_actions is not None
        return cls(
            market=zeros(steps, envs, window, n_features),
            portfolio=zeros(steps, envs, portfolio_size),
            action_mask=zeros(steps, envs, n_actions, dtype=torch.bool) if discrete else None,
            actions=zeros(steps, envs, dtype=torch.long)
            if discrete
            else zeros(steps, envs, action_dim),
            log_probs=zeros(steps, envs),
            values=zeros(steps, envs),
            rewards=zeros(steps, envs),
            starts=zeros(steps, envs),
            dones=zeros(steps, envs),
            initial_state=initial_state,
        )


def compute_gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    dones: torch.Tensor,
    next_value: torch.Tensor,
    gamma: float,
    gae_lambda: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimates and returns for a ``(steps, envs)`` rollout.

    ``dones[t]`` marks that the episode ended at step ``t``: nothing is bootstrapped across it.
    ``next_value`` is the value of the observation after the last step.
    """
    steps = rewards.shape[0]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(next_value)
    for t in reversed(range(steps)):
        following = next_value if t == steps - 1 else values[t + 1]
        alive = 1.0 - dones[t]
        delta = rewards[t] + gamma * following * alive - values[t]
        last = delta + gamma * gae_lambda * alive * last
        advantages[t] = last
    return advantages, advantages + values


@dataclass
class UpdateStats:
    """What one PPO update did (averaged over its minibatches)."""

    policy_loss: float
    value_loss: float
    entropy: float
    approx_kl: float
    clip_fraction: float
    explained_variance: float
    grad_norm: float


def explained_variance(predicted: np.ndarray, target: np.ndarray) -> float:
    variance = np.var(target)
    return float("nan") if variance == 0 else float(1.0 - np.var(target - predicted) / variance)


def ppo_update(
    model: CLSTMActorCritic | torch.nn.parallel.DistributedDataParallel,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    advantages: torch.Tensor,
    returns: torch.Tensor,
    config: PPOConfig,
    generator: torch.Generator,
    grad_accum_steps: int = 1,
    scaler: torch.amp.GradScaler | None = None,
    autocast_dtype: torch.dtype | None = None,
) -> UpdateStats:
    """``update_epochs`` passes over the rollout in minibatches of whole env sequences.

    ``model`` may be wrapped in DistributedDataParallel: gradients are then averaged across ranks
    in each backward pass (skipped with ``no_sync`` while accumulating), so every rank applies
    the same step.
    """
    policy: CLSTMActorCritic = getattr(model, "module", model)
    envs = rollout.rewards.shape[1]
    per_batch = max(1, envs // config.num_minibatches)
    total_batches = config.update_epochs * len(range(0, envs, per_batch))
    device = rollout.rewards.device
    sums = {key: 0.0 for key in ("pg", "v", "ent", "kl", "clip", "grad")}
    batches = 0
    updates = 0
    pending = 0
    optimizer.zero_grad(set_to_none=True)
    for _ in range(config.update_epochs):
        order = torch.randperm(envs, generator=generator).to(device)
        for first in range(0, envs, per_batch):
            rows = order[first : first + per_batch]
            state = rollout.initial_state.index(rows)
            mask = None if rollout.action_mask is None else rollout.action_mask[:, rows]
            with torch.autocast(
                device_type=device.type,
                dtype=autocast_dtype or torch.float32,
                enabled=autocast_dtype is not None,
            ):
                dist, values, _ = model(
                    rollout.market[:, rows],
                    rollout.portfolio[:, rows],
                    mask,
                    state,
                    rollout.starts[:, rows],
                )
            values = values.float()
            actions = rollout.actions[:, rows].flatten(0, 1)
            new_log_prob = policy.log_prob(dist, actions).float()
            entropy = policy.entropy(dist).float()
            old_log_prob = rollout.log_probs[:, rows].flatten()
            adv = advantages[:, rows].flatten()
            if config.norm_adv and adv.numel() > 1:
                adv = (adv - adv.mean()) / (adv.std() + 1e-8)
            log_ratio = new_log_prob - old_log_prob
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = ((ratio - 1.0) - log_ratio).mean()
                clipped = ((ratio - 1.0).abs() > config.clip_coef).float().mean()
            pg_loss = torch.max(
                -adv * ratio, -adv * ratio.clamp(1 - config.clip_coef, 1 + config.clip_coef)
            ).mean()
            ret = returns[:, rows].flatten()
            old_values = rollout.values[:, rows].flatten()
            if config.clip_vloss:
                v_clipped = old_values + (values - old_values).clamp(
                    -config.clip_coef, config.clip_coef
                )
                v_loss = 0.5 * torch.max((values - ret) ** 2, (v_clipped - ret) ** 2).mean()
            else:
                v_loss = 0.5 * ((values - ret) ** 2).mean()
            loss = pg_loss - config.ent_coef * entropy.mean() + config.vf_coef * v_loss
            loss = loss / grad_accum_steps
            pending += 1
            last = batches + 1 == total_batches
            syncing = pending == grad_accum_steps or last or not hasattr(model, "no_sync")
            with contextlib.nullcontext() if syncing else model.no_sync():
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            if pending == grad_accum_steps:
                sums["grad"] += _step(model, optimizer, config.max_grad_norm, scaler)
                updates += 1
                pending = 0
            sums["pg"] += float(pg_loss.detach())
            sums["v"] += float(v_loss.detach())
            sums["ent"] += float(entropy.mean().detach())
            sums["kl"] += float(approx_kl)
            sums["clip"] += float(clipped)
            batches += 1
    if pending:
        sums["grad"] += _step(model, optimizer, config.max_grad_norm, scaler)
        updates += 1
    ev = explained_variance(rollout.values.flatten().cpu().numpy(), returns.flatten().cpu().numpy())
    return UpdateStats(
        policy_loss=sums["pg"] / batches,
        value_loss=sums["v"] / batches,
        entropy=sums["ent"] / batches,
        approx_kl=sums["kl"] / batches,
        clip_fraction=sums["clip"] / batches,
        explained_variance=ev,
        grad_norm=sums["grad"] / max(updates, 1),
    )


def _step(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    max_grad_norm: float,
    scaler: torch.amp.GradScaler | None,
) -> float:
    if scaler is not None:
        scaler.unscale_(optimizer)
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm))
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return norm
