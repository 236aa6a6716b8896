"""One training run from the command line: device, run folder, resume, provenance, summary."""

from __future__ import annotations

import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from rich.table import Table

from clstm_ppo.config import Config, config_hash, config_to_dict
from clstm_ppo.errors import CheckpointError, ConfigError
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.reporting import Reporter
from clstm_ppo.train.run_folder import RunLock, folder_error, remove_leftovers
from clstm_ppo.train.trainer import Trainer, TrainResult
from clstm_ppo.train.validation import EnvFactory, default_env_factory


def world_size_of(config: Config) -> int:
    """Processes a run needs: one per GPU with --num_gpus N > 1, else --num-procs."""
    return config.train.num_gpus if config.train.num_gpus > 1 else config.train.num_procs


def check_gpus(config: Config) -> None:
    found = torch.cuda.device_count()
    if config.train.num_gpus > 1 and found < config.train.num_gpus:
        raise ConfigError(
            f"--num_gpus {config.train.num_gpus}: only {found} GPU(s) found on this machine"
        )


def select_device(config: Config, reporter_console: Console, local_rank: int = 0) -> torch.device:
    """``--num_gpus``/``train.device`` to a torch device, with a one-line notice on fallback."""
    train = config.train
    found = torch.cuda.device_count()
    check_gpus(config)
    if train.num_gpus > 1:
        return torch.device(f"cuda:{local_rank}")
    if train.device == "cpu" or (train.device == "auto" and train.num_gpus == 0):
        return torch.device("cpu")
    if found == 0:
        if train.device == "cuda":
            raise ConfigError("--device cuda: no CUDA GPU found")
        reporter_console.print("notice: no CUDA GPU found, training on the CPU", highlight=False)
        return torch.device("cpu")
    return torch.device("cuda:0")


def prepare_run_dir(config: Config, fresh_start: bool) -> Path:
    """The run's folder: ``run_dir/run_name``, or a new timestamped one with ``--fresh-start``
    (old runs are never deleted; the new name is claimed by an exclusive mkdir, so two fresh
    starts in the same second get two folders)."""
    base = config.train.run_dir / config.train.run_name
    try:
        if fresh_start and base.exists():
            stamped = base.with_name(f"{base.name}_{time.strftime('%Y%m%d_%H%M%S')}")
            candidate, suffix = stamped, 1
            while True:
                try:
                    candidate.mkdir(parents=True)
                    return candidate
                except FileExistsError:
                    candidate = stamped.with_name(f"{stamped.name}.{suffix}")
                    suffix += 1
        base.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise folder_error(base, error, "create the run folder") from None
    return base


def find_resume_point(run_dir: Path, resume_from: str | None, fresh_start: bool) -> Path | None:
    if fresh_start:
        return None
    folder = run_dir / "checkpoints"
    if resume_from is None:
        has_latest = (folder / "latest.pt").exists() or (folder / "latest.pointer").exists()
        return ckpt.resolve(folder, "latest") if has_latest else None
    return ckpt.resolve(folder, resume_from)


def env_factory_for(config: Config) -> EnvFactory:
    """``train.env``: the options environment, or the paper's stock portfolio."""
    if config.train.env == "portfolio":
        from clstm_ppo.envs.portfolio import portfolio_env_factory

        return portfolio_env_factory
    return default_env_factory


def data_provenance(config: Config) -> dict[str, Any]:
    if config.train.env == "portfolio":
        from clstm_ppo.envs.portfolio_tape import portfolio_tape_for

        return portfolio_tape_for(config).provenance
    from clstm_ppo.envs.tape import tape_for

    return tape_for(config).provenance


def _data_label(provenance: dict[str, Any]) -> str:
    data = provenance.get("data", {})
    if "origin" in data:  # the stock-portfolio panel
        return f"{data['origin']} ({len(data.get('tickers', []))} stocks)"
    return f"{data.get('source')}:{data.get('symbol')}"


def write_run_metadata(run_dir: Path, config: Config, provenance: dict[str, Any]) -> None:
    metadata = {
        "config": config_to_dict(config),
        "config_hash": config_hash(config),
        "seed": config.train.seed,
        "git_commit": ckpt.git_commit(),
        "command": sys.argv,
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "provenance": provenance,
    }
    path = run_dir / "run.json"
    temporary = run_dir / f".run.json.tmp-{os.getpid()}"
    try:  # atomic, like the checkpoints: a kill mid-write never leaves a truncated run.json
        temporary.write_text(json.dumps(metadata, indent=2, default=str))
        os.replace(temporary, path)
    except OSError as error:
        raise folder_error(path, error, "write the run's metadata") from None


def summary_table(result: TrainResult, peak_rss_mb: float) -> Table:
    table = Table(title="training summary")
    table.add_column("metric")
    table.add_column("validation", justify="right")
    table.add_column("training (rolling)", justify="right")
    for key, fmt in (
        ("mean_return", "{:+.2%}"),
        ("win_rate", "{:.1%}"),
        ("profit_rate", "{:.1%}"),
        ("sharpe", "{:.2f}"),
        ("sortino", "{:.2f}"),
        ("max_drawdown", "{:.1%}"),
        ("composite", "{:.3f}"),
        ("trades", "{:.0f}"),
    ):
        cells = []
        for source in (result.validation, result.rolling):
            value = source.get(key, float("nan"))
            cells.append("-" if value != value else fmt.format(value))
        table.add_row(key, *cells)
    table.caption = (
        f"{result.episodes} episodes, {result.updates} updates in {result.seconds:.0f} s; "
        f"peak memory {peak_rss_mb:.0f} MB; stopped: {result.stop_reason}"
    )
    return table


def _agreed(value: Any, distributed: bool) -> Any:
    """Rank 0's value on every rank (run folder names contain a timestamp)."""
    if not distributed:
        return value
    shared = [value]
    torch.distributed.broadcast_object_list(shared, src=0)
    return shared[0]


def run_training(
    config: Config,
    resume_from: str | None = None,
    fresh_start: bool = False,
    console: Console | None = None,
    rank: int = 0,
    world_size: int = 1,
    local_rank: int = 0,
) -> TrainResult:
    console = console or Console()
    distributed = world_size > 1
    device = select_device(config, console, local_rank)
    lock = None
    if rank == 0:
        run_dir = prepare_run_dir(config, fresh_start)
        lock = RunLock(run_dir).acquire()  # refuses a second run on the same folder
    try:
        return _train_in(
            config, _agreed(run_dir if rank == 0 else None, distributed), resume_from,
            fresh_start, console, device, rank, world_size,
        )  # fmt: skip
    finally:
        if lock is not None:
            lock.release()


def _train_in(
    config: Config,
    run_dir: Path,
    resume_from: str | None,
    fresh_start: bool,
    console: Console,
    device: torch.device,
    rank: int,
    world_size: int,
) -> TrainResult:
    distributed = world_size > 1
    removed = remove_leftovers(run_dir / "checkpoints") if rank == 0 else []
    resume = _agreed(
        find_resume_point(run_dir, resume_from, fresh_start) if rank == 0 else None, distributed
    )
    provenance = data_provenance(config)
    reporter = Reporter(run_dir, active=rank == 0, console=console)
    if removed:
        reporter.info(
            f"removed {len(removed)} temporary file(s) that an interrupted run left in "
            f"{run_dir / 'checkpoints'}: {', '.join(removed)}"
        )
    try:
        if resume is not None:
            saved = ckpt.load(resume)
            ckpt.check_compatible(saved, config_to_dict(config), resume)
        if rank == 0:
            write_run_metadata(run_dir, config, provenance)
        reporter.info(
            f"run {run_dir} | {world_size} process(es) | device {device} | config "
            f"{config_hash(config)} | seed "
            f"{config.train.seed} | env {config.train.env} | data {_data_label(provenance)} | "
            f"log {reporter.log_path}"
        )
        trainer = Trainer(
            config, run_dir, device, env_factory=env_factory_for(config), rank=rank,
            world_size=world_size, reporter=reporter, provenance=provenance,
        )  # fmt: skip
        if resume is not None:
            trainer.load(resume)
        if trainer.state.episodes >= config.train.episodes:
            reporter.info(
                f"run already has {trainer.state.episodes} episodes (target "
                f"{config.train.episodes}); raise --episodes to continue or use --fresh-start"
            )
        result = trainer.train(config.train.episodes)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        if rank == 0:
            console.print(summary_table(result, peak))
        reporter.info(
            f"done: {result.episodes} episodes in {result.seconds:.1f} s, peak memory "
            f"{peak:.0f} MB, stopped: {result.stop_reason}",
            echo=False,
        )
        return result
    except CheckpointError:
        raise
    finally:
        reporter.close()
