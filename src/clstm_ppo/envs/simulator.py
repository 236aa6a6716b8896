"""The options-account simulator: ``N`` independent accounts stepped together with array ops.

Both the Gymnasium env (``N = 1``) and the batched vector env drive this one class, so they
share every rule. State changes only through :meth:`OptionsSimulator.step` and
:meth:`OptionsSimulator.reset`.

Timing (no look-ahead): the decision for day ``t`` sees data up to and including day ``t``'s
close and trades at day ``t``'s closing quotes. The account is then carried to day ``t + 1``:
positions expiring that day settle, the rest are marked at day ``t + 1``'s mid, and the reward
is the change in marked value from before the trade on ``t`` to ``t + 1`` (so every cost paid on
``t`` is in the reward) times ``reward_scaling``.

Accounting:
- ``cash`` includes reserved collateral; ``reserved`` is the part that backs open short options
  (cash-secured put: strike x 100; short iron condor: its wider wing x 100). A trade is allowed
  only if ``cash - reserved`` stays >= 0 after it.
- Opens fill at the ask for buys and the bid for sells through the cost model (commission, OCC,
  SEC and FINRA fees, slippage). Modelled quotes carry no volume, so slippage uses volume 1, the
  cost model's worst case.
- Closes fill the opposite way (sell longs at the bid, buy back shorts at the ask), all legs and
  the covered call's shares together.
- At expiry every option leg is cash-settled at intrinsic value from the expiry day's close,
  without fees (index options such as SPX settle in cash; no exercise commission), and a covered
  call's shares are sold at that close through the cost model. The position then ends.
- Open positions are marked at mid; positions still open when an episode is truncated stay
  marked at mid (no forced liquidation).
"""

from __future__ import annotations

import numpy as np
import torch

from clstm_ppo.config import Config
from clstm_ppo.envs.accounts import arrays_state_dict, load_arrays_state
from clstm_ppo.envs.actions import (
    CLOSE_FIRST,
    CLOSE_LAST,
    HOLD,
    MAX_LEGS,
    MAX_POSITIONS,
    ActionBook,
)
from clstm_ppo.envs.tape import MarketTape
from clstm_ppo.options.bsm import intrinsic_value

_NO_VOLUME = np.nan  # modelled quotes have no volume: the cost model then assumes 1 contract
_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A counter-based hash: per-env random numbers from (seed, episode) with no Python loop."""
    with np.errstate(over="ignore"):
        z = (x + np.uint64(0x9E3779B97F4A7C15)) & _MASK64
        z = ((z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & _MASK64
        z = ((z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & _MASK64
        return z ^ (z >> np.uint64(31))


class OptionsSimulator:
    """``n_envs`` option accounts on one split of a market tape."""

    def __init__(
        self,
        tape: MarketTape,
        book: ActionBook,
        config: Config,
        n_envs: int,
        split: str = "train",
        episode_length: int | None = None,
        random_start: bool = True,
    ) -> None:
        self.tape = tape
        self.book = book
        self.config = config
        self.n_envs = n_envs
        self.n_actions = book.n_actions
        self.split = split
        self.split_first, self.split_last = tape.split_bounds(split)
        available_days = self.split_last - self.split_first
        requested = episode_length if episode_length else available_days
        self.episode_length = min(requested, available_days)
        self.random_start = random_start and self.episode_length < available_days
        self.costs = config.costs
        self.multiplier = self.costs.contract_multiplier
        env = config.env
        self.initial_capital = env.initial_capital
        self.reward_scaling = env.reward_scaling
        self.drawdown_penalty = env.drawdown_penalty
        self.volatility_penalty = env.volatility_penalty
        self.seeds = np.zeros(n_envs, dtype=np.uint64)
        self.episodes = np.zeros(n_envs, dtype=np.uint64)
        self._allocate()

    # ----------------------------------------------------------------------------- state
    def _allocate(self) -> None:
        n, p, legs = self.n_envs, MAX_POSITIONS, MAX_LEGS
        horizon = self.episode_length + 1
        self.day = np.zeros(n, dtype=np.int64)
        self.start_day = np.zeros(n, dtype=np.int64)
        self.steps = np.zeros(n, dtype=np.int64)
        self.cash = np.zeros(n)
        self.reserved = np.zeros(n)
        self.value = np.zeros(n)
        self.peak_value = np.zeros(n)
        self.costs_paid = np.zeros(n)
        self.invalid_actions = np.zeros(n, dtype=np.int64)
        self.active = np.zeros((n, p), dtype=bool)
        self.strategy = np.zeros((n, p), dtype=np.int64)
        self.strike = np.zeros((n, p, legs))
        self.is_call = np.zeros((n, p, legs), dtype=bool)
        self.quantity = np.zeros((n, p, legs), dtype=np.int64)
        self.expiry = np.zeros((n, p), dtype="datetime64[ns]")
        self.expiry_day = np.zeros((n, p), dtype=np.int64)
        self.shares = np.zeros((n, p), dtype=np.int64)
        self.collateral = np.zeros((n, p))
        self.open_cash = np.zeros((n, p))
        self.open_day = np.zeros((n, p), dtype=np.int64)
        self.position_value = np.zeros((n, p))
        self.position_greeks = np.zeros((n, p, 4))
        self.close_cash = np.zeros((n, p))  # cash flow of closing each position at today's quotes
        self.close_fees = np.zeros((n, p))
        self.equity = np.zeros((n, horizon))
        self.trade_pnl = np.zeros((n, horizon))
        self.trade_strategy = np.zeros((n, horizon), dtype=np.int64)
        self.trade_open_day = np.zeros((n, horizon), dtype=np.int64)
        self.trade_close_day = np.zeros((n, horizon), dtype=np.int64)
        self.trade_count = np.zeros(n, dtype=np.int64)
        self.mask = np.zeros((n, self.n_actions), dtype=bool)

    _STATE = (
        "day", "start_day", "steps", "cash", "reserved", "value", "peak_value", "costs_paid",
        "invalid_actions", "active", "strategy", "strike", "is_call", "quantity", "expiry",
        "expiry_day", "shares", "collateral", "open_cash", "open_day", "position_value",
        "position_greeks", "close_cash", "close_fees", "equity", "trade_pnl", "trade_strategy",
        "trade_open_day", "trade_close_day", "trade_count", "mask", "seeds", "episodes",
    )  # fmt: skip

    def state_dict(self) -> dict[str, torch.Tensor]:
        """Every array of the accounts' state, as tensors (checkpoint-safe, exact)."""
        return arrays_state_dict(self, self._STATE)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        load_arrays_state(self, self._STATE, state)

    def seed(self, seeds: np.ndarray) -> None:
        """Set each account's seed and restart its episode counter."""
        self.seeds = np.asarray(seeds, dtype=np.uint64).copy()
        self.episodes = np.zeros(self.n_envs, dtype=np.uint64)

    def reset(self, which: np.ndarray | None = None) -> None:
        """Start a new episode in the accounts selected by the boolean mask ``which``."""
        rows = np.arange(self.n_envs) if which is None else np.flatnonzero(which)
        if rows.size == 0:
            return
        span = self.split_last - self.episode_length - self.split_first + 1
        if self.random_start:
            draw = _splitmix64(self.seeds[rows] * np.uint64(1_000_003) + self.episodes[rows])
            offset = (draw % np.uint64(span)).astype(np.int64)
        else:
            offset = np.zeros(rows.size, dtype=np.int64)
        self.episodes[rows] += np.uint64(1)
        start = self.split_first + offset
        self.day[rows] = start
        self.start_day[rows] = start
        self.steps[rows] = 0
        self.cash[rows] = self.initial_capital
        self.reserved[rows] = 0.0
        self.value[rows] = self.initial_capital
        self.peak_value[rows] = self.initial_capital
        self.costs_paid[rows] = 0.0
        self.invalid_actions[rows] = 0
        self.active[rows] = False
        self.quantity[rows] = 0
        self.shares[rows] = 0
        self.collateral[rows] = 0.0
        self.position_value[rows] = 0.0
        self.position_greeks[rows] = 0.0
        self.close_cash[rows] = 0.0
        self.close_fees[rows] = 0.0
        self.equity[rows] = np.nan
        self.equity[rows, 0] = self.initial_capital
        self.trade_count[rows] = 0
        self._update_mask(rows)

    # ----------------------------------------------------------------------------- rules
    def _update_mask(self, rows: np.ndarray) -> None:
        t = self.day[rows]
        mask = np.zeros((rows.size, self.n_actions), dtype=bool)
        mask[:, HOLD] = True
        free_cash = self.cash[rows] - self.reserved[rows]
        # Closing is a trade too: it must leave free cash >= 0 (its fill can be a debit, e.g. a
        # short leg bought back at a wide ask, or fees on a long leg that bids 0).
        close_after = free_cash[:, None] + self.close_cash[rows] + self.collateral[rows]
        mask[:, CLOSE_FIRST : CLOSE_LAST + 1] = self.active[rows] & (close_after >= 0.0)
        open_count = self.active[rows].sum(axis=1)
        can_open = (~self.tape.turbulent[t]) & (open_count < MAX_POSITIONS)
        affordable = (
            free_cash[:, None] + self.book.open_cash_flow[t] - self.book.collateral[t] >= 0.0
        )
        opening = self.book.available[t] & affordable & can_open[:, None]
        mask |= opening
        self.mask[rows] = mask

    def _record_trades(self, rows: np.ndarray, slots: np.ndarray, pnl: np.ndarray) -> None:
        # ``rows`` is sorted and may repeat (several positions of one account expiring together).
        first_of_row = np.searchsorted(rows, rows, side="left")
        index = self.trade_count[rows] + np.arange(rows.size) - first_of_row
        self.trade_pnl[rows, index] = pnl
        self.trade_strategy[rows, index] = self.strategy[rows, slots]
        self.trade_open_day[rows, index] = self.open_day[rows, slots]
        self.trade_close_day[rows, index] = self.day[rows]
        np.add.at(self.trade_count, rows, 1)

    def _end_positions(self, rows: np.ndarray, slots: np.ndarray, cash_flow: np.ndarray) -> None:
        np.add.at(self.cash, rows, cash_flow)
        np.add.at(self.reserved, rows, -self.collateral[rows, slots])
        self._record_trades(rows, slots, self.open_cash[rows, slots] + cash_flow)
        self.active[rows, slots] = False
        self.quantity[rows, slots] = 0
        self.shares[rows, slots] = 0
        self.collateral[rows, slots] = 0.0
        self.position_value[rows, slots] = 0.0
        self.position_greeks[rows, slots] = 0.0
        self.close_cash[rows, slots] = 0.0
        self.close_fees[rows, slots] = 0.0

    def _close(self, rows: np.ndarray, slots: np.ndarray) -> None:
        """Close at today's quotes: the fills priced by the last mark (the same day; positions
        have not changed since), so the mask's affordability check and the fill agree."""
        self.costs_paid[rows] += self.close_fees[rows, slots]
        self._end_positions(rows, slots, self.close_cash[rows, slots].copy())

    def _open(self, rows: np.ndarray, actions: np.ndarray) -> None:
        t = self.day[rows]
        slots = self.active[rows].sum(axis=1)  # positions are kept packed at the front
        book = self.book
        self.active[rows, slots] = True
        self.strategy[rows, slots] = book.strategy[actions]
        self.strike[rows, slots] = book.strike[t, actions]
        self.is_call[rows, slots] = book.is_call[t, actions]
        self.quantity[rows, slots] = book.quantity[t, actions]
        self.expiry[rows, slots] = book.expiry[t, actions]
        self.expiry_day[rows, slots] = book.expiry_day[t, actions]
        self.shares[rows, slots] = book.stock_shares[actions]
        self.collateral[rows, slots] = book.collateral[t, actions]
        self.open_cash[rows, slots] = book.open_cash_flow[t, actions]
        self.open_day[rows, slots] = t
        self.cash[rows] += book.open_cash_flow[t, actions]
        self.reserved[rows] += book.collateral[t, actions]
        self.costs_paid[rows] += book.open_fees[t, actions]

    def _settle_expiring(self) -> np.ndarray:
        """Cash-settle every position whose expiry session is today; returns rows touched."""
        expiring = self.active & (self.expiry_day <= self.day[:, None])
        rows, slots = np.nonzero(expiring)
        if rows.size == 0:
            return rows
        t = self.day[rows]
        spot = self.tape.spot[t]
        intrinsic = intrinsic_value(
            spot[:, None], self.strike[rows, slots], self.is_call[rows, slots]
        )
        qty = self.quantity[rows, slots]
        cash_flow = (qty * intrinsic).sum(axis=1) * self.multiplier
        shares = self.shares[rows, slots]
        with_stock = shares > 0
        if with_stock.any():
            stock = self.costs.fill_stock(
                -shares[with_stock], spot[with_stock], self.tape.volume[t[with_stock]]
            )
            cash_flow[with_stock] += stock.cash_flow
            np.add.at(self.costs_paid, rows[with_stock], stock.total_fees)
        self._end_positions(rows, slots, cash_flow)
        return rows

    def _pack(self, rows: np.ndarray) -> None:
        """Keep open positions at the front, in the order they were opened."""
        rows = np.unique(rows)
        if rows.size == 0:
            return
        order = np.argsort(~self.active[rows], axis=1, kind="stable")
        for name in (
            "active", "strategy", "strike", "is_call", "quantity", "expiry", "expiry_day",
            "shares", "collateral", "open_cash", "open_day", "position_value", "position_greeks",
            "close_cash", "close_fees",
        ):  # fmt: skip
            array = getattr(self, name)
            index = order.reshape(order.shape + (1,) * (array.ndim - 2))
            array[rows] = np.take_along_axis(array[rows], index, axis=1)

    def _mark(self) -> None:
        """Mark every open position at today's mid; update values and position greeks."""
        live = self.active[:, :, None] & (self.quantity != 0)
        rows, slots, _ = np.nonzero(live)
        cells = self.n_envs * MAX_POSITIONS
        shape = (self.n_envs, MAX_POSITIONS)
        option_value = np.zeros(shape)
        close_cash = np.zeros(shape)
        close_fees = np.zeros(shape)
        greeks = np.zeros((*shape, 4))
        if rows.size:
            mid, bid, ask, delta, gamma, theta, vega = self.tape.option_market.mark(
                self.day[rows],
                self.strike[live],
                self.expiry[rows, slots].astype(np.int64),
                self.is_call[live],
            )
            qty = self.quantity[live]
            contracts = qty * self.multiplier
            cell = rows * MAX_POSITIONS + slots
            option_value = np.bincount(cell, contracts * mid, cells).reshape(shape)
            for g, values in enumerate((delta, gamma, theta, vega)):
                greeks[:, :, g] = np.bincount(cell, contracts * values, cells).reshape(shape)
            fill = self.costs.fill_options(-qty, bid, ask, _NO_VOLUME)
            close_cash = np.bincount(cell, fill.cash_flow, cells).reshape(shape)
            close_fees = np.bincount(cell, fill.total_fees, cells).reshape(shape)
        stock_rows, stock_slots = np.nonzero(self.active & (self.shares > 0))
        if stock_rows.size:
            t = self.day[stock_rows]
            stock = self.costs.fill_stock(
                -self.shares[stock_rows, stock_slots], self.tape.spot[t], self.tape.volume[t]
            )
            close_cash[stock_rows, stock_slots] += stock.cash_flow
            close_fees[stock_rows, stock_slots] += stock.total_fees
        self.close_cash = close_cash
        self.close_fees = close_fees
        spot = self.tape.spot[self.day]
        stock_value = self.shares * spot[:, None]
        greeks[:, :, 0] += self.shares
        self.position_value = np.where(self.active, option_value + stock_value, 0.0)
        self.position_greeks = greeks
        self.value = self.cash + self.position_value.sum(axis=1)

    # ----------------------------------------------------------------------------- step
    def step(self, actions: np.ndarray) -> dict[str, np.ndarray]:
        """Apply one action per account; return per-account arrays (reward, done flags...)."""
        actions = np.asarray(actions, dtype=np.int64)
        everyone = np.arange(self.n_envs)
        in_range = (actions >= 0) & (actions < self.n_actions)
        valid = in_range & self.mask[everyone, np.clip(actions, 0, self.n_actions - 1)]
        self.invalid_actions += ~valid
        chosen = np.where(valid, actions, HOLD)
        value_before = self.value.copy()
        peak_before = self.peak_value.copy()

        closing = (chosen >= CLOSE_FIRST) & (chosen <= CLOSE_LAST)
        close_rows = np.flatnonzero(closing)
        if close_rows.size:
            self._close(close_rows, chosen[close_rows] - CLOSE_FIRST)
            self._pack(close_rows)  # before opening: a new position goes after the open ones
        open_rows = np.flatnonzero((chosen != HOLD) & ~closing)
        if open_rows.size:
            self._open(open_rows, chosen[open_rows])

        self.day += 1
        settled = self._settle_expiring()
        self._pack(settled)
        self._mark()
        self.steps += 1
        self.peak_value = np.maximum(self.peak_value, self.value)
        self.equity[everyone, self.steps] = self.value

        change = self.value - value_before
        reward = change * self.reward_scaling
        if self.drawdown_penalty:
            drawdown_before = 1.0 - value_before / peak_before
            drawdown_now = 1.0 - self.value / self.peak_value
            worse = np.maximum(drawdown_now - drawdown_before, 0.0)
            reward -= self.drawdown_penalty * worse * self.initial_capital * self.reward_scaling
        if self.volatility_penalty:
            daily = change / value_before
            reward -= (
                self.volatility_penalty * daily**2 * self.initial_capital * self.reward_scaling
            )
        terminated = self.value <= 0.0
        truncated = (self.steps >= self.episode_length) & ~terminated
        self._update_mask(everyone)
        return {
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "invalid_action": ~valid,
        }

    # ----------------------------------------------------------------------------- views
    def drawdown(self) -> np.ndarray:
        return 1.0 - self.value / self.peak_value

    def episode_summary(self, row: int) -> dict[str, object]:
        """The finished episode of account ``row``: trades, daily values, provenance."""
        from clstm_ppo.envs.actions import STRATEGY_NAMES

        count = int(self.trade_count[row])
        dates = self.tape.dates
        trades = [
            {
                "strategy": STRATEGY_NAMES[int(self.trade_strategy[row, i])],
                "opened": str(dates[int(self.trade_open_day[row, i])].date()),
                "closed": str(dates[int(self.trade_close_day[row, i])].date()),
                "pnl": float(self.trade_pnl[row, i]),
            }
            for i in range(count)
        ]
        steps = int(self.steps[row])
        start = int(self.start_day[row])
        return {
            "closed_trades": trades,
            "portfolio_values": self.equity[row, : steps + 1].tolist(),
            "dates": [str(d.date()) for d in dates[start : start + steps + 1]],
            "return": float(self.value[row] / self.initial_capital - 1.0),
            "costs_paid": float(self.costs_paid[row]),
            "invalid_actions": int(self.invalid_actions[row]),
            "provenance": {
                "data": self.tape.provenance["data"],
                "split": self.split,
                "first_date": str(dates[start].date()),
                "last_date": str(dates[start + steps].date()),
            },
        }
