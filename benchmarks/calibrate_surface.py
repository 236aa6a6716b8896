"""Calibrate the SSVI surface's few constants on the real chains, and report the error by bucket.

Chains (../shared/data/options) and the CBOE/FRED index files beside them (../shared/data/indices,
read through the package's own loader so the fit sees exactly what the model sees):

* SPX iVolatility 2011-01-03..07: bid/ask mids (SKEW 121-123, VIX 17);
* Lean SPX universe 2015-12-22/23: last trades of contracts that traded that day (no bid/ask;
  SPX close from the index file; SKEW 134, VIX 16);
* SPY 2024-07 (13 days): DoltHub mids, dividend yield 1.3% (SKEW 129-157, VIX 12-18).

Fitted: ``vix_atm_ratio, ssvi_rho, ssvi_rho_per_skew, ssvi_eta, ssvi_gamma`` (``--fixed-ratio``
keeps ``vix_atm_ratio`` at 1: the smile alone converts the variance-swap indices to ATM). Loss:
mean absolute implied-vol error of out-of-the-money options with 7-120 days and
``|K/S - 1| <= 10%``, each chain weighted equally (so SPY's 13 days do not outvote SPX). Market
IVs are inverted from the real prices with the model's own rate and dividend yield, so a forward
mismatch does not masquerade as smile error.

    python benchmarks/calibrate_surface.py [--shared ../shared/data] [--fit] [--leave-one-out]

Without ``--fit`` it reports the config's current defaults against the seed's quadratic model.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.optimize import minimize

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.indices import market_inputs
from clstm_ppo.data.market import MarketData
from clstm_ppo.options.bsm import implied_vol
from clstm_ppo.options.chain import build_option_market

PARAMS = ("vix_atm_ratio", "ssvi_rho", "ssvi_rho_per_skew", "ssvi_eta", "ssvi_gamma")
BOUNDS = {
    "vix_atm_ratio": (0.7, 1.3),
    "ssvi_rho": (-0.99, 0.0),
    "ssvi_rho_per_skew": (-0.5, 0.5),
    "ssvi_eta": (0.05, 5.0),
    "ssvi_gamma": (0.05, 0.95),
}
# The seed's model and constants, before this calibration (the "old" column of the report).
QUADRATIC = MarketConfig(
    smile_model="quadratic", vix_atm_ratio=0.9, skew=-0.1, smile=0.06, risk_free_rate=0.02
)
MONEYNESS = [(-0.05, -0.03), (-0.03, -0.01), (-0.01, 0.01), (0.01, 0.03), (0.03, 0.05)]
DTE = [(0, 9), (10, 45), (46, 120)]
FIT_MONEYNESS = 0.10
FIT_DTE = (7, 120)


@dataclass
class Chain:
    name: str
    quotes: pd.DataFrame  # date, expiry, strike, call, price, spot, dte
    dividend_yield: float


def _spx_2011(shared: Path) -> Chain:
    raw = pd.read_csv(shared / "options/spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz")
    raw = raw[(raw.bid > 0) & (raw.ask > raw.bid)]
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(raw.date, format="%m/%d/%Y"),
            "expiry": pd.to_datetime(raw.option_expiration, format="%m/%d/%Y"),
            "strike": raw.strike,
            "call": raw["call/put"] == "C",
            "price": (raw.bid + raw.ask) / 2,
            "spot": raw.stock_price_close,
        }
    )
    return Chain("SPX 2011-01 (iVolatility mids)", frame, 0.02)


def _spx_close(shared: Path) -> pd.Series:
    frame = pd.read_csv(shared / "indices/spx_index_daily_1927_2026.csv.gz")
    index = pd.to_datetime(frame.DATE, format="%m/%d/%Y")
    return pd.Series(frame.CLOSE.to_numpy(), index=index)


def _spx_2015(shared: Path) -> Chain:
    raw = pd.read_csv(shared / "options/lean_option_universes_daily.csv.gz", low_memory=False)
    raw = raw[(raw.underlying == "SPX") & (raw.date < "2016-01-01") & (raw.volume > 0)]
    dates = pd.to_datetime(raw.date)
    frame = pd.DataFrame(
        {
            "date": dates,
            "expiry": pd.to_datetime(raw.expiry),
            "strike": raw.strike,
            "call": raw.right == "C",
            "price": raw.close,
            "spot": _spx_close(shared).reindex(dates).to_numpy(),
        }
    )
    return Chain("SPX 2015-12 (Lean, traded closes)", frame, 0.021)


def _spy_2024(shared: Path) -> Chain:
    raw = pd.read_csv(shared / "options/spy_option_mid_dolthub_2024-07.csv")
    frame = pd.DataFrame(
        {
            "date": pd.to_datetime(raw.date),
            "expiry": pd.to_datetime(raw.expiration),
            "strike": raw.strike,
            "call": raw.call_put == "Call",
            "price": raw.opt_close_price,
            "spot": raw.udl_close_price,
        }
    )
    return Chain("SPY 2024-07 (DoltHub mids)", frame, 0.013)


def load_chains(shared: Path) -> list[Chain]:
    chains = [_spx_2011(shared), _spx_2015(shared), _spy_2024(shared)]
    for chain in chains:
        q = chain.quotes
        q["dte"] = (q.expiry - q.date).dt.days
        q["moneyness"] = q.strike / q.spot - 1
        q["otm"] = np.where(q.call, q.strike >= q.spot, q.strike < q.spot)
        chain.quotes = q[(q.dte > 0) & (q.price > 0)].reset_index(drop=True)
    return chains


class Pricer:
    """One chain's days as an option market (index inputs from the shared folder)."""

    def __init__(self, chain: Chain, shared: Path) -> None:
        q = chain.quotes
        days = pd.DatetimeIndex(sorted(q.date.unique()))
        spot = q.groupby("date").spot.first().reindex(days)
        bars = pd.DataFrame({"close": spot.to_numpy()}, index=days.rename("date"))
        self.underlying = MarketData(chain.name, bars, "csv", "benchmark")
        self.inputs = market_inputs(days, spec=str(shared / "indices"))
        vix = pd.DataFrame({"close": self.inputs.vix}, index=days.rename("date"))
        self.vix = MarketData("VIX", vix, "csv", "benchmark")
        self.chain = chain
        self.day = days.get_indexer(q.date)

    def price(self, config: MarketConfig) -> pd.DataFrame:
        q = self.chain.quotes
        cfg = config.model_copy(update={"dividend_yield": self.chain.dividend_yield})
        ssvi = cfg.smile_model == "ssvi"
        market = build_option_market(self.underlying, self.vix, cfg, self.inputs if ssvi else None)
        quotes = market.quote(self.day, q.strike.to_numpy(), q.expiry.to_numpy(), q.call)
        rate = market.levels.rate[self.day]
        real_iv = implied_vol(
            q.price.to_numpy(),
            q.spot.to_numpy(),
            q.strike.to_numpy(),
            q.dte.to_numpy() / 365.0,
            rate,
            cfg.dividend_yield,
            q.call.to_numpy(),
        )
        return q.assign(model=quotes.mid, model_iv=quotes.iv, real_iv=real_iv)


def _fit_rows(frame: pd.DataFrame) -> pd.DataFrame:
    keep = (
        frame.otm
        & (frame.moneyness.abs() <= FIT_MONEYNESS)
        & frame.dte.between(*FIT_DTE)
        & np.isfinite(frame.real_iv)
    )
    return frame[keep]


def loss(pricers: list[Pricer], config: MarketConfig) -> float:
    errors = []
    for pricer in pricers:
        rows = _fit_rows(pricer.price(config))
        errors.append(float(np.mean(np.abs(rows.model_iv - rows.real_iv))))
    return float(np.mean(errors))


def fit(pricers: list[Pricer], start: MarketConfig, free: tuple[str, ...]) -> MarketConfig:
    def config_of(x: np.ndarray) -> MarketConfig | None:
        values = dict(zip(free, x, strict=True))
        for name, value in values.items():
            low, high = BOUNDS[name]
            if not low < value < high:
                return None
        return start.model_copy(update={k: float(v) for k, v in values.items()})

    def objective(x: np.ndarray) -> float:
        config = config_of(x)
        return 1.0 if config is None else loss(pricers, config)

    x0 = np.array([getattr(start, name) for name in free])
    result = minimize(
        objective, x0, method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 600}
    )
    best = config_of(result.x)
    assert best is not None
    return best


def bucket_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for low, high in MONEYNESS:
        for dte_low, dte_high in DTE:
            part = frame[
                frame.otm
                & frame.moneyness.between(low, high, inclusive="left")
                & frame.dte.between(dte_low, dte_high)
            ]
            error = (part.model - part.price) / part.price
            rows.append(
                {
                    "moneyness": f"{low:+.2f}..{high:+.2f}",
                    "dte": f"{dte_low}-{dte_high}",
                    "n": len(part),
                    "abs_pct": 100 * float(error.abs().median()) if len(part) else np.nan,
                    "signed_pct": 100 * float(error.median()) if len(part) else np.nan,
                    "iv_err_pts": 100 * float((part.model_iv - part.real_iv).median())
                    if len(part)
                    else np.nan,
                }
            )
    return pd.DataFrame(rows)


def markdown(table: pd.DataFrame) -> str:
    """A Markdown table (pandas' own needs the optional ``tabulate``)."""

    def cell(value: object) -> str:
        return f"{value:.1f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(False)]
    return "\n".join(lines)


def report(pricers: list[Pricer], new: MarketConfig) -> None:
    for pricer in pricers:
        old_frame, new_frame = pricer.price(QUADRATIC), pricer.price(new)
        old, fresh = bucket_table(old_frame), bucket_table(new_frame)
        table = old[["moneyness", "dte", "n"]].assign(
            old_abs=old.abs_pct,
            new_abs=fresh.abs_pct,
            old_signed=old.signed_pct,
            new_signed=fresh.signed_pct,
            old_iv=old.iv_err_pts,
            new_iv=fresh.iv_err_pts,
        )
        print(f"\n## {pricer.chain.name}: OTM mids, % error of mid and IV error (vol points)")
        print(markdown(table))
        for label, frame in (("quadratic", old_frame), ("ssvi", new_frame)):
            rows = _fit_rows(frame)
            near = frame[frame.otm & (frame.moneyness.abs() <= 0.05) & frame.dte.between(20, 45)]
            near_error = (near.model - near.price) / near.price
            mae = 100 * np.mean(np.abs(rows.model_iv - rows.real_iv))
            print(
                f"{label}: fit-window MAE of IV {mae:.2f} vol pts (n={len(rows)});"
                f" near the money (OTM, |K/S-1| <= 5%, 20-45 days, n={len(near)}) median abs"
                f" {100 * near_error.abs().median():.1f}%, signed {100 * near_error.median():+.1f}%"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    default_shared = Path(__file__).resolve().parents[2] / "shared/data"
    parser.add_argument("--shared", type=Path, default=default_shared)
    parser.add_argument("--fit", action="store_true", help="fit the constants (else: defaults)")
    parser.add_argument("--fixed-ratio", action="store_true", help="keep vix_atm_ratio at 1")
    parser.add_argument("--leave-one-out", action="store_true", help="fit on two, test on one")
    args = parser.parse_args()
    if not args.shared.is_dir():
        raise SystemExit(f"real market data folder {args.shared} is absent; nothing to calibrate")
    pricers = [Pricer(chain, args.shared) for chain in load_chains(args.shared)]
    start = MarketConfig(smile_model="ssvi")
    free = PARAMS[1:] if args.fixed_ratio else PARAMS
    if args.fixed_ratio:
        start = start.model_copy(update={"vix_atm_ratio": 1.0})
    config = fit(pricers, start, free) if args.fit else start
    print("constants:", {name: round(getattr(config, name), 4) for name in PARAMS})
    print(f"loss (mean of per-chain IV MAE): {100 * loss(pricers, config):.3f} vol pts")
    report(pricers, config)
    if args.leave_one_out:
        print("\n## leave one chain out: fitted on the other two, IV MAE on the held-out one")
        for held in range(len(pricers)):
            rest = [p for i, p in enumerate(pricers) if i != held]
            fitted = fit(rest, config, free)
            constants = {name: round(getattr(fitted, name), 3) for name in free}
            held_out = [pricers[held]]
            print(
                f"- {pricers[held].chain.name}: out-of-sample {100 * loss(held_out, fitted):.2f}"
                f" vol pts (in-sample fit {100 * loss(held_out, config):.2f}); {constants}"
            )


if __name__ == "__main__":
    main()
