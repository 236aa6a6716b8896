"""``compute_gae`` against hand computations (plain Python, no tensors in the reference).

Convention under test (ppo.py): ``dones[t] = 1`` means the episode ended at step ``t``, so
step ``t`` bootstraps from nothing; otherwise it bootstraps from ``values[t + 1]``, or from
``next_value`` at the last step of the rollout.
"""

from __future__ import annotations

import pytest
import torch

from clstm_ppo.agent.ppo import compute_gae

# 6 steps x 3 envs. Env 0 ends an episode at step 2 and the rollout ends mid-episode; env 1 ends
# at steps 1 and 5 (the rollout ends on a done: next_value must not count); env 2 never ends.
REWARDS = [
    [1.0, -0.5, 0.25],
    [0.0, 2.0, 0.5],
    [3.0, 1.0, -1.0],
    [-1.0, 0.5, 0.0],
    [0.5, -2.0, 1.5],
    [2.0, 1.0, 0.75],
]
VALUES = [
    [0.5, 0.1, -0.2],
    [1.5, -0.3, 0.4],
    [-0.7, 0.9, 0.6],
    [0.2, 0.0, -0.5],
    [1.1, 0.8, 0.3],
    [-0.4, 1.2, 0.9],
]
DONES = [
    [0, 0, 0],
    [0, 1, 0],
    [1, 0, 0],
    [0, 0, 0],
    [0, 0, 0],
    [0, 1, 0],
]
NEXT_VALUE = [2.5, -7.0, 1.25]


def _tensor(rows: list[list[float]] | list[float]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def textbook_gae(
    rewards: list[list[float]],
    values: list[list[float]],
    dones: list[list[int]],
    next_value: list[float],
    gamma: float,
    lam: float,
) -> tuple[list[list[float]], list[list[float]]]:
    """delta_t = r_t + gamma V_{t+1} (1 - d_t) - V_t
    A_t = delta_t + gamma lam (1 - d_t) A_{t+1}"""
    steps, envs = len(rewards), len(rewards[0])
    adv = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        running = 0.0
        for t in range(steps - 1, -1, -1):
            following = next_value[e] if t == steps - 1 else values[t + 1][e]
            alive = 1.0 - dones[t][e]
            delta = rewards[t][e] + gamma * following * alive - values[t][e]
            running = delta + gamma * lam * alive * running
            adv[t][e] = running
    returns = [[adv[t][e] + values[t][e] for e in range(envs)] for t in range(steps)]
    return adv, returns


def explicit_sum_gae(
    rewards: list[list[float]],
    values: list[list[float]],
    dones: list[list[int]],
    next_value: list[float],
    gamma: float,
    lam: float,
) -> list[list[float]]:
    """A_t = sum_l (gamma lam)^l delta_{t+l}, summed up to the end of t's episode or rollout."""
    steps, envs = len(rewards), len(rewards[0])
    out = [[0.0] * envs for _ in range(steps)]
    for e in range(envs):
        for t in range(steps):
            total, k = 0.0, t
            while k < steps:
                if dones[k][e]:
                    delta = rewards[k][e] - values[k][e]
                else:
                    following = next_value[e] if k == steps - 1 else values[k + 1][e]
                    delta = rewards[k][e] + gamma * following - values[k][e]
                total += (gamma * lam) ** (k - t) * delta
                if dones[k][e]:
                    break
                k += 1
            out[t][e] = total
    return out


@pytest.mark.parametrize(("gamma", "lam"), [(0.99, 0.95), (0.9, 0.5), (0.8, 0.0), (1.0, 1.0)])
def test_gae_matches_the_textbook_recursion(gamma: float, lam: float) -> None:
    adv, ret = compute_gae(
        _tensor(REWARDS), _tensor(VALUES), _tensor(DONES), _tensor(NEXT_VALUE), gamma, lam
    )
    expected_adv, expected_ret = textbook_gae(REWARDS, VALUES, DONES, NEXT_VALUE, gamma, lam)
    assert adv.shape == ret.shape == (6, 3)
    torch.testing.assert_close(adv, _tensor(expected_adv), rtol=0, atol=1e-12)
    torch.testing.assert_close(ret, _tensor(expected_ret), rtol=0, atol=1e-12)
    # The closed-form sum agrees with the recursion (the reference is not circular).
    expected_sum = explicit_sum_gae(REWARDS, VALUES, DONES, NEXT_VALUE, gamma, lam)
    torch.testing.assert_close(adv, _tensor(expected_sum), rtol=0, atol=1e-12)


def test_gae_spot_values_by_hand() -> None:
    """A few entries written out in full, independent of any loop."""
    g, lam = 0.9, 0.5
    adv, ret = compute_gae(
        _tensor(REWARDS), _tensor(VALUES), _tensor(DONES), _tensor(NEXT_VALUE), g, lam
    )
    # Env 1, step 5: done, so A = r - V and the (huge, negative) next_value is ignored.
    assert adv[5, 1].item() == pytest.approx(1.0 - 1.2)
    # Env 0, step 2: done.
    assert adv[2, 0].item() == pytest.approx(3.0 - (-0.7))
    # Env 0, step 5: last step, not done: bootstraps from next_value.
    d5 = 2.0 + g * 2.5 - (-0.4)
    assert adv[5, 0].item() == pytest.approx(d5)
    # Env 0, step 4: one step of recursion on top.
    d4 = 0.5 + g * (-0.4) - 1.1
    assert adv[4, 0].item() == pytest.approx(d4 + g * lam * d5)
    # Env 0, step 1: its episode ends at step 2, so it sees step 2's delta and nothing after.
    d1 = 0.0 + g * (-0.7) - 1.5
    assert adv[1, 0].item() == pytest.approx(d1 + g * lam * (3.0 + 0.7))
    assert ret[1, 0].item() == pytest.approx(adv[1, 0].item() + 1.5)


def test_gamma_one_lambda_one_is_monte_carlo_return_minus_value() -> None:
    # Every episode ends inside the rollout for envs 0 and 1 (plain Monte-Carlo); env 2 never
    # ends, so its "return" is the rewards to the end plus next_value (the bootstrap).
    rewards = [[1.0, 2.0, 0.5], [-1.0, 0.0, 1.0], [4.0, 3.0, -2.0], [0.5, -1.0, 1.0]]
    values = [[0.3, -0.2, 0.1], [0.9, 0.4, -0.6], [1.7, 0.0, 0.2], [-0.5, 2.2, 0.8]]
    dones = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [1, 1, 0]]
    next_value = [100.0, -100.0, 0.75]
    adv, ret = compute_gae(
        _tensor(rewards), _tensor(values), _tensor(dones), _tensor(next_value), 1.0, 1.0
    )
    expected_returns = [
        [1.0 - 1.0, 2.0 + 0.0 + 3.0, 0.5 + 1.0 - 2.0 + 1.0 + 0.75],
        [-1.0, 0.0 + 3.0, 1.0 - 2.0 + 1.0 + 0.75],
        [4.0 + 0.5, 3.0, -2.0 + 1.0 + 0.75],
        [0.5, -1.0, 1.0 + 0.75],
    ]
    torch.testing.assert_close(ret, _tensor(expected_returns), rtol=0, atol=1e-12)
    expected_adv = [[expected_returns[t][e] - values[t][e] for e in range(3)] for t in range(4)]
    torch.testing.assert_close(adv, _tensor(expected_adv), rtol=0, atol=1e-12)


def test_lambda_zero_is_one_step_td() -> None:
    g = 0.95
    adv, _ = compute_gae(
        _tensor(REWARDS), _tensor(VALUES), _tensor(DONES), _tensor(NEXT_VALUE), g, 0.0
    )
    for t in range(6):
        for e in range(3):
            following = NEXT_VALUE[e] if t == 5 else VALUES[t + 1][e]
            target = REWARDS[t][e] + (0.0 if DONES[t][e] else g * following)
            assert adv[t, e].item() == pytest.approx(target - VALUES[t][e], abs=1e-12)


def test_nothing_is_bootstrapped_across_a_done() -> None:
    """What follows a done (later rewards, values, next_value) cannot change earlier estimates."""
    rewards, values = _tensor(REWARDS), _tensor(VALUES)
    dones, next_value = _tensor(DONES), _tensor(NEXT_VALUE)
    adv, ret = compute_gae(rewards, values, dones, next_value, 0.99, 0.95)

    # Env 0 is done at step 2: scramble steps 3.. and next_value for it.
    rewards2, values2, next2 = rewards.clone(), values.clone(), next_value.clone()
    rewards2[3:, 0] = torch.tensor([50.0, -60.0, 70.0], dtype=torch.float64)
    values2[3:, 0] = torch.tensor([-9.0, 8.0, -7.0], dtype=torch.float64)
    next2[0] = 1e6
    adv2, ret2 = compute_gae(rewards2, values2, dones, next2, 0.99, 0.95)
    torch.testing.assert_close(adv2[:3, 0], adv[:3, 0], rtol=0, atol=0)
    torch.testing.assert_close(ret2[:3, 0], ret[:3, 0], rtol=0, atol=0)
    assert not torch.allclose(adv2[3:, 0], adv[3:, 0])
    # Other envs are untouched by env 0's changes.
    torch.testing.assert_close(adv2[:, 1:], adv[:, 1:], rtol=0, atol=0)

    # Env 1 ends the rollout on a done: next_value never enters any of its estimates.
    next3 = next_value.clone()
    next3[1] = -1e9
    adv3, _ = compute_gae(rewards, values, dones, next3, 0.99, 0.95)
    torch.testing.assert_close(adv3[:, 1], adv[:, 1], rtol=0, atol=0)

    # Env 2 never ends: next_value reaches every step, discounted by (gamma lambda)^k.
    next4 = next_value.clone()
    next4[2] += 1.0
    adv4, _ = compute_gae(rewards, values, dones, next4, 0.99, 0.95)
    gain = (adv4[:, 2] - adv[:, 2]).tolist()
    expected_gain = [0.99 * (0.99 * 0.95) ** (5 - t) for t in range(6)]
    assert gain == pytest.approx(expected_gain, abs=1e-12)

    # A done at the very step the value comes from: the advantage at a done step is r - V.
    done_rows = dones.bool()
    torch.testing.assert_close(adv[done_rows], (rewards - values)[done_rows], rtol=0, atol=1e-12)


def test_float32_rollout_shapes_and_dtype() -> None:
    """The trainer's case: float32 (steps, envs) tensors and a (envs,) next value."""
    gen = torch.Generator().manual_seed(3)
    steps, envs = 16, 8
    rewards = torch.randn(steps, envs, generator=gen)
    values = torch.randn(steps, envs, generator=gen)
    dones = (torch.rand(steps, envs, generator=gen) < 0.2).float()
    next_value = torch.randn(envs, generator=gen)
    adv, ret = compute_gae(rewards, values, dones, next_value, 0.99, 0.95)
    assert adv.dtype == ret.dtype == torch.float32
    assert adv.shape == ret.shape == (steps, envs)
    expected_adv, expected_ret = textbook_gae(
        rewards.tolist(), values.tolist(), dones.tolist(), next_value.tolist(), 0.99, 0.95
    )
    torch.testing.assert_close(adv, torch.tensor(expected_adv), rtol=0, atol=1e-5)
    torch.testing.assert_close(ret, torch.tensor(expected_ret), rtol=0, atol=1e-5)
