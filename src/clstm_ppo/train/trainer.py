"""The episode-based CLSTM-PPO training loop, read top to bottom.

collect a rollout from the batched env -> PPO update -> record finished episodes -> validate
every ``validate_every`` episodes (deterministic policy, validation split) -> checkpoints (bests,
latest, milestones) and early stopping -> until ``episodes`` are done, early stopping fires, or
SIGINT/SIGTERM asks to stop (a checkpoint is saved first).

The trainer is rank-aware (only rank 0 reports and writes checkpoints) and takes the seed and the
environment factory as parameters, so the DDP launcher and the ensemble trainer reuse it as is.
Resuming restores everything (weights, optimiser, scaler, scheduler, RNG states, the batched
environments' accounts, the recurrent state, counters and histories), so a resumed run is
bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from clstm_ppo.agent.mlp import build_model
from clstm_ppo.agent.network import RecurrentState
from clstm_ppo.agent.policy import ModelPolicy
from clstm_ppo.agent.ppo import Rollout, compute_gae, ppo_update
from clstm_ppo.config import Config, config_hash, config_to_dict
from clstm_ppo.errors import CheckpointError
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.metrics import (
    MILESTONES,
    EpisodeMetrics,
    aggregate,
    summary_metrics,
    trend_arrow,
)
from clstm_ppo.train.reporting import Reporter
from clstm_ppo.train.schedules import build_scheduler
from clstm_ppo.train.state import TrainResult, TrainState, capture_rng, restore_rng
from clstm_ppo.train.validation import (
    VALIDATION_SEED,
    EnvFactory,
    default_env_factory,
    obs_tensors,
    run_policy,
)

__all__ = ["VALIDATION_SEED", "TrainResult", "TrainState", "Trainer", "run_policy"]


class Trainer:
    """Trains one CLSTM-PPO model; see the module docstring."""

    def __init__(
        self,
        config: Config,
        run_dir: Path,
        device: torch.device,
        env_factory: EnvFactory = default_env_factory,
        rank: int = 0,
        world_size: int = 1,
        reporter: Reporter | None = None,
        provenance: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.run_dir = run_dir
        self.checkpoint_dir = run_dir / "checkpoints"
        self.device = device
        self.rank = rank
        self.world_size = world_size
        self.distributed = world_size > 1
        self.is_main = rank == 0
        self.reporter = reporter or Reporter(run_dir, active=self.is_main)
        seed = config.train.seed
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        # Same initial weights everywhere (DDP also broadcasts rank 0's); rank-dependent streams
        # for the environments and the action sampling.
        self.rank_seed = seed + 1_000_003 * rank
        self.generator = torch.Generator().manual_seed(self.rank_seed)
        self.env = env_factory(config, "train", config.train.num_envs)
        self.env_factory = env_factory
        self.discrete = hasattr(self.env.single_action_space, "n")
        spaces = self.env.single_observation_space
        self.window, self.n_features = spaces["market"].shape
        self.portfolio_size = spaces["portfolio"].shape[0]
        action_space = self.env.single_action_space
        self.n_actions = int(action_space.n) if self.discrete else None
        self.action_dim = None if self.discrete else int(np.prod(action_space.shape))
        self.model = build_model(
            config.agent, self.n_features, self.portfolio_size, self.n_actions, self.action_dim
        ).to(device)
        ppo = config.ppo
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=ppo.learning_rate, eps=1e-5)
        self.scheduler = build_scheduler(self.optimizer, config)
        use_fp16 = config.train.amp == "fp16" and device.type == "cuda"
        self.scaler = torch.amp.GradScaler("cuda") if use_fp16 else None
        self.autocast_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(config.train.amp)
        if config.train.amp == "fp16" and device.type != "cuda":
            self.autocast_dtype = None
            self.reporter.warning("fp16 mixed precision needs CUDA; training in fp32 on the CPU")
        self.state = TrainState(next_validation=config.train.validate_every)
        self.provenance = provenance or {}
        self.stop_signal: str | None = None
        self.timing = {"env": 0.0, "forward": 0.0, "update": 0.0}
        self._gpu_notice_given = False
        self.ddp: torch.nn.Module = self.model
        if self.distributed:
            ids = [device.index] if device.type == "cuda" else None
            self.ddp = torch.nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        obs, _ = self.env.reset(seed=self.rank_seed)
        self.obs = obs
        self.starts = torch.ones(config.train.num_envs, device=device)
        self.recurrent = self.model.initial_state(config.train.num_envs, device)

    # ------------------------------------------------------------------ rollout
    def _sample(self, dist: Any) -> torch.Tensor:
        if self.discrete:
            return torch.multinomial(dist.probs.float().cpu(), 1, generator=self.generator)[
                :, 0
            ].to(self.device)
        noise = torch.randn(dist.mean.shape, generator=self.generator).to(self.device)
        return dist.mean + dist.stddev * noise

    def _collect(self) -> tuple[Rollout, torch.Tensor, list[EpisodeMetrics]]:
        cfg = self.config
        steps, n_envs = cfg.ppo.rollout_length, cfg.train.num_envs
        rollout = Rollout.allocate(
            steps, n_envs, self.window, self.n_features, self.portfolio_size, self.n_actions,
            self.action_dim, self.recurrent, self.device,
        )  # fmt: skip
        finished: list[EpisodeMetrics] = []
        gamma = cfg.ppo.gamma
        for step in range(steps):
            market, portfolio, mask = obs_tensors(self.obs, self.device)
            started = time.perf_counter()
            with torch.no_grad():
                dist, value, self.recurrent = self.model.evaluate(
                    market[None], portfolio[None], None if mask is None else mask[None],
                    self.recurrent, self.starts[None],
                )  # fmt: skip
                action = self._sample(dist)
                log_prob = self.model.log_prob(dist, action)
            self.timing["forward"] += time.perf_counter() - started
            rollout.market[step], rollout.portfolio[step] = market, portfolio
            if mask is not None:
                rollout.action_mask[step] = mask
            rollout.actions[step], rollout.log_probs[step] = action, log_prob
            rollout.values[step], rollout.starts[step] = value, self.starts
            started = time.perf_counter()
            self.obs, reward, terminated, truncated, info = self.env.step(action.cpu().numpy())
            self.timing["env"] += time.perf_counter() - started
            reward = torch.as_tensor(reward, dtype=torch.float32, device=self.device)
            done = np.logical_or(terminated, truncated)
            if np.any(truncated):
                # A time limit is not a terminal state: bootstrap from the final observation.
                rows = np.flatnonzero(truncated)
                final = {key: value[rows] for key, value in info["final_obs"].items()}
                f_market, f_portfolio, f_mask = obs_tensors(final, self.device)
                with torch.no_grad():
                    _, final_value, _ = self.model.evaluate(
                        f_market[None], f_portfolio[None], None if f_mask is None else f_mask[None],
                        self.recurrent.index(torch.as_tensor(rows, device=self.device)),
                        torch.zeros(1, rows.size, device=self.device),
                    )  # fmt: skip
                reward[rows] += gamma * final_value
            rollout.rewards[step] = reward
            rollout.dones[step] = torch.as_tensor(done, dtype=torch.float32, device=self.device)
            self.starts = torch.as_tensor(done, dtype=torch.float32, device=self.device)
            if done.any():
                for row in np.flatnonzero(done):
                    summary = info["final_info"][row]
                    finished.append(summary_metrics(summary, cfg.train.risk_free_rate))
        market, portfolio, mask = obs_tensors(self.obs, self.device)
        with torch.no_grad():
            _, next_value, _ = self.model.evaluate(
                market[None], portfolio[None], None if mask is None else mask[None],
                self.recurrent, self.starts[None],
            )  # fmt: skip
        self.state.env_steps += steps * n_envs * self.world_size
        if self.distributed:  # every rank records every rank's episodes, in rank order
            gathered: list[list[EpisodeMetrics]] = [[] for _ in range(self.world_size)]
            torch.distributed.all_gather_object(gathered, finished)
            finished = [episode for part in gathered for episode in part]
        return rollout, next_value, finished

    # ------------------------------------------------------------------ validation
    def validate(self) -> dict[str, float]:
        """Deterministic policy on the validation split, same episodes every time."""
        self.model.eval()
        try:
            return run_policy(ModelPolicy(self.model), self.config, self.env_factory, self.device)
        finally:
            self.model.train()

    # ------------------------------------------------------------------ checkpoints
    def _rank_state(self) -> dict[str, Any]:
        """What differs between ranks: RNG streams, environments, recurrent state."""
        return {
            "rng": capture_rng(self.generator),
            "env_state": self.env.state_dict() if hasattr(self.env, "state_dict") else None,
            "recurrent": [t.cpu() for t in self.recurrent],
            "starts": self.starts.cpu(),
        }

    def _payload(self) -> dict[str, Any] | None:
        """The checkpoint content; collective under DDP (every rank must call it)."""
        ranks = [self._rank_state()]
        if self.distributed:
            ranks = [None] * self.world_size
            torch.distributed.all_gather_object(ranks, self._rank_state())
        if not self.is_main:
            return None
        state = self.state
        return {
            "world_size": self.world_size,
            "ranks": ranks,
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": None if self.scheduler is None else self.scheduler.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "train_state": {key: value for key, value in vars(state).items()},
            "config": config_to_dict(self.config),
            "config_hash": config_hash(self.config),
            "provenance": self.provenance,
            "git_commit": ckpt.git_commit(),
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }

    def save(
        self, links: tuple[str, ...] = ("latest",), milestone: str | None = None
    ) -> Path | None:
        """Write a checkpoint (rank 0); collective under DDP, so every rank calls it.

        The ``best_*`` links are recorded in the saved state and updated before ``latest``: a kill
        between two link updates leaves ``latest`` on the previous checkpoint, whose state names
        the files its bests point at, and :meth:`repair_links` restores them on resume."""
        episode = self.state.episodes
        name = (
            f"episode_{episode:06d}.pt"
            if milestone is None
            else f"milestone_{milestone}_episode_{episode:06d}.pt"
        )
        for link in links:
            if link != "latest":
                self.state.best_files[link] = name
        payload = self._payload()
        if payload is None:
            return None
        path = ckpt.atomic_save(payload, self.checkpoint_dir / name)
        for link in sorted(links, key=lambda link: link == "latest"):
            ckpt.point(self.checkpoint_dir, link, path)
        self._prune()
        return path

    def repair_links(self) -> list[str]:
        """Point every ``best_*`` link at the file the loaded state records for it (a kill
        between link updates, or a link deleted by hand); returns the links repaired."""
        if not self.is_main:
            return []
        repaired = []
        for link, name in sorted(self.state.best_files.items()):
            if ckpt.target_of(self.checkpoint_dir, link) == name:
                continue
            target = self.checkpoint_dir / name
            if not target.is_file():
                self.reporter.warning(f"{link}: its checkpoint {target} is missing; not restored")
                continue
            ckpt.point(self.checkpoint_dir, link, target)
            repaired.append(link)
        if repaired:
            self.reporter.info(f"restored links {', '.join(repaired)} from the saved state")
        return repaired

    def _prune(self) -> None:
        """Drop plain periodic files nobody points at, beyond the newest ``keep_checkpoints``."""
        folder = self.checkpoint_dir
        referenced = set(self.state.best_files.values())
        referenced |= {ckpt.target_of(folder, name) for name in ckpt.LINK_NAMES}
        plain = sorted(folder.glob("episode_*.pt"))
        for path in plain[: -self.config.train.keep_checkpoints]:
            if path.name not in referenced:
                path.unlink()

    def load(self, path: Path) -> None:
        # Loaded on the CPU: the RNG states must stay CPU tensors; load_state_dict moves the
        # weights and the optimiser state onto the parameters' device.
        payload = ckpt.load(path)
        ckpt.require(payload, path, *ckpt.TRAINING_KEYS)
        ckpt.check_compatible(payload, config_to_dict(self.config), path)
        try:
            self._restore(payload, path)
        except CheckpointError:
            raise
        except (RuntimeError, KeyError, ValueError, TypeError, IndexError, AttributeError) as error:
            first = (str(error).strip().splitlines() or [type(error).__name__])[-1].strip()
            raise CheckpointError(
                f"{path}: does not fit this run ({type(error).__name__}: {first[:160]})"
            ) from None
        self.repair_links()
        self.reporter.info(f"resumed from {path} at episode {self.state.episodes}")

    def _restore(self, payload: dict[str, Any], path: Path) -> None:
        try:
            self.model.load_state_dict(payload["model"])
            self.optimizer.load_state_dict(payload["optimizer"])
        except (RuntimeError, KeyError, ValueError, TypeError) as error:
            lines = [line.strip() for line in str(error).splitlines() if line.strip()]
            detail = lines[1] if len(lines) > 1 else (lines[0] if lines else "")
            raise CheckpointError(
                f"{path}: weights do not fit this model ({detail[:160]})"
            ) from None
        if self.scheduler is not None and payload.get("scheduler") is not None:
            self.scheduler.load_state_dict(payload["scheduler"])
        if self.scaler is not None and payload.get("scaler") is not None:
            self.scaler.load_state_dict(payload["scaler"])
        if payload.get("world_size", 1) != self.world_size:
            raise CheckpointError(
                f"{path}: written by {payload.get('world_size', 1)} training process(es), "
                f"resumed with {self.world_size}; resume with the same number of processes"
            )
        mine = payload["ranks"][self.rank]
        restore_rng(mine["rng"], self.generator)
        self.state = TrainState(**payload["train_state"])
        if mine.get("env_state") is not None and hasattr(self.env, "load_state_dict"):
            try:
                self.env.load_state_dict(mine["env_state"])
            except (KeyError, ValueError) as error:
                raise CheckpointError(
                    f"{path}: saved environments do not match (train.num_envs or data differ: "
                    f"{error})"
                ) from None
            self.obs, _ = self.env.observe()
        self.recurrent = RecurrentState(*(t.to(self.device) for t in mine["recurrent"]))
        self.starts = mine["starts"].to(self.device)

    # ------------------------------------------------------------------ the loop
    def _install_signals(self) -> dict[int, Any]:
        previous: dict[int, Any] = {}
        if threading.current_thread() is not threading.main_thread():
            return previous

        def handler(signum: int, _frame: Any) -> None:
            self.stop_signal = signal.Signals(signum).name

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)
        return previous

    def _stop_requested(self) -> bool:
        """Whether any rank got SIGINT/SIGTERM: all ranks stop at the same rollout boundary."""
        flag = 1.0 if self.stop_signal else 0.0
        if self.distributed:
            tensor = torch.tensor(
                [flag], device=self.device if self.device.type == "cuda" else "cpu"
            )
            torch.distributed.all_reduce(tensor, op=torch.distributed.ReduceOp.MAX)
            flag = float(tensor.item())
            if flag and not self.stop_signal:
                self.stop_signal = "a signal to another rank"
        return flag > 0

    def _record_episodes(self, finished: list[EpisodeMetrics]) -> None:
        cfg = self.config.train
        for metrics in finished:
            self.state.episodes += 1
            self.state.episode_history.append(metrics.as_dict())
            self.reporter.scalars("episode", metrics.as_dict(), self.state.episodes)
            rolling = self.rolling()
            if self.state.episodes % cfg.stats_every == 0:
                self._statistics_block(rolling)
            for level in MILESTONES:
                if (
                    len(self.state.episode_history) >= cfg.rolling_window
                    and rolling.get("profit_rate", 0.0) >= level
                    and level not in self.state.milestones
                ):
                    self.state.milestones.append(level)
                    self.save(links=(), milestone=f"profit_rate_{level:.1f}")
                    self.reporter.info(
                        f"milestone: rolling profit rate reached {level:.0%} at episode "
                        f"{self.state.episodes}"
                    )

    def rolling(self) -> dict[str, float]:
        window = self.state.episode_history[-self.config.train.rolling_window :]
        return aggregate([EpisodeMetrics(**entry) for entry in window])

    def _statistics_block(self, rolling: dict[str, float]) -> None:
        losses = self.state.loss_history
        arrows = {
            key: trend_arrow([entry[key] for entry in losses])
            for key in ("policy_loss", "value_loss")
        }
        episodes = max(self.state.episodes - self._episodes_at_start, 1)
        split = ", ".join(f"{k} {v / episodes:.2f}" for k, v in self.timing.items())
        last = losses[-1] if losses else {}
        self.reporter.info(
            f"[episode {self.state.episodes}] rolling {self.config.train.rolling_window}: "
            f"return {rolling.get('mean_return', float('nan')):+.2%}, "
            f"win rate {rolling.get('win_rate', float('nan')):.1%}, "
            f"profit rate {rolling.get('profit_rate', float('nan')):.1%}, "
            f"Sharpe {rolling.get('sharpe', float('nan')):.2f}, "
            f"composite {rolling.get('composite', float('nan')):.3f} | "
            f"policy loss {last.get('policy_loss', float('nan')):.4f} {arrows['policy_loss']}, "
            f"value loss {last.get('value_loss', float('nan')):.4f} {arrows['value_loss']} | "
            f"seconds per episode: {split}"
        )
        self._gpu_report()

    def _gpu_report(self) -> None:
        if self.device.type != "cuda":
            if not self._gpu_notice_given:
                self.reporter.info("GPU memory monitoring: not applicable (training on the CPU)")
                self._gpu_notice_given = True
            return
        used = torch.cuda.memory_reserved(self.device)
        total = torch.cuda.get_device_properties(self.device).total_memory
        message = f"GPU memory: {used / 2**30:.2f} of {total / 2**30:.1f} GiB ({used / total:.0%})"
        if used / total > 0.9:
            self.reporter.warning(message + " - above 90%")
        else:
            self.reporter.info(message)

    def _validate(self, scheduled: bool) -> tuple[dict[str, float], tuple[str, ...]]:
        """One validation; returns its metrics and the ``best_*`` links it improves.

        A scheduled validation also feeds training's own decisions (history, reduce-on-plateau,
        early stopping). An end-of-run one only updates the best links, so that a short or
        interrupted run still has its bests without changing what a resumed run does next."""
        metrics = self.validate() if self.is_main else {}
        if self.distributed:  # one validation, every rank takes the same decisions from it
            shared = [metrics]
            torch.distributed.broadcast_object_list(shared, src=0)
            metrics = shared[0]
        episode = self.state.episodes
        self.reporter.info(
            f"{'validation' if scheduled else 'end-of-run validation'} at episode {episode}: "
            f"composite {metrics['composite']:.3f}, "
            f"return {metrics['mean_return']:+.2%}, win rate {metrics['win_rate']:.1%}, "
            f"profit rate {metrics['profit_rate']:.1%}, Sharpe {metrics['sharpe']:.2f}"
        )
        self.state.last_validation = {
            "episode": float(episode),
            "updates": float(self.state.updates),
            **metrics,
        }
        if scheduled:
            self.state.validation_history.append({"episode": float(episode), **metrics})
            self.reporter.scalars("validation", metrics, episode)
            if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                self.scheduler.step(metrics["composite"])
            reference = self.state.selection_best
            if reference is None:  # checkpoints written before selection_best existed
                reference = self.state.best.get("composite", -math.inf)
            if metrics["composite"] > reference + self.config.train.early_stopping_min_delta:
                self.state.best_episode = episode
            self.state.selection_best = max(reference, metrics["composite"])
        links = []
        best = self.state.best
        for key in ("composite", "win_rate", "profit_rate", "sharpe"):
            value = metrics.get(key, float("nan"))
            known = best.get(key, float("nan"))
            # The first validation links every best, even one whose metric is undefined (a
            # policy that never closed a trade has no win rate): every run has all four links.
            # A defined value later beats an undefined one.
            if key not in best or (value == value and (known != known or value > known)):
                best[key] = value
                links.append(f"best_{key}")
        return metrics, tuple(links)

    def _validate_and_checkpoint(self, scheduled: bool) -> dict[str, float]:
        metrics, links = self._validate(scheduled)
        self.save(links=("latest", *links))
        return metrics

    def validate_starting_point(self) -> dict[str, float]:
        """Validate the weights training starts from and save them as episode 0's checkpoint,
        so that a fine-tuning run can pick its starting model when nothing it trains beats it."""
        return self._validate_and_checkpoint(scheduled=True)

    def _finish(self) -> Path | None:
        """The run's last checkpoint, then (if the model changed since the last validation) an
        end-of-run validation whose bests are linked, so every finished or stopped run has all
        ``best_*`` links. ``latest`` is written first: a second Ctrl-C or a kill during the
        validation loses nothing."""
        path = self.save(links=("latest",))
        if self.state.last_validation.get("updates") == self.state.updates:
            return path  # the model has not changed since its last validation
        _, links = self._validate(scheduled=False)
        return self.save(links=("latest", *links)) if links else path

    def train(self, episodes: int) -> TrainResult:
        """Train until ``episodes`` completed episodes (or early stop / signal)."""
        cfg = self.config
        started = time.perf_counter()
        previous = self._install_signals()
        per_round = self.config.train.num_envs * self.world_size
        expected = max(episodes, math.ceil(episodes / per_round) * per_round)
        if expected != episodes and self.state.episodes < episodes:
            self.reporter.info(
                f"note: {per_round} parallel environments finish their episodes together, so "
                f"training stops at {expected} episodes (--episodes {episodes} rounded up to a "
                f"multiple of {per_round})"
            )
        self.reporter.start_progress(expected, self.state.episodes)
        self._episodes_at_start = self.state.episodes
        stop_reason = "episodes done"
        try:
            while self.state.episodes < episodes:
                rollout, next_value, finished = self._collect()
                advantages, returns = compute_gae(
                    rollout.rewards, rollout.values, rollout.dones, next_value,
                    cfg.ppo.gamma, cfg.ppo.gae_lambda,
                )  # fmt: skip
                began = time.perf_counter()
                stats = ppo_update(
                    self.ddp, self.optimizer, rollout, advantages, returns, cfg.ppo,
                    self.generator, cfg.ppo.grad_accum_steps, self.scaler, self.autocast_dtype,
                )  # fmt: skip
                self.timing["update"] += time.perf_counter() - began
                self.state.updates += 1
                if isinstance(self.scheduler, torch.optim.lr_scheduler.LambdaLR):
                    self.scheduler.step()
                losses = {**vars(stats), "learning_rate": self.optimizer.param_groups[0]["lr"]}
                self.state.loss_history.append(losses)
                self.reporter.scalars("train", losses, self.state.env_steps)
                self._record_episodes(finished)
                rolling = self.rolling()
                self.reporter.advance(
                    self.state.episodes,
                    f"rolling return {rolling.get('mean_return', float('nan')):+.2%}",
                )
                if self.state.episodes >= self.state.next_validation:
                    self._validate_and_checkpoint(scheduled=True)
                    while self.state.next_validation <= self.state.episodes:
                        self.state.next_validation += cfg.train.validate_every
                patience = cfg.train.early_stopping_patience
                if (
                    patience
                    and self.state.episodes - self.state.best_episode >= patience
                    and self.state.validation_history
                ):
                    stop_reason = (
                        "early stopping: no validation gain of "
                        f"{cfg.train.early_stopping_min_delta} in {patience} episodes "
                        f"(best at episode {self.state.best_episode})"
                    )
                    break
                if self._stop_requested():
                    stop_reason = f"{self.stop_signal or 'a signal to another rank'} received"
                    break
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        path = self._finish()
        if self.stop_signal:
            self.reporter.info(
                f"{stop_reason}: saved {path} at episode {self.state.episodes}; "
                "continue with --resume-from latest"
            )
        if self.reporter.progress is not None:
            self.reporter.progress.stop()
            self.reporter.progress = None
        return TrainResult(
            episodes=self.state.episodes,
            updates=self.state.updates,
            stop_reason=stop_reason,
            validation={
                key: value
                for key, value in self.state.last_validation.items()
                if key not in ("episode", "updates")
            },
            rolling=self.rolling(),
            seconds=time.perf_counter() - started,
            checkpoint=path,
        )
