"""``python -m orchestrate``: see ``orchestrate.cli``."""

import sys

from .cli import main

sys.exit(main())
