"""Where a run's numbers go: console (rich), a log file per run, TensorBoard.

Only rank 0 writes anything; other ranks get a reporter that stays silent, so the trainer never
needs to ask which rank it is before logging.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch.utils.tensorboard import SummaryWriter

from clstm_ppo.train.run_folder import folder_error, unique_log_path


class Reporter:
    """Console, log file and TensorBoard of one run (no-ops unless ``active``)."""

    def __init__(self, run_dir: Path, active: bool, console: Console | None = None) -> None:
        self.active = active
        self.console = console or Console(stderr=False)
        self.logger = logging.getLogger(f"clstm_ppo.run.{id(self)}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.writer: SummaryWriter | None = None
        self.progress: Progress | None = None
        self._task = None
        self.log_path: Path | None = None
        if not active:
            return
        stamp = time.strftime("%Y%m%d_%H%M%S")
        logs = run_dir / "logs"
        try:
            self.log_path = unique_log_path(logs, f"training_{stamp}")
            handler = logging.FileHandler(self.log_path)
            self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        except OSError as error:
            raise folder_error(
                Path(getattr(error, "filename", None) or logs), error, "write the run's logs"
            ) from None
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        self.logger.addHandler(handler)

    def info(self, message: str, echo: bool = True) -> None:
        if not self.active:
            return
        self.logger.info(message)
        if echo:
            self.console.print(message, highlight=False, markup=False)

    def warning(self, message: str) -> None:
        if not self.active:
            return
        self.logger.warning(message)
        self.console.print(f"warning: {message}", highlight=False, markup=False)

    def scalars(self, prefix: str, values: dict[str, float], step: int) -> None:
        if self.writer is None:
            return
        for key, value in values.items():
            if value == value:  # skip NaN
                self.writer.add_scalar(f"{prefix}/{key}", value, step)

    def start_progress(self, total: int, done: int) -> None:
        if not self.active:
            return
        self.progress = Progress(
            TextColumn("[bold]training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("episodes"),
            TimeElapsedColumn(),
            TextColumn("{task.fields[status]}"),
            console=self.console,
            transient=False,
        )
        self.progress.start()
        self._task = self.progress.add_task("train", total=total, completed=done, status="")

    def advance(self, done: int, status: str) -> None:
        if self.progress is not None:
            # The bar never reads "56/50": environments that finish together can overshoot.
            total = max(done, self.progress.tasks[0].total or 0)
            self.progress.update(self._task, completed=done, total=total, status=status)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
        if self.writer is not None:
            self.writer.flush()
            self.writer.close()
            self.writer = None
        for handler in list(self.logger.handlers):
            handler.close()
            self.logger.removeHandler(handler)
