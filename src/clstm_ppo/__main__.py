from clstm_ppo.cli import main
import sys

sys.exit(main())
