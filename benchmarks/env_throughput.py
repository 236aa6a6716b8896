"""Env-steps per second of the single and the batched multi-leg environment.

Random valid actions (uniform over each account's action mask), bundled SPX, train split,
252-day episodes with autoreset. Each configuration is warmed up, then timed for at least
``--seconds`` seconds.

    python benchmarks/env_throughput.py [--seconds 5] [--sizes 1 64 1024 4096] [--write]

``--write`` replaces the "Environment throughput" section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np
import torch

from benchmarks_md import write_section
from clstm_ppo.envs import BatchedOptionsEnv, MultiLegOptionsEnv

SECTION = "## Environment throughput"


def time_single(seconds: float) -> float:
    env = MultiLegOptionsEnv()
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    steps, start = 0, time.perf_counter()
    while True:
        action = int(rng.choice(np.flatnonzero(info["action_mask"])))
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            _, info = env.reset()
        steps += 1
        if steps % 100 == 0 and time.perf_counter() - start > seconds:
            return steps / (time.perf_counter() - start)


def time_batched(n: int, seconds: float) -> float:
    env = BatchedOptionsEnv(n, multi_leg=True)
    rng = np.random.default_rng(0)
    _, info = env.reset(seed=0)
    for _ in range(5):  # warm-up
        actions = np.argmax(info["action_mask"] * rng.random(info["action_mask"].shape), axis=1)
        _, _, _, _, info = env.step(actions)
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        actions = np.argmax(info["action_mask"] * rng.random(info["action_mask"].shape), axis=1)
        _, _, _, _, info = env.step(actions)
        steps += n
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 1024, 4096])
    parser.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = parser.parse_args()
    single = time_single(args.seconds)
    rows = [("single env (Gymnasium)", 1, single, 1.0)]
    for n in args.sizes:
        rate = time_batched(n, args.seconds)
        rows.append(("batched env", n, rate, rate / single))
    lines = [
        "| environment | N | env-steps/s | x single |",
        "|---|---|---|---|",
        *[f"| {name} | {n} | {rate:,.0f} | {ratio:,.1f} |" for name, n, rate, ratio in rows],
    ]
    table = "\n".join(lines)
    print(table)
    if args.write:
        machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        section = (
            f"{SECTION}\n\n```bash\npython benchmarks/env_throughput.py --write\n```\n\n"
            f"Multi-leg env (91 actions), random valid actions, bundled SPX train split, 252-day "
            f"episodes with autoreset; {machine}, numpy {np.__version__}, torch "
            f"{torch.__version__} (its CPU kernels price the daily marks). "
            f"Measured {time.strftime('%Y-%m-%d')}:\n\n"
            f"{table}\n"
        )
        write_section(SECTION, section)


if __name__ == "__main__":
    main()
