"""Deterministic policies for validation and evaluation: one model, or a weighted ensemble.

Both expose the same small interface (``initial_state``, ``act``), so everything that runs a
checkpoint also runs an ensemble.

Ensemble voting: every member gives its action probabilities under the action mask (masked
actions have probability 0); the ensemble adds them with the member weights and picks the action
with the largest weighted probability. Its confidence is that winning share of the vote (the
weights sum to 1, so it lies in (0, 1]). For Box action spaces the members' means are averaged
with the same weights.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from clstm_ppo.agent.network import CLSTMActorCritic, RecurrentState


class ModelPolicy:
    """The greedy (argmax / mean) policy of one actor-critic."""

    def __init__(self, model: CLSTMActorCritic) -> None:
        self.model = model

    def initial_state(self, batch: int, device: torch.device) -> Any:
        return self.model.initial_state(batch, device)

    def probabilities(
        self,
        market: torch.Tensor,
        portfolio: torch.Tensor,
        mask: torch.Tensor | None,
        state: RecurrentState,
        starts: torch.Tensor,
    ) -> tuple[torch.Tensor, RecurrentState]:
        """Action probabilities (discrete) or means (Box) for one step of a batch."""
        with torch.no_grad():
            dist, _, state = self.model.evaluate(
                market[None], portfolio[None], None if mask is None else mask[None], state,
                starts[None],
            )  # fmt: skip
        return (dist.probs if self.model.discrete else dist.mean), state

    def act(self, *inputs: Any) -> tuple[torch.Tensor, Any, torch.Tensor]:
        """(actions, new state, confidence) for one step."""
        out, state = self.probabilities(*inputs)
        if self.model.discrete:
            confidence, action = out.max(-1)
            return action, state, confidence
        return out, state, torch.ones(out.shape[0], device=out.device)


class EnsemblePolicy:
    """Weighted probability voting over member models (see the module docstring)."""

    def __init__(self, members: Sequence[CLSTMActorCritic], weights: Sequence[float]) -> None:
        if len(members) != len(weights) or not members:
            raise ValueError("an ensemble needs one weight per member and at least one member")
        total = float(np.sum(weights))
        self.members = [ModelPolicy(member) for member in members]
        self.weights = [float(w) / total for w in weights]
        self.discrete = members[0].discrete

    def initial_state(self, batch: int, device: torch.device) -> list[Any]:
        return [member.initial_state(batch, device) for member in self.members]

    def act(
        self,
        market: torch.Tensor,
        portfolio: torch.Tensor,
        mask: torch.Tensor | None,
        states: list[Any],
        starts: torch.Tensor,
    ) -> tuple[torch.Tensor, list[Any], torch.Tensor]:
        votes = None
        new_states = []
        for member, weight, state in zip(self.members, self.weights, states, strict=True):
            out, state = member.probabilities(market, portfolio, mask, state, starts)
            new_states.append(state)
            votes = weight * out if votes is None else votes + weight * out
        if not self.discrete:
            return votes, new_states, torch.ones(votes.shape[0], device=votes.device)
        if mask is not None:
            votes = torch.where(mask, votes, torch.zeros_like(votes))
        confidence, action = votes.max(-1)
        return action, new_states, confidence
