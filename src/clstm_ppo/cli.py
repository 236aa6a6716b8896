"""The ``clstm-ppo`` command line.

Every user error (bad flag, bad file, bad config) is printed as one line on stderr with exit code
2; tracebacks are kept for real bugs.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from rich.console import Console

from clstm_ppo.cli_data import add_data_commands
from clstm_ppo.config import (
    Config,
    build_config,
    check_run_name,
    parse_override,
    read_config_file,
)
from clstm_ppo.errors import ConfigError, DataError, UserError

PROG = "clstm-ppo"


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (naming the flag) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date in YYYY-MM-DD form: {text!r}") from None


def _add_config_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file overriding the paper defaults")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key, e.g. --set ppo.learning_rate=1e-4 (repeatable)",
    )


def _add_data_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--source",
        choices=["bundled", "csv", "alpaca", "synthetic"],
        help="data source (config data.source; default bundled)",
    )
    parser.add_argument(
        "--symbol", help="symbol (bundled: SPX, NASDAQ, VIX; synthetic: gbm, heston)"
    )
    parser.add_argument("--path", type=Path, help="CSV/Parquet file or folder for --source csv")


DATA_FLAGS = {"source": "data.source", "symbol": "data.symbol", "path": "data.path"}
INDEX_FLAGS = {"vix": "data.vix", "vol_indices": "data.vol_indices"}


def add_index_flags(parser: argparse.ArgumentParser) -> None:
    """``--vix`` and ``--vol-indices``: where the option surface's indices come from."""
    parser.add_argument(
        "--vix",
        metavar="SPEC",
        help="VIX series for the ATM level: auto, bundled:VIX, csv:PATH or none "
        "(config data.vix; wins over the VIX of --vol-indices)",
    )
    parser.add_argument(
        "--vol-indices",
        metavar="auto|bundled|FOLDER|none",
        help="CBOE VIX family, SKEW, VVIX and FRED DGS3MO for the surface and the rate: the "
        "fetched cache or the packaged snapshot (auto), the snapshot only (bundled), a folder "
        "of index files, or none (config data.vol_indices)",
    )


def index_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """``--vix`` / ``--vol-indices`` as dotted overrides (``none`` is null)."""
    return {
        key: None if value.strip().lower() == "none" else value
        for dest, key in INDEX_FLAGS.items()
        if (value := getattr(args, dest, None)) is not None
    }


def flag_name(dest: str) -> str:
    """The option string of an argparse ``dest``, as error messages name it."""
    # --num_gpus keeps the original script's spelling (SPEC section 1); the rest are dashed.
    return "--num_gpus" if dest == "num_gpus" else "--" + dest.replace("_", "-")


def _set_overrides(args: argparse.Namespace) -> tuple[dict[str, Any], dict[str, str]]:
    """``--set KEY=VALUE`` items as dotted overrides, and the flag behind each (for errors)."""
    overrides: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for item in args.overrides:
        key, value = parse_override(item)
        overrides[key], sources[key] = value, f"--set {key}"
    return overrides, sources


def config_from_args(
    args: argparse.Namespace,
    extra: dict[str, Any] | None = None,
    flags: dict[str, str] | None = None,
    values: dict[str, Any] | None = None,
) -> Config:
    """Defaults < --config FILE < --set KEY=VALUE < dedicated flags.

    ``extra``: dotted overrides of dedicated flags; ``flags``: the flag behind each, named by an
    error in its value instead of the config file. ``values``: the file, when already read.
    """
    if values is None:
        values = read_config_file(args.config) if args.config is not None else {}
    overrides, sources = _set_overrides(args)
    for dest, key in DATA_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            overrides[key], sources[key] = str(value), flag_name(dest)
    for key, value in index_overrides(args).items():
        dest = next(d for d, k in INDEX_FLAGS.items() if k == key)
        overrides[key], sources[key] = value, flag_name(dest)
    for key, value in (extra or {}).items():
        overrides[key] = value
        sources.pop(key, None)  # a dedicated flag beats --set of the same key
        if flags and key in flags:
            sources[key] = flags[key]
    origin = str(args.config) if args.config is not None else "config"
    return build_config(values, overrides, origin=origin, sources=sources)


def data_spec_overrides(spec: str, envs: Sequence[str]) -> dict[str, Any]:
    """``--data SPEC`` as dotted config overrides, for each environment in ``envs`` that reads
    such a spec: the options env's underlying bars (``bundled:SPX``, ``csv:PATH[#SYMBOL]``,
    ``alpaca:SYMBOL``, ``synthetic:gbm`` into data.source/symbol/path) and the stock-portfolio
    env's ``portfolio.data`` (``csv:PATH`` or ``alpaca:TICKERS``)."""
    from clstm_ppo.data.market import parse_spec

    if not spec.strip():
        raise ConfigError("--data: empty; use e.g. bundled:SPX, csv:PATH or alpaca:SYMBOL")
    overrides: dict[str, Any] = {}
    prefix, _, argument = spec.partition(":")
    if "portfolio" in envs and prefix in ("csv", "alpaca") and argument:
        overrides["portfolio.data"] = spec
    if "options" in envs:
        try:
            source, argument = parse_spec(spec)
        except DataError as error:
            raise ConfigError(f"--data: {error}") from None
        path, symbol = argument.partition("#")[::2] if source == "csv" else (None, argument)
        overrides |= {"data.source": source, "data.symbol": symbol or None, "data.path": path}
    if not overrides:
        raise ConfigError(f"--data {spec}: the portfolio env reads csv:PATH or alpaca:TICKERS")
    return overrides


TRAIN_FLAGS = {
    "env": "train.env",
    "episodes": "train.episodes",
    "num_gpus": "train.num_gpus",
    "num_procs": "train.num_procs",
    "seed": "train.seed",
    "num_envs": "train.num_envs",
    "run_dir": "train.run_dir",
    "run_name": "train.run_name",
    "device": "train.device",
    "amp": "train.amp",
    "validate_every": "train.validate_every",
    "early_stopping_patience": "train.early_stopping_patience",
    "early_stopping_min_delta": "train.early_stopping_min_delta",
    "grad_accum_steps": "ppo.grad_accum_steps",
    "lr_schedule": "ppo.lr_schedule",
    "episode_length": "env.episode_length",
}


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The training flags, shared by ``clstm-ppo train`` and train_enhanced_clstm_ppo.py."""
    parser.add_argument("--episodes", type=int, help="completed training episodes (default 5000)")
    parser.add_argument(
        "--env",
        choices=["options", "portfolio"],
        help="environment to train: options (default) or portfolio (the paper's 30 stocks)",
    )
    parser.add_argument(
        "--data",
        metavar="SPEC",
        help="data to train on. --env options: the underlying's bars, bundled:SPX (default), "
        "csv:PATH[#SYMBOL], alpaca:SYMBOL or synthetic:gbm; --env portfolio: csv:PATH or "
        "alpaca:TICKERS",
    )
    parser.add_argument(
        "--num_gpus", "--num-gpus", dest="num_gpus", type=int, help="GPUs to use (0 or none: CPU)"
    )
    parser.add_argument(
        "--num-procs",
        type=int,
        help="DDP training processes on the CPU (gloo), e.g. --num-procs 2 --device cpu",
    )
    parser.add_argument(
        "--enable-multi-leg",
        action="store_true",
        help="91-action space with covered calls, cash-secured puts, spreads, condors, butterflies",
    )
    parser.add_argument(
        "--resume-from",
        metavar="best|latest|PATH",
        help="continue from a checkpoint (default: the run's latest, if any)",
    )
    parser.add_argument(
        "--fresh-start",
        action="store_true",
        help="start a new run folder, ignoring (not deleting) earlier checkpoints",
    )
    parser.add_argument(
        "--early-stopping-patience",
        type=int,
        help="episodes without a better validation composite before stopping (0: off; 500)",
    )
    parser.add_argument(
        "--early-stopping-min-delta", type=float, help="smallest composite gain (0.001)"
    )
    parser.add_argument(
        "--train-ensemble",
        action="store_true",
        help="train several models with different seeds and weight them by validation score",
    )
    parser.add_argument("--num-ensemble-models", type=int, default=3, help="ensemble members (3)")
    parser.add_argument(
        "--episodes-per-ensemble-model", type=int, default=1000, help="episodes per member (1000)"
    )
    parser.add_argument("--seed", type=int, help="random seed (0)")
    parser.add_argument("--num-envs", type=int, help="parallel training episodes (8)")
    parser.add_argument("--episode-length", type=int, help="trading days per episode (252)")
    parser.add_argument("--validate-every", type=int, help="validate every N episodes (50)")
    parser.add_argument("--run-dir", type=Path, help="folder of runs (runs)")
    parser.add_argument("--run-name", help="run sub-folder (clstm_ppo)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="device (auto)")
    parser.add_argument("--amp", choices=["off", "fp16", "bf16"], help="mixed precision (off)")
    parser.add_argument("--grad-accum-steps", type=int, help="minibatches per optimiser step (1)")
    parser.add_argument(
        "--lr-schedule", choices=["constant", "warmup_cosine", "plateau"], help="(constant)"
    )
    _add_data_flags(parser)
    add_index_flags(parser)
    _add_config_flags(parser)


def train_config_from_args(args: argparse.Namespace) -> Config:
    extra: dict[str, Any] = {}
    flags: dict[str, str] = {}
    for dest, key in TRAIN_FLAGS.items():
        value = getattr(args, dest, None)
        if value is not None:
            extra[key] = str(value) if isinstance(value, Path) else value
            flags[key] = flag_name(dest)
    if args.enable_multi_leg:
        extra["env.enable_multi_leg"] = True
        flags["env.enable_multi_leg"] = "--enable-multi-leg"
    if args.resume_from is not None and args.fresh_start:
        raise ConfigError("--resume-from and --fresh-start contradict each other; pick one")
    values = read_config_file(args.config) if args.config is not None else {}
    if args.data is not None:
        if any(getattr(args, dest) is not None for dest in DATA_FLAGS):
            raise ConfigError("--data: give the data as --data SPEC or as --source/--symbol/"
                              "--path, not both")  # fmt: skip
        # --data means the data of the environment being trained, wherever train.env was set.
        in_file = values.get("train")
        env = (
            args.env
            or _set_overrides(args)[0].get("train.env")
            or (in_file.get("env") if isinstance(in_file, dict) else None)
        )
        envs = ["portfolio" if env == "portfolio" else "options"]
        for key, value in data_spec_overrides(args.data, envs).items():
            extra[key], flags[key] = value, "--data"
    return config_from_args(args, extra, flags, values)


def _launch_distributed(world: int, train_argv: list[str], console: Console) -> int:
    """Start ``world`` workers through torch.distributed's own launcher (torchrun)."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun

    console.print(f"launching {world} DDP training processes (torchrun)", highlight=False)
    try:
        torchrun(
            ["--standalone", f"--nproc_per_node={world}", "-m", "clstm_ppo.train", *train_argv]
        )
    except ChildFailedError as error:
        failures = "; ".join(
            f"rank {rank}: exit code {failure.exitcode}" for rank, failure in error.failures.items()
        )
        print(f"{PROG}: error: distributed training failed ({failures})", file=sys.stderr)
        return 1
    except SignalException as error:
        # torchrun passed the signal on to every worker; rank 0 saved a checkpoint first.
        console.print(
            f"stopped by signal {error.sigval.name}: the workers saved a checkpoint; rerun the "
            "same command to continue",
            highlight=False,
        )
        return 0
    return 0


def _cmd_train(args: argparse.Namespace, console: Console) -> int:
    from clstm_ppo.train.run import check_gpus, run_training, world_size_of

    config = train_config_from_args(args)
    world = world_size_of(config)
    if args.train_ensemble:
        from clstm_ppo.train.ensemble import train_ensemble

        if world > 1:
            raise ConfigError("--train-ensemble: members already train in parallel processes; "
                              "drop --num-procs/--num_gpus N")  # fmt: skip
        for flag in ("num_ensemble_models", "episodes_per_ensemble_model"):
            if getattr(args, flag) < 1:
                raise ConfigError(f"--{flag.replace('_', '-')}: must be at least 1")
        train_ensemble(config, args.num_ensemble_models, args.episodes_per_ensemble_model, console)
        return 0
    if world > 1:
        check_gpus(config)
        return _launch_distributed(world, args.train_argv, console)
    run_training(
        config, resume_from=args.resume_from, fresh_start=args.fresh_start, console=console
    )
    return 0


def run_worker(argv: list[str], environ: dict[str, str]) -> int:
    """One training process (``python -m clstm_ppo.train``), alone or as a torchrun worker."""
    import torch.distributed as dist

    from clstm_ppo.train.run import run_training

    args = build_parser().parse_args(["train", *argv])
    world = int(environ.get("WORLD_SIZE", "1"))
    rank = int(environ.get("RANK", "0"))
    local_rank = int(environ.get("LOCAL_RANK", "0"))
    console = Console()
    try:
        config = train_config_from_args(args)
        if world > 1:
            backend = "nccl" if config.train.num_gpus > 1 else "gloo"
            dist.init_process_group(backend=backend)
        run_training(
            config, resume_from=args.resume_from, fresh_start=args.fresh_start,
            console=console, rank=rank, world_size=world, local_rank=local_rank,
        )  # fmt: skip
        return 0
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def _check_output_folder(output: Path, flag: str) -> None:
    """Refuse an output folder that is, or lies inside, an existing file, before any work."""
    for existing in (output, *output.parents):
        if existing.exists():
            if existing.is_dir():
                return
            where = "" if existing == output else f" {existing}"
            raise ConfigError(f"{flag}:{where} is a file, expected a folder")


def _cmd_evaluate(args: argparse.Namespace, console: Console) -> int:
    from clstm_ppo.evaluate.runner import run_evaluation, summarise_runs

    if args.random_seeds < 0:
        raise ConfigError("--random-seeds: must be >= 0")
    if args.output is not None:
        _check_output_folder(args.output, f"--output {args.output}")
    if args.runs:
        if args.data is not None:
            raise ConfigError("--data: not with --runs (each run is evaluated on its own data)")
        missing = [str(run) for run in args.runs if not (run / "checkpoints").is_dir()]
        if missing:
            raise ConfigError(f"--runs: no checkpoints folder in {', '.join(missing)}")
        output = args.output or Path("evaluation") / "runs_summary"
        summarise_runs(args.runs, args.split, output, args.random_seeds, console)
        return 0
    problem = check_run_name(args.run_name)
    if problem is not None:  # the default output folder is named after it
        raise ConfigError(f"--run-name: {problem} (got {args.run_name!r})")
    checkpoints = args.run_dir / args.run_name / "checkpoints"
    output = args.output or Path("evaluation") / f"{args.run_name}_{args.split}"
    _check_output_folder(output, f"--output {output}")
    if args.episodes is not None and args.episodes < 1:
        raise ConfigError("--episodes: must be at least 1")
    # The checkpoint's env picks the keys it reads: csv:/alpaca: specs fit both envs.
    data = None if args.data is None else data_spec_overrides(args.data, ["options", "portfolio"])
    if index_overrides(args):
        data = {**(data or {}), **index_overrides(args)}
    run_evaluation(
        args.checkpoint, checkpoints, args.split, output, args.random_seeds, console,
        args.episodes, data_overrides=data,
    )  # fmt: skip
    return 0


def _cmd_reproduce(args: argparse.Namespace, console: Console) -> int:
    from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
    from clstm_ppo.evaluate.paper import (
        MODELS,
        ReproductionInterrupted,
        check_cpu_only,
        reproduce_paper,
    )

    models = tuple(m.strip() for m in args.models.split(",") if m.strip())
    unknown = [m for m in models if m not in MODELS]
    if not models or unknown:
        raise ConfigError(f"--models: use clstm and/or mlp, got {args.models!r}")
    for flag in ("seeds", "timesteps", "num_envs", "retrain_timesteps"):
        if getattr(args, flag) < 1:
            raise ConfigError(f"--{flag.replace('_', '-')}: must be at least 1")
    _check_output_folder(args.output, f"--output {args.output}")
    extra = {
        "portfolio.data": args.data, "portfolio.tickers": args.tickers,
        "train.num_envs": args.num_envs, "train.validation_episodes": 1,
        "train.validate_every": args.num_envs,
    }  # fmt: skip
    sources = {"portfolio.data": "--data", "portfolio.tickers": "--tickers",
               "train.num_envs": "--num-envs", "train.validate_every": "--num-envs"}  # fmt: skip
    overrides, set_sources = _set_overrides(args)  # --set beats these flags
    values = read_config_file(args.config) if args.config is not None else {}
    origin = str(args.config) if args.config is not None else "config"
    config = build_config(values, extra | overrides, origin, sources | set_sources)
    try:  # here, before the data loads, and naming the --set or file that asked for it
        check_cpu_only(config)
    except ConfigError as error:
        key, _, problem = str(error).partition(": ")
        raise ConfigError(f"{set_sources.get(key, f'{origin}: key {key!r}')}: {problem}") from None
    portfolio_tape_for(config)  # data errors surface here, before any training
    retrain = args.retrain_timesteps if args.retrain == "quarterly" else 0
    try:
        reproduce_paper(
            config, list(range(args.seeds)), args.timesteps, args.output, models, console, retrain
        )
    except ReproductionInterrupted as stopped:
        console.print(f"stopped: {stopped}", highlight=False)
        return 130
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog=PROG,
        description="Train and evaluate cascaded-LSTM PPO agents that trade US equity options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    train = commands.add_parser(
        "train", help="train a CLSTM-PPO agent (same flags as train_enhanced_clstm_ppo.py)"
    )
    add_train_arguments(train)
    train.set_defaults(handler=_cmd_train)

    for name in ("evaluate", "backtest"):
        evaluate = commands.add_parser(
            name,
            help="walk a checkpoint or ensemble through unseen data beside the baselines"
            + (" (same as evaluate)" if name == "backtest" else ""),
        )
        evaluate.add_argument(
            "--checkpoint",
            default="best",
            metavar="best|latest|PATH|ENSEMBLE_DIR",
            help="what to evaluate (default: the run's best_composite)",
        )
        evaluate.add_argument(
            "--runs", type=Path, nargs="+", help="several run folders (one per seed) to summarise"
        )
        evaluate.add_argument(
            "--split", default="test", choices=["train", "validation", "test"],
            help="split to walk (default test)",
        )  # fmt: skip
        evaluate.add_argument("--output", type=Path, help="folder for the files and report.html")
        evaluate.add_argument(
            "--episodes", type=int,
            help="also evaluate K fixed windows of episode_length days (windows.json)",
        )  # fmt: skip
        evaluate.add_argument("--run-dir", type=Path, default=Path("runs"), help="runs folder")
        evaluate.add_argument("--run-name", default="clstm_ppo", help="run sub-folder")
        evaluate.add_argument(
            "--random-seeds", type=int, default=3, help="seeds of the random baseline (3)"
        )
        evaluate.add_argument(
            "--data",
            metavar="SPEC",
            help="evaluate on other data than the policy was trained on: an options policy's "
            "underlying (bundled:NASDAQ, csv:PATH[#SYMBOL], alpaca:SYMBOL, synthetic:gbm) or a "
            "portfolio policy's stocks (csv:PATH, alpaca:TICKERS)",
        )
        evaluate.set_defaults(handler=_cmd_evaluate)

    paper = commands.add_parser(
        "reproduce-paper",
        help="rerun Zou et al.'s US stock table (CLSTM-PPO and MLP-PPO vs the Dow) on real data",
    )
    paper.add_argument("--data", required=True, help="csv:PATH (Date,Ticker,OHLC,Adj Close,Volume"
                       " rows) or alpaca:DOW30 / alpaca:AAPL,MSFT,...")  # fmt: skip
    paper.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 per model (default 3)")
    paper.add_argument(
        "--timesteps", type=int, default=100_000,
        help="training env steps per run, rounded up to whole rounds of one episode per "
        "environment (default 100000)",
    )  # fmt: skip
    paper.add_argument("--models", default="clstm,mlp", help="clstm, mlp or both (default)")
    paper.add_argument("--tickers", default="DOW30", help="DOW30 (default) or AAPL,MSFT,...")
    paper.add_argument("--num-envs", type=int, default=8, help="parallel accounts (default 8)")
    paper.add_argument(
        "--output", type=Path, default=Path("runs/paper"), help="output folder (runs/paper)"
    )
    paper.add_argument(
        "--retrain", choices=["none", "quarterly"], default="none",
        help="quarterly: fine-tune before each quarter on an expanding window (Yang et al.)",
    )  # fmt: skip
    paper.add_argument(
        "--retrain-timesteps", type=int, default=20_000,
        help="env steps of each quarterly fine-tuning, rounded up like --timesteps on that "
        "quarter's longer train window (default 20000)",
    )  # fmt: skip
    _add_config_flags(paper)
    paper.set_defaults(handler=_cmd_reproduce)

    add_data_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``clstm-ppo`` console script."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.train_argv = argv[1:] if argv and argv[0] == "train" else []
    console = Console()
    try:
        return int(args.handler(args, console))
    except UserError as error:
        print(f"{PROG}: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
