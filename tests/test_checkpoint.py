"""Checkpoints: atomic writes, links and pointers, refusal of foreign or corrupt files,
compatibility checks, and a trainer that saves and resumes bit-identically."""

from __future__ import annotations

import os
import pickle
import random
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from clstm_ppo.config import build_config, config_to_dict
from clstm_ppo.errors import CheckpointError
from clstm_ppo.train import checkpoint as ckpt
from clstm_ppo.train.trainer import Trainer
from toy_env import ToyEnvFactory


def _payload(tag: float) -> dict[str, Any]:
    return {
        "format": ckpt.FORMAT,
        "version": ckpt.VERSION,
        "model": {"weight": torch.full((3, 2), tag), "bias": torch.arange(3.0)},
        "train_state": {"episodes": int(tag), "history": [{"loss": 0.5}]},
        "config": config_to_dict(build_config()),
    }


def _leftovers(folder: Path, *keep: Path) -> list[str]:
    """Files in ``folder`` other than ``keep`` (temporaries a write left behind)."""
    kept = {path.name for path in keep}
    return sorted(p.name for p in folder.iterdir() if p.name not in kept)


def _one_line(error: pytest.ExceptionInfo[CheckpointError]) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    assert error.value.__cause__ is None  # raised "from None": no chained traceback for the CLI
    return message


# ---------------------------------------------------------------------------------- atomic save


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    path = ckpt.atomic_save(_payload(1.0), tmp_path / "sub" / "episode_000001.pt")
    loaded = ckpt.load(path)
    torch.testing.assert_close(loaded["model"]["weight"], torch.full((3, 2), 1.0))
    assert loaded["train_state"] == {"episodes": 1, "history": [{"loss": 0.5}]}
    assert _leftovers(path.parent, path) == []


class _Crash(Exception):
    pass


@pytest.mark.parametrize("error", [_Crash, KeyboardInterrupt])
def test_a_crash_while_writing_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, error: type[BaseException]
) -> None:
    path = ckpt.atomic_save(_payload(1.0), tmp_path / "latest_file.pt")
    real_save = torch.save

    def half_written(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        real_save(_payload(2.0), handle)
        handle.truncate(100)  # some bytes reached the disk, then the process died
        raise error("killed mid-write")

    monkeypatch.setattr(torch, "save", half_written)
    with pytest.raises(error):
        ckpt.atomic_save(_payload(2.0), path)
    monkeypatch.undo()
    loaded = ckpt.load(path)
    torch.testing.assert_close(loaded["model"]["weight"], torch.full((3, 2), 1.0))
    assert _leftovers(tmp_path, path) == [], "a temporary file was left behind"


def test_a_crash_at_the_rename_leaves_the_previous_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = ckpt.atomic_save(_payload(1.0), tmp_path / "episode_000010.pt")
    seen: list[Path] = []

    def failing_replace(src: Any, dst: Any) -> None:
        # By now the new content is complete in the temporary, in the same folder.
        seen.append(Path(src))
        assert Path(src).parent == Path(dst).parent
        assert ckpt.load(Path(src))["model"]["weight"][0, 0].item() == 2.0
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(CheckpointError) as error:  # a full disk is the user's to fix: one line
        ckpt.atomic_save(_payload(2.0), path)
    monkeypatch.undo()
    message = _one_line(error)
    assert str(path) in message and "no space left" in message and "intact" in message
    assert len(seen) == 1 and seen[0] != path
    assert ckpt.load(path)["model"]["weight"][0, 0].item() == 1.0
    assert _leftovers(tmp_path, path) == []


def test_a_crash_on_a_first_save_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"PK\x03\x04 partial")
        raise _Crash("disk unplugged")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(_Crash):
        ckpt.atomic_save(_payload(1.0), tmp_path / "episode_000001.pt")
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------------- links


def test_point_replaces_a_link_atomically_and_best_follows_best_composite(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ckpt.atomic_save(_payload(1.0), tmp_path / "episode_000001.pt")
    second = ckpt.atomic_save(_payload(2.0), tmp_path / "episode_000002.pt")
    ckpt.point(tmp_path, "best_composite", first)
    link = tmp_path / "best_composite.pt"
    assert link.is_symlink()
    assert os.readlink(link) == first.name  # relative: the folder can be moved
    assert ckpt.resolve(tmp_path, "best") == first.resolve()
    assert ckpt.resolve(tmp_path, "best_composite") == first.resolve()

    # While the link is re-pointed, it never disappears: the rename swaps it in one step.
    real_replace = os.replace
    renames: list[tuple[str, str]] = []

    def watching_replace(src: Any, dst: Any) -> None:
        assert link.is_symlink() and link.resolve() == first.resolve(), "the old link vanished"
        assert Path(src).is_symlink()
        renames.append((Path(src).name, Path(dst).name))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", watching_replace)
    ckpt.point(tmp_path, "best_composite", second)
    monkeypatch.undo()
    assert len(renames) == 1 and renames[0][1] == "best_composite.pt"
    assert os.readlink(link) == second.name
    assert ckpt.resolve(tmp_path, "best") == second.resolve()
    assert ckpt.load(ckpt.resolve(tmp_path, "best"))["model"]["weight"][0, 0].item() == 2.0
    assert _leftovers(tmp_path, first, second, link) == []

    # A temporary link left by a crashed earlier call does not block the next one.
    os.symlink(first.name, tmp_path / f".latest.link-{os.getpid()}")
    ckpt.point(tmp_path, "latest", first)
    assert ckpt.resolve(tmp_path, "latest") == first.resolve()
    assert _leftovers(tmp_path, first, second, link, tmp_path / "latest.pt") == []


def test_pointer_file_fallback_without_symlinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_symlinks(*args: Any, **kwargs: Any) -> None:
        raise OSError(1, "Operation not permitted")

    monkeypatch.setattr(os, "symlink", no_symlinks)
    first = ckpt.atomic_save(_payload(1.0), tmp_path / "episode_000001.pt")
    second = ckpt.atomic_save(_payload(2.0), tmp_path / "episode_000002.pt")
    ckpt.point(tmp_path, "best_composite", first)
    pointer = tmp_path / "best_composite.pointer"
    assert pointer.read_text().strip() == first.name
    assert not (tmp_path / "best_composite.pt").exists()
    assert ckpt.resolve(tmp_path, "best") == first
    ckpt.point(tmp_path, "best_composite", second)
    assert ckpt.resolve(tmp_path, "best") == second
    assert ckpt.load(ckpt.resolve(tmp_path, "best"))["model"]["weight"][0, 0].item() == 2.0
    ckpt.point(tmp_path, "latest", first)
    assert ckpt.resolve(tmp_path, "latest") == first
    assert _leftovers(tmp_path, first, second, pointer, tmp_path / "latest.pointer") == []


def test_resolve_reports_missing_and_dangling_links(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        ckpt.resolve(tmp_path, "best")
    assert "best_composite" in _one_line(error)
    target = ckpt.atomic_save(_payload(1.0), tmp_path / "episode_000001.pt")
    ckpt.point(tmp_path, "latest", target)
    target.unlink()
    with pytest.raises(CheckpointError) as error:
        ckpt.resolve(tmp_path, "latest")
    assert "missing" in _one_line(error)
    with pytest.raises(CheckpointError):
        ckpt.resolve(tmp_path, str(tmp_path / "nope.pt"))
    other = ckpt.atomic_save(_payload(3.0), tmp_path / "elsewhere.pt")
    assert ckpt.resolve(tmp_path, str(other)) == other


# ---------------------------------------------------------------------------------- foreign files


class _RunsShell:
    """Unpickling this runs a shell command (the classic malicious pickle)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


def _touch(path: str) -> Path:
    Path(path).touch()
    return Path(path)


class _Custom:
    """A user class inside an otherwise plausible checkpoint: rebuilding it calls ``_touch``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (_touch, (str(self.marker),))


def test_a_pickle_that_runs_code_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "episode_000001.pt"
    with open(evil, "wb") as handle:
        payload = {"format": ckpt.FORMAT, "version": 1, "x": _RunsShell(marker)}
        pickle.dump(payload, handle, protocol=2)
    # Control: the payload is live (plain unpickling runs the command).
    with open(evil, "rb") as handle:
        pickle.load(handle)
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError) as error:
        ckpt.load(evil)
    message = _one_line(error)
    assert "could run code" in message
    assert str(evil) in message
    assert not marker.exists(), "loading the checkpoint ran the payload"


def test_a_torch_save_with_a_custom_class_is_refused_and_never_runs(tmp_path: Path) -> None:
    marker = tmp_path / "constructed"
    path = tmp_path / "episode_000002.pt"
    torch.save(
        {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "model": {"w": torch.ones(2)},
            "extra": _Custom(marker),
        },
        path,
    )
    torch.load(path, weights_only=False)  # control: the full unpickler does call _touch
    assert marker.exists()
    marker.unlink()

    with pytest.raises(CheckpointError) as error:
        ckpt.load(path)
    message = _one_line(error)
    assert "could run code" in message
    assert str(path) in message
    assert not marker.exists()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param("truncated", id="truncated"),
        pytest.param(random.Random(0).randbytes(4096), id="random-bytes"),
        pytest.param(b"", id="empty"),
        pytest.param(b"PK\x03\x04" + bytes(range(256)) * 4, id="zip-magic-then-garbage"),
    ],
)
def test_corrupt_files_give_one_line_errors(tmp_path: Path, content: Any) -> None:
    path = tmp_path / "episode_000003.pt"
    if content == "truncated":
        ckpt.atomic_save(_payload(1.0), path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as error:
        ckpt.load(path)
    message = _one_line(error)
    assert str(path) in message
    assert len(message) < 400


def test_random_bytes_never_escape_as_a_traceback(tmp_path: Path) -> None:
    """Any garbage is a one-line CheckpointError (seeds 2 and 20 hit IndexError / KeyError)."""
    path = tmp_path / "garbage.pt"
    escaped = []
    for seed in range(32):
        path.write_bytes(random.Random(seed).randbytes(4096))
        try:
            ckpt.load(path)
        except CheckpointError as error:
            assert "\n" not in str(error)
        except Exception as error:
            escaped.append(f"seed {seed}: {type(error).__name__}: {error}")
        else:
            escaped.append(f"seed {seed}: loaded")
    assert escaped == []


def test_a_missing_file_is_a_checkpoint_error(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError) as error:
        ckpt.load(tmp_path / "absent.pt")
    assert "absent.pt" in _one_line(error)


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"model": {"w": torch.ones(2)}}, id="no-marker"),
        pytest.param({"format": "something-else", "version": 1}, id="other-format"),
        pytest.param(torch.ones(3), id="bare-tensor"),
        pytest.param([1, 2, 3], id="list"),
    ],
)
def test_a_file_without_the_format_marker_is_refused(tmp_path: Path, payload: Any) -> None:
    path = tmp_path / "foreign.pt"
    torch.save(payload, path)
    with pytest.raises(CheckpointError) as error:
        ckpt.load(path)
    message = _one_line(error)
    assert ckpt.FORMAT in message and str(path) in message


def test_another_format_version_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "future.pt"
    torch.save({**_payload(1.0), "version": ckpt.VERSION + 1}, path)
    with pytest.raises(CheckpointError) as error:
        ckpt.load(path)
    assert f"version {ckpt.VERSION + 1}" in _one_line(error)


# ---------------------------------------------------------------------------------- compatibility


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("agent.policy_hidden", 64),
        ("agent.lstm_hidden", 32),
        ("agent.feature_dim", 16),
        ("env.window", 10),
        ("env.enable_multi_leg", True),
    ],
)
def test_check_compatible_names_the_key_that_differs(key: str, value: Any) -> None:
    saved = _payload(1.0)
    now = config_to_dict(build_config(overrides={key: value}))
    with pytest.raises(CheckpointError) as error:
        ckpt.check_compatible(saved, now, Path("run/ckpt.pt"))
    message = _one_line(error)
    assert key in message
    assert repr(value) in message
    assert "run/ckpt.pt" in message


def test_check_compatible_accepts_the_same_network_and_other_hyperparameters() -> None:
    saved = _payload(1.0)
    ckpt.check_compatible(saved, config_to_dict(build_config()), Path("x.pt"))
    other = build_config(overrides={"ppo.learning_rate": 1e-3, "train.episodes": 7})
    ckpt.check_compatible(saved, config_to_dict(other), Path("x.pt"))


# ---------------------------------------------------------------------------------- the trainer


TOY_OVERRIDES: dict[str, Any] = {
    "agent.lstm_hidden": 8,
    "agent.feature_dim": 8,
    "agent.policy_hidden": 16,
    "ppo.rollout_length": 12,
    "ppo.learning_rate": 3e-3,
    "train.num_envs": 4,
    "train.validate_every": 24,
    "train.validation_episodes": 4,
    "train.early_stopping_patience": 0,
    "env.episode_length": 8,
    "env.window": 3,
}


def _toy_config(episodes: int, **extra: Any) -> Any:
    return build_config(overrides={**TOY_OVERRIDES, "train.episodes": episodes, **extra})


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny networks train faster on one thread; the setting is restored for other tests."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _trainer(run_dir: Path, episodes: int) -> Trainer:
    return Trainer(_toy_config(episodes), run_dir, torch.device("cpu"), env_factory=ToyEnvFactory())


@pytest.mark.usefixtures("one_thread")
def test_trainer_checkpoints_load_safely_and_resume_bit_identically(tmp_path: Path) -> None:
    """Train 48 episodes straight, or 24 + save + resume in a new trainer + 24: the same run."""
    straight = _trainer(tmp_path / "straight", 48)
    straight.train(48)
    straight.reporter.close()

    first = _trainer(tmp_path / "resumed", 24)
    first.train(24)
    first.reporter.close()
    folder = tmp_path / "resumed" / "checkpoints"
    latest = ckpt.resolve(folder, "latest")
    payload = ckpt.load(latest)  # weights_only: everything the trainer saves is plain data
    assert payload["train_state"]["episodes"] == first.state.episodes
    best = ckpt.resolve(folder, "best")
    assert best.exists() and ckpt.load(best)["format"] == ckpt.FORMAT

    second = _trainer(tmp_path / "resumed", 48)
    second.load(latest)
    second.train(48)
    second.reporter.close()

    assert second.state.episodes == straight.state.episodes
    assert second.state.updates == straight.state.updates
    for key, value in straight.model.state_dict().items():
        torch.testing.assert_close(second.model.state_dict()[key], value, rtol=0, atol=0)
    assert second.state.episode_history == straight.state.episode_history
    assert second.state.loss_history == straight.state.loss_history

    # A checkpoint of a differently sized network is refused with the key named.
    other = Trainer(
        _toy_config(48, **{"agent.policy_hidden": 24}),
        tmp_path / "other",
        torch.device("cpu"),
        env_factory=ToyEnvFactory(),
    )
    with pytest.raises(CheckpointError) as error:
        other.load(latest)
    other.reporter.close()
    assert "agent.policy_hidden" in _one_line(error)
