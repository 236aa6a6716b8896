"""``python -m clstm_ppo.train ...``: one training process, started directly or by torchrun.

    torchrun --standalone --nproc_per_node=2 -m clstm_ppo.train \
        --episodes 100 --num-procs 2 --device cpu

Under torchrun (``WORLD_SIZE`` > 1 in the environment) it joins the process group (NCCL on
GPUs, gloo on the CPU), trains its share with DDP, and tears the group down on success, error
or signal. Flags are those of ``clstm-ppo train``.
"""

from __future__ import annotations

import os
import sys

from clstm_ppo.cli import run_worker

if __name__ == "__main__":
    sys.exit(run_worker(sys.argv[1:], dict(os.environ)))
