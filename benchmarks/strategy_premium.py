"""Strategy-level check of the option market model: monthly put-write and buy-write, 2007-2018.

Walks CBOE-index-style strategies through the model's SPX option market (bundled S&P 500 closes,
bundled VIX family, SKEW and DGS3MO T-bill inputs):

* **put-write** (CBOE PUT style): at each third-Friday roll sell the one-month put with the
  strike nearest to, at or just below, the index; the collateral is the strike, held in T-bills
  at the roll day's rate together with the premium; hold to the next third Friday and settle at
  that day's close.
* **buy-write** (CBOE BXM style): hold the index (price plus a dividend yield at the model's
  ``dividend_yield``) and at each roll sell the one-month call with the strike at or just above
  the index; return on the cost ``S0 - C0``, as BXM does.

Approximations (stated in the report): the real indices settle at the expiry morning's
Special Opening Quotation and sell the new option around 11:00 the same day; here both happen at
the expiry day's close. Strikes are on the real SPX 5-point grid near the money (the model's own
listing grid is coarser above 1667). T-bill growth over a roll is ``exp(r * days / 365)`` with
``r`` the roll day's continuously compounded DGS3MO rate from the market's surface inputs.

Also measures the same ATM premium on the real chains under ``--data-dir`` (SPX 2011-01 from
iVolatility, SPX 2015-12-22/23 from Lean, SPY 2024-07 from DoltHub) beside the model on the same
days and contracts.

    python benchmarks/strategy_premium.py [--data-dir ../shared/data] [--markdown FILE]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

from clstm_ppo.config import MarketConfig
from clstm_ppo.data.calendar import monthly_expiry
from clstm_ppo.data.indices import market_inputs
from clstm_ppo.data.market import MarketData, load_spec
from clstm_ppo.options.chain import OptionMarket, build_option_market

YEARS = (2007, 2018)
SPX_STRIKE_STEP = 5.0  # real SPX monthly strikes near the money, 2007-2018
PRICES = ("mid", "bid")
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"


def build_market(config: MarketConfig | None = None) -> OptionMarket:
    """The model's SPX option market from bundled data and the bundled index inputs."""
    spx = load_spec("bundled:SPX")
    vix = load_spec("bundled:VIX", required=("close",))
    inputs = market_inputs(spx.bars.index, "bundled")
    return build_option_market(spx, vix, config or MarketConfig(), inputs)


def roll_schedule(first_year: int, last_year: int) -> pd.DataFrame:
    """One row per monthly roll sold in ``first_year..last_year``: sale day (a third Friday, or
    the session before it) and the next month's expiry."""
    months = pd.period_range(f"{first_year}-01", f"{last_year}-12", freq="M")
    sale = [monthly_expiry(p.year, p.month) for p in months]
    nxt = [monthly_expiry((p + 1).year, (p + 1).month) for p in months]
    return pd.DataFrame({"sale": pd.DatetimeIndex(sale), "expiry": pd.DatetimeIndex(nxt)})


def _session_index(market: OptionMarket, dates: pd.DatetimeIndex) -> np.ndarray:
    """Index of each date in the market, or of the last market day before it."""
    pos = market.dates.searchsorted(dates, side="right") - 1
    if np.any(pos < 0):
        raise ValueError("roll date before the market's first day")
    return pos


def _atm_strike(spot: np.ndarray, step: float, below: bool) -> np.ndarray:
    grid = spot / step
    return (np.floor(grid + 1e-9) if below else np.ceil(grid - 1e-9)) * step


def _rolls(
    market: OptionMarket,
    first_year: int,
    last_year: int,
    is_call: bool,
    price: str,
    strike_step: float,
    rate: np.ndarray | None,
) -> pd.DataFrame:
    if price not in PRICES:
        raise ValueError(f"price must be one of {PRICES}")
    sched = roll_schedule(first_year, last_year)
    d0 = _session_index(market, pd.DatetimeIndex(sched["sale"]))
    d1 = _session_index(market, pd.DatetimeIndex(sched["expiry"]))
    if np.any(d1 <= d0):
        raise ValueError(f"rolls beyond the market's last day {market.dates[-1].date()}")
    s0, s1 = market.spot[d0], market.spot[d1]
    strike = _atm_strike(s0, strike_step, below=not is_call)
    expiry = sched["expiry"].to_numpy(dtype="datetime64[ns]")
    q = market.quote(d0, strike, expiry, np.full(d0.size, is_call))
    premium = q.mid if price == "mid" else q.bid
    # At the expiry close the model quotes intrinsic value; a roll still open on the market's
    # last day (December 2018's, expiring January 2019) is closed at that day's mid instead.
    payoff = market.quote(d1, strike, expiry, np.full(d0.size, is_call)).mid
    days = (market.dates[d1] - market.dates[d0]).days.to_numpy(dtype=float)
    r = (market.levels.rate if rate is None else np.asarray(rate, float))[d0]
    tbill = np.exp(r * days / 365.0) - 1.0
    return pd.DataFrame(
        {
            "year": pd.DatetimeIndex(sched["sale"]).year,
            "sale": market.dates[d0],
            "expiry": market.dates[d1],
            "days": days,
            "spot": s0,
            "settle": s1,
            "strike": strike,
            "iv": q.iv,
            "premium": premium,
            "payoff": payoff,
            "rate": r,
            "tbill": tbill,
            "settled": market.dates[d1].to_numpy() == expiry,
            "expiry_listed": sched["expiry"].to_numpy(),
            "d0": d0,
            "d1": d1,
        }
    )


def put_write(
    market: OptionMarket,
    first_year: int = YEARS[0],
    last_year: int = YEARS[1],
    price: str = "mid",
    strike_step: float = SPX_STRIKE_STEP,
    rate: np.ndarray | None = None,
) -> pd.DataFrame:
    """CBOE-PUT-style rolls. ``collateral`` = strike (in T-bills with the premium);
    ``premium_yield`` = premium / collateral; ``net_yield`` = (premium - payoff) / collateral;
    ``excess`` = total return minus the T-bill return = (premium * (1 + tbill) - payoff) /
    collateral; ``total`` = ((K + P)(1 + tbill) - payoff) / K - 1. ``rate`` overrides the
    market's daily rate series (for tests)."""
    f = _rolls(market, first_year, last_year, False, price, strike_step, rate)
    f["collateral"] = f["strike"]
    f["premium_yield"] = f["premium"] / f["collateral"]
    f["net_yield"] = (f["premium"] - f["payoff"]) / f["collateral"]
    f["excess"] = (f["premium"] * (1.0 + f["tbill"]) - f["payoff"]) / f["collateral"]
    f["total"] = f["tbill"] + f["excess"]
    return f


def buy_write(
    market: OptionMarket,
    first_year: int = YEARS[0],
    last_year: int = YEARS[1],
    price: str = "mid",
    strike_step: float = SPX_STRIKE_STEP,
    rate: np.ndarray | None = None,
) -> pd.DataFrame:
    """BXM-style rolls: long index with dividends at the model's yield, short the ATM call
    (at or just above spot). ``collateral`` = the index level; ``premium_yield`` = C0 / S0;
    ``net_yield`` = (C0 - payoff) / S0 (the call overlay); ``total`` = (S1 e^(q tau) - payoff) /
    (S0 - C0) - 1; ``excess`` = total minus the T-bill return."""
    f = _rolls(market, first_year, last_year, True, price, strike_step, rate)
    q = market.config.dividend_yield
    dividends = f["settle"] * (np.exp(q * f["days"] / 365.0) - 1.0)  # reinvested continuously
    f["collateral"] = f["spot"]
    f["premium_yield"] = f["premium"] / f["collateral"]
    f["net_yield"] = (f["premium"] - f["payoff"]) / f["collateral"]
    f["total"] = (f["settle"] + dividends - f["payoff"]) / (f["spot"] - f["premium"]) - 1.0
    f["index_total"] = (f["settle"] + dividends) / f["spot"] - 1.0
    f["excess"] = f["total"] - f["tbill"]
    return f


def daily_values(
    market: OptionMarket,
    strategy: str,
    first_year: int = YEARS[0],
    last_year: int = YEARS[1],
    price: str = "mid",
    strike_step: float = SPX_STRIKE_STEP,
) -> pd.Series:
    """Account value (start 1.0) of the strategy marked at the model's mid every trading day
    from the roll of December ``first_year - 1`` to the market's last day in ``last_year``."""
    walk = {"put-write": put_write, "buy-write": buy_write}[strategy]
    rolls = walk(market, first_year - 1, last_year, price, strike_step)
    rolls = rolls[rolls["sale"] >= pd.Timestamp(first_year - 1, 12, 1)].reset_index(drop=True)
    lengths = (rolls["d1"] - rolls["d0"]).to_numpy()
    roll_of = np.repeat(np.arange(len(rolls)), lengths)
    day = np.concatenate(
        [np.arange(a + 1, b + 1) for a, b in zip(rolls["d0"], rolls["d1"], strict=True)]
    )
    r = rolls.iloc[roll_of]
    is_call = strategy == "buy-write"
    mid = market.quote(
        day,
        r["strike"].to_numpy(),
        r["expiry_listed"].to_numpy(dtype="datetime64[ns]"),
        np.full(day.size, is_call),
    ).mid
    held = (market.dates[day] - r["sale"].to_numpy()).days.to_numpy(dtype=float)
    if is_call:
        grown = market.spot[day] * np.exp(market.config.dividend_yield * held / 365.0)
        rel = (grown - mid) / (r["spot"] - r["premium"]).to_numpy()
    else:
        k, p = r["strike"].to_numpy(), r["premium"].to_numpy()
        rel = (1.0 + p / k) * np.exp(r["rate"].to_numpy() * held / 365.0) - mid / k
    ends = np.cumsum(lengths) - 1
    start = np.concatenate([[1.0], np.cumprod(rel[ends])[:-1]])
    values = start[roll_of] * rel
    first = market.dates[rolls["d0"].iloc[0]]
    return (
        pd.Series(np.concatenate([[1.0], values]), index=market.dates[[rolls["d0"].iloc[0], *day]])
        .rename_axis(None)
        .loc[first:]
    )


def calendar_year_returns(values: pd.Series) -> pd.Series:
    """Year-end to year-end returns (%) of a daily value series."""
    year_end = values.groupby(values.index.year).last()
    return 100.0 * (year_end / year_end.shift(1) - 1.0)


def by_year(rolls: pd.DataFrame, values: pd.Series | None = None) -> pd.DataFrame:
    """Per sale year: rolls, mean monthly premium yield, net yield, excess over T-bills (all in
    %), and the compounded (annualised) total return of the year's 12 rolls in %; plus an
    ``avg`` row over all years (monthly means, and the geometric annualised return over all
    rolls). With ``values`` (:func:`daily_values`) also the calendar-year (Dec 31 to Dec 31)
    return, as the published indices report it, and its 2007-2018 annualised mean."""

    def row(g: pd.DataFrame) -> pd.Series:
        growth = float(np.prod(1.0 + g["total"]))
        return pd.Series(
            {
                "rolls": len(g),
                "premium_yield_pct": 100 * g["premium_yield"].mean(),
                "net_yield_pct": 100 * g["net_yield"].mean(),
                "excess_pct": 100 * g["excess"].mean(),
                "tbill_pct": 100 * g["tbill"].mean(),
                "annual_return_pct": 100 * (growth ** (12.0 / len(g)) - 1.0),
                "iv_pct": 100 * g["iv"].mean(),
            }
        )

    table = rolls.groupby("year").apply(row, include_groups=False)
    table.loc["avg"] = row(rolls)
    table["rolls"] = table["rolls"].astype(int)
    if values is not None:
        cal = calendar_year_returns(values)
        overall = _annualised(values, int(table.index[0]), int(table.index[-2]))
        table["calendar_year_return_pct"] = [*cal.reindex(table.index[:-1]).tolist(), overall]
    return table


def _annualised(values: pd.Series, first_year: int, last_year: int) -> float:
    year_end = values.groupby(values.index.year).last()
    years = last_year - first_year + 1
    return 100.0 * ((year_end[last_year] / year_end[first_year - 1]) ** (1.0 / years) - 1.0)


# ----------------------------------------------------------------------------- real chains


ATM_BAND = 0.01  # a strike further than 1% from spot is not "at the money"


def _atm_pair(chain: pd.DataFrame, spot: float) -> dict[str, float]:
    """Put strike at or just below spot, call strike at or just above (within ATM_BAND of
    spot); their mids."""
    out: dict[str, float] = {}
    for right, below in (("P", True), ("C", False)):
        side = chain[(chain["right"] == right) & (chain["mid"] > 0)]
        ks = (
            side["strike"][side["strike"] <= spot]
            if below
            else side["strike"][side["strike"] >= spot]
        )
        if ks.empty:
            continue
        k = float(ks.max() if below else ks.min())
        if abs(k / spot - 1.0) > ATM_BAND:
            continue
        out[f"{right}_strike"] = k
        out[f"{right}_mid"] = float(side.loc[side["strike"] == k, "mid"].iloc[0])
    return out


def _model_premium(
    market: OptionMarket,
    day: pd.Timestamp,
    strike_over_spot: float,
    expiry: pd.Timestamp,
    call: bool,
) -> float:
    """Model mid as % of strike for the contract at the same moneyness K/S on ``day``."""
    d = market.day_index(day)
    k = strike_over_spot * market.spot[d]
    q = market.quote(np.array([d]), np.array([k]), np.array([np.datetime64(expiry, "ns")]), [call])
    return 100.0 * float(q.mid[0]) / k


def _compare_rows(
    name: str,
    market: OptionMarket,
    day: pd.Timestamp,
    expiry: pd.Timestamp,
    model_expiry: pd.Timestamp,
    spot: float,
    chain: pd.DataFrame,
    quote_kind: str,
) -> list[dict]:
    pair = _atm_pair(chain, spot)
    rows = []
    for right in ("P", "C"):
        if f"{right}_strike" not in pair:
            continue
        k, mid = pair[f"{right}_strike"], pair[f"{right}_mid"]
        real = 100.0 * mid / k
        model = _model_premium(market, day, k / spot, model_expiry, right == "C")
        days = (expiry - day).days
        rows.append(
            {
                "chain": name,
                "day": day.date(),
                "expiry": expiry.date(),
                "days": days,
                "right": right,
                "K/S": round(k / spot, 4),
                "real_pct": real,
                "model_pct": model,
                "model_minus_real_bp": 100.0 * (model - real),
                "real_30d_pct": real * np.sqrt(30.0 / days),
                "quote": quote_kind,
            }
        )
    return rows


def _nearest_month(
    expiries: pd.Series, day: pd.Timestamp, lo: int = 20, hi: int = 50
) -> pd.Timestamp | None:
    days = (pd.DatetimeIndex(expiries.unique()) - day).days
    ok = [
        (abs(d - 30), e)
        for d, e in zip(days, pd.DatetimeIndex(expiries.unique()), strict=True)
        if lo <= d <= hi
    ]
    return min(ok)[1] if ok else None


def real_chain_premia(data_dir: Path, market: OptionMarket) -> tuple[pd.DataFrame, list[str]]:
    """ATM put/call premium (% of strike) of the ~1-month expiry on each real chain day, real
    mid (or close) beside the model's mid at the same K/S, day and expiry."""
    from clstm_ppo.options.replay import ChainReplay

    notes: list[str] = []
    rows: list[dict] = []
    opts = data_dir / "options"

    spx2011 = opts / "spx_chain_ivolatility_2011-01-03_2011-01-07.csv.gz"
    if spx2011.exists():
        replay = ChainReplay(spx2011)
        for day in replay.dates():
            c = replay.chain(day)
            c = c[c["root"] == "SPX"].copy()  # the AM-settled monthly, like the PUT/BXM legs
            c["mid"] = (c["bid"] + c["ask"]) / 2.0
            c = c[(c["bid"] > 0) & (c["ask"] > 0)]
            expiry = pd.Timestamp("2011-02-18")
            c = c[c["expiry"] == expiry]
            spot = float(c["underlying_price"].iloc[0])
            rows += _compare_rows("SPX iVol 2011", market, day, expiry, expiry, spot, c, "mid")
    else:
        notes.append(f"skipped SPX 2011-01: {spx2011} not found")

    lean = opts / "lean_option_universes_daily.csv.gz"
    if lean.exists():
        raw = pd.read_csv(lean, low_memory=False, parse_dates=["date", "expiry"])
        spx = raw[(raw["underlying"] == "SPX") & (raw["date"] < "2016-01-01")]
        for day, c in spx.groupby("date"):
            expiry = _nearest_month(c["expiry"], day)
            if expiry is None:
                continue
            c = c[(c["expiry"] == expiry) & (c["close"] > 0)].rename(columns={"close": "mid"})
            # Lean leaves the SPX underlying bar empty: take the index close from the model data.
            spot = float(market.spot[market.day_index(day)])
            rows += _compare_rows("SPX Lean 2015", market, day, expiry, expiry, spot, c, "close")
        notes.append(
            "SPX Lean 2015-12: option *closes* (last trades, some stale), not mids; spot = "
            "bundled SPX close."
        )
    else:
        notes.append(f"skipped SPX Lean 2015-12: {lean} not found")

    spy = opts / "spy_option_mid_dolthub_2024-07.csv"
    spx_hist = data_dir / "indices" / "spx_index_daily_1927_2026.csv.gz"
    if spy.exists() and spx_hist.exists():
        model24 = _market_2024(spx_hist, market.config)
        raw = pd.read_csv(spy, parse_dates=["date", "expiration"])
        for day, c in raw.groupby("date"):
            expiry = _nearest_month(c["expiration"], day)
            if expiry is None:
                continue
            c = c[c["expiration"] == expiry]
            c = pd.DataFrame(
                {
                    "strike": c["strike"],
                    "right": np.where(c["call_put"].str.startswith("C"), "C", "P"),
                    "mid": c["opt_close_price"],
                }
            )
            spot = float(raw.loc[raw["date"] == day, "udl_close_price"].iloc[0])
            rows += _compare_rows("SPY DoltHub 2024", model24, day, expiry, expiry, spot, c, "mid")
        notes.append(
            "SPY 2024-07: model = SPX market built from the shared SPX index history (the bundled "
            "data end in 2018), priced at the same K/S; dividend yield stays the config's 2%."
        )
    else:
        notes.append("skipped SPY 2024-07: chain or SPX index history not found")
    return pd.DataFrame(rows), notes


def _market_2024(path: Path, config: MarketConfig) -> OptionMarket:
    spx = load_spec(f"csv:{path}", required=("close",))
    bars = spx.bars[(spx.bars.index >= "2010-01-01") & (spx.bars.index <= "2024-12-31")]
    spx = MarketData(spx.symbol, bars, spx.source, spx.origin)
    return build_option_market(spx, None, config, market_inputs(bars.index, "bundled"))


# ----------------------------------------------------------------------------- report


DEFINITIONS = """\
Columns (monthly values are means over the year's 12 rolls, in %):
`premium_yield` = premium / collateral (put-write: collateral = strike; buy-write: the index);
`net_yield` = (premium - payoff) / collateral; `excess` = the roll's total return minus its
T-bill return (put-write: (premium (1 + tbill) - payoff) / strike); `tbill` = exp(r days/365) - 1
at the sale day's DGS3MO rate; `annual_return` compounds the 12 rolls sold in the year;
`calendar_year_return` marks the account at the model's mid every day and takes year-end to
year-end (as the published indices report), its `avg` the 2007-2018 annualised return.
Rolls: third Friday (Thursday before a holiday) to the next; put strike at or just below the
index, call strike at or just above, on a 5-point grid; sold at the model's mid or bid; settled
at the expiry day's close (the real indices settle at the morning SOQ and sell the new option
at a mid-day price). December 2018's roll runs past the data and is closed at 2018-12-31's mid.
Buy-write dividends: the model's `dividend_yield` (2%), reinvested.
"""


def _fmt(frame: pd.DataFrame, digits: int = 2) -> str:
    """A pipe table (pandas' to_markdown needs the optional tabulate)."""
    frame = frame.reset_index() if not isinstance(frame.index, pd.RangeIndex) else frame

    def cell(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return f"{v:.{digits}f}"
        return str(v)

    head = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(False)]
    return "\n".join([head, rule, *body])


def run(data_dir: Path, smile_models: tuple[str, ...] = ("ssvi", "quadratic")) -> str:
    start = time.perf_counter()
    parts: list[str] = []
    summary = []
    default_market = None
    for smile in smile_models:
        market = build_market(MarketConfig(smile_model=smile))
        default_market = default_market or market
        for name, walk in (("put-write", put_write), ("buy-write", buy_write)):
            for price in PRICES:
                values = daily_values(market, name, price=price)
                table = by_year(walk(market, price=price), values)
                avg = table.loc["avg"]
                summary.append(
                    {
                        "smile": smile,
                        "strategy": name,
                        "price": price,
                        "premium_yield_pct": avg["premium_yield_pct"],
                        "net_yield_pct": avg["net_yield_pct"],
                        "excess_pct": avg["excess_pct"],
                        "annual_return_pct": avg["annual_return_pct"],
                        "calendar_annualised_pct": avg["calendar_year_return_pct"],
                    }
                )
                if smile == smile_models[0] or price == "mid":
                    parts.append(f"#### {name}, {smile} smile, sold at {price}\n\n{_fmt(table)}\n")
    real_section = ""
    if data_dir.is_dir():
        real, notes = real_chain_premia(data_dir, default_market)
        if not real.empty:
            grouped = (
                real.groupby(["chain", "right"])[
                    ["days", "real_pct", "model_pct", "model_minus_real_bp", "real_30d_pct"]
                ]
                .mean()
                .round(3)
            )
            real_section = (
                "#### ATM premium on real chains vs the model (default ssvi), % of strike\n\n"
                + _fmt(real.drop(columns=["quote"]), 3)
                + "\n\nMeans per chain and right:\n\n"
                + _fmt(grouped, 3)
                + "\n\n"
                + "\n".join(f"- {n}" for n in notes)
                + "\n"
            )
    else:
        real_section = f"Real chains skipped: `{data_dir}` is absent (pass `--data-dir`).\n"
    elapsed = time.perf_counter() - start
    head = (
        DEFINITIONS
        + "\n#### 2007-2018 averages (monthly %, annualised total return %)\n\n"
        + _fmt(pd.DataFrame(summary).set_index(["smile", "strategy", "price"]))
        + "\n"
    )
    return "\n".join([head, *parts, real_section, f"Runtime: {elapsed:.1f} s.\n"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR)
    parser.add_argument("--markdown", type=Path, default=None, help="also write the report here")
    parser.add_argument("--smile", nargs="+", default=["ssvi", "quadratic"])
    args = parser.parse_args()
    text = run(args.data_dir, tuple(args.smile))
    print(text)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text)


if __name__ == "__main__":
    main()
