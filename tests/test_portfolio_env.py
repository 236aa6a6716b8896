"""The stock-portfolio setting (``clstm_ppo/StockPortfolio-v0``, Yang et al. 2020) on hand-made
panels (tests/portfolio_helpers.py).

Expected numbers are derived here from the prices in the CSV files (read back with pandas) and
the rules of the setting: ``int(a * hmax)`` shares, sells first (capped at the holdings), buys in
order of the largest action under the cash left, ``cost_pct`` of every traded value, sell
everything and buy nothing on a turbulent day, reward = change in value x reward scaling.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import warnings

import gymnasium
import numpy as np
import pandas as pd
import pytest
import stockstats
import torch
from gymnasium.utils.env_checker import check_env

import clstm_ppo.envs  # noqa: F401  (registers clstm_ppo/StockPortfolio-v0)
from clstm_ppo.agent.mlp import build_model, model_shapes
from clstm_ppo.config import AgentConfig, build_config
from clstm_ppo.envs.portfolio import (
    BatchedStockPortfolioEnv,
    PortfolioSimulator,
    StockPortfolioEnv,
)
from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
from clstm_ppo.evaluate.paper import equal_weight_baseline, index_baseline
from portfolio_helpers import (
    TICKERS,
    column,
    portfolio_config,
    read_panel,
)

HMAX = 100
COST = 0.001
CAPITAL = 1_000_000.0
SCALE = 1e-4
HISTORY_FROM = dt.date(2007, 1, 2)  # the default train start 2009-01-01 minus 730 days
COMPLETE_FROM = dt.date(2009, 1, 1)
COMPLETE_TO = dt.date(2020, 5, 8)
TICKER_TEXT = ",".join(TICKERS)
N = len(TICKERS)


@pytest.fixture(scope="module")
def tape(panel_csv):
    return portfolio_tape_for(portfolio_config(panel_csv))


def _env(panel_csv, **overrides) -> StockPortfolioEnv:
    overrides.setdefault("random_start", False)
    return StockPortfolioEnv(data=f"csv:{panel_csv}", tickers=TICKER_TEXT, window=5, **overrides)


def _prices_on(path, date: str, name: str = "Adj Close") -> np.ndarray:
    """The four tickers' ``name`` column on ``date``, straight from the CSV."""
    frame = read_panel(path)
    return np.array([frame.loc[(t, pd.Timestamp(date)), name] for t in TICKERS], dtype=float)


def _calm_start(env: StockPortfolioEnv, days: int = 12) -> None:
    """The accounting tests walk from the train split's first day: make sure no turbulent day
    hides in that stretch (a turbulent day would sell instead of trading as asked)."""
    sim = env.sim
    assert not sim.tape.turbulent[sim.day[0] : sim.day[0] + days + 1].any()


# ---------------------------------------------------------------------------------- gymnasium


def test_gymnasium_make_passes_check_env(panel_csv) -> None:
    env = gymnasium.make(
        "clstm_ppo/StockPortfolio-v0", data=f"csv:{panel_csv}", tickers=TICKER_TEXT, window=5
    )
    check_env(env.unwrapped, skip_render_check=True)
    obs, _ = env.reset(seed=3)
    assert obs["state"].shape == (1 + 6 * N,)
    assert obs["market"].shape == (5, 5 * N + 1)
    assert obs["portfolio"].shape == (N + 3,)
    assert env.action_space.shape == (N,)
    assert env.observation_space.contains(obs)


def test_state_vector_is_cash_prices_holdings_and_indicators(panel_csv, tape) -> None:
    env = _env(panel_csv)
    obs, info = env.reset(seed=0)
    _calm_start(env)
    day = int(env.sim.day[0])
    # The paper's four indicators recomputed with stockstats from the CSV's adjusted bars.
    frame = read_panel(panel_csv)
    lo, hi = tape.dates[0], tape.dates[-1]
    expected_indicators = np.zeros((4, N))
    for j, ticker in enumerate(TICKERS):
        bars = frame.loc[ticker].loc[lo:hi]
        factor = bars["Adj Close"] / bars["Close"]
        ohlcv = pd.DataFrame(
            {
                "open": bars["Open"] * factor,
                "high": bars["High"] * factor,
                "low": bars["Low"] * factor,
                "close": bars["Adj Close"],
                "volume": bars["Volume"].astype(float),
            }
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stats = stockstats.wrap(ohlcv.copy())
            for k, name in enumerate(("macd", "rsi_30", "cci_30", "dx_30")):
                expected_indicators[k, j] = stats[name].loc[pd.Timestamp(info["date"])]
    p0 = _prices_on(panel_csv, info["date"])
    expected = np.concatenate([[CAPITAL], p0, np.zeros(N), expected_indicators.ravel()])
    np.testing.assert_allclose(obs["state"], expected, rtol=1e-5, atol=1e-5)
    # The market window ends today: its rows are the tape's last five days.
    np.testing.assert_array_equal(obs["market"], tape.features[day - 4 : day + 1])
    np.testing.assert_allclose(obs["portfolio"], [1.0, 0.0, 0.0, *np.zeros(N)], atol=1e-7)

    obs, _, _, _, info = env.step(np.array([0.0, 0.3, 0.0, 0.6]))
    p1 = _prices_on(panel_csv, info["date"])
    holdings = np.array([0, 30, 0, 60])
    cash = CAPITAL - (holdings * p0).sum() * (1 + COST)
    value = cash + (holdings * p1).sum()
    np.testing.assert_allclose(obs["state"][0], cash, rtol=1e-6)
    np.testing.assert_allclose(obs["state"][1 : 1 + N], p1, rtol=1e-6)
    np.testing.assert_array_equal(obs["state"][1 + N : 1 + 2 * N], holdings)
    expected_portfolio = [cash / value, value / CAPITAL - 1.0, 0.0, *(holdings * p1 / value)]
    np.testing.assert_allclose(obs["portfolio"], expected_portfolio, rtol=1e-5, atol=1e-7)


# ---------------------------------------------------------------------------------- accounting


def test_buy_costs_and_next_value_and_reward(panel_csv) -> None:
    env = _env(panel_csv)
    _, info0 = env.reset(seed=0)
    _calm_start(env)
    p0 = _prices_on(panel_csv, info0["date"])
    shares = int(0.5 * HMAX)
    _, reward, terminated, truncated, info1 = env.step(np.array([0.5, 0.0, 0.0, 0.0]))
    p1 = _prices_on(panel_csv, info1["date"])
    assert info1["date"] > info0["date"]
    cash = CAPITAL - shares * p0[0] * (1 + COST)
    value = cash + shares * p1[0]
    assert info1["cash"] == pytest.approx(cash, abs=1e-6)
    assert info1["portfolio_value"] == pytest.approx(value, abs=1e-6)
    assert reward == pytest.approx((value - CAPITAL) * SCALE, abs=1e-9)
    assert info1["costs_paid"] == pytest.approx(shares * p0[0] * COST, abs=1e-9)
    assert env.sim.holdings[0].tolist() == [shares, 0, 0, 0]
    assert not terminated and not truncated


def test_actions_truncate_toward_zero_and_never_short(panel_csv) -> None:
    env = _env(panel_csv)
    env.reset(seed=0)
    _calm_start(env)
    # 0.009 * 100 = 0.9 -> 0 shares; -0.999 with nothing held -> nothing (no shorting).
    _, reward, _, _, info = env.step(np.array([0.009, -0.999, -1.0, 0.0]))
    assert env.sim.holdings[0].tolist() == [0, 0, 0, 0]
    assert info["cash"] == CAPITAL
    assert info["costs_paid"] == 0.0
    assert reward == 0.0
    # 0.019 -> 1 share, -0.019 -> -1 (truncation toward zero, not floor).
    _, _, _, _, info = env.step(np.array([0.019, 0.0, 0.5, 0.0]))
    assert env.sim.holdings[0].tolist() == [1, 0, 50, 0]
    env.step(np.array([0.0, 0.0, -0.019, 0.0]))
    assert env.sim.holdings[0].tolist() == [1, 0, 49, 0]
    assert (env.sim.holdings >= 0).all()


def test_sells_are_capped_at_holdings_and_pay_costs(panel_csv) -> None:
    env = _env(panel_csv)
    _, info0 = env.reset(seed=0)
    _calm_start(env)
    p0 = _prices_on(panel_csv, info0["date"])
    _, _, _, _, info1 = env.step(np.array([0.3, 0.2, 0.0, 0.0]))
    p1 = _prices_on(panel_csv, info1["date"])
    cash1 = CAPITAL - (30 * p0[0] + 20 * p0[1]) * (1 + COST)
    assert info1["cash"] == pytest.approx(cash1, abs=1e-6)
    # Ask to sell 80 AAA while holding 30, and 5 BBB of 20.
    _, reward, _, _, info2 = env.step(np.array([-0.8, -0.05, 0.0, 0.0]))
    p2 = _prices_on(panel_csv, info2["date"])
    assert env.sim.holdings[0].tolist() == [0, 15, 0, 0]
    cash2 = cash1 + (30 * p1[0] + 5 * p1[1]) * (1 - COST)
    assert info2["cash"] == pytest.approx(cash2, abs=1e-6)
    value1 = cash1 + 30 * p1[0] + 20 * p1[1]
    value2 = cash2 + 15 * p2[1]
    assert info2["portfolio_value"] == pytest.approx(value2, abs=1e-6)
    assert reward == pytest.approx((value2 - value1) * SCALE, abs=1e-9)
    costs = (30 * p0[0] + 20 * p0[1] + 30 * p1[0] + 5 * p1[1]) * COST
    assert info2["costs_paid"] == pytest.approx(costs, abs=1e-9)


def test_buys_go_in_order_of_the_largest_action_under_the_cash_limit(panel_csv) -> None:
    probe = _env(panel_csv)
    _, info = probe.reset(seed=0)
    p0 = _prices_on(panel_csv, info["date"])
    unit = p0 * (1 + COST)
    # Cash for exactly 10 BBB plus one dollar: after BBB (the largest action) no other stock
    # is affordable, while in ticker order AAA would have taken the cash first.
    capital = 10 * unit[1] + 1.0
    assert capital > unit[0] and unit.min() > 1.0
    env = _env(panel_csv, initial_capital=capital)
    env.reset(seed=0)
    _calm_start(env)
    _, _, _, _, info = env.step(np.array([0.5, 0.9, 0.7, 0.2]))
    assert env.sim.holdings[0].tolist() == [0, 10, 0, 0]
    assert info["cash"] == pytest.approx(capital - 10 * unit[1], abs=1e-6)
    assert info["costs_paid"] == pytest.approx(10 * p0[1] * COST, abs=1e-9)
    # With AAA largest, AAA takes the cash first, then CCC, BBB, DDD share what is left.
    env.reset(seed=0)
    env.step(np.array([0.9, 0.5, 0.7, 0.2]))
    expected, left = [0] * N, capital
    for stock, wanted in ((0, 90), (2, 70), (1, 50), (3, 20)):
        expected[stock] = min(wanted, math.floor(left / unit[stock]))
        left -= expected[stock] * unit[stock]
    assert expected[0] >= 1
    assert env.sim.holdings[0].tolist() == expected
    assert env.sim.cash[0] == pytest.approx(left, abs=1e-6)


def test_cash_a_rounding_error_below_zero_never_buys_negative_shares(panel_csv) -> None:
    """Float rounding can leave cash at -1e-12 after spending it all; floor(-1e-12 / price)
    is -1, which must not become a buy of -1 share (a sale in disguise)."""
    env = _env(panel_csv)
    env.reset(seed=0)
    _calm_start(env)
    env.sim.set_account(0, -1e-12, np.array([5, 0, 3, 0]), np.array([100.0, 0, 90.0, 0]))
    env.step(np.array([0.9, 0.5, 0.0, -0.3]))
    assert env.sim.holdings[0].tolist() == [5, 0, 3, 0]
    assert env.sim.cash[0] == -1e-12


def test_turbulent_day_sells_everything_and_buys_nothing(panel_csv, tape) -> None:
    cfg = portfolio_config(panel_csv).portfolio
    first, _ = tape.split_bounds("train")
    original = tape.turbulent.copy()
    turbulent = np.zeros_like(tape.turbulent)
    turbulent[first + 1] = True
    sim = PortfolioSimulator(
        dataclasses.replace(tape, turbulent=turbulent), cfg, 1, "train", random_start=False
    )
    sim.seed(np.zeros(1, dtype=np.uint64))
    sim.reset()
    date = lambda offset: str(tape.dates[first + offset].date())  # noqa: E731
    p0, p1, p2 = (_prices_on(panel_csv, date(k)) for k in range(3))
    sim.step(np.array([[0.5, 0.3, 0.0, 0.0]]))
    assert sim.holdings[0].tolist() == [50, 30, 0, 0]
    cash1 = CAPITAL - (50 * p0[0] + 30 * p0[1]) * (1 + COST)
    assert sim.observe()["portfolio"][0, 2] == 1.0  # the turbulence flag of day 1
    result = sim.step(np.array([[1.0, 1.0, 1.0, 1.0]]))
    assert sim.holdings[0].tolist() == [0, 0, 0, 0]
    cash2 = cash1 + (50 * p1[0] + 30 * p1[1]) * (1 - COST)
    assert sim.cash[0] == pytest.approx(cash2, abs=1e-6)
    assert sim.value[0] == pytest.approx(cash2, abs=1e-6)
    value1 = cash1 + 50 * p1[0] + 30 * p1[1]
    assert result["reward"][0] == pytest.approx((cash2 - value1) * SCALE, abs=1e-9)
    costs = (50 * p0[0] + 30 * p0[1] + 50 * p1[0] + 30 * p1[1]) * COST
    assert sim.costs_paid[0] == pytest.approx(costs, abs=1e-9)
    # The next (calm) day trades again.
    sim.step(np.array([[0.1, 0.0, 0.0, 0.0]]))
    assert sim.holdings[0].tolist() == [10, 0, 0, 0]
    assert sim.cash[0] == pytest.approx(cash2 - 10 * p2[0] * (1 + COST), abs=1e-6)
    np.testing.assert_array_equal(tape.turbulent, original)  # the cached tape is untouched


def test_episode_summary_values_and_closed_trades(panel_csv) -> None:
    env = _env(panel_csv, episode_length=10)
    _, info = env.reset(seed=0)
    _calm_start(env)
    dates = [info["date"]]
    actions = [[0.5, 0.0, 0.0, 0.0], [0.2, 0.0, 0.0, 0.0], [-0.3, 0.0, 0.0, 0.0],
               [-1.0, 0.0, 0.0, 0.0]] + [[0.0] * N] * 6  # fmt: skip
    rewards = []
    for step, action in enumerate(actions):
        _, reward, _, truncated, info = env.step(np.array(action))
        rewards.append(reward)
        dates.append(info["date"])
        assert truncated == (step == 9)
    p = [_prices_on(panel_csv, d)[0] for d in dates]
    avg = (50 * p[0] + 20 * p[1]) * (1 + COST) / 70
    cash = CAPITAL - (50 * p[0] + 20 * p[1]) * (1 + COST) + (30 * p[2] + 40 * p[3]) * (1 - COST)
    summary = info["episode"]
    values = summary["portfolio_values"]
    assert len(values) == 11
    expected = [
        CAPITAL,
        CAPITAL - 50 * p[0] * (1 + COST) + 50 * p[1],
        CAPITAL - (50 * p[0] + 20 * p[1]) * (1 + COST) + 70 * p[2],
        CAPITAL - (50 * p[0] + 20 * p[1]) * (1 + COST) + 30 * p[2] * (1 - COST) + 40 * p[3],
        *[cash] * 7,
    ]
    np.testing.assert_allclose(values, expected, rtol=0, atol=1e-6)
    np.testing.assert_allclose(rewards, np.diff(expected) * SCALE, rtol=0, atol=1e-9)
    pnls = [trade["pnl"] for trade in summary["closed_trades"]]
    np.testing.assert_allclose(
        pnls, [30 * p[2] * (1 - COST) - 30 * avg, 40 * p[3] * (1 - COST) - 40 * avg], atol=1e-6
    )
    costs = (50 * p[0] + 20 * p[1] + 30 * p[2] + 40 * p[3]) * COST
    assert summary["costs_paid"] == pytest.approx(costs, abs=1e-9)
    assert summary["first_date"] == dates[0] and summary["last_date"] == dates[-1]
    assert summary["traded_shares"][:4, 0].tolist() == [50, 20, -30, -40]


# ---------------------------------------------------------------------------------- batched


def test_batched_env_equals_single_envs(panel_csv) -> None:
    kwargs = {"data": f"csv:{panel_csv}", "tickers": TICKER_TEXT, "window": 5,
              "episode_length": 40}  # fmt: skip
    n, seed = 3, 11
    batched = BatchedStockPortfolioEnv(n, **kwargs)
    singles = [StockPortfolioEnv(**kwargs) for _ in range(n)]
    obs_b, _ = batched.reset(seed=seed)
    obs_s = [env.reset(seed=seed + i)[0] for i, env in enumerate(singles)]
    starts = set(batched.sim.start_day.tolist())
    assert len(starts) > 1  # random windows, different per account
    rng = np.random.default_rng(0)
    ended = 0
    for step in range(100):
        for i in range(n):
            for key in obs_b:
                np.testing.assert_array_equal(obs_b[key][i], obs_s[i][key], err_msg=f"{key} {i}")
        actions = rng.uniform(-1, 1, (n, N)).astype(np.float32)
        obs_b, rew_b, term_b, trunc_b, info_b = batched.step(actions)
        for i, env in enumerate(singles):
            obs, reward, terminated, truncated, info = env.step(actions[i])
            assert reward == pytest.approx(rew_b[i], abs=1e-9)
            assert not terminated and not term_b[i]
            assert truncated == bool(trunc_b[i]), f"step {step} env {i}"
            if truncated:
                ended += 1
                assert (step + 1) % 40 == 0
                final = info_b["final_info"][i]
                np.testing.assert_allclose(
                    final["portfolio_values"], info["episode"]["portfolio_values"], atol=1e-9
                )
                obs, _ = env.reset()  # the batched env resets in the same step
            obs_s[i] = obs
    assert ended == 2 * n
    assert batched.sim.episodes.tolist() == [3] * n


def test_batched_seed_zero_continues_like_the_single_env(panel_csv) -> None:
    kwargs = {"data": f"csv:{panel_csv}", "tickers": TICKER_TEXT, "window": 5,
              "episode_length": 40}  # fmt: skip
    batched = BatchedStockPortfolioEnv(1, **kwargs)
    single = StockPortfolioEnv(**kwargs)
    batched.reset(seed=0)
    single.reset(seed=0)
    assert batched.sim.start_day[0] == single.sim.start_day[0]
    batched.reset()
    single.reset()
    assert batched.sim.start_day[0] == single.sim.start_day[0]


def test_state_dict_round_trip(panel_csv) -> None:
    kwargs = {"data": f"csv:{panel_csv}", "tickers": TICKER_TEXT, "window": 5,
              "episode_length": 20}  # fmt: skip
    env = BatchedStockPortfolioEnv(2, **kwargs)
    env.reset(seed=4)
    rng = np.random.default_rng(1)
    for _ in range(15):
        env.step(rng.uniform(-1, 1, (2, N)))
    saved = env.state_dict()
    later = [rng.uniform(-1, 1, (2, N)) for _ in range(12)]  # crosses the episode end at 20

    def walk(target):
        out = []
        for action in later:
            obs, reward, _, truncated, _ = target.step(action)
            out.append((obs, reward.copy(), truncated.copy()))
        return out

    first = walk(env)
    assert any(t.any() for _, _, t in first)
    restored = BatchedStockPortfolioEnv(2, **kwargs)
    restored.reset(seed=99)  # a different state, overwritten by the load
    restored.load_state_dict(saved)
    for (obs_a, rew_a, trunc_a), (obs_b, rew_b, trunc_b) in zip(first, walk(restored), strict=True):
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(trunc_a, trunc_b)
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    # Loading the same dict again (the env must not have written into it) replays again.
    env.load_state_dict(saved)
    np.testing.assert_array_equal(walk(env)[-1][1], first[-1][1])


# ---------------------------------------------------------------------------------- look-ahead


def test_no_look_ahead_in_tape_or_observations(tmp_path, panel_csv) -> None:
    cutoff = pd.Timestamp("2012-06-29")  # inside the train split (2009-2014)
    frame = pd.read_csv(panel_csv)
    later = pd.to_datetime(frame["Date"]) > cutoff
    rng = np.random.default_rng(7)
    factor = rng.uniform(0.6, 1.4, int(later.sum()))
    for name in ("Open", "High", "Low", "Close", "Adj Close"):
        frame.loc[later, name] = frame.loc[later, name] * factor
    changed_csv = tmp_path / "changed.csv"
    frame.to_csv(changed_csv, index=False)

    a = portfolio_tape_for(portfolio_config(panel_csv))
    b = portfolio_tape_for(portfolio_config(changed_csv))
    assert a.dates.equals(b.dates)
    upto = int(a.dates.get_indexer([cutoff])[0]) + 1
    assert upto > a.split_bounds("train")[0] + 300
    for name in ("prices", "indicators", "features", "turbulence", "threshold", "turbulent"):
        np.testing.assert_array_equal(getattr(a, name)[:upto], getattr(b, name)[:upto], name)
    assert not np.array_equal(a.features[upto:], b.features[upto:])
    assert not np.allclose(a.turbulence[upto + 1 :], b.turbulence[upto + 1 :], equal_nan=True)

    def walk(path) -> list[tuple[str, dict]]:
        env = StockPortfolioEnv(data=f"csv:{path}", tickers=TICKER_TEXT, window=5,
                                random_start=False)  # fmt: skip
        obs, info = env.reset(seed=0)
        seen = [(info["date"], obs)]
        actions = np.random.default_rng(3).uniform(-1, 1, (5000, N))
        truncated, step = False, 0
        while not truncated:
            obs, _, _, truncated, info = env.step(actions[step])
            seen.append((info["date"], obs))
            step += 1
        return seen

    seen_a, seen_b = walk(panel_csv), walk(changed_csv)
    first, last = a.split_bounds("train")
    assert len(seen_a) == len(seen_b) == last - first + 1
    compared = 0
    for (date_a, obs_a), (date_b, obs_b) in zip(seen_a, seen_b, strict=True):
        assert date_a == date_b
        if pd.Timestamp(date_a) > cutoff:
            assert not np.array_equal(obs_a["state"], obs_b["state"])
            break
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key], err_msg=f"{key} on {date_a}")
        compared += 1
    assert compared == upto - first


# ---------------------------------------------------------------------------------- baselines


def test_equal_weight_baseline_by_hand(panel_csv, tape) -> None:
    config = portfolio_config(panel_csv)
    run = equal_weight_baseline(tape, config, "test")
    first, last = tape.split_bounds("test")
    dates = tape.dates[first : last + 1]
    assert dates[0] == pd.Timestamp("2016-01-01") and dates[-1] == pd.Timestamp("2020-05-08")
    prices = column(panel_csv, "Adj Close", TICKERS, dates)
    unit = prices[0] * (1 + COST)
    shares = [math.floor(CAPITAL / N / u) for u in unit]
    cash = CAPITAL - sum(s * u for s, u in zip(shares, unit, strict=True))
    assert 0 <= cash < unit.sum()
    expected = cash + prices @ np.array(shares, dtype=float)
    np.testing.assert_allclose(run.values[1:], expected[1:], rtol=1e-12)
    # Day 0 is the capital before buying, so the entry costs count in the return.
    assert run.values[0] == CAPITAL
    assert run.costs_paid == pytest.approx(COST * (prices[0] @ shares), rel=1e-12)
    assert run.dates.equals(dates)


def test_index_baseline_is_the_price_weighted_close(panel_csv, tape) -> None:
    run = index_baseline(tape, "test", CAPITAL)
    first, last = tape.split_bounds("test")
    dates = tape.dates[first : last + 1]
    close = column(panel_csv, "Close", TICKERS, dates)  # the file's close, not Adj Close
    expected = CAPITAL * close.sum(axis=1) / close[0].sum()
    np.testing.assert_allclose(run.values, expected, rtol=1e-12)
    adjusted = column(panel_csv, "Adj Close", TICKERS, dates)
    wrong = CAPITAL * adjusted.sum(axis=1) / adjusted[0].sum()
    assert not np.allclose(run.values, wrong, rtol=1e-9)  # the factors differ by ticker


# ---------------------------------------------------------------------------------- MLP


def test_mlp_reads_only_the_last_day_and_reloads_from_its_state_dict() -> None:
    config = build_config(overrides={"agent.architecture": "mlp", "agent.mlp_hidden": 16})
    window, features, portfolio, actions = 5, 5 * N + 1, N + 3, N
    torch.manual_seed(0)
    model = build_model(config.agent, features, portfolio, action_dim=actions)
    for parameter in model.parameters():  # the actor head starts near zero (gain 0.01)
        torch.nn.init.normal_(parameter)
    market = torch.randn(1, 6, window, features)
    port = torch.randn(1, 6, portfolio)
    starts = torch.zeros(1, 6)

    def outputs(m, x, y):
        with torch.no_grad():
            dist, values, _ = m.evaluate(x, y, None, m.initial_state(6), starts)
        return dist.mean, dist.stddev, values

    base = outputs(model, market, port)
    earlier = market.clone()
    earlier[:, :, :-1] = torch.randn(1, 6, window - 1, features) * 5
    for a, b in zip(base, outputs(model, earlier, port), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    last = market.clone()
    last[:, :, -1] += 1.0
    assert not torch.allclose(base[0], outputs(model, last, port)[0])
    other = port + 1.0
    assert not torch.allclose(base[2], outputs(model, market, other)[2])

    state = {k: v.clone() for k, v in model.state_dict().items()}
    shapes = model_shapes(state, config.agent)
    assert shapes["action_dim"] == actions and shapes["n_actions"] is None
    reloaded = build_model(config.agent, **shapes)
    reloaded.load_state_dict(state)
    for a, b in zip(base, outputs(reloaded, market, port), strict=True):
        torch.testing.assert_close(a, b)
    # The cascaded LSTM, by contrast, does read the earlier days.
    clstm = build_model(AgentConfig(lstm_hidden=8, feature_dim=8, policy_hidden=8), features,
                        portfolio, action_dim=actions)  # fmt: skip
    assert not torch.allclose(outputs(clstm, market, port)[2], outputs(clstm, earlier, port)[2])
