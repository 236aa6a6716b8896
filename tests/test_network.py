"""The CLSTM actor-critic: action masking, recurrent state handling, heads and initialisation."""

from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Categorical, Normal

from clstm_ppo.agent.network import CLSTMActorCritic, RecurrentState
from clstm_ppo.config import AgentConfig

WINDOW, FEATURES, PORTFOLIO, ACTIONS = 5, 3, 4, 7
SMALL = AgentConfig(lstm_hidden=8, feature_dim=8, policy_hidden=16)


def _model(seed: int = 0, **kwargs: int) -> CLSTMActorCritic:
    torch.manual_seed(seed)
    if "action_dim" not in kwargs:
        kwargs.setdefault("n_actions", ACTIONS)
    return CLSTMActorCritic(FEATURES, PORTFOLIO, SMALL, **kwargs)


def _inputs(
    steps: int, batch: int, seed: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    market = torch.randn(steps, batch, WINDOW, FEATURES, generator=gen)
    portfolio = torch.randn(steps, batch, PORTFOLIO, generator=gen)
    mask = torch.rand(steps, batch, ACTIONS, generator=gen) < 0.5
    mask[..., 0] |= ~mask.any(-1)  # at least one valid action per row
    return market, portfolio, mask


def _random_state(model: CLSTMActorCritic, batch: int, seed: int = 2) -> RecurrentState:
    gen = torch.Generator().manual_seed(seed)
    shape = (1, batch, model.policy_hidden)
    return RecurrentState(*(torch.randn(shape, generator=gen) for _ in range(4)))


# ---------------------------------------------------------------------------------- masking


def _masked_setup(
    batch: int = 64,
) -> tuple[CLSTMActorCritic, Categorical, torch.Tensor, Categorical]:
    """A model whose raw logits strongly prefer action 0, under masks that often forbid it."""
    model = _model()
    with torch.no_grad():
        model.actor_head.bias.copy_(torch.tensor([30.0, -2.0, 0.0, 1.0, 4.0, -1.0, 2.0]))
    market, portfolio, mask = _inputs(1, batch)
    mask[0, : batch // 2, 0] = False  # the favourite is forbidden in half of the rows
    mask[0, : batch // 2, 3] = True
    state = model.initial_state(batch)
    starts = torch.ones(1, batch)
    with torch.no_grad():
        dist, _, _ = model.evaluate(market, portfolio, mask, state, starts)
        free, _, _ = model.evaluate(market, portfolio, None, state, starts)
    return model, dist, mask[0], free


def test_masked_actions_have_zero_probability_and_are_never_drawn() -> None:
    _, dist, mask, _ = _masked_setup()
    assert isinstance(dist, Categorical)
    probs = dist.probs
    assert probs.shape == mask.shape
    assert torch.all(probs[~mask] == 0.0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(mask.shape[0]))
    gen = torch.Generator().manual_seed(7)
    # The trainer's sampler: torch.multinomial on dist.probs.
    drawn = torch.multinomial(probs, 2000, replacement=True, generator=gen)
    assert mask.gather(1, drawn).all(), "torch.multinomial drew a masked action"
    # The distribution's own sampler.
    torch.manual_seed(11)
    samples = dist.sample((2000,))  # (2000, batch)
    assert samples.shape == (2000, mask.shape[0])
    assert mask[torch.arange(mask.shape[0]), samples].all(), "dist.sample() drew a masked action"
    # Every valid action does get drawn somewhere (the mask does not kill valid ones).
    seen = torch.zeros_like(mask)
    seen.scatter_(1, drawn, True)
    assert seen[:, 1:][mask[:, 1:] & (probs[:, 1:] > 0.05)].all()


def test_masked_log_prob_and_entropy_are_those_of_the_renormalised_valid_actions() -> None:
    model, dist, mask, free = _masked_setup()
    batch = mask.shape[0]
    # Reference: the unmasked distribution restricted to the valid actions and renormalised.
    restricted = torch.where(mask, free.probs, torch.zeros_like(free.probs)).double()
    reference = restricted / restricted.sum(-1, keepdim=True)
    torch.testing.assert_close(dist.probs.double(), reference, rtol=1e-5, atol=1e-7)

    for action in range(ACTIONS):
        actions = torch.full((batch,), action)
        log_prob = model.log_prob(dist, actions)
        valid = mask[:, action]
        assert torch.isfinite(log_prob[valid]).all()
        torch.testing.assert_close(
            log_prob[valid].double(), reference[valid, action].log(), rtol=1e-5, atol=1e-5
        )

    entropy = model.entropy(dist)
    assert entropy.shape == (batch,)
    assert torch.isfinite(entropy).all()
    expected = torch.stack(
        [-(row[row > 0] * row[row > 0].log()).sum() for row in reference]
    ).float()
    torch.testing.assert_close(entropy, expected, rtol=1e-4, atol=1e-5)
    # One valid action: a certain choice, zero entropy.
    single = torch.zeros(1, 1, ACTIONS, dtype=torch.bool)
    single[..., 4] = True
    market, portfolio, _ = _inputs(1, 1)
    with torch.no_grad():
        one, _, _ = model.evaluate(
            market, portfolio, single, model.initial_state(1), torch.ones(1, 1)
        )
    assert one.probs[0, 4].item() == 1.0
    assert model.entropy(one).item() == pytest.approx(0.0, abs=1e-6)


def test_masked_entropy_and_log_prob_have_finite_gradients() -> None:
    model = _model()
    market, portfolio, mask = _inputs(3, 5)
    dist, _, _ = model.evaluate(market, portfolio, mask, model.initial_state(5), torch.ones(3, 5))
    actions = torch.multinomial(dist.probs.detach(), 1)[:, 0]
    loss = -model.log_prob(dist, actions).mean() - model.entropy(dist).mean()
    loss.backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name
    assert model.actor_head.weight.grad is not None
    assert model.actor_head.weight.grad.abs().sum() > 0


def test_an_all_valid_mask_equals_no_mask() -> None:
    model = _model()
    market, portfolio, _ = _inputs(2, 3)
    everything = torch.ones(2, 3, ACTIONS, dtype=torch.bool)
    state, starts = model.initial_state(3), torch.ones(2, 3)
    with torch.no_grad():
        a, _, _ = model.evaluate(market, portfolio, everything, state, starts)
        b, _, _ = model.evaluate(market, portfolio, None, state, starts)
    torch.testing.assert_close(a.probs, b.probs, rtol=0, atol=0)


def _check_mixed_precision_dist(
    model: CLSTMActorCritic, dist: Categorical, flat_mask: torch.Tensor, extra: torch.Tensor
) -> None:
    """What ppo_update does after its autocast block: log-probs, entropy, backward."""
    rows = flat_mask.shape[0]
    probs = dist.probs.float()
    assert torch.all(probs[~flat_mask] == 0)
    torch.testing.assert_close(probs.sum(-1), torch.ones(rows), rtol=0, atol=1e-2)
    actions = torch.multinomial(probs.detach(), 1)[:, 0]
    assert flat_mask[torch.arange(rows), actions].all()
    log_prob = model.log_prob(dist, actions).float()
    entropy = model.entropy(dist).float()
    assert torch.isfinite(log_prob).all()
    assert torch.isfinite(entropy).all(), entropy
    (-log_prob.mean() - 0.01 * entropy.mean() + extra).backward()
    for name, param in model.named_parameters():
        if param.grad is not None:
            assert torch.isfinite(param.grad).all(), name


def test_masked_policy_under_bf16_autocast() -> None:
    """train.amp=bf16 (the CPU's mixed precision): the whole evaluate runs under autocast."""
    model = _model()
    steps, batch = 3, 6
    market, portfolio, mask = _inputs(steps, batch)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert model.actor_head(torch.zeros(1, SMALL.policy_hidden)).dtype == torch.bfloat16
        dist, values, _ = model.evaluate(
            market, portfolio, mask, model.initial_state(batch), torch.ones(steps, batch)
        )
    _check_mixed_precision_dist(model, dist, mask.flatten(0, 1), values.float().pow(2).mean())


def test_masked_policy_head_under_fp16_autocast() -> None:
    """The head as ppo_update runs it under train.amp=fp16. CPU autocast stands in for CUDA's
    (the CPU's oneDNN LSTM has no float16 kernel, so only the head runs under it here)."""
    model = _model()
    _, _, mask = _inputs(1, 16)
    hidden = torch.randn(16, SMALL.policy_hidden, generator=torch.Generator().manual_seed(3))
    with torch.autocast("cpu", dtype=torch.float16):
        assert model.actor_head(hidden).dtype == torch.float16
        dist = model.distribution(hidden, mask[0])
    _check_mixed_precision_dist(model, dist, mask[0], torch.zeros(()))


# ---------------------------------------------------------------------------------- recurrence


def _outputs(
    model: CLSTMActorCritic,
    market: torch.Tensor,
    portfolio: torch.Tensor,
    mask: torch.Tensor,
    state: RecurrentState,
    starts: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, RecurrentState]:
    steps, batch = market.shape[:2]
    with torch.no_grad():
        dist, values, new_state = model.evaluate(market, portfolio, mask, state, starts)
    return dist.probs.view(steps, batch, -1), values.view(steps, batch), new_state


@pytest.mark.parametrize("restart", [1, 3, 5])
def test_state_resets_at_an_episode_start(restart: int) -> None:
    """From a start flag on, outputs are those of a fresh run (zero state) on the suffix.

    Equal up to float rounding (~1e-9: stage 1 runs as one batched matmul over all windows, whose
    blocking differs with the number of steps); the carried state would differ by > 1e-4."""
    model = _model()
    steps, batch = 6, 3
    market, portfolio, mask = _inputs(steps, batch)
    state = _random_state(model, batch)
    starts = torch.zeros(steps, batch)
    starts[restart] = 1.0
    probs, values, end_state = _outputs(model, market, portfolio, mask, state, starts)

    fresh_probs, fresh_values, fresh_end = _outputs(
        model,
        market[restart:],
        portfolio[restart:],
        mask[restart:],
        model.initial_state(batch),
        torch.zeros(steps - restart, batch),
    )
    torch.testing.assert_close(probs[restart:], fresh_probs, rtol=0, atol=1e-6)
    torch.testing.assert_close(values[restart:], fresh_values, rtol=0, atol=1e-6)
    for got, want in zip(end_state, fresh_end, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)

    # Without the start flag the carried state shows: the same suffix gives other outputs.
    carried_probs, carried_values, _ = _outputs(
        model, market, portfolio, mask, state, torch.zeros(steps, batch)
    )
    assert (carried_values[restart:] - fresh_values).abs().max() > 1e-4
    assert (carried_probs[restart:] - fresh_probs).abs().max() > 1e-6
    # Before the restart, the flag changes nothing.
    torch.testing.assert_close(carried_values[:restart], values[:restart], rtol=0, atol=0)


def test_start_flags_reset_only_their_own_rows() -> None:
    model = _model()
    steps, batch = 5, 4
    market, portfolio, mask = _inputs(steps, batch)
    state = _random_state(model, batch)
    starts = torch.zeros(steps, batch)
    starts[2, 1] = 1.0  # only sequence 1 starts an episode at step 2
    _, values, _ = _outputs(model, market, portfolio, mask, state, starts)
    _, no_reset, _ = _outputs(model, market, portfolio, mask, state, torch.zeros(steps, batch))
    _, fresh, _ = _outputs(
        model,
        market[2:, 1:2],
        portfolio[2:, 1:2],
        mask[2:, 1:2],
        model.initial_state(1),
        torch.zeros(steps - 2, 1),
    )
    torch.testing.assert_close(values[2:, 1:2], fresh, rtol=0, atol=1e-6)
    others = [0, 2, 3]
    torch.testing.assert_close(values[:, others], no_reset[:, others], rtol=0, atol=1e-6)
    assert (values[2:, 1] - no_reset[2:, 1]).abs().max() > 1e-4


def test_start_at_step_zero_ignores_the_incoming_state() -> None:
    model = _model()
    market, portfolio, mask = _inputs(4, 3)
    starts = torch.zeros(4, 3)
    starts[0] = 1.0
    a = _outputs(model, market, portfolio, mask, _random_state(model, 3, seed=5), starts)
    b = _outputs(model, market, portfolio, mask, model.initial_state(3), starts)
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=0)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=0)


def test_sequence_evaluation_equals_step_by_step() -> None:
    """One call over the sequence (restarts scattered over rows and steps) equals 1-step calls
    that carry the state, as the rollout collects it."""
    model = _model()
    steps, batch = 12, 5
    market, portfolio, mask = _inputs(steps, batch)
    gen = torch.Generator().manual_seed(9)
    starts = (torch.rand(steps, batch, generator=gen) < 0.2).float()
    starts[0, 0] = 1.0
    starts[7, :] = 1.0  # a step where every row restarts
    state = _random_state(model, batch)
    probs, values, end_state = _outputs(model, market, portfolio, mask, state, starts)

    carried = state
    step_probs, step_values = [], []
    for t in range(steps):
        p, v, carried = _outputs(
            model,
            market[t : t + 1],
            portfolio[t : t + 1],
            mask[t : t + 1],
            carried,
            starts[t : t + 1],
        )
        step_probs.append(p)
        step_values.append(v)
    torch.testing.assert_close(probs, torch.cat(step_probs), rtol=0, atol=1e-5)
    torch.testing.assert_close(values, torch.cat(step_values), rtol=0, atol=1e-5)
    for got, want in zip(end_state, carried, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-5)

    # And chunks of uneven length, carrying the state between them.
    carried, chunk_values = state, []
    for begin, end in ((0, 3), (3, 4), (4, 9), (9, 12)):
        _, v, carried = _outputs(
            model,
            market[begin:end],
            portfolio[begin:end],
            mask[begin:end],
            carried,
            starts[begin:end],
        )
        chunk_values.append(v)
    torch.testing.assert_close(values, torch.cat(chunk_values), rtol=0, atol=1e-5)


def test_state_carries_information_across_steps() -> None:
    """Stage 2 remembers: changing only step 0's input changes the values at later steps."""
    model = _model()
    market, portfolio, mask = _inputs(4, 2)
    starts = torch.zeros(4, 2)
    starts[0] = 1.0
    _, values, _ = _outputs(model, market, portfolio, mask, model.initial_state(2), starts)
    market2 = market.clone()
    market2[0] += 3.0
    _, values2, _ = _outputs(model, market2, portfolio, mask, model.initial_state(2), starts)
    assert (values[3] - values2[3]).abs().min() > 1e-6


def test_recurrent_state_masked_and_index() -> None:
    state = RecurrentState(*(torch.arange(6.0).view(1, 3, 2) + k for k in range(4)))
    kept = state.masked(torch.tensor([1.0, 0.0, 1.0]))
    for before, after in zip(state, kept, strict=True):
        torch.testing.assert_close(after[:, [0, 2]], before[:, [0, 2]])
        assert torch.all(after[:, 1] == 0)
    picked = state.index(torch.tensor([2, 0]))
    for before, after in zip(state, picked, strict=True):
        torch.testing.assert_close(after, before[:, [2, 0]])


# ---------------------------------------------------------------------------------- Gaussian head


def test_gaussian_head_for_a_box_action_space() -> None:
    dim, steps, batch = 3, 2, 5
    model = _model(action_dim=dim)
    assert not model.discrete
    market, portfolio, _ = _inputs(steps, batch)
    dist, values, state = model.evaluate(
        market, portfolio, None, model.initial_state(batch), torch.ones(steps, batch)
    )
    assert isinstance(dist, Normal)
    assert dist.mean.shape == (steps * batch, dim)
    assert values.shape == (steps * batch,)
    assert state.actor_h.shape == (1, batch, SMALL.policy_hidden)
    torch.testing.assert_close(dist.stddev, torch.ones(steps * batch, dim))  # log_std starts at 0

    actions = torch.randn(steps * batch, dim, generator=torch.Generator().manual_seed(4))
    log_prob = model.log_prob(dist, actions)
    assert log_prob.shape == (steps * batch,)
    mean, std = dist.mean.detach(), dist.stddev.detach()
    by_hand = (
        -((actions - mean) ** 2) / (2 * std**2) - std.log() - 0.5 * math.log(2 * math.pi)
    ).sum(-1)
    torch.testing.assert_close(log_prob.detach(), by_hand, rtol=1e-5, atol=1e-5)
    entropy = model.entropy(dist)
    assert entropy.shape == (steps * batch,)
    torch.testing.assert_close(
        entropy.detach(), torch.full((steps * batch,), dim * (0.5 + 0.5 * math.log(2 * math.pi)))
    )

    # log_std is a learnable, state-independent parameter.
    assert isinstance(model.log_std, torch.nn.Parameter)
    assert model.log_std.shape == (dim,)
    assert any(param is model.log_std for param in model.parameters())
    assert "log_std" in model.state_dict()
    (-log_prob.mean()).backward()
    assert model.log_std.grad is not None
    assert model.log_std.grad.abs().sum() > 0
    optimizer = torch.optim.SGD([model.log_std], lr=0.1)
    optimizer.step()
    assert not torch.allclose(model.log_std.detach(), torch.zeros(dim))
    dist2, _, _ = model.evaluate(
        market, portfolio, None, model.initial_state(batch), torch.ones(steps, batch)
    )
    torch.testing.assert_close(
        dist2.stddev.detach(), model.log_std.detach().exp().expand(steps * batch, dim)
    )


def test_the_model_takes_exactly_one_kind_of_head() -> None:
    with pytest.raises(ValueError):
        CLSTMActorCritic(FEATURES, PORTFOLIO, SMALL)
    with pytest.raises(ValueError):
        CLSTMActorCritic(FEATURES, PORTFOLIO, SMALL, n_actions=3, action_dim=2)
    assert not hasattr(_model(), "log_std")


# ---------------------------------------------------------------------------------- init


def test_orthogonal_init_and_a_near_uniform_initial_policy() -> None:
    model = _model()
    policy = model.actor_head.weight.detach()  # (actions, hidden): orthonormal rows x 0.01
    assert policy.shape == (ACTIONS, SMALL.policy_hidden)
    torch.testing.assert_close(policy @ policy.T, 0.01**2 * torch.eye(ACTIONS), rtol=0, atol=1e-8)
    assert policy.abs().max() <= 0.01 + 1e-7
    assert torch.all(model.actor_head.bias == 0)
    value = model.critic_head.weight.detach()
    assert value.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(model.critic_head.bias == 0)
    hidden = model.feature_head[0].weight.detach()  # (feature_dim, lstm_hidden), gain sqrt(2)
    torch.testing.assert_close(
        hidden @ hidden.T, 2.0 * torch.eye(SMALL.feature_dim), atol=1e-5, rtol=0
    )
    for lstm in (model.feature_lstm, model.actor_lstm, model.critic_lstm):
        for name, param in lstm.named_parameters():
            if "bias" in name:
                assert torch.all(param == 0), name
    # Hence the initial policy is close to uniform over the valid actions.
    market, portfolio, mask = _inputs(1, 32)
    with torch.no_grad():
        dist, _, _ = model.evaluate(
            market, portfolio, mask, model.initial_state(32), torch.ones(1, 32)
        )
    uniform = mask[0].float() / mask[0].float().sum(-1, keepdim=True)
    torch.testing.assert_close(dist.probs, uniform, rtol=0, atol=0.02)


def test_evaluate_shapes_for_the_categorical_head() -> None:
    model = _model()
    steps, batch = 4, 3
    market, portfolio, mask = _inputs(steps, batch)
    dist, values, state = model.evaluate(
        market, portfolio, mask, model.initial_state(batch), torch.ones(steps, batch)
    )
    assert dist.probs.shape == (steps * batch, ACTIONS)
    assert values.shape == (steps * batch,)
    assert all(t.shape == (1, batch, SMALL.policy_hidden) for t in state)
    actions = dist.sample()
    assert model.log_prob(dist, actions).shape == (steps * batch,)
