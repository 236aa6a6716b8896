"""Ensembles: M models with different seeds, weighted by their validation performance.

``train_ensemble`` trains each member with the ordinary :class:`Trainer` (seeds ``seed``,
``seed + 1``, ...), in parallel processes when there are cores for them, then validates each
member's ``best_composite`` checkpoint and weights the members by a softmax of their validation
composite score::

    weight_i = exp(composite_i / T) / sum_j exp(composite_j / T),   T = train.ensemble_temperature

With the default T = 0.05, a member 0.05 composite points better gets e (about 2.7) times the
weight; T -> infinity gives equal weights, T -> 0 picks the best member. ``ensemble.json``
records members (checkpoint paths, seeds, validation metrics), weights, the temperature, the
config hash, data provenance and the git commit; the ensemble's own validation (weighted
probability voting, see :mod:`clstm_ppo.agent.policy`) is recorded beside them.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import torch
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from clstm_ppo.agent.mlp import build_model, model_shapes
from clstm_ppo.agent.network import CLSTMActorCritic
from clstm_ppo.agent.policy import EnsemblePolicy, ModelPolicy
from clstm_ppo.config import Config, config_from_key, config_hash, config_key, config_to_dict
from clstm_ppo.errors import CheckpointError
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.reporting import Reporter
from clstm_ppo.train.run import data_provenance, env_factory_for, select_device
from clstm_ppo.train.run_folder import RunLock, remove_leftovers
from clstm_ppo.train.trainer import Trainer, run_policy

FORMAT = "clstm-ppo-ensemble"
METADATA = "ensemble.json"


def ensemble_weights(scores: list[float], temperature: float) -> list[float]:
    """Softmax of ``scores / temperature``; a NaN score (no validation) counts one point below
    the worst real score."""
    finite = [s for s in scores if s == s]
    floor = min(finite) - 1.0 if finite else 0.0
    values = [(s if s == s else floor) / temperature for s in scores]
    top = max(values)
    exps = [math.exp(v - top) for v in values]
    total = sum(exps)
    return [e / total for e in exps]


def load_member(path: Path, device: torch.device) -> tuple[CLSTMActorCritic, dict[str, Any]]:
    """A member's network from its checkpoint (safe load, shapes from its own config)."""
    payload = ckpt.load(path, device)
    ckpt.require(payload, path, "model", "config", "train_state")
    try:
        config = Config.model_validate(payload["config"])
    except ValidationError as error:
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"])
        raise CheckpointError(
            f"{path}: its config is invalid at '{key}' ({first['msg']})"
        ) from None
    state = payload["model"]
    try:
        model = build_model(config.agent, **model_shapes(state, config.agent)).to(device)
        model.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        detail = lines[1] if len(lines) > 1 else (lines[0] if lines else type(error).__name__)
        raise CheckpointError(
            f"{path}: weights do not fit the network its config describes ({detail[:160]})"
        ) from None
    model.eval()
    return model, payload


def _train_member(
    key: str, seed: int, run_dir: str, episodes: int, threads: int, device_name: str
) -> dict[str, Any]:
    """One member, in its own process: train, then validate its best checkpoint."""
    torch.set_num_threads(threads)
    config = config_from_key(key)
    config = config.model_copy(update={"train": config.train.model_copy(update={"seed": seed})})
    folder = Path(run_dir)
    device = torch.device(device_name)
    with RunLock(folder):
        remove_leftovers(folder / "checkpoints")
        reporter = Reporter(folder, active=True, console=Console(quiet=True))
        try:
            trainer = Trainer(
                config, folder, device, env_factory=env_factory_for(config), reporter=reporter
            )
            result = trainer.train(episodes)
        finally:
            reporter.close()
    best = ckpt.resolve(folder / "checkpoints", "best_composite")
    model, _ = load_member(best, device)
    validation = run_policy(ModelPolicy(model), config, env_factory_for(config), device)
    return {
        "seed": seed,
        "run_dir": str(folder),
        "checkpoint": str(best),
        "episodes": result.episodes,
        "validation": validation,
    }


def train_ensemble(
    config: Config, members: int, episodes: int, console: Console | None = None
) -> dict[str, Any]:
    """Train ``members`` models and write ``ensemble.json``; returns the metadata."""
    console = console or Console()
    folder = config.train.run_dir / f"{config.train.run_name}_ensemble"
    with RunLock(folder):
        return _train_ensemble_in(folder, config, members, episodes, console)


def _train_ensemble_in(
    folder: Path, config: Config, members: int, episodes: int, console: Console
) -> dict[str, Any]:
    # --num_gpus 1 puts every member on the GPU (the CPU with a notice when there is none).
    device = select_device(config, console)
    seeds = [config.train.seed + i for i in range(members)]
    cores = os.cpu_count() or 1
    parallel = max(1, min(members, cores))
    threads = max(1, cores // parallel)
    console.print(
        f"training {members} ensemble members ({episodes} episodes each, seeds {seeds}) in "
        f"{parallel} parallel process(es) on {device} under {folder}",
        highlight=False,
    )
    key = config_key(config)
    jobs = [(key, seed, str(folder / f"member_{i}_seed_{seed}"), episodes, threads, str(device))
            for i, seed in enumerate(seeds)]  # fmt: skip
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=parallel, mp_context=context) as pool:
        results = list(pool.map(_train_member, *zip(*jobs, strict=True)))
    temperature = config.train.ensemble_temperature
    weights = ensemble_weights([r["validation"]["composite"] for r in results], temperature)
    policy = EnsemblePolicy(
        [load_member(Path(r["checkpoint"]), torch.device("cpu"))[0] for r in results], weights
    )
    metadata = {
        "format": FORMAT,
        "members": [{**r, "weight": w} for r, w in zip(results, weights, strict=True)],
        "weights": weights,
        "temperature": temperature,
        "validation": run_policy(policy, config, env_factory_for(config)),
        "config": config_to_dict(config),
        "config_hash": config_hash(config),
        "provenance": data_provenance(config),
        "git_commit": ckpt.git_commit(),
    }
    path = folder / METADATA
    temporary = path.with_name(f".{METADATA}.tmp")
    temporary.write_text(json.dumps(metadata, indent=2, default=str))
    os.replace(temporary, path)
    console.print(_table(metadata))
    console.print(f"ensemble written to {path}", highlight=False)
    return metadata


def _table(metadata: dict[str, Any]) -> Table:
    table = Table(title="ensemble validation")
    for column in ("model", "seed", "weight", "composite", "return", "win rate", "profit rate"):
        table.add_column(column, justify="right")
    rows = [(f"member {i}", str(m["seed"]), f"{m['weight']:.3f}", m["validation"])
            for i, m in enumerate(metadata["members"])]  # fmt: skip
    rows.append(("ensemble", "-", "1.000", metadata["validation"]))
    for name, seed, weight, v in rows:
        table.add_row(
            name, seed, weight, f"{v['composite']:.3f}", f"{v['mean_return']:+.2%}",
            f"{v['win_rate']:.1%}", f"{v['profit_rate']:.1%}",
        )  # fmt: skip
    return table


def load_ensemble(
    location: Path, device: torch.device | None = None
) -> tuple[EnsemblePolicy, dict[str, Any]]:
    """An ensemble from its folder or ``ensemble.json``; any problem is one line."""
    device = device or torch.device("cpu")
    path = location / METADATA if location.is_dir() else location
    try:
        metadata = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not a readable ensemble file ({error})") from None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a clstm-ppo ensemble (no '{FORMAT}' marker)")
    models = [load_member(Path(m["checkpoint"]), device)[0] for m in metadata["members"]]
    return EnsemblePolicy(models, metadata["weights"]), metadata
