"""The CLSTM actor-critic (Zou et al., arXiv 2212.02721).

Stage 1 reads the environment's window of the last T days of market features with an LSTM
(hidden ``lstm_hidden``) and turns its last hidden state into ``feature_dim`` features through
Linear+Tanh, as in the paper. The window comes from the environment (one observation already
holds T days), so the same observation is never fed twice.

Stage 2 (the cascade): the stage-1 features and the portfolio vector go through a recurrent
actor and a recurrent critic, two LSTMs of ``policy_hidden`` units each, whose state runs across
the steps of an episode and is zeroed where the done mask says an episode started.

Heads: a categorical head whose invalid actions get a logit of -1e8 (never sampled, no
probability mass, no entropy), and a Gaussian head (state-independent log-std) for Box action
spaces such as the paper's stock-portfolio setting. Weights use orthogonal init (gain sqrt(2) for
hidden layers, 0.01 for the policy output, 1 for the value output), LSTM biases 0.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical, Normal

from clstm_ppo.config import AgentConfig

MASKED_LOGIT = -1e8


class RecurrentState(NamedTuple):
    """Stage-2 LSTM state: (h, c) of the actor and of the critic, each (1, batch, hidden)."""

    actor_h: torch.Tensor
    actor_c: torch.Tensor
    critic_h: torch.Tensor
    critic_c: torch.Tensor

    def masked(self, keep: torch.Tensor) -> RecurrentState:
        """Zero the state of every row where ``keep`` is 0 (a new episode starts there)."""
        keep = keep.view(1, -1, 1)
        return RecurrentState(*(tensor * keep for tensor in self))

    def index(self, rows: torch.Tensor) -> RecurrentState:
        return RecurrentState(*(tensor[:, rows] for tensor in self))


def _orthogonal(layer: nn.Module, gain: float = float(np.sqrt(2)), bias: float = 0.0) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def _init_lstm(lstm: nn.LSTM) -> nn.LSTM:
    for name, param in lstm.named_parameters():
        if "bias" in name:
            nn.init.constant_(param, 0.0)
        elif "weight" in name:
            nn.init.orthogonal_(param, 1.0)
    return lstm


class CLSTMActorCritic(nn.Module):
    """Cascaded-LSTM actor-critic over ``{"market": (B,T,F), "portfolio": (B,P)}`` inputs."""

    def __init__(
        self,
        n_features: int,
        portfolio_size: int,
        config: AgentConfig,
        n_actions: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        super().__init__()
        self._check_action_space(n_actions, action_dim)
        self.policy_hidden = config.policy_hidden
        self.feature_lstm = _init_lstm(nn.LSTM(n_features, config.lstm_hidden, batch_first=True))
        self.feature_head = nn.Sequential(
            _orthogonal(nn.Linear(config.lstm_hidden, config.feature_dim)), nn.Tanh()
        )
        stage2_input = config.feature_dim + portfolio_size
        self.actor_lstm = _init_lstm(nn.LSTM(stage2_input, config.policy_hidden))
        self.critic_lstm = _init_lstm(nn.LSTM(stage2_input, config.policy_hidden))
        self._add_heads(config.policy_hidden, n_actions, action_dim)

    def _check_action_space(self, n_actions: int | None, action_dim: int | None) -> None:
        if (n_actions is None) == (action_dim is None):
            raise ValueError("give n_actions (categorical) or action_dim (Gaussian), not both")
        self.discrete = n_actions is not None

    def _add_heads(self, width: int, n_actions: int | None, action_dim: int | None) -> None:
        """Policy and value heads on ``width`` features (created last: the orthogonal init draws
        from the RNG in creation order, so seeded models stay as they were)."""
        out = n_actions if self.discrete else action_dim
        self.actor_head = _orthogonal(nn.Linear(width, out), gain=0.01)
        self.critic_head = _orthogonal(nn.Linear(width, 1), gain=1.0)
        if not self.discrete:
            self.log_std = nn.Parameter(torch.zeros(action_dim))

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> RecurrentState:
        zeros = torch.zeros(1, batch, self.policy_hidden, device=device)
        return RecurrentState(zeros, zeros.clone(), zeros.clone(), zeros.clone())

    def features(self, market: torch.Tensor, portfolio: torch.Tensor) -> torch.Tensor:
        """Stage 1 on a batch of windows, joined with the portfolio vector: (B, F + P)."""
        _, (h_last, _) = self.feature_lstm(market)
        return torch.cat([self.feature_head(h_last[-1]), portfolio], dim=-1)

    def _recurrent(
        self, features: torch.Tensor, state: RecurrentState, starts: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
        """Run stage 2 over ``(steps, batch, ·)`` features, resetting where ``starts`` is 1."""
        steps = features.shape[0]
        actor_out, critic_out = [], []
        a_state = (state.actor_h, state.actor_c)
        c_state = (state.critic_h, state.critic_c)
        # Between two steps where any sequence restarts, no state is reset, so one LSTM call
        # covers the whole stretch (20x faster than a call per step on a CPU).
        restarts = torch.nonzero(starts[1:].amax(dim=1) > 0).flatten() + 1
        bounds = [0, *restarts.tolist(), steps]
        for begin, end in itertools.pairwise(bounds):
            keep = (1.0 - starts[begin]).view(1, -1, 1)
            a_state = (a_state[0] * keep, a_state[1] * keep)
            c_state = (c_state[0] * keep, c_state[1] * keep)
            a_h, a_state = self.actor_lstm(features[begin:end], a_state)
            c_h, c_state = self.critic_lstm(features[begin:end], c_state)
            actor_out.append(a_h)
            critic_out.append(c_h)
        new_state = RecurrentState(a_state[0], a_state[1], c_state[0], c_state[1])
        return torch.cat(actor_out), torch.cat(critic_out), new_state

    def distribution(
        self, actor_hidden: torch.Tensor, action_mask: torch.Tensor | None
    ) -> Categorical | Normal:
        # float32 logits even under fp16 autocast: the -1e8 mask and the entropy need the range.
        out = self.actor_head(actor_hidden).float()
        if self.discrete:
            if action_mask is not None:
                out = torch.where(action_mask.bool(), out, torch.full_like(out, MASKED_LOGIT))
            return Categorical(logits=out)
        return Normal(out, self.log_std.exp().expand_as(out))

    def evaluate(
        self,
        market: torch.Tensor,
        portfolio: torch.Tensor,
        action_mask: torch.Tensor | None,
        state: RecurrentState,
        starts: torch.Tensor,
    ) -> tuple[Categorical | Normal, torch.Tensor, RecurrentState]:
        """Distributions and values over a ``(steps, batch)`` sequence from ``state``.

        Inputs are ``(steps, batch, ...)``; ``starts[t, b] = 1`` where step ``t`` of sequence
        ``b`` begins an episode. Stage 1 runs on all ``steps * batch`` windows at once (it has
        no memory across steps); only stage 2 walks the sequence.
        """
        steps, batch = market.shape[:2]
        features = self.features(market.flatten(0, 1), portfolio.flatten(0, 1))
        features = features.view(steps, batch, -1)
        actor_hidden, critic_hidden, new_state = self._recurrent(features, state, starts)
        mask = None if action_mask is None else action_mask.flatten(0, 1)
        dist = self.distribution(actor_hidden.flatten(0, 1), mask)
        values = self.critic_head(critic_hidden).view(steps * batch)
        return dist, values, new_state

    def forward(
        self,
        market: torch.Tensor,
        portfolio: torch.Tensor,
        action_mask: torch.Tensor | None,
        state: RecurrentState,
        starts: torch.Tensor,
    ) -> tuple[Categorical | Normal, torch.Tensor, RecurrentState]:
        """Same as :meth:`evaluate`; the update calls the module itself so that a
        DistributedDataParallel wrapper sees the forward pass and all-reduces the gradients."""
        return self.evaluate(market, portfolio, action_mask, state, starts)

    def log_prob(self, dist: Categorical | Normal, actions: torch.Tensor) -> torch.Tensor:
        if self.discrete:
            return dist.log_prob(actions)
        return dist.log_prob(actions).sum(-1)

    def entropy(self, dist: Categorical | Normal) -> torch.Tensor:
        if self.discrete:
            # Masked logits of -1e8 carry exp(-1e8) = 0 probability: p * log p is 0 there.
            probs = dist.probs
            return -(probs * torch.log(probs.clamp_min(1e-30))).sum(-1)
        return dist.entropy().sum(-1)
