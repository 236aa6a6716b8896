"""Training throughput and GPU memory on one CUDA GPU: fp32, fp16 (grad scaler) and bf16 side by
side, at the paper's 8 environments and at 64.

    python benchmarks/gpu_training.py [--episodes 32] [--write]

Each run is ``clstm-ppo train --device cuda --amp MODE --fresh-start`` with the default (paper)
network on the bundled SPX train split, in its own process. Throughput is env-steps per second
of the training loop (process start-up and data loading excluded), read from the run's checkpoint
and log. GPU memory is the largest ``GPU memory:`` line of the log (memory reserved by torch's
allocator, which the trainer monitors and warns about above 90%).
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

import torch

from benchmarks_md import write_section
from clstm_ppo.train import checkpoint as ckpt

SECTION = "## One GPU: mixed precision and environments per process"


def run(amp: str, envs: int, episodes: int, folder: Path) -> tuple[float, float, int, float]:
    name = f"{amp}_{envs}"
    command = [
        sys.executable, "-m", "clstm_ppo", "train", "--episodes", str(episodes),
        "--device", "cuda", "--amp", amp, "--num-envs", str(envs), "--run-dir", str(folder),
        "--run-name", name, "--fresh-start", "--validate-every", str(episodes),
        "--set", "train.stats_every=8",
    ]  # fmt: skip
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True, text=True,
                   env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    wall = time.perf_counter() - started
    run_dir = folder / name
    state = ckpt.load(ckpt.resolve(run_dir / "checkpoints", "latest"))["train_state"]
    log = next((run_dir / "logs").glob("training_*.log")).read_text()
    seconds = float(re.search(r"done: \d+ episodes in ([\d.]+) s", log).group(1))
    gib = max(float(x) for x in re.findall(r"GPU memory: ([\d.]+) of", log))
    return state["env_steps"] / seconds, wall, state["episodes"], gib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_training.py: no CUDA GPU found; run it on a machine with one")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for envs in (8, 64):
            for amp in ("off", "fp16", "bf16"):
                episodes = max(args.episodes, envs)  # at least one round of episodes
                speed, wall, done, gib = run(amp, envs, episodes, Path(folder))
                cells = (envs, amp, done, f"{speed:,.0f}", f"{gib:.2f}", f"{wall:.0f} s")
                rows.append("| " + " | ".join(map(str, cells)) + " |")
    device = torch.cuda.get_device_name(0)
    table = "\n".join([
        "| envs | amp | episodes | env-steps/s (training loop) | GPU memory reserved, GiB | wall |",
        "|---|---|---|---|---|---|",
        *rows,
    ])  # fmt: skip
    print(f"{device}, torch {torch.__version__}\n{table}")
    if args.write:
        section = (
            f"{SECTION}\n\n```bash\npython benchmarks/gpu_training.py --episodes {args.episodes}"
            f" --write\n```\n\nDefault (paper) network, bundled SPX, one {device}, torch "
            f"{torch.__version__}, {os.cpu_count()} CPU cores. Measured "
            f"{time.strftime('%Y-%m-%d')}:\n\n{table}\n"
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
