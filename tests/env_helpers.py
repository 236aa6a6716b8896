"""Independent reference arithmetic for the options-account tests (tests/test_env_accounting.py).

Nothing here calls the simulator's action book or the cost model's fill functions: structures are
rebuilt from the action table in SPEC.md section 4 (strikes from the chain's listed grid, expiries
from the listed-expiry calendar), fills and fees are re-derived from the cost model's numeric
fields. The simulator's results are then checked against these numbers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from clstm_ppo.envs.simulator import OptionsSimulator
from clstm_ppo.envs.tape import MarketTape
from clstm_ppo.options.costs import CostModel

MULTIPLIER = 100
TARGETS = (7, 14, 30, 45, 60)

# (is_call, signed quantity, strike / spot) per leg, as SPEC.md / the actions docstring define them.
_MULTI_LEG = {
    "bull_call_spread": ((True, 1, 1.00), (True, -1, 1.05)),
    "bear_put_spread": ((False, 1, 1.00), (False, -1, 0.95)),
    "long_straddle": ((True, 1, 1.00), (False, 1, 1.00)),
    "long_strangle": ((True, 1, 1.05), (False, 1, 0.95)),
    "iron_condor": ((False, 1, 0.90), (False, -1, 0.95), (True, -1, 1.05), (True, 1, 1.10)),
    "butterfly": ((True, 1, 0.95), (True, -2, 1.00), (True, 1, 1.05)),
}


def describe_action(action: int) -> tuple[str, int, tuple[tuple[bool, int, float], ...], int]:
    """(strategy name, target days, legs, shares) of an opening action id (1-20, 31-90)."""
    if 1 <= action <= 10:
        return "long_call", 30, ((True, 1, 1.0 + 0.01 * (action - 1)),), 0
    if 11 <= action <= 20:
        return "long_put", 30, ((False, 1, 1.0 - 0.01 * (action - 11)),), 0
    if 31 <= action <= 45:
        return "covered_call", 30, ((True, -1, 1.0 + (action - 38) / 100.0),), MULTIPLIER
    if 46 <= action <= 60:
        return "cash_secured_put", 30, ((False, -1, 1.0 + (action - 53) / 100.0),), 0
    if 61 <= action <= 90:
        block, variant = divmod(action - 61, 5)
        name = list(_MULTI_LEG)[block]
        return name, TARGETS[variant], _MULTI_LEG[name], 0
    raise ValueError(f"action {action} opens nothing")


@dataclass(frozen=True)
class Leg:
    is_call: bool
    quantity: int
    strike: float


@dataclass(frozen=True)
class Structure:
    strategy: str
    legs: tuple[Leg, ...]
    expiry: pd.Timestamp
    expiry_day: int
    shares: int


def nearest_expiry(tape: MarketTape, day: int, target_days: int) -> pd.Timestamp:
    """The listed expiry at least one calendar day ahead nearest ``target_days`` (ties: earlier)."""
    today = tape.dates[day]
    best, best_gap = None, math.inf
    for expiry in tape.option_market.listed_expiries(day):  # sorted ascending
        ahead = (expiry - today).days
        if ahead < 1:
            continue
        gap = abs(ahead - target_days)
        if gap < best_gap:
            best, best_gap = expiry, gap
    assert best is not None
    return best


def structure(tape: MarketTape, day: int, action: int) -> Structure:
    """What ``action`` opens on ``day``: legs at the listed strikes nearest moneyness x close.

    Each leg is rounded on its own, as the action table says, except the butterfly's upper wing,
    which mirrors the lower one (equal wings, so the debit is the maximum loss)."""
    name, target, legs, shares = describe_action(action)
    spot = tape.spot[day]
    listed = tape.option_market.listed_strikes(day)
    built = []
    for is_call, qty, moneyness in legs:
        strike = float(listed[np.argmin(np.abs(listed - spot * moneyness))])
        built.append(Leg(is_call, qty, strike))
    if name == "butterfly":
        built[2] = Leg(True, 1, 2.0 * built[1].strike - built[0].strike)
    expiry = nearest_expiry(tape, day, target)
    return Structure(name, tuple(built), expiry, tape.dates.get_loc(expiry), shares)


def quote(tape: MarketTape, day: int, leg: Leg, expiry: pd.Timestamp):
    q = tape.option_market.quote(
        np.array([day]),
        np.array([leg.strike]),
        np.array([expiry.to_datetime64()], dtype="datetime64[ns]"),
        np.array([leg.is_call]),
    )
    return float(q.bid[0]), float(q.ask[0]), float(q.mid[0])


def option_fill(costs: CostModel, qty: int, bid: float, ask: float) -> tuple[float, float]:
    """(cash flow, fees) of trading ``qty`` contracts (+ buy at ask, - sell at bid), volume 1."""
    n = abs(qty)
    half = (ask - bid) / 2.0
    slip = half * costs.slippage_impact * math.sqrt(n) if costs.slippage_enabled else 0.0
    fees = max(costs.commission_per_contract * n, costs.min_commission_per_order)
    fees += min(costs.occ_clearing_fee_per_contract * n, costs.occ_max_per_trade)
    if qty > 0:
        premium = -n * (ask + slip) * MULTIPLIER
    else:
        premium = n * max(bid - slip, 0.0) * MULTIPLIER
        fees += costs.sec_fee_rate * premium
        fees += min(costs.finra_taf_per_contract * n, costs.finra_taf_max_per_trade_options)
    return premium - fees, fees


def stock_fill(costs: CostModel, shares: int, price: float, volume: float) -> tuple[float, float]:
    """(cash flow, fees) of trading ``shares`` of the underlying around the close ``price``."""
    n = abs(shares)
    half = 0.5 * max(costs.stock_spread_bps * 1e-4 * price, 0.01)
    vol = volume if np.isfinite(volume) and volume > 1 else 1.0
    slip = half * costs.slippage_impact * math.sqrt(n / vol) if costs.slippage_enabled else 0.0
    fees = costs.stock_commission_per_share * n
    if shares > 0:
        notional = -n * (price + half + slip)
    else:
        notional = n * max(price - half - slip, 0.0)
        fees += costs.sec_fee_rate * notional
        fees += min(costs.finra_taf_per_share * n, costs.finra_taf_max_per_trade_shares)
    return notional - fees, fees


def trade_cash(
    tape: MarketTape, costs: CostModel, day: int, s: Structure, direction: int
) -> tuple[float, float]:
    """(cash flow, fees) of opening (``direction`` +1) or closing (-1) ``s`` at ``day``'s quotes.

    Opening buys the long legs at the ask and sells the short ones at the bid; closing does the
    opposite (longs sold at the bid, shorts bought back at the ask). A covered call's shares are
    bought on opening and sold on closing through the stock costs."""
    cash = fees = 0.0
    for leg in s.legs:
        bid, ask, _ = quote(tape, day, leg, s.expiry)
        leg_cash, leg_fees = option_fill(costs, direction * leg.quantity, bid, ask)
        cash, fees = cash + leg_cash, fees + leg_fees
    if s.shares:
        stock_cash, stock_fees = stock_fill(
            costs, direction * s.shares, tape.spot[day], tape.volume[day]
        )
        cash, fees = cash + stock_cash, fees + stock_fees
    return cash, fees


def open_cash(tape: MarketTape, costs: CostModel, day: int, s: Structure) -> float:
    """Cash flow of opening ``s`` at ``day``'s quotes (+ = received), every fee included."""
    return trade_cash(tape, costs, day, s, +1)[0]


def close_cash(tape: MarketTape, costs: CostModel, day: int, s: Structure) -> float:
    """Cash flow of closing ``s`` at ``day``'s quotes, every fee included."""
    return trade_cash(tape, costs, day, s, -1)[0]


def expiry_cash(tape: MarketTape, costs: CostModel, s: Structure) -> float:
    """Settlement at the expiry close: intrinsic value per leg, no fees; shares sold."""
    spot = tape.spot[s.expiry_day]
    total = 0.0
    for leg in s.legs:
        intrinsic = max(spot - leg.strike, 0.0) if leg.is_call else max(leg.strike - spot, 0.0)
        total += leg.quantity * intrinsic * MULTIPLIER
    if s.shares:
        total += stock_fill(costs, -s.shares, spot, tape.volume[s.expiry_day])[0]
    return total


def marked_value(tape: MarketTape, day: int, structures: list[Structure]) -> float:
    """Mid-marked value of open structures on ``day`` (legs at mid x100, shares at the close)."""
    total = 0.0
    for s in structures:
        for leg in s.legs:
            total += leg.quantity * quote(tape, day, leg, s.expiry)[2] * MULTIPLIER
        total += s.shares * tape.spot[day]
    return total


def collateral(s: Structure) -> float:
    """Cash reserved while ``s`` is open (SPEC section 3)."""
    if s.strategy == "cash_secured_put":
        return s.legs[0].strike * MULTIPLIER
    if s.strategy == "iron_condor":
        put_wing = s.legs[1].strike - s.legs[0].strike
        call_wing = s.legs[3].strike - s.legs[2].strike
        return max(put_wing, call_wing) * MULTIPLIER
    return 0.0


def start_at(sim: OptionsSimulator, days: np.ndarray | list[int]) -> None:
    """Reset every account and move account ``i`` to trading day ``days[i]`` (fresh account).

    The simulator only starts episodes at its split's first day or a seeded random day; tests
    that need a particular market situation (a turbulent day, an underlying that ends between
    the short strikes...) move the fresh accounts there and recompute the action mask.
    """
    sim.reset()
    days = np.asarray(days, dtype=np.int64)
    sim.day[:] = days
    sim.start_day[:] = days
    sim._update_mask(np.arange(sim.n_envs))


def book_structure(sim: OptionsSimulator, row: int, slot: int) -> tuple:
    """The simulator's open position ``slot`` of account ``row`` as comparable plain values."""
    live = sim.quantity[row, slot] != 0
    legs = tuple(
        (bool(c), int(q), float(k))
        for c, q, k in zip(
            sim.is_call[row, slot][live],
            sim.quantity[row, slot][live],
            sim.strike[row, slot][live],
            strict=True,
        )
    )
    return legs, pd.Timestamp(sim.expiry[row, slot]), int(sim.shares[row, slot])


def as_plain(s: Structure) -> tuple:
    legs = tuple((leg.is_call, leg.quantity, leg.strike) for leg in s.legs)
    return legs, s.expiry, s.shares
