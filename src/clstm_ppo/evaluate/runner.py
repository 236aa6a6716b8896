"""``clstm-ppo evaluate``: a checkpoint or an ensemble on unseen data, beside the baselines.

One run: load the policy (checkpoint: ``best``/``latest``/a link name or a path; ensemble: a
folder with ``ensemble.json``) with the config it was trained with, walk the whole split once
with the deterministic policy, walk the baselines on the same data and costs, compute the
metrics, and write the files and ``report.html`` (:mod:`clstm_ppo.evaluate.report`).

Several runs (``--runs DIR ...``, one per seed): each run's ``best_composite`` checkpoint is
evaluated the same way; the summary gives, per metric, the mean, the standard deviation and a
95% t-interval across runs, beside the baselines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table
from scipy import stats

from clstm_ppo.agent.policy import ModelPolicy
from clstm_ppo.config import Config, config_hash
from clstm_ppo.envs.tape import tape_for
from clstm_ppo.errors import CheckpointError
from clstm_ppo.evaluate.baselines import baselines, policy_chooser, walk
from clstm_ppo.evaluate.metrics import strategy_metrics
from clstm_ppo.evaluate.results import StrategyRun
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.ensemble import METADATA, load_ensemble, load_member
from clstm_ppo.train.trainer import run_policy

SHOWN = ("total_return", "annualised_return", "sharpe", "sharpe_ci_low", "sharpe_ci_high",
         "max_drawdown", "win_rate", "profit_rate", "trades", "costs_paid")  # fmt: skip


def load_policy(spec: str, checkpoints: Path) -> tuple[Any, Config, dict[str, Any]]:
    """The policy named by ``spec``, the config it was trained with, and where it came from."""
    location = Path(spec)
    if location.is_dir() and (location / METADATA).exists():
        policy, metadata = load_ensemble(location)
        config = Config.model_validate(metadata["config"])
        return policy, config, {"ensemble": str(location), "weights": metadata["weights"],
                                "seeds": [m["seed"] for m in metadata["members"]]}  # fmt: skip
    path = ckpt.resolve(checkpoints, spec) if not location.exists() else location
    if path.is_dir():
        raise CheckpointError(f"--checkpoint {spec}: a folder without {METADATA}")
    model, payload = load_member(path, torch.device("cpu"))
    config = Config.model_validate(payload["config"])
    source = {
        "checkpoint": str(path),
        "episode": payload["train_state"]["episodes"],
        "seeds": [config.train.seed],
        "git_commit_of_training": payload.get("git_commit"),
    }
    return ModelPolicy(model), config, source


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
    console: Console, episodes: int | None = None,
) -> list[StrategyRun]:  # fmt: skip
    from clstm_ppo.evaluate.report import write_report

    policy, config, source = load_policy(spec, checkpoints)
    source["portfolio"] = is_portfolio_policy(policy)
    runs = evaluate_policy(policy, config, split, random_seeds)
    provenance = provenance_of(config, split, runs[0].dates, source)
    written = write_report(output, runs, provenance)
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
        policy, config, _ = load_policy("best", folder / "checkpoints")
        runs = evaluate_policy(policy, config, split, random_seeds if index == 0 else 0,
                               name=f"clstm-ppo ({folder.name})")  # fmt: skip
        agents.append(runs[0])
        if index == 0:
            base = runs[1:]
    rows = []
    for key in SHOWN:
        values = np.array([run.metrics[key] for run in agents], dtype=float)
        finite = values[np.isfinite(values)]
        mean = float(finite.mean()) if finite.size else math.nan
        std = float(finite.std(ddof=1)) if finite.size > 1 else math.nan
        half = (stats.t.ppf(0.975, finite.size - 1) * std / math.sqrt(finite.size)
                if finite.size > 1 else math.nan)  # fmt: skip
        row = {"metric": key, "mean": mean, "std": std, "ci_low": mean - half,
               "ci_high": mean + half}  # fmt: skip
        row.update({run.name: run.metrics[key] for run in base})
        rows.append(row)
    summary = pd.DataFrame(rows)
    output.mkdir(parents=True, exist_ok=True)
    summary.to_csv(output / "summary.csv", index=False)
    (output / "summary.json").write_text(json.dumps(rows, indent=2, default=float))
    table = Table(title=f"{len(agents)} runs on the {split} split: mean, std, 95% CI")
    for column in summary.columns:
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(row["metric"], *(_fmt(row["metric"], row[c]) for c in summary.columns[1:]))
    console.print(table)
    return summary
