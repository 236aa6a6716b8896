"""The feed-forward PPO baseline ("PPO" / "MLP-PPO" in the paper's tables).

Stable-Baselines3's default ``MlpPolicy`` for PPO, which FinRL and Yang et al. use: separate actor
and critic networks of two ``mlp_hidden``-unit tanh layers, orthogonal init, a state-independent
log-std for Box actions. It reads the last day of the market window plus the portfolio vector
(the same information as the paper's flat state) and has no memory, so its recurrent state is
empty; it keeps :class:`~clstm_ppo.agent.network.CLSTMActorCritic`'s interface so that the
trainer, checkpoints, evaluation and ensembles run it unchanged.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.distributions import Categorical, Normal

from clstm_ppo.agent.network import CLSTMActorCritic, RecurrentState, _orthogonal
from clstm_ppo.config import AgentConfig


class MLPActorCritic(CLSTMActorCritic):
    def __init__(
        self,
        n_features: int,
        portfolio_size: int,
        config: AgentConfig,
        n_actions: int | None = None,
        action_dim: int | None = None,
    ) -> None:
        nn.Module.__init__(self)
        self._check_action_space(n_actions, action_dim)
        self.policy_hidden = 0  # no recurrent state
        width, inputs = config.mlp_hidden, n_features + portfolio_size

        def body() -> nn.Sequential:
            return nn.Sequential(
                _orthogonal(nn.Linear(inputs, width)), nn.Tanh(),
                _orthogonal(nn.Linear(width, width)), nn.Tanh(),
            )  # fmt: skip

        self.actor_body, self.critic_body = body(), body()
        self._add_heads(width, n_actions, action_dim)

    def evaluate(
        self,
        market: torch.Tensor,
        portfolio: torch.Tensor,
        action_mask: torch.Tensor | None,
        state: RecurrentState,
        starts: torch.Tensor,
    ) -> tuple[Categorical | Normal, torch.Tensor, RecurrentState]:
        steps, batch = market.shape[:2]
        inputs = torch.cat([market[:, :, -1], portfolio], dim=-1).flatten(0, 1)
        mask = None if action_mask is None else action_mask.flatten(0, 1)
        dist = self.distribution(self.actor_body(inputs), mask)
        values = self.critic_head(self.critic_body(inputs)).view(steps * batch)
        return dist, values, state


def build_model(
    config: AgentConfig,
    n_features: int,
    portfolio_size: int,
    n_actions: int | None = None,
    action_dim: int | None = None,
) -> CLSTMActorCritic:
    """The actor-critic that ``config.architecture`` names."""
    cls = MLPActorCritic if config.architecture == "mlp" else CLSTMActorCritic
    return cls(n_features, portfolio_size, config, n_actions, action_dim)


def model_shapes(state: dict[str, torch.Tensor], config: AgentConfig) -> dict[str, int | None]:
    """Constructor sizes read back from a saved state dict (for loading checkpoints)."""
    discrete = "log_std" not in state
    out = int(state["actor_head.weight"].shape[0])
    if config.architecture == "mlp":
        inputs = int(state["actor_body.0.weight"].shape[1])
        # The split between market and portfolio inputs does not change the MLP's weights.
        n_features, portfolio = inputs, 0
    else:
        n_features = int(state["feature_lstm.weight_ih_l0"].shape[1])
        portfolio = int(state["actor_lstm.weight_ih_l0"].shape[1]) - config.feature_dim
    return {
        "n_features": n_features,
        "portfolio_size": portfolio,
        "n_actions": out if discrete else None,
        "action_dim": None if discrete else out,
    }


__all__ = ["MLPActorCritic", "build_model", "model_shapes"]
