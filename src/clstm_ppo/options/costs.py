"""Trading costs for US equity options and their underlying stock, as one frozen object.

How a fill is costed (the same rules for every leg, vectorised over arrays of legs):

* **Spread, once.** Buys fill at the ask and sells at the bid. The half-spread paid against the
  mid is therefore already inside the fill price and the premium; it is reported as
  ``spread_cost`` for attribution only and is never charged again as a fee.
* **Slippage** on top of the quote grows with the order's size relative to the day's volume
  (square-root market impact)::

      slippage per share = half_spread * slippage_impact * sqrt(|quantity| / max(volume, 1))

  It moves the fill price away from the quote (buys pay more, sells receive less, never below 0),
  so it too lives inside the fill price and premium and is reported separately, not added to the
  fees. It is exactly zero when ``slippage_enabled`` is False or ``slippage_impact`` is 0. A volume
  of 0 or NaN counts as 1 (a thin, unknown market is the worst case, not a free one).
* **Fees** are cash charged on top of the premium: broker commission and OCC clearing fee on both
  sides; SEC Section 31 fee (on sale proceeds) and FINRA Trading Activity Fee on SELLS ONLY, each
  leg being its own trade for the per-trade caps. Fees are not rounded to cents (brokers round
  each charge; the difference is under $0.01 per leg).

Cash-flow sign convention: positive is cash received. ``cash_flow = premium - total_fees`` is
the change in the account's cash from the fill.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
from numpy.typing import ArrayLike

from clstm_ppo.errors import ConfigError

__all__ = ["CostModel", "OptionFill", "StockFill"]


@dataclass(frozen=True)
class OptionFill:
    """Costs of a batch of option legs; every field is an array broadcast from the inputs."""

    quantity: np.ndarray
    """Signed contracts as given: + buy, - sell."""
    fill_price: np.ndarray
    """Price per share: ask + slippage (buys), max(bid - slippage, 0) (sells), mid (untraded)."""
    premium: np.ndarray
    """Premium cash flow in USD, ``-quantity * fill_price * multiplier``: paid < 0, received > 0."""
    commission: np.ndarray
    """Broker commission in USD (both sides)."""
    occ_fee: np.ndarray
    """OCC clearing fee in USD (both sides)."""
    sec_fee: np.ndarray
    """SEC Section 31 fee in USD (sells only, on the sale proceeds)."""
    finra_taf: np.ndarray
    """FINRA Trading Activity Fee in USD (sells only, capped per leg)."""
    slippage: np.ndarray
    """USD lost to slippage beyond the quote; already inside ``premium``, NOT in ``total_fees``."""
    spread_cost: np.ndarray
    """USD paid against the mid (half-spread); already inside ``premium``, NOT in ``total_fees``."""
    total_fees: np.ndarray
    """commission + occ_fee + sec_fee + finra_taf, in USD (>= 0)."""
    cash_flow: np.ndarray
    """Net change in cash: ``premium - total_fees``."""


@dataclass(frozen=True)
class StockFill:
    """Costs of a batch of stock orders; every field is an array broadcast from the inputs."""

    quantity: np.ndarray
    """Signed shares as given: + buy, - sell."""
    fill_price: np.ndarray
    """Price per share: ask + slippage (buys), max(bid - slippage, 0) (sells), mid (untraded)."""
    notional: np.ndarray
    """Stock cash flow in USD: ``-quantity * fill_price`` (paid < 0, received > 0)."""
    commission: np.ndarray
    """Broker commission in USD (both sides)."""
    sec_fee: np.ndarray
    """SEC Section 31 fee in USD (sells only, on the sale proceeds)."""
    finra_taf: np.ndarray
    """FINRA Trading Activity Fee in USD (sells only, capped per order)."""
    slippage: np.ndarray
    """USD lost to slippage beyond the quote; already inside ``notional``, NOT in ``total_fees``."""
    spread_cost: np.ndarray
    """USD paid against the mid (half-spread); inside ``notional``, NOT in ``total_fees``."""
    total_fees: np.ndarray
    """commission + sec_fee + finra_taf, in USD (>= 0)."""
    cash_flow: np.ndarray
    """Net change in cash: ``notional - total_fees``."""


@dataclass(frozen=True)
class CostModel:
    """Commissions, exchange/regulatory fees and slippage of a US retail options account.

    Defaults follow Charles Schwab's published online pricing (no stock commission, $0.65 per
    option contract; Fidelity and E*TRADE charge the same, Interactive Brokers Pro Tiered charges
    $0.65 up to 10,000 contracts a month) plus the regulators' rates in force in November 2026.
    Regulatory rates change by year; each field's docstring gives its source and effective date so
    the numbers can be re-checked and overridden from the config.
    """

    commission_per_contract: float = 0.65
    """Broker commission per option contract, both sides (USD). Source: Charles Schwab pricing
    guide, online listed options $0.65 per contract (unchanged since Schwab's Oct 2019 repricing);
    same at Fidelity and E*TRADE; IBKR Pro Tiered $0.65 for premium >= $0.10 up to 10k
    contracts/month."""
    min_commission_per_order: float = 0.0
    """Minimum commission per leg (USD); 0 at Schwab/Fidelity/E*TRADE, $1.00 at IBKR Pro."""
    contract_multiplier: float = 100.0
    """Shares per standard US equity option contract."""
    occ_clearing_fee_per_contract: float = 0.025
    """OCC clearing fee per contract, both sides (USD). Source: OCC Schedule of Fees as amended by
    SR-OCC-2025-002 (SEC Release 34-102437, 90 FR 10544), effective 2025-02-14: $0.025 per contract
    with the $55 per-trade flat fee removed (it was $0.02 from 2021-06-01 to 2025-02-13). Schwab and
    Fidelity fold it into their $0.65; IBKR passes it through. Charging it is the conservative
    choice (about 4 % of the commission)."""
    occ_max_per_trade: float = math.inf
    """Cap on the OCC fee per leg (USD). inf since 2025-02-14 (SR-OCC-2025-002 removed the $55
    flat fee that applied above 2,750 contracts); set 55.0 to model earlier dates."""
    sec_fee_rate: float = 20.60e-6
    """SEC Section 31 fee per USD of sale proceeds, sells only (options: on the premium). Fiscal
    year 2026 rate of $20.60 per $1,000,000, effective 2026-04-04 (SEC order Release 34-104909 of
    2026-02-27, 91 FR 10643; the figure is as quoted by a secondary source, as the order's text
    could not be read here: re-check on sec.gov). Earlier rates: $27.80/M from 2024-05-22, $0.00/M
    from 2025-05-14 (FY2025, collections target already met)."""
    finra_taf_per_contract: float = 0.00329
    """FINRA Trading Activity Fee per option contract SOLD (USD), FINRA By-Laws Schedule A
    Section 1, rate for 2026 (effective 2026-01-01). The 2024-2025 rate, $0.00279, is confirmed by
    IBKR's published options fee table; the 2026 figure matches the project config but its FINRA
    notice was not available here to cite: re-check on finra.org."""
    finra_taf_max_per_trade_options: float = math.inf
    """Cap on the options TAF per leg (USD). FINRA's schedule sets no per-trade maximum for options
    (IBKR lists none), hence inf; a number here models a broker that caps it."""
    finra_taf_per_share: float = 0.000195
    """FINRA Trading Activity Fee per share SOLD (USD), FINRA By-Laws Schedule A Section 1, rate
    effective 2026-01-01 (as quoted by a secondary source; re-check on finra.org). It was
    $0.000166 with an $8.30 cap per trade from 2024-01-01 (confirmed by brokers' fee tables)."""
    finra_taf_max_per_trade_shares: float = 9.79
    """Cap on the equity TAF per order (USD) for 2026. UNCONFIRMED: FINRA's 2026 cap could not be
    read here; $8.30 (2024-2025) is the last confirmed value. The cap only binds above ~50,000
    shares sold in one order, so the choice hardly matters for this project."""
    stock_commission_per_share: float = 0.0
    """Broker commission per share of stock, both sides (USD). $0 for online listed stocks and
    ETFs at Schwab, Fidelity and E*TRADE (IBKR Pro Fixed charges $0.005)."""
    stock_spread_bps: float = 1.0
    """Quoted bid-ask spread of the underlying in basis points of price, used when ``fill_stock``
    is not given a bid and ask; floored at one $0.01 tick. 1 bp is typical of liquid US large
    caps (one cent on a $100 stock)."""
    slippage_enabled: bool = True
    """Whether fills move beyond the quote with size; False makes slippage exactly 0."""
    slippage_impact: float = 0.1
    """Square-root impact coefficient: extra half-spreads paid per sqrt(quantity / daily volume).
    With 0.1, buying a day's whole volume costs a further 10 % of the half-spread beyond the ask."""

    def __post_init__(self) -> None:
        """Refuse negative or NaN numbers, naming the field (shown as one line by the CLI)."""
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "slippage_enabled":
                if not isinstance(value, bool | np.bool_):
                    raise ConfigError(f"costs.{f.name} must be true or false, got {value!r}")
                continue
            if isinstance(value, bool) or not isinstance(value, int | float | np.number):
                raise ConfigError(f"costs.{f.name} must be a number, got {value!r}")
            if math.isnan(value) or value < 0:
                raise ConfigError(f"costs.{f.name} must be >= 0, got {value!r}")
        mult = self.contract_multiplier
        if mult <= 0 or math.isinf(mult):
            raise ConfigError(f"costs.contract_multiplier must be a positive number, got {mult!r}")

    # ------------------------------------------------------------------ fills

    def _slippage_per_unit(
        self, qty: np.ndarray, half_spread: np.ndarray, volume: np.ndarray
    ) -> np.ndarray:
        """Per-share price concession beyond the quote (>= 0); see the module docstring."""
        if not self.slippage_enabled or self.slippage_impact == 0.0:
            return np.zeros(np.broadcast(qty, half_spread, volume).shape)
        vol = np.maximum(np.nan_to_num(volume, nan=0.0), 1.0)
        return half_spread * self.slippage_impact * np.sqrt(np.abs(qty) / vol)

    def fill_options(
        self,
        quantity: ArrayLike,
        bid: ArrayLike,
        ask: ArrayLike,
        volume: ArrayLike,
    ) -> OptionFill:
        """Cost option legs: ``quantity`` signed contracts traded against ``bid``/``ask`` quotes.

        ``volume`` is the contract's daily volume in contracts (the liquidity slippage scales
        with). Legs with quantity 0 cost nothing, whatever their quotes. Raises ValueError for a
        traded leg whose quotes are missing, negative or crossed (bid > ask): a fill against such a
        quote would be fiction, and the data layer is expected to have removed it.
        """
        qty, bid_a, ask_a, vol = np.broadcast_arrays(
            np.asarray(quantity, dtype=np.float64),
            np.asarray(bid, dtype=np.float64),
            np.asarray(ask, dtype=np.float64),
            np.asarray(volume, dtype=np.float64),
        )
        _check_quotes(qty, bid_a, ask_a)
        mult = self.contract_multiplier
        n_abs = np.abs(qty)
        sells = qty < 0
        traded = qty != 0
        price, slip_cost, spread_cost = _fill(self, qty, bid_a, ask_a, vol, mult)
        premium = np.where(traded, -qty * price * mult, 0.0)
        commission = np.where(
            traded,
            np.maximum(self.commission_per_contract * n_abs, self.min_commission_per_order),
            0.0,
        )
        occ_fee = np.minimum(self.occ_clearing_fee_per_contract * n_abs, self.occ_max_per_trade)
        proceeds = np.where(sells, premium, 0.0)
        sec_fee = self.sec_fee_rate * proceeds
        finra_taf = np.where(
            sells,
            np.minimum(self.finra_taf_per_contract * n_abs, self.finra_taf_max_per_trade_options),
            0.0,
        )
        total = commission + occ_fee + sec_fee + finra_taf
        return OptionFill(
            quantity=qty,
            fill_price=price,
            premium=premium + 0.0,
            commission=commission,
            occ_fee=occ_fee,
            sec_fee=sec_fee,
            finra_taf=finra_taf,
            slippage=slip_cost,
            spread_cost=spread_cost,
            total_fees=total,
            cash_flow=premium - total + 0.0,
        )

    def fill_stock(
        self,
        shares: ArrayLike,
        price: ArrayLike,
        volume: ArrayLike,
        *,
        bid: ArrayLike | None = None,
        ask: ArrayLike | None = None,
    ) -> StockFill:
        """Cost stock orders of ``shares`` (signed) at reference ``price`` (usually the close).

        Without a quote, the spread is ``max(stock_spread_bps * price, $0.01)`` centred on
        ``price``; pass ``bid`` and ``ask`` (both) to use a real quote instead. ``volume`` is the
        day's share volume, for slippage.
        """
        ref = np.asarray(price, dtype=np.float64)
        if (bid is None) != (ask is None):
            raise ValueError("fill_stock needs both bid and ask, or neither")
        if bid is None:
            half = 0.5 * np.maximum(self.stock_spread_bps * 1e-4 * ref, 0.01)
            bid, ask = ref - half, ref + half
        qty, bid_a, ask_a, vol = np.broadcast_arrays(
            np.asarray(shares, dtype=np.float64),
            np.asarray(bid, dtype=np.float64),
            np.asarray(ask, dtype=np.float64),
            np.asarray(volume, dtype=np.float64),
        )
        bid_a = np.maximum(bid_a, 0.0)
        _check_quotes(qty, bid_a, ask_a)
        n_abs = np.abs(qty)
        sells = qty < 0
        fill, slip_cost, spread_cost = _fill(self, qty, bid_a, ask_a, vol, 1.0)
        notional = np.where(qty != 0, -qty * fill, 0.0)
        commission = self.stock_commission_per_share * n_abs
        proceeds = np.where(sells, notional, 0.0)
        sec_fee = self.sec_fee_rate * proceeds
        finra_taf = np.where(
            sells,
            np.minimum(self.finra_taf_per_share * n_abs, self.finra_taf_max_per_trade_shares),
            0.0,
        )
        total = commission + sec_fee + finra_taf
        return StockFill(
            quantity=qty,
            fill_price=fill,
            notional=notional + 0.0,
            commission=commission,
            sec_fee=sec_fee,
            finra_taf=finra_taf,
            slippage=slip_cost,
            spread_cost=spread_cost,
            total_fees=total,
            cash_flow=notional - total + 0.0,
        )


def _check_quotes(qty: np.ndarray, bid: np.ndarray, ask: np.ndarray) -> None:
    traded = qty != 0
    broken = traded & ~((bid >= 0) & (ask >= bid) & np.isfinite(ask))
    if np.any(broken) or not np.all(np.isfinite(qty)):
        i = int(np.flatnonzero(broken.ravel())[0]) if np.any(broken) else -1
        detail = (
            f"leg {i}: bid={bid.ravel()[i]!r} ask={ask.ravel()[i]!r}"
            if i >= 0
            else "a quantity is not finite"
        )
        raise ValueError(f"cannot fill against a missing, negative or crossed quote ({detail})")


def _fill(
    model: CostModel,
    qty: np.ndarray,
    bid: np.ndarray,
    ask: np.ndarray,
    volume: np.ndarray,
    mult: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fill price per unit, slippage cost and spread cost (USD, >= 0) of signed quantities."""
    traded = qty != 0
    buys = qty > 0
    with np.errstate(invalid="ignore"):
        half = np.where(traded, 0.5 * (ask - bid), 0.0)
        mid = 0.5 * (ask + bid)
    slip = np.where(traded, model._slippage_per_unit(qty, half, volume), 0.0)
    quote = np.where(buys, ask, bid)
    price = np.where(buys, ask + slip, np.maximum(bid - slip, 0.0))
    price = np.where(traded, price, mid)
    size = np.abs(qty) * mult
    slip_cost = np.where(traded, np.abs(price - quote) * size, 0.0)
    spread_cost = np.where(traded, half * size, 0.0)
    return price, slip_cost, spread_cost
