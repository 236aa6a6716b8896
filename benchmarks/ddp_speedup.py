"""Training throughput with 1 and 2 DDP processes on the CPU (gloo), side by side.

    python benchmarks/ddp_speedup.py [--episodes 64] [--write]

Each run is ``clstm-ppo train --num-procs P --device cpu --fresh-start`` with the default
(paper) network and 8 environments per process on the bundled SPX train split. Throughput is
env-steps per second of the training loop (rollouts, updates and validations; process start-up
and data loading excluded), read from the run's checkpoint and log.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks_md import write_section
from clstm_ppo.train import checkpoint as ckpt

SECTION = "## DDP: 2 processes against 1 (CPU, gloo)"


def run(
    procs: int, episodes: int, folder: Path, threads: int | None = None
) -> tuple[float, float, int]:
    command = [
        sys.executable, "-m", "clstm_ppo", "train", "--episodes", str(episodes),
        "--num-procs", str(procs), "--device", "cpu", "--run-dir", str(folder),
        "--run-name", f"p{procs}t{threads}", "--fresh-start", "--validate-every", str(episodes),
    ]  # fmt: skip
    env = {**os.environ, "COLUMNS": "200"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - started
    run_dir = folder / f"p{procs}t{threads}"
    state = ckpt.load(ckpt.resolve(run_dir / "checkpoints", "latest"))["train_state"]
    log = next((run_dir / "logs").glob("training_*.log")).read_text()
    seconds = float(re.search(r"done: \d+ episodes in ([\d.]+) s", log).group(1))
    return state["env_steps"] / seconds, wall, state["episodes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        one = run(1, args.episodes, Path(folder))
        one_thread = run(1, args.episodes, Path(folder), threads=1)
        two = run(2, args.episodes, Path(folder))
    lines = [
        "| processes | threads each | episodes | env-steps/s (training loop) | wall time |",
        "|---|---|---|---|---|",
        f"| 1 | 2 (torch default) | {one[2]} | {one[0]:,.0f} | {one[1]:.0f} s |",
        f"| 1 | 1 | {one_thread[2]} | {one_thread[0]:,.0f} | {one_thread[1]:.0f} s |",
        f"| 2 | 1 (torchrun default) | {two[2]} | {two[0]:,.0f} | {two[1]:.0f} s |",
        "",
        f"Speed-up of 2 processes over 1: **{two[0] / one[0]:.2f}x** env-steps/s against the "
        f"default single process, {two[0] / one_thread[0]:.2f}x against a single process "
        "with one thread.",
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        section = (
            f"{SECTION}\n\n```bash\npython benchmarks/ddp_speedup.py --episodes {args.episodes}"
            f" --write\n```\n\nDefault (paper) network, 8 environments per process, bundled SPX;"
            f" {os.cpu_count()} CPU cores. Measured {time.strftime('%Y-%m-%d')}:\n\n{table}\n"
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
