"""Trading costs: fills at the quote, the spread counted once, each fee on its side, slippage."""

from __future__ import annotations

import ast
import dataclasses
import inspect
import itertools
import math

import numpy as np
import pytest

from clstm_ppo.errors import ConfigError
from clstm_ppo.options import costs as costs_module
from clstm_ppo.options.costs import CostModel

NO_SLIP = CostModel(slippage_enabled=False)


def test_buys_fill_at_ask_and_sells_at_bid() -> None:
    fill = NO_SLIP.fill_options([3, -2], bid=[1.20, 4.00], ask=[1.30, 4.40], volume=[500, 500])
    np.testing.assert_array_equal(fill.fill_price, [1.30, 4.00])
    np.testing.assert_allclose(fill.premium, [-3 * 1.30 * 100, 2 * 4.00 * 100])
    np.testing.assert_allclose(fill.spread_cost, [3 * 0.05 * 100, 2 * 0.20 * 100])
    np.testing.assert_array_equal(fill.slippage, 0.0)
    np.testing.assert_allclose(fill.cash_flow, fill.premium - fill.total_fees)


def test_spread_is_charged_once_through_the_fill_price() -> None:
    narrow = NO_SLIP.fill_options(10, bid=2.00, ask=2.02, volume=1000)
    wide = NO_SLIP.fill_options(10, bid=1.50, ask=2.02, volume=1000)
    # Same ask, same fees: a buy's fees do not depend on the spread at all.
    assert wide.total_fees == narrow.total_fees
    assert wide.premium == narrow.premium
    # A round trip at unchanged quotes loses exactly the spread plus both legs' fees.
    model = CostModel(slippage_enabled=False)
    buy = model.fill_options(10, bid=1.50, ask=2.02, volume=1000)
    sell = model.fill_options(-10, bid=1.50, ask=2.02, volume=1000)
    round_trip = buy.cash_flow + sell.cash_flow
    spread_paid = (2.02 - 1.50) * 10 * 100
    assert round_trip == pytest.approx(-spread_paid - buy.total_fees - sell.total_fees)
    # spread_cost is attribution (half each leg), not a fee.
    assert buy.spread_cost + sell.spread_cost == pytest.approx(spread_paid)
    assert float(buy.total_fees) == pytest.approx(
        float(buy.commission + buy.occ_fee + buy.sec_fee + buy.finra_taf)
    )


def test_sells_only_pay_sec_fee_and_finra_taf() -> None:
    model = CostModel(
        slippage_enabled=False,
        commission_per_contract=0.65,
        occ_clearing_fee_per_contract=0.025,
        sec_fee_rate=27.80e-6,
        finra_taf_per_contract=0.00279,
    )
    fill = model.fill_options([5, -5], bid=[3.00, 3.00], ask=[3.10, 3.10], volume=[1e4, 1e4])
    buy, sell = 0, 1
    # Both sides: commission and OCC clearing fee.
    np.testing.assert_allclose(fill.commission, [5 * 0.65, 5 * 0.65])
    np.testing.assert_allclose(fill.occ_fee, [5 * 0.025, 5 * 0.025])
    # Sells only: SEC fee on the sale proceeds (the bid), FINRA TAF per contract.
    assert fill.sec_fee[buy] == 0.0 and fill.finra_taf[buy] == 0.0
    assert fill.sec_fee[sell] == pytest.approx(27.80e-6 * 5 * 3.00 * 100)
    assert fill.finra_taf[sell] == pytest.approx(5 * 0.00279)
    np.testing.assert_allclose(
        fill.total_fees, fill.commission + fill.occ_fee + fill.sec_fee + fill.finra_taf
    )


def test_stock_fees_by_side_and_taf_cap() -> None:
    model = CostModel(
        slippage_enabled=False,
        stock_commission_per_share=0.005,
        sec_fee_rate=20.60e-6,
        finra_taf_per_share=0.000195,
        finra_taf_max_per_trade_shares=9.79,
    )
    fill = model.fill_stock([100, -100, -200_000], price=50.0, volume=1e7, bid=49.99, ask=50.01)
    np.testing.assert_allclose(fill.fill_price, [50.01, 49.99, 49.99])
    np.testing.assert_allclose(fill.commission, [0.5, 0.5, 1000.0])
    assert fill.sec_fee[0] == 0.0 and fill.finra_taf[0] == 0.0
    assert fill.sec_fee[1] == pytest.approx(20.60e-6 * 100 * 49.99)
    assert fill.finra_taf[1] == pytest.approx(100 * 0.000195)
    assert fill.finra_taf[2] == pytest.approx(9.79)  # 200,000 * 0.000195 = 39 is capped
    np.testing.assert_allclose(fill.notional, [-5001.0, 4999.0, 200_000 * 49.99])


def test_stock_default_spread_is_a_tick_floored_bps_quote() -> None:
    model = CostModel(slippage_enabled=False, stock_spread_bps=1.0)
    fill = model.fill_stock([10, 10], price=[500.0, 20.0], volume=1e6)
    # 1 bp of $500 is 5 cents; 1 bp of $20 is below a tick, so the spread is one cent.
    np.testing.assert_allclose(fill.fill_price, [500.025, 20.005])
    with pytest.raises(ValueError, match="both bid and ask"):
        model.fill_stock(10, price=20.0, volume=1e6, bid=19.99)


def test_option_taf_cap_occ_cap_and_minimum_commission() -> None:
    model = CostModel(
        slippage_enabled=False,
        finra_taf_per_contract=0.00329,
        finra_taf_max_per_trade_options=1.0,
        occ_clearing_fee_per_contract=0.02,
        occ_max_per_trade=55.0,
        min_commission_per_order=1.0,
    )
    fill = model.fill_options([-1, -1000, 1, 4000], bid=1.0, ask=1.1, volume=1e5)
    np.testing.assert_allclose(fill.finra_taf, [0.00329, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(fill.occ_fee, [0.02, 20.0, 0.02, 55.0])
    np.testing.assert_allclose(fill.commission, [1.0, 650.0, 1.0, 4000 * 0.65])
    # Defaults: no options TAF cap and no OCC cap (FINRA sets none; OCC dropped it in 2025).
    big = CostModel(slippage_enabled=False).fill_options(-10_000, bid=1.0, ask=1.1, volume=1e5)
    assert big.finra_taf == pytest.approx(10_000 * 0.00329)
    assert big.occ_fee == pytest.approx(10_000 * 0.025)


def test_slippage_grows_with_size_relative_to_volume() -> None:
    model = CostModel(slippage_enabled=True, slippage_impact=0.1)
    bid, ask = 2.00, 2.20
    qty = np.array([1, 10, 100, 1000])
    buys = model.fill_options(qty, bid, ask, volume=100)
    per_share = buys.fill_price - ask
    assert np.all(np.diff(per_share) > 0) and per_share[0] > 0
    np.testing.assert_allclose(per_share, 0.10 * 0.1 * np.sqrt(qty / 100))  # documented formula
    np.testing.assert_allclose(buys.slippage, per_share * qty * 100)
    # More volume, less slippage; sells receive less than the bid by the same amount.
    thin = model.fill_options(-50, bid, ask, volume=10)
    deep = model.fill_options(-50, bid, ask, volume=10_000)
    assert bid - thin.fill_price > bid - deep.fill_price > 0
    assert thin.slippage > deep.slippage > 0
    # Slippage is inside the premium, not a fee.
    no_slip = CostModel(slippage_enabled=False).fill_options(-50, bid, ask, volume=10)
    assert thin.total_fees == pytest.approx(no_slip.total_fees, rel=1e-3)  # only the SEC fee moves
    assert no_slip.premium - thin.premium == pytest.approx(thin.slippage)


def test_slippage_is_zero_when_disabled_and_never_pushes_a_sale_below_zero() -> None:
    qty = np.array([1, -7, 500])
    for model in (CostModel(slippage_enabled=False), CostModel(slippage_impact=0.0)):
        fill = model.fill_options(qty, bid=1.0, ask=1.2, volume=1)
        np.testing.assert_array_equal(fill.slippage, 0.0)
        np.testing.assert_array_equal(fill.fill_price, [1.2, 1.0, 1.2])
    # Zero-bid option: a sale fills at 0 at worst. Unknown or zero volume counts as 1.
    model = CostModel(slippage_impact=1.0)
    fill = model.fill_options(-100, bid=0.0, ask=0.05, volume=0)
    assert fill.fill_price == 0.0 and fill.premium == 0.0
    unknown = model.fill_options(4, bid=1.0, ask=1.2, volume=np.nan)
    one = model.fill_options(4, bid=1.0, ask=1.2, volume=1)
    assert unknown.fill_price == one.fill_price > 1.2


def test_untraded_legs_cost_nothing_even_without_quotes() -> None:
    fill = CostModel().fill_options([0, 2], bid=[np.nan, 1.0], ask=[np.nan, 1.1], volume=[0, 10])
    for field in ("premium", "commission", "occ_fee", "sec_fee", "finra_taf", "total_fees"):
        assert getattr(fill, field)[0] == 0.0
    assert fill.cash_flow[0] == 0.0 and fill.cash_flow[1] < 0


def test_broken_quotes_are_refused_for_traded_legs() -> None:
    model = CostModel()
    for bid, ask in ((1.2, 1.0), (np.nan, 1.0), (-0.1, 1.0), (1.0, np.nan)):
        with pytest.raises(ValueError, match="quote"):
            model.fill_options([0, 1], bid=[1.0, bid], ask=[1.1, ask], volume=10)


NUMERIC_FIELDS = [f.name for f in dataclasses.fields(CostModel) if f.name != "slippage_enabled"]


@pytest.mark.parametrize("name", NUMERIC_FIELDS)
@pytest.mark.parametrize("value", [-0.01, math.nan])
def test_negative_or_nan_fee_parameters_raise_config_error(name: str, value: float) -> None:
    with pytest.raises(ConfigError) as info:
        CostModel(**{name: value})
    message = str(info.value)
    assert f"costs.{name}" in message and "\n" not in message


def test_other_invalid_parameters() -> None:
    with pytest.raises(ConfigError, match=r"costs\.contract_multiplier"):
        CostModel(contract_multiplier=0.0)
    with pytest.raises(ConfigError, match=r"costs\.slippage_enabled"):
        CostModel(slippage_enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"costs\.commission_per_contract"):
        CostModel(commission_per_contract="0.65")  # type: ignore[arg-type]
    # Zero and infinite caps are legal: zero fees, no cap.
    CostModel(sec_fee_rate=0.0, finra_taf_max_per_trade_options=math.inf)


def test_model_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        CostModel().commission_per_contract = 0.0  # type: ignore[misc]


def test_defaults_follow_the_documented_schedule() -> None:
    model = CostModel()
    assert model.commission_per_contract == 0.65  # Schwab / Fidelity / E*TRADE online options
    assert model.stock_commission_per_share == 0.0
    assert model.occ_clearing_fee_per_contract == 0.025  # SR-OCC-2025-002, from 2025-02-14
    assert model.sec_fee_rate == pytest.approx(20.60e-6)  # FY2026 Section 31 rate
    assert model.finra_taf_per_contract == 0.00329
    assert model.finra_taf_per_share == 0.000195
    assert model.contract_multiplier == 100.0


def test_every_cost_field_has_a_docstring() -> None:
    """Each field of CostModel is followed by a string literal that documents its source."""
    tree = ast.parse(inspect.getsource(costs_module))
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "CostModel")
    body = cls.body
    documented = {
        stmt.target.id
        for stmt, nxt in itertools.pairwise(body)
        if isinstance(stmt, ast.AnnAssign)
        and isinstance(stmt.target, ast.Name)
        and isinstance(nxt, ast.Expr)
        and isinstance(nxt.value, ast.Constant)
        and isinstance(nxt.value.value, str)
    }
    assert documented == {f.name for f in dataclasses.fields(CostModel)}
