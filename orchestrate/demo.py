"""``make orchestrate-demo``: twenty emulated accounts through Dagster into PostgreSQL.

Starts one emulator per account (21 days of calls, 10 to 200 calls a day; ``acct_06``,
a small one read in one request, answers its first two requests with 403, so its load
fails twice and the retry policy's third attempt loads it), writes their
``accounts.yml``, and runs the definitions in this process with the multiprocess
executor into two new databases on the repository's PostgreSQL
(``scripts/postgres.sh start``): the warehouse and Meltano's system database. Then
the dbt models, once, and per account the legs loaded against the API's count.
``--measure`` times the same backfill one account after another (plain ``meltano
run``, no Dagster, then the same ``dbt build``) and through Dagster with 1, 2 and 4
in flight, each from empty databases, for docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import yaml

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate

from .accounts import Account, load_accounts
from .definitions import TRANSFORM, dbt_resource, dbt_sources
from .el import prepare_system_database, run_account
from .report import count_accounts, format_counts, warehouse_dsn
from .runner import run_job
from .settings import ROOT, load_settings

SERVER = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
SIZES = (10, 25, 50, 100, 200)
FAILING = "acct_06"
START = datetime(2024, 1, 1, tzinfo=timezone.utc)
DAYS = 21
END = START + timedelta(days=DAYS)


@contextmanager
def emulated_accounts(count: int, folder: Path) -> Iterator[tuple[Path, RunningEmulator]]:
    """``count`` emulators, the accounts file naming them and the failing account's
    emulator; stopped on exit.
    """
    running: list[RunningEmulator] = []
    entries = []
    try:
        for number in range(1, count + 1):
            name = f"acct_{number:02d}"
            key = f"demo-key-{uuid.uuid4().hex}"
            os.environ[f"TENIOS_DEMO_KEY_{number:02d}"] = key
            legs = generate(START, END, SIZES[(number - 1) % len(SIZES)], seed=number)
            emulator = RunningEmulator(Emulator(legs, Behaviour(access_key=key))).start()
            running.append(emulator)
            entries.append(
                {
                    "account": name,
                    "api_url": emulator.url,
                    "access_key_env": f"TENIOS_DEMO_KEY_{number:02d}",
                    "start_date": START.date().isoformat(),
                    "timezone": "Europe/Berlin" if number % 2 else "UTC",
                }
            )
        path = folder / "accounts.yml"
        path.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False))
        number = int(FAILING.removeprefix("acct_"))
        failing = running[number - 1 if count >= number else 0]
        yield path, failing
    finally:
        for emulator in running:
            emulator.stop()


@contextmanager
def fresh_databases() -> Iterator[tuple[str, str]]:
    """A warehouse and a Meltano system database, created for this run and dropped after."""
    suffix = uuid.uuid4().hex[:10]
    names = (f"tenios_demo_{suffix}", f"tenios_demo_meltano_{suffix}")
    with psycopg.connect(SERVER, autocommit=True) as server:
        for name in names:
            server.execute(f'CREATE DATABASE "{name}"')
        try:
            yield names
        finally:
            for name in names:
                server.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_databases(warehouse: str, system: str) -> None:
    """Point the loader, dbt and Meltano's system database at these databases."""
    info = psycopg.conninfo.conninfo_to_dict(SERVER)
    host, port, user = info.get("host", "127.0.0.1"), info.get("port", "15432"), info["user"]
    os.environ.update(
        {
            "MELTANO_DATABASE_URI": f"postgresql+psycopg://{user}@{host}:{port}/{system}",
            "TARGET_POSTGRES_HOST": str(host),
            "TARGET_POSTGRES_PORT": str(port),
            "TARGET_POSTGRES_DATABASE": warehouse,
            "DBT_POSTGRES_HOST": str(host),
            "DBT_POSTGRES_PORT": str(port),
            "DBT_POSTGRES_DBNAME": warehouse,
        }
    )


def fail_twice(emulator: RunningEmulator) -> None:
    """The next two requests are refused (403): the account's next two runs fail."""
    emulator.emulator.behaviour.fault_queue[:] = [{"kind": "403"}, {"kind": "403"}]


def demo(accounts_file: Path, failing: RunningEmulator, in_flight: int) -> int:
    """The demo proper: one run of every account, then the models; the table."""
    os.environ["TENIOS_MAX_IN_FLIGHT"] = str(in_flight)
    accounts = load_accounts(accounts_file)
    names = [a.account for a in accounts]
    fail_twice(failing)
    started = time.monotonic()
    ok = run_job(names)
    seconds = time.monotonic() - started
    counts = count_accounts(accounts, warehouse_dsn())
    print(format_counts(counts))
    with psycopg.connect(warehouse_dsn()) as connection:
        calls = connection.execute(
            "SELECT count(DISTINCT account), count(*) FROM analytics.tenios__calls"
        ).fetchone()
    print(
        f"\n{len(accounts)} accounts, {in_flight} in flight: {seconds:.0f} s; run "
        f"{'succeeded' if ok else 'FAILED'}; {FAILING} failed twice and was retried; "
        f"dbt built tenios__calls: {calls[1] if calls else 0} calls of "
        f"{calls[0] if calls else 0} accounts"
    )
    return 0 if ok and all(c.whole for c in counts) else 1


def measure(accounts_file: Path, failing: RunningEmulator) -> int:
    """Backfill wall times: one after another (no Dagster), then 1, 2 and 4 in flight."""
    accounts = load_accounts(accounts_file)
    names = [a.account for a in accounts]
    rows = []
    with fresh_databases() as (warehouse, system):
        use_databases(warehouse, system)
        settings = load_settings()
        prepare_system_database(settings)
        fail_twice(failing)
        started = time.monotonic()
        results = []
        for account in accounts:
            for _attempt in range(3):  # the failing account, retried at once
                try:
                    results.append(run_account(account, settings))
                    break
                except RuntimeError:
                    continue
        build_models(accounts)
        baseline = time.monotonic() - started
        shares = [r.startup_seconds / r.seconds for r in results]
        startup = [r.startup_seconds for r in results]
        rows.append(("one after another (meltano run, then dbt build)", baseline))
    for in_flight in (1, 2, 4):
        os.environ["TENIOS_MAX_IN_FLIGHT"] = str(in_flight)
        with fresh_databases() as (warehouse, system):
            use_databases(warehouse, system)
            fail_twice(failing)
            started = time.monotonic()
            run_job(names)
            rows.append(
                (f"Dagster, {in_flight} in flight (+ dbt once)", time.monotonic() - started)
            )
    print("| how | wall s | against one after another |\n|---|---:|---:|")
    for label, seconds in rows:
        print(f"| {label} | {seconds:.0f} | {seconds / baseline:.2f}x |")
    print(
        f"\nMeltano start-up (launch to the tap's first sync) per run, one after another: "
        f"median {statistics.median(startup):.1f} s, {min(startup):.1f} to {max(startup):.1f} s; "
        f"share of the run: median {statistics.median(shares):.0%}, "
        f"{min(shares):.0%} to {max(shares):.0%}"
    )
    return 0


def build_models(accounts: list[Account]) -> None:
    """``dbt build`` over every account's schema, as the job's dbt assets run it."""
    sources = json.dumps({"tenios_sources": dbt_sources(accounts)})
    command = ["build", "--exclude-resource-type", "unit_test", "--vars", sources]
    dbt_resource(TRANSFORM / "profiles" / "postgres").cli(
        command, target_path=TRANSFORM / "target"
    ).wait()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--in-flight", type=int, default=4)
    parser.add_argument("--measure", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("TENIOS_MELTANO", str(ROOT / ".venv" / "bin" / "meltano"))
    os.environ["MELTANO_ENVIRONMENT"] = "emulator"
    os.environ["TENIOS_RETRY_DELAY_SECONDS"] = "1"
    try:
        psycopg.connect(SERVER, connect_timeout=3).close()
    except psycopg.OperationalError:
        print(f"error: no PostgreSQL at {SERVER}: start one with scripts/postgres.sh start")
        return 2
    with tempfile.TemporaryDirectory() as folder:
        if args.measure:
            return measure_all(args.accounts, Path(folder))
        with emulated_accounts(args.accounts, Path(folder)) as (accounts_file, failing):
            os.environ["TENIOS_ACCOUNTS_FILE"] = str(accounts_file)
            with fresh_databases() as (warehouse, system):
                use_databases(warehouse, system)
                return demo(accounts_file, failing, args.in_flight)


def measure_all(count: int, folder: Path) -> int:
    with emulated_accounts(count, folder) as (accounts_file, failing):
        os.environ["TENIOS_ACCOUNTS_FILE"] = str(accounts_file)
        return measure(accounts_file, failing)


if __name__ == "__main__":
    sys.exit(main())
