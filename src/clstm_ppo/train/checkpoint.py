"""Checkpoints that cannot run code, written so that a kill at any moment loses nothing.

- Content: plain containers of tensors, numbers and strings, loaded with
  ``torch.load(weights_only=True)``; a pickle that needs anything else is refused.
- Writes are atomic: a temporary file in the same folder, flushed and fsync'ed, then
  ``os.replace`` onto the final name, then the folder is fsync'ed. A crash mid-write leaves the
  previous file untouched.
- Names: real files ``episode_000150.pt`` and ``milestone_profit_rate_0.6_episode_000150.pt``;
  ``latest``, ``best_composite``, ``best_win_rate``, ``best_profit_rate`` and ``best_sharpe`` are
  symbolic links to real files (replaced atomically), or ``NAME.pointer`` text files where the
  file system has no symlinks.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pickle
import pickletools
import subprocess
import zipfile
from pathlib import Path
from typing import Any

import torch

from clstm_ppo.errors import CheckpointError

FORMAT = "clstm-ppo-checkpoint"
VERSION = 1
LINK_NAMES = ("latest", "best_composite", "best_win_rate", "best_profit_rate", "best_sharpe")
ALIASES = {"best": "best_composite"}


def git_commit() -> str | None:
    """The code version: the git commit of the package's checkout, when there is one."""
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every file system lets a folder be opened
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _write_failed(path: Path, error: OSError) -> CheckpointError:
    reason = "no space left on the device" if error.errno == errno.ENOSPC else error.strerror
    return CheckpointError(
        f"{path}: cannot write the checkpoint ({reason or type(error).__name__}); the "
        f"checkpoints already in {path.parent} are intact"
    )


def atomic_save(payload: dict[str, Any], path: Path) -> Path:
    """Write ``payload`` to ``path`` atomically (see the module docstring)."""
    temporary = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(temporary, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except OSError as error:
        raise _write_failed(path, error) from None
    finally:
        with contextlib.suppress(OSError):
            if temporary.exists():
                temporary.unlink()
    _fsync_dir(path.parent)
    return path


def point(folder: Path, name: str, target: Path) -> None:
    """Make ``folder/name.pt`` refer to ``target`` (a file in the same folder), atomically."""
    link = folder / f"{name}.pt"
    temporary = folder / f".{name}.link-{os.getpid()}"
    try:
        if temporary.is_symlink() or temporary.exists():
            temporary.unlink()
        os.symlink(target.name, temporary)
        os.replace(temporary, link)
    except OSError:
        pointer = folder / f"{name}.pointer"
        text_tmp = folder / f".{name}.pointer-{os.getpid()}"
        try:
            text_tmp.write_text(target.name + "\n")
            os.replace(text_tmp, pointer)
        except OSError as error:
            raise _write_failed(link, error) from None
    _fsync_dir(folder)


def target_of(folder: Path, name: str) -> str | None:
    """The file name that link ``name`` refers to, or None when there is no usable link."""
    link = folder / f"{name}.pt"
    if link.is_symlink():
        return os.readlink(link) if link.exists() else None
    pointer = folder / f"{name}.pointer"
    if pointer.is_file():
        target = pointer.read_text().strip()
        return target if (folder / target).exists() else None
    return None


def resolve(folder: Path, spec: str, flag: str = "--resume-from") -> Path:
    """``latest``, ``best`` (= ``best_composite``), another link name, or a path; errors name
    ``flag``, the option the user typed."""
    name = ALIASES.get(spec, spec)
    if name in LINK_NAMES:
        link = folder / f"{name}.pt"
        if link.is_symlink() or link.exists():
            if not link.exists():
                raise CheckpointError(f"{link}: points at a missing file ({os.readlink(link)})")
            return link.resolve()
        pointer = folder / f"{name}.pointer"
        if pointer.exists():
            return folder / pointer.read_text().strip()
        raise CheckpointError(f"{flag} {spec}: no '{name}' checkpoint in {folder}")
    path = Path(spec)
    if not path.exists():
        raise CheckpointError(f"{flag} {spec}: no such checkpoint file")
    return path


_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "REDUCE", "INST", "OBJ", "NEWOBJ", "NEWOBJ_EX"}


def _why_refused(path: Path, error: BaseException) -> str:
    """Tell a checkpoint that would run code from a file that is simply not a checkpoint.

    torch's weights-only unpickler says "Unsupported operand" both for random bytes and for a
    pickle stream it cannot follow, so its message alone cannot tell them apart: look at what
    the file is (a torch zip archive, a pickle stream that imports callables, or neither),
    without unpickling anything.
    """
    text = str(error)
    if zipfile.is_zipfile(path):
        if "Unsupported global" in text:
            return "refused, it is not a plain-tensor checkpoint and could run code"
        return "corrupt or not a clstm-ppo checkpoint"
    try:
        with open(path, "rb") as handle:
            opcodes = {op.name for op, _, _ in pickletools.genops(handle)}
    except Exception:  # not a well-formed pickle stream at all
        return "not a checkpoint (neither a PyTorch archive nor a pickle)"
    if opcodes & _CODE_OPCODES:
        return "refused, it is not a plain-tensor checkpoint and could run code"
    return "corrupt or not a clstm-ppo checkpoint"


def load(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint safely; any problem is one line naming the file."""
    if path.exists() and not path.is_file():
        raise CheckpointError(f"{path}: not a checkpoint file (a folder or special file)")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise CheckpointError(f"{path}: {_why_refused(path, error)}") from None
    except Exception as error:
        reason = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({reason})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a clstm-ppo checkpoint (no '{FORMAT}' marker)")
    if payload.get("version") != VERSION:
        raise CheckpointError(
            f"{path}: checkpoint format version {payload.get('version')} "
            f"(this build reads {VERSION})"
        )
    return payload


def require(payload: dict[str, Any], path: Path, *keys: str) -> None:
    """Refuse a checkpoint with the marker but without the keys a caller needs."""
    missing = [key for key in keys if key not in payload]
    if missing:
        raise CheckpointError(
            f"{path}: incomplete checkpoint, missing {', '.join(repr(k) for k in missing)}"
        )
    for key in ("config", "train_state", "model"):
        if key in keys and not isinstance(payload[key], dict):
            raise CheckpointError(f"{path}: malformed checkpoint, {key!r} is not a mapping")


TRAINING_KEYS = ("model", "optimizer", "train_state", "config", "ranks")


def check_compatible(payload: dict[str, Any], config: dict[str, Any], path: Path) -> None:
    """Refuse a checkpoint whose network or observation layout differs from the config's."""
    saved = payload.get("config")
    if not isinstance(saved, dict):
        raise CheckpointError(f"{path}: malformed checkpoint, no config mapping")
    for section, keys in (
        ("agent", ("architecture", "lstm_hidden", "feature_dim", "policy_hidden", "mlp_hidden")),
        ("env", ("window", "enable_multi_leg")),
        ("portfolio", ("window", "tickers")),
    ):
        for key in keys:
            old = (saved.get(section) or {}).get(key)
            new = config.get(section, {}).get(key)
            if old != new:
                raise CheckpointError(
                    f"{path}: incompatible with the config: {section}.{key} is {old!r} in the "
                    f"checkpoint but {new!r} now (use --fresh-start for a new run)"
                )
