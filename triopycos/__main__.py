"""``python -m triopycos ...``: the command line (see ``triopycos.cli``)."""

import sys

from .cli import main

sys.exit(main())
