"""What ``dagster dev -m orchestrate.defs`` loads: the definitions of ``TENIOS_ACCOUNTS_FILE``."""

from __future__ import annotations

from .definitions import definitions_from_env

defs = definitions_from_env()
