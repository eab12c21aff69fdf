"""``python -m tap_tenios``."""

from tap_tenios.tap import TapTenios

TapTenios.cli()
