"""``clstm-ppo reproduce-paper``: Zou et al. (arXiv 2212.02721) Table 6 (USA) with our code.

For each seed: train CLSTM-PPO and the MLP-PPO baseline on the stock-portfolio environment
(train split), pick each run's best checkpoint on the validation split, and walk the trading
period once with the deterministic policy. Beside them, on the same days: the Dow rebuilt as a
price-weighted index of the tickers used, and an equal-weight buy-and-hold of them (same costs).
Metrics come from the evaluation module; across seeds we report mean, std and a 95% t-interval
clipped to each metric's range (:func:`clstm_ppo.evaluate.metrics.mean_interval`). Everything
runs on the CPU in one process (the network is small and the walk is sequential); a config that
asks for GPUs or more processes is refused rather than silently run on the CPU. Runs resume from
their latest checkpoint when the command is repeated.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console
from rich.table import Table

from clstm_ppo.agent.policy import ModelPolicy
from clstm_ppo.config import Config, build_config, config_hash
from clstm_ppo.envs.portfolio import PortfolioSimulator, portfolio_env_factory
from clstm_ppo.envs.portfolio_tape import PortfolioTape, portfolio_tape_for
from clstm_ppo.errors import CheckpointError, ConfigError
from clstm_ppo.evaluate.metrics import BOUNDS, UNBOUNDED, mean_interval, strategy_metrics
from clstm_ppo.evaluate.results import StrategyRun
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.ensemble import load_member
from clstm_ppo.train.reporting import Reporter
from clstm_ppo.train.trainer import Trainer

# Zou et al., Table 6, USA, 2016-01-01..2020-05-08 (blank cells are not given in the paper).
PAPER_TABLE = {
    "CLSTM-PPO": {"cumulative_return": 0.9081, "max_drawdown": 0.4651, "sharpe": 1.154},
    "Ensemble (Yang et al. 2020)": {"cumulative_return": 0.7040, "sharpe": 1.312},
    "PPO": {"cumulative_return": 0.5437, "max_drawdown": 0.2830, "sharpe": 0.808},
    "RecurrentPPO": {"cumulative_return": 0.4977, "sharpe": 0.682},
    "DJI": {"cumulative_return": 0.5097, "sharpe": 0.415},
}
MODELS = {"clstm": "CLSTM-PPO", "mlp": "PPO"}  # our architecture -> the paper's row
PAPER_METRICS = ("cumulative_return", "max_drawdown", "sharpe")
CPU = torch.device("cpu")  # the only device of the reproduction (see the module docstring)


class ReproductionInterrupted(Exception):
    """SIGINT/SIGTERM during training: the run was saved and the command should stop."""


def _trades(sim: PortfolioSimulator, tickers: tuple[str, ...]) -> pd.DataFrame:
    """Every sell as a closed trade (P&L against the average cost), labelled by ticker."""
    steps = int(sim.steps[0])
    pnl = sim.sell_pnl[0, :steps]
    days, stocks = np.nonzero(np.isfinite(pnl))
    dates = sim.tape.dates[sim.start_day[0] + days]
    return pd.DataFrame(
        {
            "strategy": [tickers[s] for s in stocks],
            "opened": pd.NaT,
            "closed": dates,
            "pnl": pnl[days, stocks],
        }
    )


def walk_policy(policy: Any, config: Config, split: str, name: str) -> StrategyRun:
    """One continuous deterministic walk through ``split`` from its first day."""
    return walk_account(policy, config, split, name)[0]


def walk_account(
    policy: Any, config: Config, split: str, name: str, account: dict | None = None
) -> tuple[StrategyRun, dict[str, Any]]:
    """:func:`walk_policy` from ``account`` (cash, holdings, average costs) when given, and the
    account at the end of the walk."""
    tape = portfolio_tape_for(config)
    whole_split = config.portfolio.model_copy(update={"episode_length": None})
    sim = PortfolioSimulator(tape, whole_split, 1, split, random_start=False)
    sim.seed(np.zeros(1, dtype=np.uint64))
    sim.reset()
    if account is not None:
        sim.set_account(0, account["cash"], account["holdings"], account["avg_cost"])
    state = policy.initial_state(1, CPU)
    starts = torch.ones(1)
    done = False
    while not done:
        obs = sim.observe()
        market = torch.as_tensor(obs["market"])
        portfolio = torch.as_tensor(obs["portfolio"])
        action, state, _ = policy.act(market, portfolio, None, state, starts)
        starts = torch.zeros(1)
        done = bool(sim.step(action.numpy())["truncated"][0])
    first = int(sim.start_day[0])
    steps = int(sim.steps[0])
    final = {
        "cash": float(sim.cash[0]),
        "holdings": sim.holdings[0].copy(),
        "avg_cost": sim.avg_cost[0].copy(),
    }
    run = StrategyRun(
        name=name,
        dates=tape.dates[first : first + steps + 1],
        values=sim.equity[0, : steps + 1].copy(),
        trades=_trades(sim, tape.panel.tickers),
        costs_paid=float(sim.costs_paid[0]),
        kind="agent",
    )
    return run, final


def index_baseline(tape: PortfolioTape, split: str, capital: float) -> StrategyRun:
    """The Dow's method on our tickers: the sum of their prices (a price-weighted index, no
    dividends), scaled to ``capital`` on the first day. No costs: an index, not a portfolio."""
    first, last = tape.split_bounds(split)
    level = tape.panel.index_close[first : last + 1].sum(axis=1)
    return StrategyRun(
        name="DJI (rebuilt, price-weighted)",
        dates=tape.dates[first : last + 1],
        values=capital * level / level[0],
        trades=pd.DataFrame(columns=["strategy", "opened", "closed", "pnl"]),
        costs_paid=0.0,
    )


def equal_weight_baseline(tape: PortfolioTape, config: Config, split: str) -> StrategyRun:
    """Buy equal dollar amounts of every stock (whole shares, ``cost_pct`` paid) at the first
    close of ``split``, then hold. The first value is the capital before buying, as for the
    agent, so the entry costs count in the return."""
    cfg = config.portfolio
    first, last = tape.split_bounds(split)
    prices = tape.prices[first : last + 1]
    unit = prices[0] * (1.0 + cfg.cost_pct)
    shares = np.floor(cfg.initial_capital / tape.n_stocks / unit)
    cash = cfg.initial_capital - float(shares @ unit)
    return StrategyRun(
        name="equal-weight buy-and-hold",
        dates=tape.dates[first : last + 1],
        values=np.r_[cfg.initial_capital, cash + prices[1:] @ shares],
        trades=pd.DataFrame(columns=["strategy", "opened", "closed", "pnl"]),
        costs_paid=float(shares @ prices[0]) * cfg.cost_pct,
    )


def with_metrics(run: StrategyRun, config: Config) -> StrategyRun:
    pnls = run.trades["pnl"].to_numpy(dtype=float) if len(run.trades) else np.array([])
    run.metrics = strategy_metrics(
        run.dates, run.values, pnls, run.costs_paid, config.train.risk_free_rate
    )
    return run


def portfolio_runs(policy: Any, config: Config, split: str, name: str) -> list[StrategyRun]:
    """A stock-portfolio policy's walk beside the rebuilt Dow and equal-weight buy-and-hold,
    with metrics (what ``clstm-ppo evaluate`` shows for such a checkpoint)."""
    tape = portfolio_tape_for(config)
    runs = [
        walk_policy(policy, config, split, name),
        index_baseline(tape, split, config.portfolio.initial_capital),
        equal_weight_baseline(tape, config, split),
    ]
    return [with_metrics(run, config) for run in runs]


def episodes_for(config: Config, timesteps: int) -> int:
    """Training episodes that cover at least ``timesteps`` env steps on ``config``'s train split.

    All environments reset together and walk episodes of one length, so they finish together:
    the trainer can only stop after a whole round of one episode per environment. Asking it for
    anything else would train more than the count says; this rounds up to whole rounds."""
    first, last = portfolio_tape_for(config).split_bounds("train")
    per_episode = config.portfolio.episode_length or (last - first)
    per_round = per_episode * config.train.num_envs
    return max(1, math.ceil(timesteps / per_round)) * config.train.num_envs


def run_config(base: Config, architecture: str, seed: int, episodes: int, runs: Path) -> Config:
    overrides = {
        "agent.architecture": architecture,
        "train.seed": seed,
        "train.episodes": episodes,
        "train.run_dir": str(runs),
        "train.run_name": f"{architecture}_seed{seed}",
    }
    return build_config(base.model_dump(mode="json"), overrides, origin="reproduce-paper")


def train_one(
    config: Config, console: Console, initial_weights: dict[str, torch.Tensor] | None = None
) -> tuple[Path, float]:
    """Train (or resume, or skip when already done) one run; its folder and training seconds.
    A new run starts from ``initial_weights`` when given (fine-tuning); those weights are
    validated and saved first, as episode 0, so the best checkpoint may be the starting one."""
    folder = config.train.run_dir / config.train.run_name
    reporter = Reporter(folder, active=True, console=console)
    started = time.perf_counter()
    try:
        provenance = portfolio_tape_for(config).provenance
        trainer = Trainer(
            config, folder, CPU, env_factory=portfolio_env_factory,
            reporter=reporter, provenance=provenance,
        )  # fmt: skip
        try:
            resume = ckpt.resolve(folder / "checkpoints", "latest")
        except CheckpointError:
            resume = None  # nothing saved yet: a fresh run
        if resume is not None:
            trainer.load(resume)
        elif initial_weights is not None:
            trainer.model.load_state_dict(initial_weights)
            trainer.validate_starting_point()  # the starting model competes on the hold-out
        if trainer.state.episodes < config.train.episodes:
            result = trainer.train(config.train.episodes)
            if trainer.stop_signal:
                # A checkpoint was saved; evaluating a half-trained model would mislead.
                raise ReproductionInterrupted(
                    f"{result.stop_reason}: {folder} saved at episode {result.episodes}; rerun "
                    "the same command to continue"
                )
    finally:
        reporter.close()
    return folder, time.perf_counter() - started


def summarise(values: list[float], metric: str | None = None) -> dict[str, float]:
    """Mean, std and 95% interval across seeds, within ``metric``'s natural range."""
    return mean_interval(values, BOUNDS.get(metric or "", UNBOUNDED))


def check_cpu_only(config: Config) -> None:
    """Refuse settings the reproduction would otherwise ignore: it trains on the CPU, in one
    process (see the module docstring)."""
    train = config.train
    if train.num_gpus > 0:
        raise ConfigError(
            f"train.num_gpus: reproduce-paper runs on the CPU, got {train.num_gpus} (use 0)"
        )
    if train.device == "cuda":
        raise ConfigError("train.device: reproduce-paper runs on the CPU, got cuda (use cpu)")
    if train.num_procs > 1:
        raise ConfigError(
            f"train.num_procs: reproduce-paper trains in one process, got {train.num_procs}"
        )


def _pct(value: float) -> str:
    return "-" if value != value else f"{value:.2%}"


def _num(value: float) -> str:
    return "-" if value != value else f"{value:.3f}"


def _cell(metric: str, value: float) -> str:
    return _num(value) if metric == "sharpe" else _pct(value)


def markdown_table(results: dict[str, Any]) -> str:
    """Our rows (mean, 95% CI across seeds) beside the paper's, in the paper's metrics."""
    lines = [
        "| strategy | cumulative return (ours) | paper | max drawdown (ours) | paper "
        "| Sharpe (ours) | paper |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in results["models"].items():
        paper = PAPER_TABLE[MODELS[key]]
        cells = []
        for metric in PAPER_METRICS:
            s = row["summary"][metric]
            ours = f"{_cell(metric, s['mean'])} [{_cell(metric, s['ci_low'])}, "
            ours += f"{_cell(metric, s['ci_high'])}]"
            cells += [ours, _cell(metric, paper.get(metric, math.nan))]
        retrain = results.get("provenance", {}).get("retrain", "none")
        how = "" if retrain == "none" else f", {retrain} retraining"
        label = f"{MODELS[key]} ({key}, {len(row['seeds'])} seeds{how})"
        lines.append(f"| {label} | " + " | ".join(cells))
    for name, metrics in results["baselines"].items():
        paper = PAPER_TABLE["DJI"] if name.startswith("DJI") else {}
        cells = []
        for metric in PAPER_METRICS:
            cells += [_cell(metric, metrics[metric]), _cell(metric, paper.get(metric, math.nan))]
        lines.append(f"| {name} | " + " | ".join(cells))
    return "\n".join(line + (" |" if not line.endswith("|") else "") for line in lines) + "\n"


def reproduce_paper(
    base: Config,
    seeds: list[int],
    timesteps: int,
    output: Path,
    architectures: tuple[str, ...] = ("clstm", "mlp"),
    console: Console | None = None,
    retrain_timesteps: int = 0,
) -> dict[str, Any]:
    """Train, evaluate and tabulate (see the module docstring); ``retrain_timesteps > 0`` trades
    with quarterly fine-tuning of at least that many env steps each
    (:mod:`clstm_ppo.evaluate.retrain`)."""
    check_cpu_only(base)
    console = console or Console()
    started = time.perf_counter()
    tape = portfolio_tape_for(base)
    episodes = episodes_for(base, timesteps)
    output.mkdir(parents=True, exist_ok=True)
    split = "test"
    baselines = [
        with_metrics(index_baseline(tape, split, base.portfolio.initial_capital), base),
        with_metrics(equal_weight_baseline(tape, base, split), base),
    ]
    results: dict[str, Any] = {"models": {}, "baselines": {}}
    for arch in architectures:
        per_seed = []
        for seed in seeds:
            config = run_config(base, arch, seed, episodes, output / "runs")
            console.print(f"[bold]{MODELS[arch]}[/] ({arch}) seed {seed}: training {episodes} "
                          f"episodes on {tape.provenance['splits']['train']}")  # fmt: skip
            folder, seconds = train_one(config, console)
            best = ckpt.resolve(folder / "checkpoints", "best", flag=f"reproduce-paper {folder}:")
            model, payload = load_member(best, CPU)
            name = f"{MODELS[arch]} seed {seed}"
            fine_tunes: list[dict[str, Any]] = []
            if retrain_timesteps:
                from clstm_ppo.evaluate.retrain import walk_with_retraining

                walk, fine_tunes = walk_with_retraining(
                    config, model, retrain_timesteps, name, console
                )
            else:
                walk = walk_policy(ModelPolicy(model), config, split, name)
            agent = with_metrics(walk, config)
            report_dir = output / "reports" / f"{arch}_seed{seed}"
            _write_report(report_dir, [agent, *baselines], config, tape, payload)
            per_seed.append(
                {
                    "seed": seed,
                    "train_seconds": round(seconds, 1),
                    "checkpoint_episode": payload["train_state"]["episodes"],
                    "env_steps": payload["train_state"]["env_steps"],
                    "trained_env_steps": int(trained_state(folder)["env_steps"]),
                    "report": str(report_dir / "report.html"),
                    "metrics": agent.metrics,
                }
                | ({"fine_tunes": fine_tunes} if retrain_timesteps else {})
            )
        summary = {
            m: summarise([_paper_metric(s["metrics"], m) for s in per_seed], m)
            for m in PAPER_METRICS
        }
        results["models"][arch] = {"seeds": per_seed, "summary": summary}
    for run in baselines:
        results["baselines"][run.name] = {m: _paper_metric(run.metrics, m) for m in PAPER_METRICS}
    results["provenance"] = {
        "data": tape.provenance,
        "config_hash": config_hash(base),
        "git_commit": ckpt.git_commit(),
        "seeds": seeds,
        "timesteps_per_run": timesteps,
        "episodes_per_run": episodes,
        "retrain": "quarterly" if retrain_timesteps else "none",
        "retrain_timesteps": retrain_timesteps,
        "trading_period": tape.provenance["splits"]["test"],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (output / "results.json").write_text(json.dumps(results, indent=2, default=float) + "\n")
    table = markdown_table(results)
    (output / "table.md").write_text(table)
    console.print(_rich_table(results))
    console.print(f"results: {output / 'results.json'}, table: {output / 'table.md'}")
    return results


def trained_state(folder: Path) -> dict[str, Any]:
    """What a run trained for (its latest checkpoint's train state: episodes, env steps),
    whichever checkpoint was chosen."""
    return ckpt.load(ckpt.resolve(folder / "checkpoints", "latest"))["train_state"]


def _paper_metric(metrics: dict[str, float], name: str) -> float:
    return metrics["total_return" if name == "cumulative_return" else name]


def _write_report(
    folder: Path, runs: list[StrategyRun], config: Config, tape: PortfolioTape, payload: dict
) -> None:
    from clstm_ppo.evaluate.report import write_report

    first, last = tape.split_bounds("test")
    provenance = {
        "policy": {"checkpoint_episode": payload["train_state"]["episodes"],
                   "seeds": [config.train.seed], "architecture": config.agent.architecture},
        "data": tape.provenance["data"],
        "split": {"name": "test", "first": str(tape.dates[first].date()),
                  "last": str(tape.dates[last].date()), "days": last - first + 1},
        "config_hash": config_hash(config),
        "git_commit": ckpt.git_commit(),
        "turbulence_threshold_after_train": tape.provenance["turbulence_threshold_after_train"],
    }  # fmt: skip
    write_report(folder, runs, provenance, title="Paper reproduction: stock portfolio")


def _rich_table(results: dict[str, Any]) -> Table:
    table = Table(
        title="Trading period: ours (mean [95% t-interval, within range] across seeds) vs the paper"
    )
    for column in ("strategy", "cum. return", "paper", "max DD", "paper", "Sharpe", "paper"):
        table.add_column(column, justify="right")
    for line in markdown_table(results).splitlines()[2:]:
        table.add_row(*[cell.strip() for cell in line.strip("|").split("|")])
    return table
