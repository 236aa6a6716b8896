"""Environment API, single/batched equivalence, determinism and no look-ahead."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pandas as pd
import pytest
from gymnasium.utils.env_checker import check_env

import clstm_ppo.envs  # noqa: F401  (registers the environments)
from clstm_ppo.data.bundled import load_bundled
from clstm_ppo.envs import BatchedOptionsEnv, MultiLegOptionsEnv, OptionsTradingEnv


def _random_valid(rng: np.random.Generator, mask: np.ndarray) -> int:
    return int(rng.choice(np.flatnonzero(mask)))


@pytest.mark.parametrize("env_id", ["clstm_ppo/OptionsTrading-v0", "clstm_ppo/MultiLegOptions-v0"])
def test_check_env_passes(env_id) -> None:
    env = gym.make(env_id, episode_length=20).unwrapped
    check_env(env, skip_render_check=True)
    assert env.action_space.n == (91 if "MultiLeg" in env_id else 31)


def _rollout(env, seed: int, steps: int, action_seed: int) -> list[tuple]:
    obs, info = env.reset(seed=seed)
    rng = np.random.default_rng(action_seed)
    trace = [(obs, 0.0, info["date"])]
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(_random_valid(rng, info["action_mask"]))
        trace.append((obs, reward, info["date"]))
        if terminated or truncated:
            break
    return trace


def test_same_seed_same_trajectory() -> None:
    first = _rollout(MultiLegOptionsEnv(episode_length=60), seed=7, steps=60, action_seed=1)
    second = _rollout(MultiLegOptionsEnv(episode_length=60), seed=7, steps=60, action_seed=1)
    other = _rollout(MultiLegOptionsEnv(episode_length=60), seed=8, steps=60, action_seed=1)
    assert len(first) == len(second) == 61
    for (obs_a, r_a, d_a), (obs_b, r_b, d_b) in zip(first, second, strict=True):
        assert d_a == d_b and r_a == r_b
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    assert first[0][2] != other[0][2]  # another seed starts elsewhere


def test_batched_env_equals_single_envs() -> None:
    n, steps, seed = 6, 70, 123
    batched = BatchedOptionsEnv(n, episode_length=30, multi_leg=True)
    singles = [MultiLegOptionsEnv(episode_length=30) for _ in range(n)]
    obs_b, info_b = batched.reset(seed=seed)
    single_state = [env.reset(seed=seed + i) for i, env in enumerate(singles)]
    rng = np.random.default_rng(0)
    episodes_ended = 0
    for _ in range(steps):
        for i, (obs_s, info_s) in enumerate(single_state):
            for key in obs_s:
                np.testing.assert_array_equal(obs_b[key][i], obs_s[key])
            np.testing.assert_array_equal(info_b["action_mask"][i], info_s["action_mask"])
        # Mostly valid actions, and some invalid ones, which both must treat as holds.
        actions = np.array(
            [
                _random_valid(rng, info_b["action_mask"][i]) if rng.random() < 0.9 else 25
                for i in range(n)
            ]
        )
        obs_b, rewards, terms, truncs, info_b = batched.step(actions)
        for i, env in enumerate(singles):
            obs_s, reward, term, trunc, info_s = env.step(int(actions[i]))
            assert reward == pytest.approx(rewards[i], rel=1e-12, abs=1e-12)
            assert (term, trunc) == (bool(terms[i]), bool(truncs[i]))
            if term or trunc:
                episodes_ended += 1
                final = info_b["final_info"][i]
                assert final["closed_trades"] == info_s["episode"]["closed_trades"]
                assert final["portfolio_values"] == pytest.approx(
                    info_s["episode"]["portfolio_values"]
                )
                obs_s, info_s = env.reset()  # the batched env auto-resets in the same step
            single_state[i] = (obs_s, info_s)
    assert episodes_ended >= n  # every account finished and restarted at least once


def _write_spx(path, bars: pd.DataFrame) -> str:
    bars.reset_index().to_csv(path, index=False)
    return f"csv:{path}"


def test_no_look_ahead_in_observations(tmp_path) -> None:
    bars = load_bundled("SPX").bars
    cut = pd.Timestamp("2004-06-30")
    perturbed = bars.copy()
    later = perturbed.index > cut
    rng = np.random.default_rng(5)
    factor = rng.uniform(0.6, 1.4, size=later.sum())
    for column in ("open", "high", "low", "close", "adj_close"):
        perturbed.loc[later, column] *= factor
    ohlc = ["open", "high", "low", "close"]
    perturbed.loc[later, "high"] = perturbed.loc[later, ohlc].max(axis=1)
    perturbed.loc[later, "low"] = perturbed.loc[later, ohlc].min(axis=1)
    perturbed.loc[later, "volume"] *= rng.uniform(0.5, 2.0, size=later.sum())
    original_spec = _write_spx(tmp_path / "spx.csv", bars)
    perturbed_spec = _write_spx(tmp_path / "spx_perturbed.csv", perturbed)

    def observe(spec: str) -> list[tuple[str, dict]]:
        env = MultiLegOptionsEnv(data=spec, split="train", episode_length=0, random_start=False)
        obs, info = env.reset(seed=0)
        seen = [(info["date"], obs, info["action_mask"])]
        actions = [1, 38, 0, 46, 61, 0, 81, 21, 0, 11]
        step = 0
        while pd.Timestamp(info["date"]) < cut:
            obs, _, _, _, info = env.step(actions[step % len(actions)])
            seen.append((info["date"], obs, info["action_mask"]))
            step += 1
        return seen

    original, changed = observe(original_spec), observe(perturbed_spec)
    assert len(original) == len(changed) > 600
    for (date_a, obs_a, mask_a), (date_b, obs_b, mask_b) in zip(original, changed, strict=True):
        assert date_a == date_b
        assert pd.Timestamp(date_a) <= cut
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"{key} on {date_a}")
        np.testing.assert_array_equal(mask_a, mask_b)


def test_invalid_kwargs_are_one_line_errors() -> None:
    from clstm_ppo.errors import UserError

    with pytest.raises(UserError, match="env.window"):
        OptionsTradingEnv(window=0)
    with pytest.raises(UserError, match="split"):
        OptionsTradingEnv(split="holdout")
