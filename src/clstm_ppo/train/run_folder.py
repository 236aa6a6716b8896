"""A run folder that one process owns at a time, cleaned of what a crash left behind.

- **Lock**: ``RUN_FOLDER/.lock`` held with ``fcntl.flock`` for the whole run. A second training
  command on the same folder is refused with the first one's pid and start time. The kernel
  drops the lock when its process dies (even by ``kill -9``), so a crashed run never leaves the
  folder stuck; the file itself stays and is simply locked again by the next run.
- **Leftovers**: the atomic writes of :mod:`clstm_ppo.train.checkpoint` go through
  ``.NAME.tmp-PID``, ``.NAME.link-PID`` and ``.NAME.pointer-PID`` files. A kill between the write
  and the rename leaves one behind (a temporary checkpoint can be a full 40 MB). Once the lock
  is held no other process writes into the folder, so every such file is a leftover and is
  removed at startup.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import time
from pathlib import Path
from types import TracebackType
from typing import IO

from clstm_ppo.errors import UserError

try:  # POSIX; the lock is advisory and per open file, which is what one run needs
    import fcntl
except ImportError:  # pragma: no cover - Windows has no flock
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"
_LEFTOVER = re.compile(r"^\..+\.(tmp|link|pointer)-\d+$")


class RunFolderError(UserError):
    """The run folder cannot be used: locked by another run, or not writable."""


def folder_error(path: Path, error: OSError, doing: str) -> RunFolderError:
    """One line for a file-system failure, naming the path and the OS's reason."""
    reason = error.strerror or type(error).__name__
    if error.errno == errno.ENOSPC:
        reason = "no space left on the device"
    return RunFolderError(f"{path}: cannot {doing} ({reason})")


class RunLock:
    """Exclusive ownership of a run folder for the lifetime of one run (see module docstring)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / LOCK_NAME
        self._handle: IO[str] | None = None

    def acquire(self) -> RunLock:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.path, "a+")  # noqa: SIM115 - held open for the run's lifetime
        except OSError as error:
            raise folder_error(self.folder, error, "create the run folder") from None
        if fcntl is not None:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                handle.seek(0)
                owner = handle.read().strip() or "another process"
                handle.close()
                raise RunFolderError(
                    f"{self.folder}: in use by another run ({owner}); wait for it to finish, "
                    "or choose another --run-name (or --fresh-start for a new folder)"
                ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is not None:
            # Closing the file drops the flock; the file stays (deleting it would race with a
            # process that opened it and is waiting to lock it).
            self._handle.close()
            self._handle = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.release()


def remove_leftovers(folder: Path) -> list[str]:
    """Delete the temporaries of interrupted atomic writes in ``folder``; call it only while
    holding the folder's :class:`RunLock`. Returns the names removed."""
    removed = []
    if not folder.is_dir():
        return removed
    for path in folder.iterdir():
        if _LEFTOVER.match(path.name) and (path.is_symlink() or path.is_file()):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                removed.append(path.name)
    return sorted(removed)


def unique_log_path(logs: Path, stem: str) -> Path:
    """``logs/STEM.log``, or ``STEM_2.log``, ... : claimed with an exclusive create, so two runs
    started in the same second never share one log."""
    logs.mkdir(parents=True, exist_ok=True)
    for index in range(1, 10_000):
        path = logs / (f"{stem}.log" if index == 1 else f"{stem}_{index}.log")
        try:
            with open(path, "x"):
                return path
        except FileExistsError:
            continue
    raise RunFolderError(f"{logs}: too many log files named {stem}*")
