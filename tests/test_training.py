"""Trainer and the train command: resume, signals, flags, checkpoints on disk."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from clstm_ppo.cli import main
from clstm_ppo.config import build_config
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.trainer import Trainer
from tiny import tiny_flags, tiny_overrides

REPO = Path(__file__).resolve().parents[1]


def tiny_config(tmp_path: Path, **extra: object):
    return build_config(overrides=tiny_overrides(tmp_path, **extra))


def test_resumed_training_is_bit_identical(tmp_path) -> None:
    config = tiny_config(tmp_path)
    straight = Trainer(config, tmp_path / "straight", torch.device("cpu"))
    straight.train(16)

    first = Trainer(config, tmp_path / "split", torch.device("cpu"))
    first.train(8)
    latest = ckpt.resolve(tmp_path / "split" / "checkpoints", "latest")
    resumed = Trainer(config, tmp_path / "split", torch.device("cpu"))
    resumed.load(latest)
    assert resumed.state.episodes == first.state.episodes >= 8
    resumed.train(16)

    assert resumed.state.episodes == straight.state.episodes
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
    assert resumed.state.episode_history == straight.state.episode_history
    assert resumed.state.loss_history == straight.state.loss_history
    assert resumed.state.validation_history == straight.state.validation_history
    # And the run really trained: the weights moved away from a fresh model's.
    fresh = Trainer(config, tmp_path / "fresh", torch.device("cpu"))
    assert not torch.equal(fresh.model.actor_head.weight, straight.model.actor_head.weight)


def test_train_command_writes_logs_tensorboard_and_checkpoints(tmp_path, capsys) -> None:
    code = main(["train", "--episodes", "8", *tiny_flags(tmp_path), "--enable-multi-leg"])
    assert code == 0
    out = capsys.readouterr().out
    assert "training summary" in out and "validation at episode" in out
    run = tmp_path / "clstm_ppo"
    folder = run / "checkpoints"
    for name in ckpt.LINK_NAMES:
        payload = ckpt.load(ckpt.resolve(folder, name))
        assert payload["config"]["env"]["enable_multi_leg"] is True
    payload = ckpt.load(ckpt.resolve(folder, "latest"))
    assert payload["provenance"]["data"]["source"] == "bundled"
    assert payload["config_hash"] and "git_commit" in payload
    assert payload["model"]["actor_head.weight"].shape[0] == 91
    assert list((run / "logs").glob("training_*.log"))
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))
    assert (run / "run.json").exists()


def test_resume_from_best_and_fresh_start(tmp_path, capsys) -> None:
    flags = tiny_flags(tmp_path)
    assert main(["train", "--episodes", "8", *flags]) == 0
    run = tmp_path / "clstm_ppo"
    best = ckpt.load(ckpt.resolve(run / "checkpoints", "best"))
    capsys.readouterr()
    assert main(["train", "--episodes", "12", "--resume-from", "best", *flags]) == 0
    out = capsys.readouterr().out
    assert f"at episode {best['train_state']['episodes']}" in out
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["train", "--episodes", "4", "--fresh-start", *flags]) == 0
    after = sorted(p.name for p in tmp_path.iterdir())
    assert set(before) < set(after)  # a new run folder, the old one untouched
    assert (run / "checkpoints" / "latest.pt").exists()


def test_early_stopping_stops_and_says_why(tmp_path, capsys) -> None:
    flags = tiny_flags(tmp_path)
    code = main(
        [
            "train", "--episodes", "200", "--early-stopping-patience", "8",
            "--early-stopping-min-delta", "10", *flags,
        ]
    )  # fmt: skip
    assert code == 0
    out = capsys.readouterr().out
    assert "stopped: early stopping" in out.replace("\n", " ")
    latest = ckpt.load(ckpt.resolve(tmp_path / "clstm_ppo" / "checkpoints", "latest"))
    assert latest["train_state"]["episodes"] < 40


def test_bad_train_flags_are_one_line_errors(tmp_path, capsys) -> None:
    assert main(["train", "--num_gpus", "2", "--run-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--num_gpus 2" in err and "GPU" in err and "\n" not in err
    assert main(["train", "--fresh-start", "--resume-from", "best"]) == 2
    assert "contradict" in capsys.readouterr().err
    assert main(["train", "--resume-from", "best", "--run-dir", str(tmp_path)]) == 2
    assert "no 'best_composite' checkpoint" in capsys.readouterr().err


def test_incompatible_checkpoint_is_refused(tmp_path, capsys) -> None:
    flags = tiny_flags(tmp_path)
    assert main(["train", "--episodes", "4", *flags]) == 0
    capsys.readouterr()
    code = main(["train", "--episodes", "8", *flags, "--set", "agent.policy_hidden=32"])
    assert code == 2
    err = capsys.readouterr().err
    assert "agent.policy_hidden" in err and "--fresh-start" in err


@pytest.mark.slow
def test_legacy_script_runs_end_to_end(tmp_path) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "train_enhanced_clstm_ppo.py"), "--episodes", "8",
         *tiny_flags(tmp_path)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "training summary" in result.stdout


def test_sigterm_saves_a_checkpoint_and_the_run_resumes(tmp_path) -> None:
    command = [sys.executable, "-m", "clstm_ppo", "train", "--episodes", "100000",
               *tiny_flags(tmp_path)]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    log_dir = tmp_path / "clstm_ppo" / "checkpoints"
    deadline = time.time() + 120
    while time.time() < deadline and not list(log_dir.glob("episode_*.pt")):
        time.sleep(0.5)  # wait until training is under way (first validation checkpoint)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    assert "SIGTERM received" in out.replace("\n", " ")
    latest = ckpt.load(ckpt.resolve(log_dir, "latest"))
    saved_episodes = latest["train_state"]["episodes"]
    assert saved_episodes >= 4

    resume = subprocess.run(
        [*command[:5], str(saved_episodes + 4), *command[6:]],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert resume.returncode == 0, resume.stderr
    assert f"at episode {saved_episodes}" in resume.stdout.replace("\n", " ")
