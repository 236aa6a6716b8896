"""How far the option market model's prices are from real end-of-day quotes.

For each real chain in ../shared/data/options whose underlying has daily history available, the
model prices the same contracts (same day, expiry, strike, right) from the past only, and we
compare mids. Reported: median absolute % error of mid, near the money (|K/S - 1| <= 5%) and
about 30 days to expiry (20-45 calendar days), plus the spreads and ATM implied vols.

    python benchmarks/pricing_error.py [--shared ../shared/data] [--markdown]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.market import MarketData, load_spec
from clstm_ppo.options.chain import build_option_market
from clstm_ppo.options.replay import read_chain

NEAR_MONEY = 0.05
DTE_RANGE = (20, 45)


def _cases(shared: Path) -> list[dict]:
    spx = load_spec("bundled:SPX")
    vix_cboe = load_spec(f"csv:{shared}/indices/vix_daily_cboe_1990_2026.csv", required=("close",))
    aapl = load_spec(f"csv:{shared}/equities/dow30_daily_yahoo_2000_2024.csv.gz#AAPL")
    spx_chain = shared / "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz"
    aapl_chain = shared / "options/aapl_chain_ivolatility_2014-08-07.csv"
    return [
        {
            "name": "SPX 2011-01-03..07, ATM from GARCH (bundled default)",
            "market": spx,
            "vix": None,
            "chain": spx_chain,
        },
        {
            "name": "SPX 2011-01-03..07, ATM from CBOE VIX file",
            "market": spx,
            "vix": vix_cboe,
            "chain": spx_chain,
        },
        {
            "name": "AAPL 2014-08-07, ATM from GARCH",
            "market": aapl,
            "vix": None,
            "chain": aapl_chain,
            "dividend_yield": 0.02,
            "rescale": True,
        },
    ]


def _until(market: MarketData, last: pd.Timestamp) -> MarketData:
    # Only history up to the quote day enters the model, as in training.
    return MarketData(
        market.symbol, market.bars[market.bars.index <= last], market.source, market.origin
    )


def _scaled_to(market: MarketData, day: pd.Timestamp, price: float) -> MarketData:
    # Yahoo's AAPL history is adjusted for the 2020 4:1 split; the 2014 chain quotes unadjusted
    # strikes. One constant factor restores the 2014 price level (returns are unchanged).
    factor = price / market.bars.loc[day, "close"]
    bars = market.bars.copy()
    for column in ("open", "high", "low", "close", "adj_close"):
        if column in bars:
            bars[column] *= factor
    return MarketData(market.symbol, bars, market.source, market.origin)


def evaluate_case(case: dict, config: MarketConfig) -> dict:
    real = read_chain(case["chain"])
    last_day = real.date.max()
    cfg = config.model_copy(
        update={"dividend_yield": case.get("dividend_yield", config.dividend_yield)}
    )
    vix = None if case["vix"] is None else _until(case["vix"], last_day)
    underlying = _until(case["market"], last_day)
    if case.get("rescale"):
        underlying = _scaled_to(underlying, last_day, float(real.underlying_price.iloc[-1]))
    market = build_option_market(underlying, vix, cfg)
    real = real[(real.bid > 0) & (real.ask > real.bid)].copy()
    real["dte"] = (real.expiry - real.date).dt.days
    day = np.array([market.day_index(d) for d in real.date])
    quotes = market.quote(
        day, real.strike.to_numpy(), real.expiry.to_numpy(), (real.right == "C").to_numpy()
    )
    real["model_mid"] = quotes.mid
    real["model_spread"] = quotes.ask - quotes.bid
    real["model_iv"] = quotes.iv
    real["mid"] = (real.bid + real.ask) / 2
    real["spread"] = real.ask - real.bid
    moneyness = real.strike / real.underlying_price - 1
    bucket = real[(moneyness.abs() <= NEAR_MONEY) & real.dte.between(*DTE_RANGE)]
    ape = (bucket.model_mid - bucket.mid).abs() / bucket.mid
    otm = bucket[
        ((bucket.right == "C") & (bucket.strike >= bucket.underlying_price))
        | ((bucket.right == "P") & (bucket.strike < bucket.underlying_price))
    ]
    return {
        "case": case["name"],
        "contracts": len(bucket),
        "median_abs_pct_error_mid": 100 * float(ape.median()),
        "mean_abs_pct_error_mid": 100 * float(ape.mean()),
        "median_signed_pct_error_mid": 100
        * float(((bucket.model_mid - bucket.mid) / bucket.mid).median()),
        "median_real_iv": float(otm.iv.median()),
        "median_model_iv": float(otm.model_iv.median()),
        "median_real_spread": float(bucket.spread.median()),
        "median_model_spread": float(bucket.model_spread.median()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--shared", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args()
    if not args.shared.is_dir():
        raise SystemExit(f"real market data folder {args.shared} is absent; nothing to compare")
    rows = [evaluate_case(case, MarketConfig()) for case in _cases(args.shared)]
    table = pd.DataFrame(rows)
    if args.markdown:
        print("| " + " | ".join(table.columns) + " |")
        print("|" + "---|" * len(table.columns))
        for row in table.itertuples(index=False):
            cells = [f"{v:.3f}" if isinstance(v, float) else str(v) for v in row]
            print("| " + " | ".join(cells) + " |")
    else:
        with pd.option_context("display.width", 200, "display.max_columns", 20):
            print(table.to_string(index=False))


if __name__ == "__main__":
    main()
