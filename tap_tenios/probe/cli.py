"""``tap-tenios-probe``: read the tap's settings, run the probe, print its report.

The settings come from the same places as the tap's (``--config`` files, ``ENV`` for
``TAP_TENIOS_*`` variables, neither given: the environment) and are checked by the
tap's own parser. The report goes to stdout (and ``--output``); progress and the one
line a failure ends with go to stderr. Exit code 1 when the probe could not finish
because of the API or the settings, 0 otherwise (a spent budget included).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

from singer_sdk.configuration._dict_config import parse_environment_config

from tap_tenios.probe.checks import Probe
from tap_tenios.probe.client import Clock, ProbeClient, SystemClock
from tap_tenios.probe.report import safe_text
from tap_tenios.settings import Settings, SettingsError
from tap_tenios.tap import TapTenios

#: Requests one probe makes at most, retries included; a full probe takes about 20.
DEFAULT_MAX_REQUESTS = 60
#: Seconds between two requests at least (one a second: far below any usual limit).
DEFAULT_PACE = 1.0
#: Days counted back from now to find legs.
DEFAULT_DAYS = 14
#: The probe does not extract: any start date satisfies the tap's settings parser.
UNUSED_START = "2000-01-01"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap-tenios-probe",
        description="Find out, read-only and with a few requests, how the Tenios API behaves "
        "for your account, and print a report to paste into an issue.",
    )
    parser.add_argument(
        "--config",
        action="append",
        default=[],
        metavar="PATH|ENV",
        help="the tap's config file (repeatable; later ones win), or ENV for TAP_TENIOS_* "
        "variables; without --config, the variables are read",
    )
    parser.add_argument(
        "--max-requests",
        type=int,
        default=DEFAULT_MAX_REQUESTS,
        help=f"requests at most, retries included (default {DEFAULT_MAX_REQUESTS})",
    )
    parser.add_argument(
        "--pace",
        type=float,
        default=DEFAULT_PACE,
        help=f"seconds between requests at least (default {DEFAULT_PACE:g})",
    )
    parser.add_argument(
        "--days",
        type=int,
        default=DEFAULT_DAYS,
        help=f"days to look back for legs (default {DEFAULT_DAYS})",
    )
    parser.add_argument(
        "--watch",
        type=float,
        default=0.0,
        metavar="MINUTES",
        help="read the recent window again after MINUTES: legs that appear late, fields "
        "that change in place",
    )
    parser.add_argument("--json", action="store_true", help="the report as JSON")
    parser.add_argument("--output", type=Path, help="also write the report to this file")
    return parser


def load_config(sources: list[str]) -> dict[str, Any]:
    """The tap's config from files and/or ``TAP_TENIOS_*`` variables, with its defaults."""
    config: dict[str, Any] = {}
    for source in sources:
        if source != "ENV":
            config |= json.loads(Path(source).read_text(encoding="utf-8"))
    if not sources or "ENV" in sources:
        config |= parse_environment_config(TapTenios.config_jsonschema, "TAP_TENIOS_")
    for name, schema in TapTenios.config_jsonschema["properties"].items():
        if "default" in schema:
            config.setdefault(name, schema["default"])
    config.setdefault("start_date", UNUSED_START)
    return config


class _Redacting(logging.Filter):
    """Progress and retry lines pass through ``safe_text``: no key, no number."""

    def __init__(self, key: str | None) -> None:
        super().__init__()
        self.key = key

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = safe_text(record.getMessage(), self.key), None
        return True


def main(argv: list[str] | None = None, clock: Clock | None = None) -> int:
    """The command: settings, the probe, the report; the exit code."""
    args = build_parser().parse_args(argv)
    logger = logging.getLogger("tap-tenios-probe")
    try:
        config = load_config(args.config)
        key = config.get("access_key")
        settings = Settings.from_config(config)
    except SettingsError as exc:
        print(f"tap-tenios-probe: invalid settings: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:
        print(f"tap-tenios-probe: the config cannot be read: {exc}", file=sys.stderr)
        return 1
    if args.max_requests < 1 or args.days < 1 or args.pace < 0 or args.watch < 0:
        print(
            "tap-tenios-probe: --max-requests and --days must be positive, --pace and "
            "--watch not negative",
            file=sys.stderr,
        )
        return 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("tap-tenios-probe: %(message)s"))
    handler.addFilter(_Redacting(key))
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    client = ProbeClient(
        settings,
        str(key),
        max_requests=args.max_requests,
        pace=args.pace,
        clock=clock or SystemClock(),
        logger=logger,
    )
    probe = Probe(
        client, settings, str(key), days=args.days, watch_minutes=args.watch, logger=logger
    )
    report = probe.run()
    text = report.to_json(key) if args.json else report.to_markdown(key)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    sys.stdout.write(text)
    sys.stdout.flush()
    if report.stopped:
        print(f"tap-tenios-probe: stopped: {report.stopped}", file=sys.stderr)
    return 1 if probe.failed else 0
