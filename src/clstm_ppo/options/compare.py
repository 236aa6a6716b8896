"""The option market model beside recorded quotes: the same contracts priced by the model, and
the errors bucketed where the agent trades.

Buckets (the issue's error budget):
- moneyness ``K/S - 1``: put wing ``-0.05..-0.03`` and ``-0.03..-0.01``, ``-0.01..+0.01`` (ATM),
  call wing ``+0.01..+0.03`` and ``+0.03..+0.05``; wings hold the out-of-the-money right only
  (puts below spot, calls above), the ATM bucket both;
- days to expiry ``0..10``, ``10..45``, ``45..120`` (lower bound inclusive, upper exclusive);
- ``near_money``: ``|K/S - 1| <= 5%`` and 20 to 45 days, both rights.

Per bucket: quotes ``n``, median absolute and signed percentage error of the model's mid against
the recorded mid, and the median recorded and modelled bid-ask spreads. Only two-sided quotes
(bid > 0, ask > bid) are compared. Moneyness uses the recorded underlying price, so a bucket means
the same contracts whatever the model's own spot is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from clstm_ppo.errors import DataError
from clstm_ppo.options.chain import OptionMarket

MONEYNESS_BUCKETS = ((-0.05, -0.03), (-0.03, -0.01), (-0.01, 0.01), (0.01, 0.03), (0.03, 0.05))
DTE_BUCKETS = ((0, 10), (10, 45), (45, 120))
NEAR_MONEY = 0.05
NEAR_MONEY_DTE = (20, 45)


def _label(low: float, high: float) -> str:
    return f"{low:+.2f}..{high:+.2f}".replace("+0.00", "0.00")


def price_recorded(real: pd.DataFrame, market: OptionMarket) -> pd.DataFrame:
    """``real`` (a frame of :func:`clstm_ppo.options.replay.read_chain`) with the model's quotes
    of the same contracts: ``model_mid``, ``model_bid``, ``model_ask``, ``model_iv``, and
    ``mid``, ``spread``, ``moneyness``, ``dte``. A quote day the model has no data for is a
    one-line error naming the day and the data's range."""
    frame = real[(real["bid"] > 0) & (real["ask"] > real["bid"])].copy()
    if frame.empty:
        raise DataError(f"{real.attrs.get('origin', 'chain')}: no two-sided quote to compare")
    day = np.array([market.day_index(date) for date in frame["date"]])
    quotes = market.quote(
        day,
        frame["strike"].to_numpy(dtype=float),
        frame["expiry"].to_numpy(),
        (frame["right"] == "C").to_numpy(),
    )
    frame["model_mid"] = quotes.mid
    frame["model_bid"] = quotes.bid
    frame["model_ask"] = quotes.ask
    frame["model_iv"] = quotes.iv
    frame["mid"] = (frame["bid"] + frame["ask"]) / 2.0
    frame["spread"] = frame["ask"] - frame["bid"]
    frame["moneyness"] = frame["strike"] / frame["underlying_price"] - 1.0
    frame["dte"] = (frame["expiry"] - frame["date"]).dt.days
    return frame


def _summary(rows: pd.DataFrame) -> dict[str, Any]:
    error = (rows["model_mid"] - rows["mid"]) / rows["mid"]
    nan = float("nan")
    return {
        "n": len(rows),
        "median_abs_pct_error_mid": 100.0 * float(error.abs().median()) if len(rows) else nan,
        "median_signed_pct_error_mid": 100.0 * float(error.median()) if len(rows) else nan,
        "median_real_spread": float(rows["spread"].median()) if len(rows) else nan,
        "median_model_spread": float(rows["model_spread"].median()) if len(rows) else nan,
    }


def bucket_errors(priced: pd.DataFrame) -> dict[str, Any]:
    """The bucketed errors of :func:`price_recorded`'s frame (see the module docstring)."""
    priced = priced.assign(model_spread=priced["model_ask"] - priced["model_bid"])
    buckets = []
    for right in ("P", "C"):
        for low, high in MONEYNESS_BUCKETS:
            wing_of = "P" if high <= -0.01 + 1e-12 else "C" if low >= 0.01 - 1e-12 else right
            if wing_of != right:
                continue  # wings compare the out-of-the-money right only
            in_money = priced["moneyness"].ge(low) & priced["moneyness"].lt(high)
            for dte_low, dte_high in DTE_BUCKETS:
                in_dte = priced["dte"].ge(dte_low) & priced["dte"].lt(dte_high)
                rows = priced[in_money & in_dte & priced["right"].eq(right)]
                if rows.empty:
                    continue
                buckets.append(
                    {
                        "right": right,
                        "moneyness": _label(low, high),
                        "dte": f"{dte_low}..{dte_high}",
                        **_summary(rows),
                    }
                )
    near = priced[priced["moneyness"].abs().le(NEAR_MONEY) & priced["dte"].between(*NEAR_MONEY_DTE)]
    return {"buckets": buckets, "near_money": _summary(near)}


def buckets_table(result: dict[str, Any]) -> pd.DataFrame:
    """The buckets and the near-money row as one frame (for printing and Markdown)."""
    rows = [*result["buckets"], {"right": "both", "moneyness": "|K/S-1|<=0.05",
                                  "dte": "20..45", **result["near_money"]}]  # fmt: skip
    return pd.DataFrame(rows)
