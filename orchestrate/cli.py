"""``python -m orchestrate``: check an accounts file, or run its definitions in-process.

``check`` reads the accounts file and the settings and prints one line per account;
``run`` runs the job of ``orchestrate.definitions`` (every account, or the ones named
with ``--account``) in this process with Dagster's multiprocess executor, then prints
each account's legs against the API's count. The same definitions ``dagster dev``
loads, against any accounts file: a bad file or setting is one line and nothing runs.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .accounts import ACCOUNTS_FILE_ENV, AccountsError, accounts_path, load_accounts
from .settings import load_settings


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m orchestrate", description=__doc__)
    parser.add_argument("command", choices=("check", "run"))
    parser.add_argument(
        "--accounts", type=Path, help=f"accounts file (default ${ACCOUNTS_FILE_ENV})"
    )
    parser.add_argument(
        "--account", action="append", default=[], help="run only this account (repeatable)"
    )
    parser.add_argument("--max-in-flight", type=int, help="accounts loading at once")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Exit 0 when every account loaded whole, 1 when one did not, 2 on bad input."""
    args = _parser().parse_args(argv)
    if args.accounts is not None:
        os.environ[ACCOUNTS_FILE_ENV] = str(args.accounts.resolve())
    if args.max_in_flight is not None:
        os.environ["TENIOS_MAX_IN_FLIGHT"] = str(args.max_in_flight)
    try:
        accounts = load_accounts(accounts_path())
        settings = load_settings()
        unknown = sorted(set(args.account) - {a.account for a in accounts})
        if unknown:
            raise AccountsError(f"--account {unknown[0]!r} is not in {accounts_path()}")
    except AccountsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.command == "check":
        for a in accounts:
            print(f"{a.account}: {a.api_url} from {a.start_date} ({a.timezone}) into {a.schema}")
        print(f"{len(accounts)} accounts; state {settings.state_id('<account>')}")
        return 0
    # Dagster is imported only to run: `check` answers at once.
    from .report import count_accounts, format_counts, warehouse_dsn  # noqa: PLC0415
    from .runner import run_job  # noqa: PLC0415

    selected = args.account or [a.account for a in accounts]
    ok = run_job(selected, all_accounts=[a.account for a in accounts])
    counts = count_accounts([a for a in accounts if a.account in selected], warehouse_dsn())
    print(format_counts(counts))
    whole = all(c.whole for c in counts)
    if not (ok and whole):
        print(
            "error: " + ("the run failed" if not ok else "an account is not whole"), file=sys.stderr
        )
    return 0 if ok and whole else 1
