"""Walks through a split: the evaluated policy and the baselines, with the same data and costs.

Every walk is one continuous pass over the split (``episode_length=0``, first day of the split,
no random start), through the same simulator, costs and turbulence rule as training, except
buy-and-hold and cash, which need no options:

- ``buy_and_hold``: on the first day buy as many whole shares (index units) as the capital
  allows through the cost model's stock fill, hold to the end, marked at the close;
- ``cash``: the capital, untouched (no interest);
- ``random_seedK``: a uniformly random valid action each day (seeds 0..K-1);
- ``covered_call_monthly``: whenever no position is open, a ~30-day at-the-money buy-write
  (action 38); it expires (cash-settled) about a month later and is written again;
- ``cash_secured_put_monthly``: likewise with an at-the-money ~30-day cash-secured put
  (action 53).
A rule baseline whose action is masked that day (turbulence, affordability) holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from clstm_ppo.config import Config
from clstm_ppo.envs import BatchedOptionsEnv
from clstm_ppo.envs.tape import MarketTape
from clstm_ppo.evaluate.results import StrategyRun

COVERED_CALL_ATM = 38
CASH_SECURED_PUT_ATM = 53

Chooser = Callable[[BatchedOptionsEnv, dict[str, np.ndarray], dict[str, Any]], int]


def walk(config: Config, split: str, choose: Chooser, name: str, kind: str = "baseline",
         multi_leg: bool | None = None) -> StrategyRun:  # fmt: skip
    """Run ``choose`` once through the whole split and collect what happened."""
    legs = config.env.enable_multi_leg if multi_leg is None else multi_leg
    env = BatchedOptionsEnv(
        1, split=split, episode_length=0, random_start=False, multi_leg=legs, config=config
    )
    obs, info = env.reset(seed=0)
    actions = []
    while True:
        action = choose(env, obs, info)
        actions.append(action)
        obs, _, terminated, truncated, info = env.step(np.array([action]))
        if terminated[0] or truncated[0]:
            summary = info["final_info"][0]
            break
    trades = pd.DataFrame(summary["closed_trades"], columns=["strategy", "opened", "closed", "pnl"])
    return StrategyRun(
        name=name,
        dates=pd.DatetimeIndex(summary["dates"]),
        values=np.asarray(summary["portfolio_values"], dtype=float),
        trades=trades,
        costs_paid=float(summary["costs_paid"]),
        actions=np.asarray(actions, dtype=np.int64),
        kind=kind,
    )


def policy_chooser(policy: Any, device: torch.device | None = None) -> Chooser:
    """Deterministic actions of a model or ensemble policy, carrying its recurrent state."""
    device = device or torch.device("cpu")
    memory: dict[str, Any] = {"state": policy.initial_state(1, device), "start": 1.0}

    def choose(_env: BatchedOptionsEnv, obs: dict[str, np.ndarray], _info: dict) -> int:
        market = torch.as_tensor(obs["market"], device=device)
        portfolio = torch.as_tensor(obs["portfolio"], device=device)
        mask = torch.as_tensor(obs["action_mask"], device=device).bool()
        starts = torch.full((1,), memory["start"], device=device)
        action, memory["state"], _ = policy.act(market, portfolio, mask, memory["state"], starts)
        memory["start"] = 0.0
        return int(action[0])

    return choose


def random_chooser(seed: int) -> Chooser:
    rng = np.random.default_rng(seed)

    def choose(_env: BatchedOptionsEnv, _obs: dict, info: dict) -> int:
        return int(rng.choice(np.flatnonzero(info["action_mask"][0])))

    return choose


def monthly_chooser(action: int) -> Chooser:
    def choose(env: BatchedOptionsEnv, _obs: dict, info: dict) -> int:
        flat = not env.sim.active[0].any()
        return action if flat and info["action_mask"][0][action] else 0

    return choose


def buy_and_hold(tape: MarketTape, config: Config, dates: pd.DatetimeIndex) -> StrategyRun:
    first = tape.dates.get_loc(dates[0])
    days = np.arange(first, first + len(dates))
    spot = tape.spot[days]
    capital = config.env.initial_capital
    costs = config.costs
    price_with_costs = costs.fill_stock(1, spot[0], tape.volume[first]).fill_price
    shares = int(capital // (float(price_with_costs) * 1.001))  # keep room for the fees
    fill = costs.fill_stock(shares, spot[0], tape.volume[first])
    cash = capital + float(fill.cash_flow)
    values = cash + shares * spot  # day 0 already shows the purchase costs
    empty = pd.DataFrame(columns=["strategy", "opened", "closed", "pnl"])
    return StrategyRun("buy_and_hold", dates, values, empty, float(fill.total_fees))


def cash(config: Config, dates: pd.DatetimeIndex) -> StrategyRun:
    values = np.full(len(dates), config.env.initial_capital)
    empty = pd.DataFrame(columns=["strategy", "opened", "closed", "pnl"])
    return StrategyRun("cash", dates, values, empty, 0.0)


def baselines(
    config: Config, tape: MarketTape, split: str, dates: pd.DatetimeIndex, random_seeds: int
) -> list[StrategyRun]:
    """Every baseline on ``split`` (multi-leg space, so the buy-write and the put exist)."""
    runs = [buy_and_hold(tape, config, dates), cash(config, dates)]
    runs += [
        walk(config, split, random_chooser(seed), f"random_seed{seed}", multi_leg=True)
        for seed in range(random_seeds)
    ]
    runs.append(walk(config, split, monthly_chooser(COVERED_CALL_ATM), "covered_call_monthly",
                     multi_leg=True))  # fmt: skip
    runs.append(walk(config, split, monthly_chooser(CASH_SECURED_PUT_ATM),
                     "cash_secured_put_monthly", multi_leg=True))  # fmt: skip
    return runs
