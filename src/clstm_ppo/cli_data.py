"""The ``clstm-ppo data`` subcommands: ``show``, ``chain`` and ``fetch``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from clstm_ppo.config import Config
from clstm_ppo.errors import ConfigError, DataError


def _config(args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Config:
    # Imported here: clstm_ppo.cli imports this module to build its parser.
    from clstm_ppo.cli import config_from_args

    return config_from_args(args, extra)


def _check_dates(args: argparse.Namespace) -> None:
    start, end = getattr(args, "start", None), getattr(args, "end", None)
    if start is not None and end is not None and end < start:
        raise ConfigError(f"--end {end} is before --start {start}")


def _apply_data_spec(args: argparse.Namespace) -> argparse.Namespace:
    """``--data SPEC`` as the ``--source/--symbol/--path`` it stands for (one vocabulary for
    every command); giving both forms is refused rather than letting one silently win."""
    from clstm_ppo.data.market import spec_fields

    if args.data is None:
        return args
    flags = ("source", "symbol", "path")
    given = [f"--{flag}" for flag in flags if getattr(args, flag) is not None]
    if given:
        raise ConfigError(
            f"--data and {'/'.join(given)} both name the data; give only --data "
            "(bundled:SPX, csv:PATH or csv:PATH#SYMBOL, alpaca:SPY, synthetic:gbm)"
        )
    try:
        source, symbol, path = spec_fields(args.data)
    except DataError as error:
        raise ConfigError(f"--data: {error}") from None
    return argparse.Namespace(**{**vars(args), "source": source, "symbol": symbol, "path": path})


def _load_market(config: Config, args: argparse.Namespace):
    from clstm_ppo.data.market import load_bars

    data = config.data
    return load_bars(
        data.source,
        symbol=data.symbol,
        path=data.path,
        cache_dir=data.cache_dir,
        start=getattr(args, "start", None),
        end=getattr(args, "end", None),
        seed=config.train.seed,
    )


def _print_fields(console: Console, rows: list[tuple[str, str]]) -> None:
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        console.print(f"[bold]{name:<{width}}[/bold]  {value}", highlight=False, soft_wrap=True)


def _cmd_data_show(args: argparse.Namespace, console: Console) -> int:
    from clstm_ppo.data.splits import describe_splits

    _check_dates(args)
    args = _apply_data_spec(args)
    config = _config(args)
    market = _load_market(config, args)
    rows: list[tuple[str, str]] = [
        ("symbol", market.symbol),
        ("source", f"{market.source} ({market.origin})"),
        ("rows", str(len(market.bars))),
        ("first date", str(market.first_date.date())),
        ("last date", str(market.last_date.date())),
        ("columns", ", ".join(market.bars.columns)),
    ]
    for split in describe_splits(market, config.data.splits):
        covered = (
            f"{split.first_date.date()}..{split.last_date.date()}" if split.rows else "no rows"
        )
        rows.append(
            (
                f"split {split.name}",
                f"{split.start.date()}..{split.end.date()}: {split.rows} rows ({covered})",
            )
        )
    rows.extend(("note", note) for note in market.notes)
    _print_fields(console, rows)
    return 0


def _chain_table(chain, expiry, spot: float, width: int) -> Table:
    rows = chain[chain.expiry == expiry]
    strikes = np.sort(rows.strike.unique())
    centre = int(np.searchsorted(strikes, spot))
    shown = strikes[max(0, centre - width) : centre + width]
    calls = rows[rows.right == "C"].set_index("strike")
    puts = rows[rows.right == "P"].set_index("strike")
    days = (expiry - rows.date.iloc[0]).days
    table = Table(title=f"expiry {expiry.date()} ({days} days)")
    for name in ("call bid", "call ask", "strike", "put bid", "put ask", "call iv", "put iv"):
        table.add_column(name, justify="right")
    for strike in shown:
        call = calls.loc[strike] if strike in calls.index else None
        put = puts.loc[strike] if strike in puts.index else None

        def cell(side, field: str, fmt: str) -> str:
            if side is None or field not in side.index or not np.isfinite(side[field]):
                return "-"
            return format(side[field], fmt)

        table.add_row(
            cell(call, "bid", ".2f"),
            cell(call, "ask", ".2f"),
            f"{strike:g}",
            cell(put, "bid", ".2f"),
            cell(put, "ask", ".2f"),
            cell(call, "iv", ".3f"),
            cell(put, "iv", ".3f"),
        )
    return table


# The recorded underlying and the model's close may differ a little (SPX vs its settlement
# value, a close taken at 16:00 vs 16:15); more than this is another underlying or another day.
COMPARE_SPOT_TOLERANCE = 0.02


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_safe(item) for item in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _compare_chain(args: argparse.Namespace, config: Config, console: Console) -> int:
    """``data chain --compare FILE``: the model priced on a recorded chain's contracts."""
    import json

    import pandas as pd

    from clstm_ppo.envs.tape import option_market_for, run_specs
    from clstm_ppo.options.compare import bucket_errors, buckets_table, price_recorded
    from clstm_ppo.options.replay import ChainReplay

    replay = ChainReplay(args.compare)
    days = [pd.Timestamp(args.date)] if args.date is not None else replay.dates()
    real = pd.concat([replay.chain(day) for day in days], ignore_index=True)
    market = option_market_for(config)
    spec = run_specs(config)[0]
    for day, spot in real.groupby("date")["underlying_price"].median().items():
        model_spot = float(market.spot[market.day_index(day)])
        if abs(model_spot / spot - 1.0) > COMPARE_SPOT_TOLERANCE:
            raise DataError(
                f"{args.compare}: underlying {spot:.2f} on {day.date()} but {spec} closed at "
                f"{model_spot:.2f} (more than {COMPARE_SPOT_TOLERANCE:.0%} apart): pass --data "
                "with the chain's underlying"
            )
    result = bucket_errors(price_recorded(real, market))
    result["file"] = str(args.compare)
    result["days"] = [f"{day:%Y-%m-%d}" for day in days]
    result["model"] = {
        "data": spec,
        "smile_model": config.market.smile_model,
        "atm_source_by_day": {
            f"{day:%Y-%m-%d}": str(market.levels.source[market.day_index(day)]) for day in days
        },
    }
    if args.json:
        print(json.dumps(_json_safe(result)))  # an empty bucket's NaN is null, as JSON allows
        return 0
    _print_fields(
        console,
        [
            ("recorded", f"{args.compare} ({len(days)} days, {len(real)} contracts)"),
            ("model", f"{config.market.smile_model} surface on {spec}"),
        ],
    )
    frame = buckets_table(result)
    table = Table(title="model vs recorded (medians: % error of mid, spreads in $)")
    for header in ("right", "K/S-1", "days", "n", "|error|", "error", "real spread", "model"):
        table.add_column(header, justify="right", no_wrap=True)
    for row in frame.itertuples(index=False):
        table.add_row(
            *(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row)  # n stays an int
        )
    console.print(table)
    return 0


def _cmd_data_chain(args: argparse.Namespace, console: Console) -> int:
    import pandas as pd

    config = _config(args)
    if args.compare is not None:
        if args.replay is not None:
            raise ConfigError("--compare: not with --replay (--compare already reads the file)")
        return _compare_chain(args, config, console)
    if args.json:
        raise ConfigError("--json: only with --compare")
    if args.date is None:
        raise ConfigError("--date: required (except with --compare, which reads every day)")
    if args.replay is not None:
        from clstm_ppo.options.replay import ChainReplay

        chain = ChainReplay(args.replay).chain(pd.Timestamp(args.date))
        fields = [("source", f"recorded quotes ({args.replay})")]
    else:
        from clstm_ppo.envs.tape import option_market_for, run_specs

        spec, vol_index, indices = run_specs(config)
        market = option_market_for(config)
        chain = market.chain(args.date)
        day = market.day_index(args.date)
        levels = market.levels
        atm_source = levels.source[day]
        origin = {"vix": "VIX close", "vix_term": "VIX family"}
        fields = [
            ("source", f"model: {config.market.smile_model} surface on {spec}"),
            (
                "atm 30d iv",
                f"{levels.vol_30d[day]:.4f} from {atm_source}"
                + (f" ({origin[atm_source]})" if atm_source in origin else ""),
            ),
            ("rate", f"{levels.rate[day]:.4f} ({levels.rate_source[day]})"),
            ("vix", str(vol_index)),
            ("vol indices", str(indices)),
        ]
    spot = float(chain.underlying_price.iloc[0])
    expiries = pd.DatetimeIndex(np.sort(chain.expiry.unique()))
    fields = [
        ("date", str(pd.Timestamp(args.date).date())),
        ("underlying", f"{spot:.2f}"),
        *fields,
        ("contracts", f"{len(chain)} over {len(expiries)} expiries"),
    ]
    _print_fields(console, fields)
    if args.output is not None:
        chain.to_csv(args.output, index=False)
        console.print(f"wrote {len(chain)} rows to {args.output}")
    for expiry in expiries[: args.expiries]:
        console.print(_chain_table(chain, expiry, spot, args.width))
    return 0


def _fetch_indices(args: argparse.Namespace, console: Console) -> int:
    """``--source cboe|fred``: whole index histories into ``cache_dir/indices``."""
    from clstm_ppo.data.index_fetch import check_symbols, fetch_indices

    # These endpoints serve the whole history; a date range or kind would be silently ignored.
    for flag, value in (("--kind", args.kind), ("--start", args.start), ("--end", args.end)):
        if value is not None:
            raise ConfigError(f"{flag}: --source {args.source} downloads the whole history")
    symbols = check_symbols(args.source, args.symbols)  # before anything else: a typo is free
    config = _config(argparse.Namespace(**{**vars(args), "source": None}))
    for path, values in fetch_indices(args.source, symbols, config.data.cache_dir):
        console.print(
            f"cached {path} ({len(values)} rows, {values.index[0]:%Y-%m-%d} to "
            f"{values.index[-1]:%Y-%m-%d})",
            highlight=False,
            soft_wrap=True,
        )
    return 0


def _cmd_data_fetch(args: argparse.Namespace, console: Console) -> int:
    from clstm_ppo.data.alpaca import fetch_to_cache

    if args.source in ("cboe", "fred"):
        return _fetch_indices(args, console)
    if args.source != "alpaca":
        raise ConfigError(f"--source {args.source}: only 'alpaca' downloads; others are local")
    _check_dates(args)  # before the keys are looked up: a flag error needs no account
    config = _config(argparse.Namespace(**{**vars(args), "source": None}))
    paths = fetch_to_cache(
        args.kind or "bars",
        args.symbols,
        args.start,
        args.end,
        config.data.cache_dir,
        args.env_file,
    )
    for path in paths:
        console.print(f"cached {path}")
    return 0


def add_data_commands(commands: Any) -> None:
    """Add ``data show|chain|fetch`` to the top-level subparsers."""
    from clstm_ppo.cli import _add_config_flags, _add_data_flags, _date, _Parser, add_index_flags

    data = commands.add_parser("data", help="inspect and download market data")
    data_commands = data.add_subparsers(dest="data_command", required=True, parser_class=_Parser)

    show = data_commands.add_parser(
        "show", help="print a series' rows, date range, split boundaries and source"
    )
    _add_data_flags(show)
    show.add_argument(
        "--data",
        metavar="SPEC",
        help="data spec instead of --source/--symbol/--path: bundled:SPX, csv:PATH[#SYMBOL], "
        "alpaca:SPY, synthetic:gbm",
    )
    show.add_argument(
        "--start", type=_date, help="first date shown (YYYY-MM-DD; alpaca: first date requested)"
    )
    show.add_argument(
        "--end", type=_date, help="last date shown (YYYY-MM-DD; alpaca: last date requested)"
    )
    _add_config_flags(show)
    show.set_defaults(handler=_cmd_data_show)

    chain = data_commands.add_parser(
        "chain", help="price the listed option chain of one day (or show recorded quotes)"
    )
    chain.add_argument(
        "--date", type=_date, help="trading day (YYYY-MM-DD); with --compare, one of its days"
    )
    _add_data_flags(chain)
    add_index_flags(chain)
    chain.add_argument(
        "--replay", type=Path, help="show a recorded end-of-day chain file instead of the model"
    )
    chain.add_argument(
        "--compare",
        type=Path,
        metavar="FILE",
        help="price a recorded chain file's (or folder's) contracts with the model and print the "
        "errors by moneyness and days to expiry (every day in the file unless --date)",
    )
    chain.add_argument("--json", action="store_true", help="with --compare: one JSON object")
    chain.add_argument("--expiries", type=int, default=3, help="expiries to print (default 3)")
    chain.add_argument("--width", type=int, default=6, help="strikes each side of the money")
    chain.add_argument("--output", type=Path, help="write the whole chain to this CSV file")
    _add_config_flags(chain)
    chain.set_defaults(handler=_cmd_data_chain)

    fetch = data_commands.add_parser(
        "fetch",
        help="download into the Parquet cache: Alpaca bars/chains, CBOE vol indices, FRED DGS3MO",
    )
    fetch.add_argument(
        "--source",
        choices=["alpaca", "cboe", "fred"],
        default="alpaca",
        help="alpaca (keys needed), cboe (VIX9D, VIX, VIX3M, VIX6M, VIX1Y, SKEW, VVIX daily "
        "history) or fred (DGS3MO); cboe/fred refresh the index snapshot used by "
        "data.vol_indices: auto",
    )
    fetch.add_argument(
        "--kind",
        choices=["bars", "chain", "option-bars"],
        default=None,
        help="alpaca only: stock bars (default), option chain snapshot, or historical option "
        "bars (from 2024-02)",
    )
    fetch.add_argument(
        "--symbols",
        nargs="+",
        required=True,
        help="symbols to download (cboe/fred also take a comma list: VIX,VIX3M,SKEW)",
    )
    fetch.add_argument("--start", type=_date, help="first date (YYYY-MM-DD)")
    fetch.add_argument("--end", type=_date, help="last date (YYYY-MM-DD)")
    fetch.add_argument(
        "--env-file", type=Path, default=Path(".env"), help="file with APCA_API_KEY_ID/SECRET"
    )
    _add_config_flags(fetch)
    fetch.set_defaults(handler=_cmd_data_fetch)
