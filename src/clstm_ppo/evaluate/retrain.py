"""Quarterly retraining on an expanding window, as Yang et al. 2020 trade (``--retrain
quarterly`` of ``clstm-ppo reproduce-paper``).

The first quarter of the trading period is traded by the model trained on the train split and
selected on the validation split. Before each later quarter the model is fine-tuned on all data
up to that quarter, with its last three months held out for checkpoint selection: train
``train.start .. q0 - 92 days``, validation ``q0 - 91 days .. q0 - 1 day``. The model the
fine-tuning starts from is validated on that hold-out too (as episode 0), so it is kept when no
fine-tuned checkpoint beats it. The normalisation
statistics and the turbulence threshold are recomputed on that expanding train window, so each
quarter sees only the past. The account (cash, holdings, cost basis) carries across quarters;
each quarter's walk ends on the next quarter's first close, so no day's return is dropped.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
import torch
from rich.console import Console

from clstm_ppo.agent.network import CLSTMActorCritic
from clstm_ppo.agent.policy import ModelPolicy
from clstm_ppo.config import Config, build_config
from clstm_ppo.envs.portfolio_tape import portfolio_tape_for
from clstm_ppo.evaluate.results import StrategyRun
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.ensemble import load_member

HOLDOUT_DAYS = 91


def quarters(config: Config) -> list[tuple[dt.date, dt.date]]:
    """(first trading day, walk end) of each calendar quarter of the test split; the walk end is
    the next quarter's first trading day (the split's last day for the last quarter)."""
    tape = portfolio_tape_for(config)
    first, last = tape.split_bounds("test")
    dates = tape.dates[first : last + 1]
    starts = np.flatnonzero(np.r_[True, dates.quarter[1:] != dates.quarter[:-1]])
    ends = [*starts[1:], len(dates) - 1]
    return [(dates[a].date(), dates[b].date()) for a, b in zip(starts, ends, strict=True)]


def quarter_config(
    config: Config, q_start: dt.date, q_end: dt.date, name: str, expand: bool = True
) -> Config:
    """The config that trades one quarter; ``expand`` moves train/validation up to it."""
    train_start = config.portfolio.splits.train.start
    validation_start = q_start - dt.timedelta(days=HOLDOUT_DAYS)
    if not expand:
        original = config.portfolio.splits.model_dump(mode="json")
        splits = original | {"test": {"start": str(q_start), "end": str(q_end)}}
        return build_config(
            config.model_dump(mode="json"), {"portfolio.splits": splits, "train.run_name": name},
            origin="reproduce-paper --retrain quarterly",
        )  # fmt: skip
    splits = {
        "train": {"start": str(train_start),
                  "end": str(validation_start - dt.timedelta(days=1))},
        "validation": {"start": str(validation_start),
                       "end": str(q_start - dt.timedelta(days=1))},
        "test": {"start": str(q_start), "end": str(q_end)},
    }  # fmt: skip
    return build_config(
        config.model_dump(mode="json"),
        {"portfolio.splits": splits, "train.run_name": name},
        origin="reproduce-paper --retrain quarterly",
    )


def walk_with_retraining(
    config: Config, model: CLSTMActorCritic, timesteps: int, name: str, console: Console
) -> tuple[StrategyRun, list[dict[str, Any]]]:
    """The trading period walked quarter by quarter with a model fine-tuned before each quarter
    for at least ``timesteps`` env steps (see the module docstring), and one record per
    fine-tuning: the quarter, its train window, the episodes and the env steps it trained.
    ``model`` trades the first quarter (the one selected on the original validation split)."""
    from clstm_ppo.evaluate.paper import episodes_for, train_one, trained_state, walk_account

    account = None
    parts: list[StrategyRun] = []
    fine_tunes: list[dict[str, Any]] = []
    for index, (q_start, q_end) in enumerate(quarters(config)):
        run_name = f"{config.train.run_name}_q{index:02d}"
        q_config = quarter_config(config, q_start, q_end, run_name, expand=index > 0)
        if index > 0:
            # The window grows every quarter, so the episode count follows it.
            episodes = episodes_for(q_config, timesteps)
            q_config = build_config(q_config.model_dump(mode="json"),
                                    {"train.episodes": episodes}, origin="retrain")  # fmt: skip
            console.print(f"{name}: fine-tuning on data up to {q_start} for {episodes} episodes")
            folder, _ = train_one(q_config, console, initial_weights=model.state_dict())
            best = ckpt.resolve(folder / "checkpoints", "best")
            model, payload = load_member(best, torch.device("cpu"))
            latest = trained_state(folder)
            splits = q_config.portfolio.splits
            fine_tunes.append({
                "quarter": str(q_start),
                "train": [str(splits.train.start), str(splits.train.end)],
                "episodes": int(latest["episodes"]),
                "env_steps": int(latest["env_steps"]),
                "checkpoint_episode": int(payload["train_state"]["episodes"]),
            })  # fmt: skip
        part, account = walk_account(ModelPolicy(model), q_config, "test", name, account)
        parts.append(part)
    values = np.concatenate([parts[0].values, *(p.values[1:] for p in parts[1:])])
    dates = parts[0].dates.append([p.dates[1:] for p in parts[1:]])
    run = StrategyRun(
        name=name,
        dates=pd.DatetimeIndex(dates),
        values=values,
        trades=pd.concat([p.trades for p in parts], ignore_index=True),
        costs_paid=float(sum(p.costs_paid for p in parts)),
        kind="agent",
    )
    return run, fine_tunes
