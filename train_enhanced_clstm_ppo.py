#!/usr/bin/env python3
"""The original entry point, kept so its users' commands work exactly as written:

    python train_enhanced_clstm_ppo.py --episodes 5000 --num_gpus 1
    python train_enhanced_clstm_ppo.py --episodes 5000 --resume-from best

It is ``clstm-ppo train`` with the same flags.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # works before `pip install`

from clstm_ppo.cli import main

if __name__ == "__main__":
    sys.exit(main(["train", *sys.argv[1:]]))
