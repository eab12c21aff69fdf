"""``python -m tap_tenios.probe``: the same as ``tap-tenios-probe``."""

import sys

from tap_tenios.probe.cli import main

sys.exit(main())
