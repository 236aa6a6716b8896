"""A run folder under real use: one run at a time, end-of-run bests, crash leftovers, kills at
the link step, full disks and damaged checkpoints."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from clstm_ppo.cli import main
from clstm_ppo.train import checkpoint as ckpt
from tiny import tiny_flags

BESTS = ("best_composite", "best_win_rate", "best_profit_rate", "best_sharpe")


def _checkpoints(run_dir: Path, name: str = "clstm_ppo") -> Path:
    return run_dir / name / "checkpoints"


def _assert_links_match_the_saved_state(folder: Path) -> None:
    """Every best_* link exists and points at the checkpoint that holds the recorded best."""
    latest = ckpt.load(ckpt.resolve(folder, "latest"))["train_state"]
    for link in BESTS:
        target = ckpt.resolve(folder, link)
        assert latest["best_files"][link] == target.name, link
        metric = link.removeprefix("best_")
        held = ckpt.load(target)["train_state"]["best"][metric]
        both_undefined = math.isnan(held) and math.isnan(latest["best"][metric])
        assert held == latest["best"][metric] or both_undefined, link


# ------------------------------------------------------------------ a short run has its bests


def test_a_run_shorter_than_the_validation_interval_has_every_best(tmp_path, capsys) -> None:
    # validate_every 50 (the default), 2 episodes: no scheduled validation happens at all.
    flags = [*tiny_flags(tmp_path), "--validate-every", "50"]
    assert main(["train", "--episodes", "2", *flags]) == 0
    out = capsys.readouterr().out
    assert "end-of-run validation at episode 2" in out
    folder = _checkpoints(tmp_path)
    _assert_links_match_the_saved_state(folder)
    # And the commands that need a best now work.
    assert main(["train", "--episodes", "4", "--resume-from", "best", *flags]) == 0
    assert "resumed from" in capsys.readouterr().out


def test_a_graceful_stop_validates_and_links_the_bests(tmp_path) -> None:
    from clstm_ppo.config import build_config
    from clstm_ppo.train.trainer import Trainer
    from tiny import tiny_overrides

    config = build_config(overrides=tiny_overrides(tmp_path, train__validate_every=1000))
    trainer = Trainer(config, tmp_path / "run", torch.device("cpu"))
    trainer.stop_signal = "SIGINT"  # as if Ctrl-C arrived during the first rollout
    result = trainer.train(1000)
    assert "SIGINT" in result.stop_reason and result.updates == 1
    assert result.validation["composite"] == trainer.state.best["composite"]
    _assert_links_match_the_saved_state(trainer.checkpoint_dir)
    # The end-of-run validation is not a scheduled one: training's own history is untouched.
    assert trainer.state.validation_history == []


def test_a_short_ensemble_trains_and_honours_num_gpus(tmp_path, capsys) -> None:
    code = main(
        ["train", "--train-ensemble", "--num-ensemble-models", "2",
         "--episodes-per-ensemble-model", "3", *tiny_flags(tmp_path), "--validate-every", "50",
         "--num_gpus", "1"]
    )  # fmt: skip
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert (tmp_path / "clstm_ppo_ensemble" / "ensemble.json").exists()
    # --num_gpus 1 asks for the GPU: without one the members train on the CPU, and say so.
    expected = "on cuda:0" if torch.cuda.is_available() else "no CUDA GPU found"
    assert expected in out


def test_the_progress_says_why_it_overshoots(tmp_path, capsys) -> None:
    assert main(["train", "--episodes", "3", *tiny_flags(tmp_path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "2 parallel environments finish their episodes together" in out
    assert "stops at 4 episodes" in out
    assert "4/3" not in out and "4/4" in out


# ------------------------------------------------------------------ one run per folder

_LONG_RUN = [sys.executable, "-m", "clstm_ppo", "train", "--episodes", "100000"]


def _wait_for(condition: Any, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and not condition():
        time.sleep(0.2)
    assert condition(), "timed out"


def test_a_second_run_on_the_same_folder_is_refused_and_a_crash_frees_it(tmp_path) -> None:
    flags = tiny_flags(tmp_path)
    first = subprocess.Popen(
        [*_LONG_RUN, *flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        lock = tmp_path / "clstm_ppo" / ".lock"
        _wait_for(lambda: lock.exists() and f"pid {first.pid}" in lock.read_text())
        _wait_for(lambda: list(_checkpoints(tmp_path).glob("episode_*.pt")))
        second = subprocess.run(
            [*_LONG_RUN[:5], "8", *flags], capture_output=True, text=True, timeout=300,
            check=False,
        )  # fmt: skip
        assert second.returncode == 2, second.stderr
        err = second.stderr.strip()
        assert "\n" not in err and "in use by another run" in err and f"pid {first.pid}" in err
        assert first.poll() is None  # the first run goes on untouched
    finally:
        first.send_signal(signal.SIGKILL)  # a crash: the kernel drops the lock with the process
        first.wait(timeout=60)
    third = subprocess.run(
        [*_LONG_RUN[:5], "8", *flags], capture_output=True, text=True, timeout=300, check=False
    )
    assert third.returncode == 0, third.stderr
    logs = sorted((tmp_path / "clstm_ppo" / "logs").glob("training_*.log"))
    assert len(logs) == 2  # one log per run, never shared


def test_fresh_starts_never_share_a_folder(tmp_path) -> None:
    from clstm_ppo.config import build_config
    from clstm_ppo.train.run import prepare_run_dir

    config = build_config(overrides={"train.run_dir": str(tmp_path)})
    folders = {prepare_run_dir(config, fresh_start=True) for _ in range(4)}
    assert len(folders) == 4


# ------------------------------------------------------------------ kills and leftovers

_KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from clstm_ppo.train import checkpoint
    real_point, calls = checkpoint.point, [0]
    def point(folder, name, target):
        calls[0] += 1
        if calls[0] == int(os.environ["KILL_AT_LINK_CALL"]):
            os.kill(os.getpid(), signal.SIGKILL)  # a real kill -9 in the middle of the links
        real_point(folder, name, target)
    checkpoint.point = point
    from clstm_ppo.cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("kill_at", [2, 8])
def test_a_kill_while_links_are_updated_loses_no_best(tmp_path, kill_at: int) -> None:
    flags = ["train", "--episodes", "12", *tiny_flags(tmp_path)]
    killed = subprocess.run(
        [sys.executable, "-c", _KILLER, *flags], capture_output=True, text=True, timeout=300,
        env={**os.environ, "KILL_AT_LINK_CALL": str(kill_at)}, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    resumed = subprocess.run(
        [sys.executable, "-m", "clstm_ppo", *flags], capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    _assert_links_match_the_saved_state(_checkpoints(tmp_path))


def test_a_link_lost_after_latest_is_restored_on_resume(tmp_path, capsys) -> None:
    flags = tiny_flags(tmp_path)
    assert main(["train", "--episodes", "4", *flags]) == 0
    folder = _checkpoints(tmp_path)
    expected = ckpt.resolve(folder, "best_sharpe").name
    (folder / "best_sharpe.pt").unlink()  # what a kill between latest and this link left
    capsys.readouterr()
    assert main(["train", "--episodes", "6", *flags, "--validate-every", "50"]) == 0
    assert "restored links best_sharpe" in capsys.readouterr().out
    assert ckpt.resolve(folder, "best_sharpe").name in {expected, "episode_000006.pt"}
    _assert_links_match_the_saved_state(folder)


def test_crash_leftovers_are_removed_at_startup(tmp_path, capsys) -> None:
    folder = _checkpoints(tmp_path)
    folder.mkdir(parents=True)
    leftovers = [".episode_000004.pt.tmp-4242", ".best_sharpe.link-4242", ".latest.pointer-17"]
    (folder / leftovers[0]).write_bytes(b"\0" * 1024)
    os.symlink("episode_000004.pt", folder / leftovers[1])  # dangling, as a crash leaves it
    (folder / leftovers[2]).write_text("episode_000004.pt\n")
    keep = folder / "notes.txt"
    keep.write_text("mine")
    assert main(["train", "--episodes", "2", *tiny_flags(tmp_path)]) == 0
    names = {p.name for p in folder.iterdir()}
    assert not names & set(leftovers) and keep.exists()
    assert "removed 3 temporary file(s)" in " ".join(capsys.readouterr().out.split())


# ------------------------------------------------------------------ disks and damaged files


def test_an_unwritable_runs_folder_is_one_line(tmp_path, capsys) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    assert main(["train", "--episodes", "2", *tiny_flags(blocker / "runs")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(blocker / "runs") in err and "cannot create" in err


def test_a_full_disk_keeps_the_earlier_checkpoints(tmp_path, capsys, monkeypatch) -> None:
    flags = tiny_flags(tmp_path)
    assert main(["train", "--episodes", "4", *flags]) == 0
    folder = _checkpoints(tmp_path)
    before = ckpt.load(ckpt.resolve(folder, "latest"))["train_state"]["episodes"]
    capsys.readouterr()

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    assert main(["train", "--episodes", "8", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "intact" in err
    monkeypatch.undo()
    assert ckpt.load(ckpt.resolve(folder, "latest"))["train_state"]["episodes"] == before
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


def _damaged(tmp_path: Path, damage: str) -> Path:
    flags = tiny_flags(tmp_path)
    assert main(["train", "--episodes", "2", *flags]) == 0
    payload = ckpt.load(ckpt.resolve(_checkpoints(tmp_path), "latest"))
    if damage == "no ranks":
        del payload["ranks"]
    elif damage == "only the marker":
        payload = {"format": ckpt.FORMAT, "version": ckpt.VERSION}
    elif damage == "wrong shapes":
        payload["model"] = {k: torch.zeros(3, 3) for k in payload["model"]}
    elif damage == "bad rank state":
        payload["ranks"] = [{"rng": 7}]
    path = tmp_path / "damaged.pt"
    torch.save(payload, path)
    return path


@pytest.mark.parametrize(
    "damage", ["no ranks", "only the marker", "wrong shapes", "bad rank state"]
)
def test_a_damaged_checkpoint_is_one_line_on_resume(tmp_path, capsys, damage: str) -> None:
    path = _damaged(tmp_path, damage)
    capsys.readouterr()
    flags = ["--resume-from", str(path), *tiny_flags(tmp_path)]
    assert main(["train", "--episodes", "4", *flags]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "Traceback" not in err


def test_random_bytes_are_not_a_checkpoint(tmp_path) -> None:
    path = tmp_path / "noise.pt"
    for seed in range(8):
        path.write_bytes(os.urandom(64) + bytes([seed]) * 4032)
        with pytest.raises(Exception) as error:
            ckpt.load(path)
        assert "could run code" not in str(error.value)
        assert "not a checkpoint" in str(error.value) or "corrupt" in str(error.value)


# ------------------------------------------------------------------ train --env portfolio


def test_train_trains_the_stock_portfolio_env(tmp_path, panel_csv, capsys) -> None:
    flags = [
        "--env", "portfolio", "--data", f"csv:{panel_csv}", "--run-dir", str(tmp_path),
        "--set", "portfolio.tickers=AAA,BBB,CCC,DDD", "--set", "portfolio.window=5",
        "--set", "portfolio.episode_length=20", "--set", "agent.lstm_hidden=8",
        "--set", "agent.feature_dim=8", "--set", "agent.policy_hidden=16",
        "--set", "ppo.rollout_length=16", "--set", "train.num_envs=2",
        "--set", "train.validation_episodes=1",
    ]  # fmt: skip
    assert main(["train", "--episodes", "2", *flags]) == 0, capsys.readouterr().err
    out = " ".join(capsys.readouterr().out.split())
    assert "env portfolio" in out and "4 stocks" in out
    latest = ckpt.load(ckpt.resolve(_checkpoints(tmp_path), "latest"))
    assert latest["config"]["train"]["env"] == "portfolio"
    assert latest["model"]["actor_head.weight"].shape[0] == 4  # one Gaussian mean per stock
    assert latest["provenance"]["data"]["tickers"] == ["AAA", "BBB", "CCC", "DDD"]
    _assert_links_match_the_saved_state(_checkpoints(tmp_path))
