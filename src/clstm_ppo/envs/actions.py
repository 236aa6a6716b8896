"""The action catalogue and, per trading day, the structure each action would open.

Action ids (91 with multi-leg, the first 31 in the legacy space):

========  ==============================================================================
0         hold
1-10      buy one call, strike nearest S x (1 + 0.01 k), k = 0..9, expiry nearest 30 days
11-20     buy one put, strike nearest S x (1 - 0.01 k), k = 0..9, expiry nearest 30 days
21-30     close the k-th open position (k = 0..9, in the order they were opened)
31-45     covered call: buy 100 shares, sell one call at S x (1 + o), o = -7%..+7%, ~30 days
46-60     cash-secured put: sell one put at S x (1 + o), o = -7%..+7%, ~30 days
61-65     bull call spread: buy call at S, sell call at 1.05 S
66-70     bear put spread: buy put at S, sell put at 0.95 S
71-75     long straddle: buy call and put at S
76-80     long strangle: buy call at 1.05 S and put at 0.95 S
81-85     short iron condor: buy put 0.90 S, sell put 0.95 S, sell call 1.05 S, buy call 1.10 S
86-90     long call butterfly: buy call 0.95 S, sell two calls at S, buy call at the same
          distance above (equal wings, so the debit is the maximum loss)
========  ==============================================================================

Each multi-leg block has five variants, target days to expiry 7, 14, 30, 45 and 60 (the nearest
listed expiry with at least one day left). Strikes are the listed strikes nearest the stated
moneyness of the day's close S. A structure whose legs would collapse onto the same strike (a
strike grid too coarse for the width) is not offered that day (masked).

The book is computed for every usable day at once (arrays, no per-day Python work in ``step``):
legs, the fills of opening them (ask for buys, bid for sells, through the cost model), the
collateral they reserve, and whether the structure exists.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from clstm_ppo.config import Config
from clstm_ppo.data.calendar import WEEKLY_HORIZON_DAYS, expiration_calendar
from clstm_ppo.envs.tape import MarketTape
from clstm_ppo.options.chain import strike_step
from clstm_ppo.options.costs import CostModel

N_LEGACY_ACTIONS = 31
N_MULTI_LEG_ACTIONS = 91
MAX_POSITIONS = 10
MAX_LEGS = 4
SHARES_PER_CONTRACT = 100
HOLD = 0
CLOSE_FIRST, CLOSE_LAST = 21, 30
TARGET_DAYS = (7, 14, 30, 45, 60)
_EXPIRY_WINDOW = 16  # Fridays scanned per day: covers 60 days ahead plus holiday shifts
_NS_PER_DAY = 86_400 * 10**9
SINGLE_LEG_DAYS = 30

STRATEGY_NAMES = (
    "long_call",
    "long_put",
    "covered_call",
    "cash_secured_put",
    "bull_call_spread",
    "bear_put_spread",
    "long_straddle",
    "long_strangle",
    "iron_condor",
    "butterfly",
)
N_STRATEGIES = len(STRATEGY_NAMES)

# (is_call, quantity, moneyness) per leg of each multi-leg structure.
_STRUCTURES: dict[str, tuple[tuple[bool, int, float], ...]] = {
    "bull_call_spread": ((True, 1, 1.00), (True, -1, 1.05)),
    "bear_put_spread": ((False, 1, 1.00), (False, -1, 0.95)),
    "long_straddle": ((True, 1, 1.00), (False, 1, 1.00)),
    "long_strangle": ((True, 1, 1.05), (False, 1, 0.95)),
    "iron_condor": ((False, 1, 0.90), (False, -1, 0.95), (True, -1, 1.05), (True, 1, 1.10)),
    "butterfly": ((True, 1, 0.95), (True, -2, 1.00), (True, 1, 1.05)),
}


@dataclass(frozen=True)
class ActionTemplate:
    """What an opening action means, independent of the day."""

    strategy: int
    """Index into STRATEGY_NAMES."""
    target_days: int
    legs: tuple[tuple[bool, int, float], ...]
    """(is_call, signed quantity per structure, strike / spot)."""
    stock_shares: int = 0
    """Shares bought with the structure (100 for a covered call)."""


def action_templates(n_actions: int) -> dict[int, ActionTemplate]:
    """Opening actions of the space (holds and closes are not templates)."""
    templates: dict[int, ActionTemplate] = {}
    for k in range(10):
        templates[1 + k] = ActionTemplate(0, SINGLE_LEG_DAYS, ((True, 1, 1.0 + 0.01 * k),))
        templates[11 + k] = ActionTemplate(1, SINGLE_LEG_DAYS, ((False, 1, 1.0 - 0.01 * k),))
    if n_actions == N_LEGACY_ACTIONS:
        return templates
    for i, offset in enumerate(range(-7, 8)):
        moneyness = 1.0 + offset / 100.0
        templates[31 + i] = ActionTemplate(
            2, SINGLE_LEG_DAYS, ((True, -1, moneyness),), SHARES_PER_CONTRACT
        )
        templates[46 + i] = ActionTemplate(3, SINGLE_LEG_DAYS, ((False, -1, moneyness),))
    for block, name in enumerate(_STRUCTURES):
        for variant, days in enumerate(TARGET_DAYS):
            templates[61 + 5 * block + variant] = ActionTemplate(
                STRATEGY_NAMES.index(name), days, _STRUCTURES[name]
            )
    return templates


def action_strategy(n_actions: int) -> np.ndarray:
    """Strategy index per action id (-1 for hold and close)."""
    strategy = np.full(n_actions, -1, dtype=np.int64)
    for action, template in action_templates(n_actions).items():
        strategy[action] = template.strategy
    return strategy


@dataclass(frozen=True)
class ActionBook:
    """Per usable day and opening action: the structure, its opening fill and collateral.

    Arrays are indexed ``[day, action, leg]`` with days of the tape; holds, closes and days before
    the tape's first usable day are marked not ``available``.
    """

    n_actions: int
    available: np.ndarray  # (D, A) bool
    strike: np.ndarray  # (D, A, L) float64
    is_call: np.ndarray  # (D, A, L) bool
    quantity: np.ndarray  # (D, A, L) int64, signed contracts; 0 = no leg
    expiry: np.ndarray  # (D, A) datetime64[ns]
    expiry_day: np.ndarray  # (D, A) int64 tape index of the expiry session (may be >= D)
    stock_shares: np.ndarray  # (A,) int64
    strategy: np.ndarray  # (A,) int64
    open_cash_flow: np.ndarray  # (D, A) USD, premium and stock minus every fee (+ = received)
    open_fees: np.ndarray  # (D, A) USD
    collateral: np.ndarray  # (D, A) USD reserved while open


def nearest_expiries(dates: pd.DatetimeIndex, target_days: int, weeklies: bool) -> np.ndarray:
    """For each day, the listed expiry (at least one day away) nearest ``target_days`` calendar
    days ahead: monthlies always, weeklies within 45 days, as :func:`listed_expiries` lists them.
    Ties go to the earlier expiry."""
    fridays, monthly = expiration_calendar(
        dates[0], dates[-1] + pd.Timedelta(days=target_days + 60)
    )
    friday_ns = fridays.as_unit("ns").asi8
    day_ns = dates.as_unit("ns").asi8
    first = np.searchsorted(friday_ns, day_ns, side="right")
    window = np.minimum(first[:, None] + np.arange(_EXPIRY_WINDOW), friday_ns.size - 1)
    days_ahead = (friday_ns[window] - day_ns[:, None]) / _NS_PER_DAY
    eligible = monthly[window] | (weeklies & (days_ahead <= WEEKLY_HORIZON_DAYS))
    eligible &= days_ahead >= 1
    score = np.where(eligible, np.abs(days_ahead - target_days), np.inf)
    chosen = window[np.arange(len(dates)), np.argmin(score, axis=1)]
    return friday_ns[chosen].astype("datetime64[ns]")


def build_action_book(tape: MarketTape, config: Config, n_actions: int) -> ActionBook:
    """Compute every day's structures and their opening costs (vectorised over days)."""
    templates = action_templates(n_actions)
    market = tape.option_market
    days_total = len(tape.dates)
    contracts = config.env.contracts_per_trade
    shape = (days_total, n_actions, MAX_LEGS)
    strike = np.zeros(shape)
    is_call = np.zeros(shape, dtype=bool)
    quantity = np.zeros(shape, dtype=np.int64)
    expiry = np.full((days_total, n_actions), np.datetime64("NaT"), dtype="datetime64[ns]")
    stock_shares = np.zeros(n_actions, dtype=np.int64)
    strategy = np.full(n_actions, -1, dtype=np.int64)
    usable = np.arange(tape.first_usable_day, days_total)
    for target in sorted({t.target_days for t in templates.values()}):
        chosen = nearest_expiries(tape.dates[usable], target, config.market.weekly_expiries)
        for action, template in templates.items():
            if template.target_days == target:
                expiry[usable, action] = chosen
    spot = tape.spot[usable]
    steps = np.array([strike_step(price) for price in spot])
    for action, template in templates.items():
        strategy[action] = template.strategy
        stock_shares[action] = template.stock_shares * contracts
        for leg, (call, qty, moneyness) in enumerate(template.legs):
            strike[usable, action, leg] = np.round(spot * moneyness / steps) * steps
            is_call[usable, action, leg] = call
            quantity[usable, action, leg] = qty * contracts
        if STRATEGY_NAMES[template.strategy] == "butterfly":
            # Equal wings: with the wings rounded separately, a wider upper wing would lose more
            # than the debit above it, and the debit would no longer be the maximum loss.
            strike[usable, action, 2] = 2.0 * strike[usable, action, 1] - strike[usable, action, 0]

    available = np.zeros((days_total, n_actions), dtype=bool)
    available[usable] = True
    opening = np.array(sorted(templates))
    available[:, [a for a in range(n_actions) if a not in templates]] = False
    # A structure whose distinct legs collapsed onto one strike is not the structure it names.
    for action in opening:
        legs = templates[action].legs
        for i in range(len(legs)):
            for j in range(i + 1, len(legs)):
                if legs[i][2] != legs[j][2]:
                    same = strike[:, action, i] == strike[:, action, j]
                    available[:, action] &= ~same

    day_grid = np.broadcast_to(np.arange(days_total)[:, None, None], shape)
    expiry_grid = np.broadcast_to(expiry[:, :, None], shape)
    live = (quantity != 0) & available[:, :, None]
    quotes = market.quote(day_grid[live], strike[live], expiry_grid[live], is_call[live])
    costs: CostModel = config.costs
    fill = costs.fill_options(quantity[live], quotes.bid, quotes.ask, np.nan)
    open_cash_flow = np.zeros((days_total, n_actions))
    open_fees = np.zeros((days_total, n_actions))
    live_day, live_action, _ = np.nonzero(live)
    np.add.at(open_cash_flow, (live_day, live_action), fill.cash_flow)
    np.add.at(open_fees, (live_day, live_action), fill.total_fees)
    stock = stock_shares > 0
    if stock.any():
        stock_fill = costs.fill_stock(
            stock_shares[None, stock], tape.spot[:, None], tape.volume[:, None]
        )
        open_cash_flow[:, stock] += stock_fill.cash_flow
        open_fees[:, stock] += stock_fill.total_fees

    collateral = np.zeros((days_total, n_actions))
    multiplier = costs.contract_multiplier
    for action in opening:
        name = STRATEGY_NAMES[templates[action].strategy]
        if name == "cash_secured_put":
            collateral[:, action] = strike[:, action, 0] * multiplier * contracts
        elif name == "iron_condor":
            put_width = strike[:, action, 1] - strike[:, action, 0]
            call_width = strike[:, action, 3] - strike[:, action, 2]
            collateral[:, action] = np.maximum(put_width, call_width) * multiplier * contracts
    # Every other structure is paid for up front (its premium is its maximum loss) or, for the
    # covered call, holds the shares that cover the short call.
    expiry_day = np.searchsorted(
        tape.dates.as_unit("ns").asi8, np.where(np.isnat(expiry), 0, expiry.astype(np.int64))
    ).astype(np.int64)
    return ActionBook(
        n_actions=n_actions,
        available=available,
        strike=strike,
        is_call=is_call,
        quantity=quantity,
        expiry=expiry,
        expiry_day=expiry_day,
        stock_shares=stock_shares,
        strategy=strategy,
        open_cash_flow=open_cash_flow,
        open_fees=open_fees,
        collateral=collateral,
    )
