"""python -m dynreg_tools VERB: the same as the `dynreg` command."""

import sys

from dynreg_tools.cli import main

sys.exit(main())
