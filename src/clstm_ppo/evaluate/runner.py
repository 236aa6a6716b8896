"""``clstm-ppo evaluate``: a checkpoint or an ensemble on unseen data, beside the baselines.

One run: load the policy (checkpoint: ``best``/``latest``/a link name or a path; ensemble: a
folder with ``ensemble.json``) with the config it was trained with, walk the whole split once
with the deterministic policy, walk the baselines on the same data and costs, compute the
metrics, and write the files and ``report.html`` (:mod:`clstm_ppo.evaluate.report`).

Several runs (``--runs DIR ...``, one per seed): each run's ``best_composite`` checkpoint is
evaluated the same way; the summary gives, per metric, the mean, the standard deviation and a
95% t-interval across runs clipped to the metric's range
(:func:`clstm_ppo.evaluate.metrics.mean_interval`), beside the baselines.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from clstm_ppo.agent.policy import ModelPolicy
from clstm_ppo.config import Config, build_config, config_hash, config_to_dict
from clstm_ppo.envs.tape import tape_for
from clstm_ppo.errors import CheckpointError, ConfigError
from clstm_ppo.evaluate.baselines import baselines, policy_chooser, walk
from clstm_ppo.evaluate.metrics import BOUNDS, UNBOUNDED, mean_interval, strategy_metrics
from clstm_ppo.evaluate.results import StrategyRun
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.ensemble import METADATA, load_ensemble, load_member
from clstm_ppo.train.trainer import run_policy

SHOWN = ("total_return", "annualised_return", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
         "max_drawdown", "win_rate", "profit_rate", "trades", "costs_paid")  # fmt: skip


# Settings that shape the network's input (observation window, action space, sizes): a policy
# can only be fed what it was trained on, so ``data_overrides`` may not touch them.
NETWORK_INPUTS = ("agent", "env.window", "env.enable_multi_leg", "portfolio.window")
DATA_SECTIONS = ("data", "portfolio")


def _first_line(error: BaseException) -> str:
    """The informative line of an exception, for a one-line message (torch's state-dict errors
    start with a header line, "Error(s) in loading state_dict for ...")."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    lines = [line for line in lines if not line.startswith("Error(s) in loading")] or lines
    return (lines[0] if lines else type(error).__name__)[:200]


def _what_is_wrong(error: BaseException, what: str = "checkpoint") -> str:
    """What ``error``, raised while reading a ``what`` and building its network, says is wrong
    with the file."""
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        key = ".".join(str(part) for part in first["loc"]) or "(top level)"
        return f"its config is invalid at '{key}' ({first['msg']})"
    if isinstance(error, KeyError) and error.args:
        return f"incomplete {what}, missing {error.args[0]!r}"
    return f"not a usable clstm-ppo {what} ({_first_line(error)})"


# What a checkpoint or ensemble file with the right marker but the wrong content raises while
# it is read and its network built; each becomes one CheckpointError line naming the file.
_MALFORMED = (KeyError, TypeError, ValueError, RuntimeError, AttributeError, IndexError)


def _load_member(path: Path) -> tuple[Any, dict[str, Any]]:
    try:
        model, payload = load_member(path, torch.device("cpu"))
    except _MALFORMED as error:  # a CheckpointError is not one of these: it passes as it is
        raise CheckpointError(f"{path}: {_what_is_wrong(error)}") from None
    for key in ("config", "train_state"):
        if not isinstance(payload.get(key), dict):
            missing = "missing" if key not in payload else "malformed, not a mapping:"
            raise CheckpointError(f"{path}: incomplete checkpoint, {missing} {key!r}")
    return model, payload


def _config_of(values: Any, path: Path) -> Config:
    try:
        return Config.model_validate(values)
    except ValidationError as error:
        raise CheckpointError(f"{path}: {_what_is_wrong(error)}") from None


def _load_ensemble(location: Path) -> tuple[Any, Config, dict[str, Any]]:
    metadata_path = location / METADATA
    try:
        policy, metadata = load_ensemble(location)
        config = _config_of(metadata["config"], metadata_path)
        source = {"ensemble": str(location), "weights": metadata["weights"],
                  "seeds": [m["seed"] for m in metadata["members"]]}  # fmt: skip
    except _MALFORMED as error:
        wrong = _what_is_wrong(error, "ensemble file")
        raise CheckpointError(f"{metadata_path}: {wrong}") from None
    return policy, config, source


def _overridden(config: Config, overrides: dict[str, Any]) -> tuple[Config, dict[str, Any]]:
    """``config`` with the dotted ``overrides`` of data settings applied, and a record of each
    key's value in training and in this evaluation (for the provenance)."""
    for key in overrides:
        for fixed in NETWORK_INPUTS:
            if key == fixed or key.startswith(f"{fixed}.") or fixed.startswith(f"{key}."):
                raise ConfigError(
                    f"--data: {key} cannot be changed for evaluation, it sets the network's "
                    f"input ({fixed}), which must stay as the policy was trained"
                )
        if key.split(".")[0] not in DATA_SECTIONS:
            raise ConfigError(f"--data: {key} is not a data setting (data.* or portfolio.*)")
    trained = config_to_dict(config)
    changed = build_config(trained, overrides, origin="--data")
    evaluated = config_to_dict(changed)
    record = {key: {"trained": _dotted(trained, key), "evaluated": _dotted(evaluated, key)}
              for key in overrides}  # fmt: skip
    return changed, record


def _dotted(values: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        values = values.get(part) if isinstance(values, dict) else None
    return values


def _check_inputs(policy: Any, config: Config) -> None:
    """Refuse other data that would not fit the network: a stock-portfolio policy trades a fixed
    number of stocks (one action and five features per stock)."""
    if not is_portfolio_policy(policy):
        return  # the options observation has the same shape for every underlying
    from clstm_ppo.envs.portfolio_tape import portfolio_tape_for

    members = getattr(policy, "members", None) or [policy]
    trained = int(members[0].model.actor_head.weight.shape[0])
    stocks = portfolio_tape_for(config).n_stocks
    if stocks != trained:
        raise ConfigError(
            f"--data: the data give {stocks} usable stocks but the policy trades {trained}; "
            "evaluate it on data with the same number of stocks"
        )


def load_policy(
    spec: str,
    checkpoints: Path,
    flag: str = "--checkpoint",
    data_overrides: dict[str, Any] | None = None,
) -> tuple[Any, Config, dict[str, Any]]:
    """The policy named by ``spec``, the config it was trained with (with ``data_overrides``,
    dotted data settings, applied on top), and where it came from. ``flag`` is the option the
    user gave ``spec`` with, for error messages."""
    location = Path(spec)
    if location.is_dir() and (location / METADATA).exists():
        policy, config, source = _load_ensemble(location)
    else:
        path = location if location.exists() else ckpt.resolve(checkpoints, spec, flag=flag)
        if path.is_dir():
            raise CheckpointError(f"{flag} {spec}: a folder without {METADATA}")
        model, payload = _load_member(path)
        config = _config_of(payload["config"], path)
        policy = ModelPolicy(model)
        source = {
            "checkpoint": str(path),
            "episode": payload["train_state"].get("episodes"),
            "seeds": [config.train.seed],
            "git_commit_of_training": payload.get("git_commit"),
        }
    if data_overrides:
        # A `--data csv:PATH` reaches us as both env's keys (the CLI cannot know which env the
        # checkpoint trained on): keep only this policy's.
        other = "data." if is_portfolio_policy(policy) else "portfolio."
        data_overrides = {
            key: value for key, value in data_overrides.items() if not key.startswith(other)
        }
    if data_overrides:
        config, source["data_overrides"] = _overridden(config, data_overrides)
        _check_inputs(policy, config)
    return policy, config, source


def _with_metrics(run: StrategyRun, config: Config) -> StrategyRun:
    pnls = run.trades["pnl"].to_numpy(dtype=float) if len(run.trades) else np.array([])
    run.metrics = strategy_metrics(
        run.dates, run.values, pnls, run.costs_paid, config.train.risk_free_rate
    )
    return run


def is_portfolio_policy(policy: Any) -> bool:
    """A Box-action policy trained on the stock-portfolio environment (``portfolio.data``)."""
    discrete = getattr(policy, "discrete", None)
    if discrete is None:
        discrete = policy.model.discrete
    return not discrete


def evaluate_policy(
    policy: Any, config: Config, split: str, random_seeds: int, name: str = "clstm-ppo"
) -> list[StrategyRun]:
    if name == "clstm-ppo" and config.agent.architecture == "mlp":
        name = "mlp-ppo"
    if is_portfolio_policy(policy):
        from clstm_ppo.evaluate.paper import portfolio_runs

        return portfolio_runs(policy, config, split, name)
    agent = walk(config, split, policy_chooser(policy), name, kind="agent")
    tape = tape_for(config)
    runs = [agent, *baselines(config, tape, split, agent.dates, random_seeds)]
    return [_with_metrics(run, config) for run in runs]


def provenance_of(config: Config, split: str, dates: pd.DatetimeIndex, source: dict) -> dict:
    if source.get("portfolio"):
        from clstm_ppo.envs.portfolio_tape import portfolio_tape_for

        tape = portfolio_tape_for(config)
    else:
        tape = tape_for(config)
    return {
        "policy": source,
        "data": tape.provenance["data"],
        # Other data than the policy was trained on (``data_overrides``): each key's two values.
        "data_overridden": bool(source.get("data_overrides")),
        "split": {
            "name": split,
            "first": str(dates[0].date()),
            "last": str(dates[-1].date()),
            "days": len(dates),
        },
        "config_hash": config_hash(config),
        "git_commit": ckpt.git_commit(),
        "turbulence_threshold_after_train": tape.provenance["turbulence_threshold_after_train"],
    }


def _fmt(key: str, value: float) -> str:
    if value != value:
        return "-"
    if key in ("trades",):
        return f"{value:.0f}"
    if key == "costs_paid":
        return f"{value:,.0f}"
    if key in ("total_return", "annualised_return", "max_drawdown", "win_rate", "profit_rate"):
        return f"{value:+.1%}" if "return" in key else f"{value:.1%}"
    return f"{value:.2f}"


def metrics_table(runs: list[StrategyRun], title: str) -> Table:
    table = Table(title=title)
    table.add_column("strategy")
    for key in SHOWN:
        table.add_column(key.replace("_", " "), justify="right")
    for run in runs:
        style = "bold" if run.kind == "agent" else None
        table.add_row(run.name, *(_fmt(k, run.metrics.get(k, float("nan"))) for k in SHOWN),
                      style=style)  # fmt: skip
    return table


def run_evaluation(
    spec: str, checkpoints: Path, split: str, output: Path, random_seeds: int,
    console: Console, episodes: int | None = None, *,
    data_overrides: dict[str, Any] | None = None,
) -> list[StrategyRun]:  # fmt: skip
    """Evaluate one checkpoint or ensemble (see the module docstring). ``data_overrides``:
    dotted ``data.*``/``portfolio.*`` settings (e.g. ``{"data.source": "csv", "data.path":
    "spy.csv"}`` or ``{"portfolio.data": "csv:PATH"}``) applied on top of the config the policy
    was trained with, to evaluate it on other data; recorded in the provenance."""
    from clstm_ppo.evaluate.report import write_report

    policy, config, source = load_policy(spec, checkpoints, data_overrides=data_overrides)
    source["portfolio"] = is_portfolio_policy(policy)
    runs = evaluate_policy(policy, config, split, random_seeds)
    provenance = provenance_of(config, split, runs[0].dates, source)
    written = write_report(output, runs, provenance)
    # Machine-readable beside report.html: what was evaluated, on which data and split.
    (output / "provenance.json").write_text(json.dumps(provenance, indent=2, default=str) + "\n")
    period = f"{provenance['split']['first']}..{provenance['split']['last']}"
    console.print(metrics_table(runs, f"evaluation on the {split} split ({period})"))
    console.print(f"report: {written['report.html']}", highlight=False)
    if episodes and not source["portfolio"]:
        # Besides the one continuous walk: K fixed windows of episode_length days (the same
        # windows every time), aggregated like the trainer's validation.
        windows = run_policy(policy, config, split=split, episodes=episodes)
        (output / "windows.json").write_text(json.dumps(windows, indent=2, default=float))
        console.print(
            f"{episodes} windows of {config.env.episode_length} days: "
            + ", ".join(f"{key} {value:.4g}" for key, value in windows.items()),
            highlight=False,
        )
    return runs


def summarise_runs(
    run_dirs: list[Path], split: str, output: Path, random_seeds: int, console: Console
) -> pd.DataFrame:
    """Evaluate each run's best checkpoint and summarise across runs (seeds)."""
    agents: list[StrategyRun] = []
    base: list[StrategyRun] = []
    for index, folder in enumerate(run_dirs):
        policy, config, _ = load_policy("best", folder / "checkpoints", flag=f"--runs {folder}:")
        runs = evaluate_policy(policy, config, split, random_seeds if index == 0 else 0,
                               name=f"clstm-ppo ({folder.name})")  # fmt: skip
        agents.append(runs[0])
        if index == 0:
            base = runs[1:]
    rows = []
    for key in SHOWN:
        values = [run.metrics[key] for run in agents]
        row = {"metric": key, **mean_interval(values, BOUNDS.get(key, UNBOUNDED))}
        row.update({run.name: run.metrics[key] for run in base})
        rows.append(row)
    summary = pd.DataFrame(rows)
    output.mkdir(parents=True, exist_ok=True)
    summary.to_csv(output / "summary.csv", index=False)
    (output / "summary.json").write_text(json.dumps(rows, indent=2, default=float))
    table = Table(
        title=f"{len(agents)} runs on the {split} split: mean, std, 95% t-interval "
        "(within each metric's range)"
    )
    for column in summary.columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["metric"], *(_fmt(row["metric"], row[c]) for c in summary.columns[1:]))
    console.print(table)
    return summary
