import sys

from clstm_ppo.cli import main

sys.exit(main())
