"""Account accounting of the options environments, checked against independent arithmetic.

Every expected number here comes from :mod:`env_helpers`: structures rebuilt from SPEC.md's
action table (listed strikes nearest moneyness x close, listed expiry nearest the target days),
fills re-derived from the option market's bid/ask and the cost model's numeric fields (buy at the
ask, sell at the bid, slippage with volume 1, commission + OCC on every contract, SEC fee and
FINRA TAF on sells), settlement at intrinsic value from the expiry close. None of it reads the
simulator's action book or calls the cost model's fill functions.

The data is the bundled SPX (train split 2002-2012); the dates below were picked by searching the
tape for the market outcome each test needs, and every test re-asserts that outcome so the sign
checks cannot pass vacuously.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pytest

from clstm_ppo.config import build_config
from clstm_ppo.envs import MultiLegOptionsEnv
from clstm_ppo.envs.factory import make_simulator
from clstm_ppo.envs.tape import tape_for
from env_helpers import (
    MULTIPLIER,
    Structure,
    as_plain,
    book_structure,
    close_cash,
    collateral,
    expiry_cash,
    marked_value,
    open_cash,
    quote,
    start_at,
    structure,
    trade_cash,
)

CAPITAL = 1_000_000.0
SMALL_CAPITAL = 20_000.0
EPISODE = 400  # long enough for any account below to reach its expiries
OPENING = [a for a in range(1, 91) if not 21 <= a <= 30]
TOL = 1e-6  # USD; every amount is a short sum of exact fills, so only rounding noise is allowed


@pytest.fixture(scope="module")
def config():
    return build_config()


# The train split opens on 2001-01-03, a turbulent day (the Fed's surprise cut: S&P +5%, VIX
# -10%), when only hold and close are offered. Tests of the accounting that walk an env from the
# split's first day use a threshold no day exceeds; the turbulence rule has its own test.
CALM = {"env.turbulence_percentile": 100.0}


@pytest.fixture(scope="module")
def calm_config():
    return build_config(overrides=CALM)


@pytest.fixture(scope="module")
def small_config():
    return build_config(overrides={"env.initial_capital": SMALL_CAPITAL})


@pytest.fixture(scope="module")
def sim_of(config):
    """New accounts on the train split (the tape and action book are cached per process)."""

    def make(n_envs: int, cfg=None):
        return make_simulator(cfg or config, n_envs, True, "train", EPISODE, False)

    return make


@pytest.fixture(scope="module")
def tape(sim_of):
    return sim_of(1).tape


def day_of(tape, date: str) -> int:
    return int(tape.dates.get_loc(pd.Timestamp(date)))


def open_positions(sim, row: int = 0) -> list[tuple]:
    return [book_structure(sim, row, slot) for slot in range(int(sim.active[row].sum()))]


# ------------------------------------------------------------------ 1. P&L at expiry


@dataclass(frozen=True)
class ExpiryCase:
    name: str
    action: int
    date: str
    sign: int
    """Expected sign of the trade's P&L, given the market outcome ``outcome`` asserts."""
    why: str

    def outcome(self, s: Structure, spot_open: float, spot_expiry: float) -> bool:
        k = [leg.strike for leg in s.legs]
        checks = {
            "long_call": lambda: spot_expiry > k[0] * 1.02,
            "long_put": lambda: spot_expiry < k[0] * 0.98,
            "covered_call": lambda: spot_expiry > k[0],
            "cash_secured_put": lambda: spot_expiry < k[0] * 0.97,
            "bull_call_spread": lambda: spot_expiry > k[1],
            "bear_put_spread": lambda: spot_expiry < k[1],
            "long_straddle": lambda: abs(spot_expiry / spot_open - 1.0) < 0.005,
            "long_strangle": lambda: spot_expiry < k[1] * 0.95,
            "iron_condor": lambda: k[1] < spot_expiry < k[2],
            "butterfly": lambda: abs(spot_expiry - k[1]) < 0.005 * k[1],
        }
        return checks[s.strategy]()


EXPIRY_CASES = [
    ExpiryCase("long_call", 1, "2006-02-13", +1, "ATM 30-day call, SPX +3.5% by expiry"),
    ExpiryCase(
        "long_put", 11, "2005-02-25", +1, "ATM put, SPX -3.3%; Good Friday: expires Thu 03-24"
    ),
    ExpiryCase("covered_call", 40, "2006-07-17", +1, "+2% call, SPX +5.5%: shares called away"),
    ExpiryCase("cash_secured_put", 53, "2006-04-19", -1, "ATM put sold, SPX -3.3%: loss"),
    ExpiryCase(
        "bull_call_spread", 65, "2003-02-04", +1, "60-day, above upper strike, expires Thursday"
    ),
    ExpiryCase("bear_put_spread", 66, "2008-09-25", +1, "7-day, SPX -9% below the lower strike"),
    ExpiryCase("long_straddle", 72, "2005-06-22", -1, "14-day, SPX moved 0.2%: premium lost"),
    ExpiryCase("long_strangle", 79, "2008-05-20", +1, "45-day, SPX -11%: the put pays"),
    ExpiryCase("iron_condor", 83, "2005-03-02", +1, "30-day, ends between the short strikes"),
    ExpiryCase(
        "iron_condor_7d", 81, "2002-03-19", +1, "7-day inside the short strikes, Thu expiry"
    ),
    ExpiryCase("butterfly", 88, "2004-11-12", +1, "30-day, SPX pinned at the middle strike"),
]


@pytest.fixture(scope="module")
def expiry_run(sim_of, tape, config) -> dict[str, Any]:
    """One account per case: open the structure on its day, hold until everything expired."""
    days = [day_of(tape, case.date) for case in EXPIRY_CASES]
    actions = np.array([case.action for case in EXPIRY_CASES])
    sim = sim_of(len(EXPIRY_CASES))
    start_at(sim, days)
    rows = np.arange(sim.n_envs)
    allowed = sim.mask[rows, actions].copy()
    sim.step(actions)
    opened = {
        "positions": [open_positions(sim, row) for row in rows],
        "cash": sim.cash.copy(),
        "reserved": sim.reserved.copy(),
        "costs_paid": sim.costs_paid.copy(),
    }
    for _ in range(80):
        if not sim.active.any():
            break
        sim.step(np.zeros(sim.n_envs, dtype=np.int64))
    structures = [
        structure(tape, day, case.action) for day, case in zip(days, EXPIRY_CASES, strict=True)
    ]
    return {
        "sim": sim,
        "days": days,
        "allowed": allowed,
        "opened": opened,
        "structures": structures,
    }


@pytest.mark.parametrize("row", range(len(EXPIRY_CASES)), ids=[c.name for c in EXPIRY_CASES])
def test_pnl_at_expiry_matches_independent_arithmetic(expiry_run, tape, config, row) -> None:
    case = EXPIRY_CASES[row]
    sim, day, s = expiry_run["sim"], expiry_run["days"][row], expiry_run["structures"][row]
    opened = expiry_run["opened"]
    spot_open, spot_expiry = tape.spot[day], tape.spot[s.expiry_day]
    assert not tape.turbulent[day]
    assert case.outcome(s, spot_open, spot_expiry), f"{case.name}: market outcome not as chosen"
    assert expiry_run["allowed"][row], f"{case.name}: action {case.action} masked on {case.date}"

    # The simulator opened exactly the structure the action table describes, paying our price.
    assert opened["positions"][row] == [as_plain(s)]
    open_flow, open_fees = trade_cash(tape, config.costs, day, s, +1)
    assert opened["cash"][row] == pytest.approx(CAPITAL + open_flow, abs=TOL)
    assert opened["costs_paid"][row] == pytest.approx(open_fees, abs=TOL)

    # Held to expiry: one trade, closed on the expiry session, P&L = opening flow + settlement.
    pnl = open_flow + expiry_cash(tape, config.costs, s)
    assert sim.trade_count[row] == 1
    assert sim.trade_close_day[row, 0] == s.expiry_day
    assert sim.trade_open_day[row, 0] == day
    assert sim.trade_pnl[row, 0] == pytest.approx(pnl, abs=TOL)
    assert sim.cash[row] == pytest.approx(CAPITAL + pnl, abs=TOL)
    assert not sim.active[row].any()
    assert np.sign(pnl) == case.sign, case.why


def test_expiry_sign_checks_have_teeth(expiry_run, tape, config) -> None:
    """The outcomes the task names, stated directly on the recorded P&L."""
    by_name = {case.name: row for row, case in enumerate(EXPIRY_CASES)}
    sim = expiry_run["sim"]
    for name in ("iron_condor", "iron_condor_7d"):
        row = by_name[name]
        s, day = expiry_run["structures"][row], expiry_run["days"][row]
        # Inside the short strikes every leg expires worthless: the P&L is the net credit less
        # the opening fees, and it is a profit.
        credit = open_cash(tape, config.costs, day, s)
        assert credit > 0
        assert sim.trade_pnl[row, 0] == pytest.approx(credit, abs=TOL)
    assert sim.trade_pnl[by_name["butterfly"], 0] > 0
    assert sim.trade_pnl[by_name["long_straddle"], 0] < 0
    # A bull call spread finishing above both strikes earns exactly the strike width less its cost.
    row = by_name["bull_call_spread"]
    s, day = expiry_run["structures"][row], expiry_run["days"][row]
    width = (s.legs[1].strike - s.legs[0].strike) * MULTIPLIER
    assert sim.trade_pnl[row, 0] == pytest.approx(
        width + open_cash(tape, config.costs, day, s), abs=TOL
    )


def test_closed_trades_reported_in_episode_info(tape, config) -> None:
    """The env's ``info["episode"]`` carries the same P&L as the independent computation."""
    env = MultiLegOptionsEnv(episode_length=12, random_start=False)
    _, info = env.reset(seed=0)
    day = tape.split_days["train"][0]
    assert info["date"] == str(tape.dates[day].date())
    s = structure(tape, day, 81)  # 7-day short iron condor
    assert s.expiry_day < day + 12
    assert info["action_mask"][81]
    _, _, _, truncated, info = env.step(81)
    while not truncated:
        _, _, _, truncated, info = env.step(0)
    open_flow, open_fees = trade_cash(tape, config.costs, day, s, +1)
    pnl = open_flow + expiry_cash(tape, config.costs, s)
    episode = info["episode"]
    assert episode["closed_trades"] == [
        {
            "strategy": "iron_condor",
            "opened": str(tape.dates[day].date()),
            "closed": str(s.expiry.date()),
            "pnl": pytest.approx(pnl, abs=TOL),
        }
    ]
    assert episode["costs_paid"] == pytest.approx(open_fees, abs=TOL)  # settlement is fee-free
    assert episode["return"] == pytest.approx(pnl / CAPITAL, abs=1e-12)
    assert info["portfolio_value"] == pytest.approx(CAPITAL + pnl, abs=TOL)


# ------------------------------------------------------------------ 2. collateral


def test_collateral_reserved_while_open_and_released_at_expiry(expiry_run) -> None:
    sim = expiry_run["sim"]
    for row, case in enumerate(EXPIRY_CASES):
        s = expiry_run["structures"][row]
        expected = 0.0
        if s.strategy == "cash_secured_put":
            expected = s.legs[0].strike * MULTIPLIER
        elif s.strategy == "iron_condor":
            put_wing = s.legs[1].strike - s.legs[0].strike
            call_wing = s.legs[3].strike - s.legs[2].strike
            expected = max(put_wing, call_wing) * MULTIPLIER
        assert expiry_run["opened"]["reserved"][row] == pytest.approx(expected, abs=TOL), case.name
        assert sim.reserved[row] == pytest.approx(0.0, abs=TOL), case.name
    # The chosen iron condors must have had a non-zero reserve for the check to mean anything.
    condors = [row for row, c in enumerate(EXPIRY_CASES) if c.name.startswith("iron_condor")]
    assert expiry_run["opened"]["reserved"][condors].min() >= 50 * MULTIPLIER


@pytest.mark.parametrize("date", ["2002-01-08", "2006-02-13", "2011-06-06"])
def test_small_account_masks_exactly_the_unaffordable(sim_of, small_config, date) -> None:
    sim = sim_of(1, small_config)
    tape = sim.tape
    day = day_of(tape, date)
    assert not tape.turbulent[day]
    start_at(sim, [day])
    mask = sim.mask[0]
    # SPX is 1,000+ points: 100 shares or a put's strike x 100 is far beyond $20,000.
    assert not mask[31:46].any(), "covered calls offered to a $20k account"
    assert not mask[46:61].any(), "cash-secured puts offered to a $20k account"
    assert mask[5], "a 4% OTM long call (a few $k) should be affordable"
    # The rule itself: an opening is offered iff free cash after it (cash + opening flow -
    # collateral) stays >= 0.
    for action in OPENING:
        s = structure(tape, day, action)
        free_after = SMALL_CAPITAL + open_cash(tape, small_config.costs, day, s) - collateral(s)
        assert mask[action] == (free_after >= 0.0), (action, free_after)


def worst_expiry_value(legs, shares: int) -> float:
    """Lowest terminal value (USD) of a position over every underlying price S >= 0.

    The value is piecewise linear in S with kinks at the strikes, so its minimum is at S = 0 or
    a strike, provided it does not fall for ever as S grows (asserted)."""

    def value(spot: float) -> float:
        payoff = sum(
            q * (max(spot - k, 0.0) if call else max(k - spot, 0.0)) for call, q, k in legs
        )
        return shares * spot + payoff * MULTIPLIER

    assert shares + MULTIPLIER * sum(q for call, q, _ in legs if call) >= 0, "unbounded loss"
    return min(value(spot) for spot in [0.0, *(k for _, _, k in legs)])


COLLATERAL_DATE = "2010-02-05"  # SPX 1066.19: butterfly strikes 1015 / 1065 / 1120


@pytest.fixture(scope="module")
def collateral_run(sim_of, tape) -> dict[str, Any]:
    """Every opening action of the multi-leg space, one account each, opened on one day."""
    day = day_of(tape, COLLATERAL_DATE)
    sim = sim_of(len(OPENING))
    start_at(sim, [day] * len(OPENING))
    actions = np.array(OPENING)
    assert sim.mask[np.arange(len(OPENING)), actions].all()
    sim.step(actions)
    return {"sim": sim, "day": day}


STRATEGIES = [
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
]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_collateral_covers_the_worst_expiry_loss(collateral_run, strategy) -> None:
    """SPEC 3: what can be lost beyond the cash already paid is reserved while the position is
    open. The check uses the strikes the simulator actually opened, so it holds for any fix."""
    from clstm_ppo.envs.actions import STRATEGY_NAMES

    sim = collateral_run["sim"]
    rows = [r for r in range(sim.n_envs) if STRATEGY_NAMES[sim.strategy[r, 0]] == strategy]
    assert rows
    for row in rows:
        legs, _, shares = book_structure(sim, row, 0)
        worst = worst_expiry_value(legs, shares)
        assert sim.reserved[row] >= -worst - TOL, (OPENING[row], legs, sim.reserved[row], worst)


def _expected_reserved(sim) -> np.ndarray:
    """Collateral of the open positions, recomputed from their legs (SPEC section 3)."""
    from clstm_ppo.envs.actions import STRATEGY_NAMES

    reserved = np.zeros(sim.n_envs)
    for row, slot in zip(*np.nonzero(sim.active), strict=True):
        name = STRATEGY_NAMES[sim.strategy[row, slot]]
        k = sim.strike[row, slot]
        if name == "cash_secured_put":
            reserved[row] += k[0] * MULTIPLIER
        elif name == "iron_condor":
            reserved[row] += max(k[1] - k[0], k[3] - k[2]) * MULTIPLIER
    return reserved


@pytest.fixture(scope="module")
def random_run(small_config) -> dict[str, Any]:
    """A year of random valid actions on 32 $20k accounts, biased towards opening so the
    accounts run their free cash down to the edge of the affordability rule."""
    n_envs = 32
    sim = make_simulator(small_config, n_envs, True, "train", 252, True)
    sim.seed(np.arange(n_envs, dtype=np.uint64) + 5)
    sim.reset()
    rng = np.random.default_rng(5)
    stats = {"opened": 0, "invalid": 0, "reserved_error": 0.0, "value_error": 0.0}
    stats["min_free_cash"] = np.inf
    alive = np.ones(n_envs, dtype=bool)  # an account that went bust (terminated) stops counting
    for _ in range(252):
        actions = np.zeros(n_envs, dtype=np.int64)
        for row in range(n_envs):
            valid = np.flatnonzero(sim.mask[row])
            openings = valid[(valid > 0) & ((valid < 21) | (valid > 30))]
            closes = valid[(valid >= 21) & (valid <= 30)]
            draw = rng.random()
            if draw < 0.6 and openings.size:
                actions[row] = rng.choice(openings)
            elif draw < 0.7 and closes.size:
                actions[row] = rng.choice(closes)
        stats["opened"] += int(((actions > 0) & ((actions < 21) | (actions > 30))).sum())
        result = sim.step(actions)
        stats["invalid"] += int(result["invalid_action"].sum())
        error = np.abs(sim.reserved - _expected_reserved(sim)).max()
        stats["reserved_error"] = max(stats["reserved_error"], error)
        error = np.abs(sim.value - sim.cash - sim.position_value.sum(axis=1)).max()
        stats["value_error"] = max(stats["value_error"], error)
        free = (sim.cash - sim.reserved)[alive]
        stats["min_free_cash"] = min(stats["min_free_cash"], free.min(initial=np.inf))
        alive &= ~result["terminated"]
        if not alive.any() or result["truncated"].all():
            break
    return stats


def test_random_episodes_keep_reserve_and_value_consistent(random_run) -> None:
    assert random_run["opened"] > 1000  # the accounts really traded
    assert random_run["invalid"] == 0  # actions drawn from the mask are always carried out
    assert random_run["reserved_error"] < TOL  # reserved = CSP strikes + condor wings, always
    assert random_run["value_error"] < 1e-6  # value = cash + marked positions, always


def test_free_cash_never_negative_in_random_episodes(random_run) -> None:
    assert random_run["min_free_cash"] >= -TOL


def test_close_that_would_overdraw_free_cash_is_refused(sim_of, tape, config) -> None:
    """A $63.36 account buys a 7-day strangle for $63.35; the next day both legs bid 0, so
    closing costs the fees ($1.36) and would leave cash below zero."""
    from clstm_ppo.envs.simulator import OptionsSimulator

    day = day_of(tape, "2005-06-27")
    s = structure(tape, day, 76)  # 7-day long strangle
    assert max(quote(tape, day + 1, leg, s.expiry)[0] for leg in s.legs) == 0.0
    assert close_cash(tape, config.costs, day + 1, s) < 0
    capital = -open_cash(tape, config.costs, day, s) + 0.01
    tiny = build_config(overrides={"env.initial_capital": capital})
    # Same market and action book (neither depends on the capital): no second tape build.
    sim = OptionsSimulator(tape, sim_of(1).book, tiny, 1, "train", EPISODE, False)
    start_at(sim, [day])
    assert sim.mask[0, 76]
    sim.step(np.array([76]))
    assert sim.cash[0] - sim.reserved[0] == pytest.approx(0.01, abs=TOL)
    sim.step(np.array([21]))  # refused (masked) or carried out, free cash may not go below 0
    assert sim.cash[0] - sim.reserved[0] >= 0.0


# ------------------------------------------------------------------ 3. masked actions


def _twins(**kwargs):
    """Two identical envs reset from the same seed at the train split's first day."""
    calm = build_config(overrides=CALM)
    envs = [
        MultiLegOptionsEnv(episode_length=20, random_start=False, config=calm, **kwargs)
        for _ in range(2)
    ]
    infos = [env.reset(seed=3)[1] for env in envs]
    return envs, infos


def _account(env) -> dict[str, Any]:
    sim = env.sim
    return {
        "cash": sim.cash.copy(),
        "reserved": sim.reserved.copy(),
        "value": sim.value.copy(),
        "costs_paid": sim.costs_paid.copy(),
        "active": sim.active.copy(),
        "quantity": sim.quantity.copy(),
        "strike": sim.strike.copy(),
        "shares": sim.shares.copy(),
        "trade_count": sim.trade_count.copy(),
        "day": sim.day.copy(),
    }


@pytest.mark.parametrize(
    ("prefix", "bad_action", "capital"),
    [
        pytest.param([1], 24, None, id="close-slot-3-with-one-position"),
        pytest.param([], 21, None, id="close-with-no-positions"),
        pytest.param([1, 11], 30, None, id="close-slot-9-with-two-positions"),
        pytest.param([], 53, SMALL_CAPITAL, id="unaffordable-cash-secured-put"),
        pytest.param([], 38, SMALL_CAPITAL, id="unaffordable-covered-call"),
        pytest.param([1], 91, None, id="out-of-range-action"),
    ],
)
def test_masked_action_changes_nothing(prefix, bad_action, capital) -> None:
    kwargs = {} if capital is None else {"initial_capital": capital}
    (bad, hold), (info, _) = _twins(**kwargs)
    for action in prefix:
        assert info["action_mask"][action]
        _, _, _, _, info = bad.step(action)
        hold.step(action)
    if bad_action < bad.n_actions:
        assert not info["action_mask"][bad_action]
    before = info["invalid_actions"]
    _, reward_bad, _, _, info_bad = bad.step(bad_action)
    _, reward_hold, _, _, info_hold = hold.step(0)
    assert info_bad["invalid_action"] is True
    assert info_hold["invalid_action"] is False
    assert info_bad["invalid_actions"] == before + 1
    assert info_hold["invalid_actions"] == before
    # Everything else is exactly what a hold produced: no trade, no fee, no reserve, same marks.
    state_bad, state_hold = _account(bad), _account(hold)
    for key in state_hold:
        np.testing.assert_array_equal(state_bad[key], state_hold[key], err_msg=key)
    assert reward_bad == reward_hold
    for key in ("cash", "reserved", "portfolio_value", "costs_paid", "action_mask", "date"):
        np.testing.assert_array_equal(info_bad[key], info_hold[key], err_msg=key)
    # ... and the accounts stay twins afterwards.
    _, reward_bad, _, _, info_bad = bad.step(0)
    _, reward_hold, _, _, info_hold = hold.step(0)
    assert reward_bad == reward_hold
    assert info_bad["portfolio_value"] == info_hold["portfolio_value"]


# ------------------------------------------------------------------ 4. turbulence


def test_turbulence_blocks_opening_but_not_closing(sim_of, tape, config) -> None:
    hi = tape.split_days["train"][1]
    turbulent = tape.turbulent
    # First turbulent day of autumn 2008 preceded by two calm days (so positions can be opened).
    day = next(
        d
        for d in range(day_of(tape, "2008-09-02"), hi)
        if turbulent[d] and not turbulent[d - 1] and not turbulent[d - 2]
    )
    sim = sim_of(2)
    start_at(sim, [day - 2, day - 2])
    sim.step(np.array([11, 11]))  # long put
    sim.step(np.array([63, 63]))  # 30-day bull call spread
    assert (sim.day == day).all() and (sim.active.sum(axis=1) == 2).all()
    mask = sim.mask
    assert mask[:, 0].all(), "hold must stay allowed"
    assert mask[:, 21:23].all(), "closing the open positions must stay allowed"
    assert not mask[:, 23:31].any()
    assert not mask[:, OPENING].any(), "an opening action is offered on a turbulent day"
    # Without turbulence these would have been offered: they exist and the account can pay.
    for action in (1, 11, 53, 83, 88):
        s = structure(tape, day, action)
        assert CAPITAL + open_cash(tape, config.costs, day, s) - collateral(s) > 0
    # Sending an opening anyway is refused; closing works.
    cash_before = sim.cash.copy()
    result = sim.step(np.array([11, 22]))
    assert result["invalid_action"].tolist() == [True, False]
    assert sim.active.sum(axis=1).tolist() == [2, 1]
    assert sim.cash[0] == cash_before[0]
    # Calm returns, opening is allowed again.
    while tape.turbulent[sim.day[0]]:
        sim.step(np.zeros(2, dtype=np.int64))
    assert sim.mask[:, 11].all()


# ------------------------------------------------------------------ 5. closing


def test_close_removes_that_position_and_fills_at_bid_ask(sim_of, tape, config) -> None:
    costs = config.costs
    day = day_of(tape, "2005-08-01")
    assert not tape.turbulent[day : day + 10].any()
    sim = sim_of(1)
    start_at(sim, [day])
    held: list[Structure] = []
    open_flow: list[float] = []
    # Open five structures on five days: long call, CSP, iron condor, covered call, long put.
    for offset, action in enumerate([1, 53, 83, 38, 11]):
        s = structure(tape, day + offset, action)
        assert sim.mask[0, action]
        sim.step(np.array([action]))
        held.append(s)
        open_flow.append(open_cash(tape, costs, day + offset, s))
    assert min(s.expiry_day for s in held) > day + 12  # nothing settles during the test
    assert open_positions(sim) == [as_plain(s) for s in held]
    assert sim.cash[0] == pytest.approx(CAPITAL + sum(open_flow), abs=TOL)

    def close(k: int) -> None:
        today = int(sim.day[0])
        cash, reserved, trades = sim.cash[0], sim.reserved[0], int(sim.trade_count[0])
        gone, flow = held.pop(k), open_flow.pop(k)
        expected = close_cash(tape, costs, today, gone)
        assert sim.mask[0, 21 + k]
        sim.step(np.array([21 + k]))
        # Longs sold at the bid, shorts bought back at the ask, shares sold: our arithmetic.
        assert sim.cash[0] - cash == pytest.approx(expected, abs=TOL)
        assert reserved - sim.reserved[0] == pytest.approx(collateral(gone), abs=TOL)
        assert sim.trade_count[0] == trades + 1
        assert sim.trade_pnl[0, trades] == pytest.approx(flow + expected, abs=TOL)
        assert sim.trade_close_day[0, trades] == today
        # Exactly that position is gone; the others keep their opening order.
        assert open_positions(sim) == [as_plain(s) for s in held]

    close(1)  # the cash-secured put: short put bought back at the ask, strike x 100 released
    close(2)  # now the covered call: call bought back, 100 shares sold
    close(1)  # the iron condor: four legs, wing x 100 released
    assert sim.reserved[0] == pytest.approx(0.0, abs=TOL)
    # A new position goes after the remaining ones.
    today = int(sim.day[0])
    held.append(structure(tape, today, 5))
    open_flow.append(open_cash(tape, costs, today, held[-1]))
    sim.step(np.array([5]))
    assert open_positions(sim) == [as_plain(s) for s in held]
    close(0)  # the long call: sold at the bid
    assert open_positions(sim) == [as_plain(s) for s in held]


# ------------------------------------------------------------------ 6. mark to market


def test_daily_mark_to_market_and_ledger(calm_config) -> None:
    """Over a month of trading, every step's value is cash plus mid-marked positions, and cash
    itself follows our own ledger of opens, closes and settlements."""
    config = calm_config
    tape = tape_for(config)
    costs = config.costs
    env = MultiLegOptionsEnv(episode_length=30, random_start=False, config=config)
    _, info = env.reset(seed=1)
    day = tape.split_days["train"][0]
    # Covered call, 30-day butterfly (equal wings), 7-day
    # iron condor, long put, bull call spread, 7-day strangle, then two closes.
    plan = [38, 88, 81, 11, 63, 0, 76, 0, 22, 0] + [0] * 8 + [21] + [0] * 11
    held: list[Structure] = []
    cash = CAPITAL
    value = CAPITAL
    settled = most_held = 0
    for action in plan:
        if action:
            assert info["action_mask"][action], (action, tape.dates[day].date())
        if 21 <= action <= 30:
            cash += close_cash(tape, costs, day, held.pop(action - 21))
        elif action:
            held.append(structure(tape, day, action))
            cash += open_cash(tape, costs, day, held[-1])
        _, reward, terminated, truncated, info = env.step(action)
        day += 1
        for s in [s for s in held if s.expiry_day <= day]:
            cash += expiry_cash(tape, costs, s)
            held.remove(s)
            settled += 1
        assert info["date"] == str(tape.dates[day].date())
        assert info["cash"] == pytest.approx(cash, abs=TOL)
        assert info["reserved"] == pytest.approx(sum(collateral(s) for s in held), abs=TOL)
        marked = cash + marked_value(tape, day, held)
        assert info["portfolio_value"] == pytest.approx(marked, abs=1e-4)
        assert reward == pytest.approx((marked - value) * config.env.reward_scaling, abs=1e-8)
        value = marked
        most_held = max(most_held, len(held))
        if terminated or truncated:
            break
    assert truncated
    # Six structures opened, two closed, the other four (7-day condor and strangle, then the
    # 30-day ones) expired within the month; up to five were marked at once, shares included.
    assert settled == 4
    assert most_held >= 5
