"""``python -m tlscopes.cli ...``: the command line, e.g. under ``torchrun -m tlscopes.cli``."""

import sys

from tlscopes.cli import main

sys.exit(main())
