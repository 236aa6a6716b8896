"""Observation encoder: the simulator's state as the agent sees it.

A ``gymnasium.spaces.Dict`` with three entries:

- ``market``: ``(window, 9)`` float32, the last ``window`` days (oldest first, day ``t`` last) of
  the tape's normalised features (see :mod:`clstm_ppo.envs.tape` for the columns);
- ``portfolio``: ``PORTFOLIO_SIZE`` float32 = the account block then one block per position slot
  (slots in the order positions were opened; empty slots are zeros):

  account block (6): cash / initial capital, value / initial capital, drawdown from the peak,
  free cash (cash - reserved collateral) / initial capital, open positions / 10, turbulence flag;

  position block (17 per slot, 10 slots): active flag, strategy one-hot (10, order of
  ``STRATEGY_NAMES``), dollar delta / capital, dollar gamma per 1% move / capital x 10, daily
  theta / capital x 1000, vega per vol point / capital x 100, days to expiry / 60, unrealised P&L
  in % of capital. Greeks are clipped to +-10.
- ``action_mask``: ``MultiBinary(n_actions)``, 1 where the action is valid today (the same mask as
  ``info["action_mask"]``).

Market features are scaled with train-split statistics (in the tape); the portfolio block uses
the fixed scales above so that it means the same thing in every split.
"""

from __future__ import annotations

import numpy as np
from gymnasium import spaces

from clstm_ppo.envs.actions import MAX_POSITIONS, N_STRATEGIES
from clstm_ppo.envs.simulator import OptionsSimulator
from clstm_ppo.envs.tape import FEATURE_NAMES

ACCOUNT_FIELDS = ("cash", "value", "drawdown", "free_cash", "open_positions", "turbulent")
POSITION_SIZE = 1 + N_STRATEGIES + 6
PORTFOLIO_SIZE = len(ACCOUNT_FIELDS) + MAX_POSITIONS * POSITION_SIZE
_GREEK_SCALES = np.array([1.0, 10.0, 1000.0, 100.0])
_CLIP = 10.0
_PORTFOLIO_BOUND = 1000.0  # every entry is a ratio to capital or a clipped greek


def observation_space(window: int, n_actions: int) -> spaces.Dict:
    return spaces.Dict(
        {
            "market": spaces.Box(-_CLIP, _CLIP, (window, len(FEATURE_NAMES)), np.float32),
            "portfolio": spaces.Box(
                -_PORTFOLIO_BOUND, _PORTFOLIO_BOUND, (PORTFOLIO_SIZE,), np.float32
            ),
            "action_mask": spaces.MultiBinary(n_actions),
        }
    )


def encode(sim: OptionsSimulator, window: int) -> dict[str, np.ndarray]:
    """Batched observation of every account: arrays with a leading ``n_envs`` axis."""
    n = sim.n_envs
    capital = sim.initial_capital
    market = sim.tape.windows[sim.day]

    spot = sim.tape.spot[sim.day]
    account = np.stack(
        [
            sim.cash / capital,
            sim.value / capital,
            sim.drawdown(),
            (sim.cash - sim.reserved) / capital,
            sim.active.sum(axis=1) / MAX_POSITIONS,
            sim.tape.turbulent[sim.day].astype(float),
        ],
        axis=1,
    )
    one_hot = np.zeros((n, MAX_POSITIONS, N_STRATEGIES))
    rows, slots = np.nonzero(sim.active)
    one_hot[rows, slots, sim.strategy[rows, slots]] = 1.0
    delta, gamma, theta, vega = np.moveaxis(sim.position_greeks, 2, 0)
    spot_ = spot[:, None]
    dollar = np.stack([delta * spot_, gamma * spot_**2 * 0.01, theta / 365.0, vega * 0.01], axis=2)
    greeks = np.clip(dollar / capital * _GREEK_SCALES, -_CLIP, _CLIP)
    today = sim.tape.dates.as_unit("ns").asi8[sim.day][:, None]
    days_left = (sim.expiry.astype(np.int64) - today) / 86_400e9
    unrealised = (sim.position_value + sim.open_cash) / capital * 100.0
    positions = np.concatenate(
        [
            sim.active[:, :, None].astype(float),
            one_hot,
            greeks,
            (days_left / 60.0)[:, :, None],
            unrealised[:, :, None],
        ],
        axis=2,
    )
    positions *= sim.active[:, :, None]
    portfolio = np.concatenate([account, positions.reshape(n, -1)], axis=1)
    return {
        "market": market,
        "portfolio": np.clip(portfolio, -_PORTFOLIO_BOUND, _PORTFOLIO_BOUND).astype(np.float32),
        "action_mask": sim.mask.astype(np.int8),
    }
