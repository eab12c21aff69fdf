"""``make benchmark``: the dbt models' build time on DuckDB for a million legs, full
rebuild against an incremental run after one more day of legs and that day's late legs.

The legs are the emulator's synthetic calls, written straight into a DuckDB file with
the column types target-duckdb creates (``load_duckdb``), so the loader is not what
gets measured. Both builds run ``dbt run`` through the dbt-duckdb utility Meltano
installed (``meltano install`` first); the figure is the ratio incremental / full,
measured in the same run, wall clock (what a user waits for, dbt's start-up included)
and the models' own execution time (from dbt's run_results.json).

    .venv/bin/python scripts/benchmark_dbt.py [--legs 1000000]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import duckdb

from tap_tenios.emulator import Leg, generate
from tap_tenios.emulator.data import generate_outbound

ROOT = Path(__file__).resolve().parent.parent
DBT = ROOT / ".meltano" / "utilities" / "dbt-duckdb" / "venv" / "bin" / "dbt"
UTC = timezone.utc
START = datetime(2024, 1, 1, tzinfo=UTC)

#: The columns target-duckdb 0.8.0 creates for the two streams (README: "Column types
#: by target"): cost a DOUBLE, integers HUGEINT, the counted day VARCHAR.
CDRS_COLUMNS = {
    "uuid": "VARCHAR",
    "main_leg_uuid": "VARCHAR",
    "bleg_uuid": "VARCHAR",
    "call_type": "VARCHAR",
    "start_stamp": "TIMESTAMP",
    "answer_stamp": "TIMESTAMP",
    "end_stamp": "TIMESTAMP",
    "duration": "HUGEINT",
    "billusec": "HUGEINT",
    "cost": "DOUBLE",
    "prepaid": "BOOLEAN",
    "hangup_cause": "VARCHAR",
    "callerid_number": "VARCHAR",
    "callerid_name": "VARCHAR",
    "destination_number": "VARCHAR",
    "source_type": "VARCHAR",
    "routing_status": "VARCHAR",
    "billing_status": "VARCHAR",
}
COUNTS_COLUMNS = {
    "date": "VARCHAR",
    "timezone": "VARCHAR",
    "start_date_from": "TIMESTAMP",
    "start_date_to": "TIMESTAMP",
    "total_items": "HUGEINT",
}


def _naive(value: object) -> object:
    """Instants as the loader stores them: naive UTC."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None)
    return value


def load_duckdb(path: Path, legs: Iterable[Leg], schema: str = "tenios") -> int:
    """Write ``legs`` into ``schema``.cdrs (an upsert on uuid, as target-duckdb does) and
    each UTC day's count into ``schema``.cdr_counts; the number of legs written.
    """
    written = 0
    with tempfile.NamedTemporaryFile("w", suffix=".csv", newline="", delete=False) as handle:
        writer = csv.writer(handle)
        for leg in legs:
            writer.writerow(
                ["\\N" if (v := _naive(leg.fields[name])) is None else v for name in CDRS_COLUMNS]
            )
            written += 1
    db = duckdb.connect(str(path))
    try:
        db.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        db.execute(f"USE {schema}")
        columns = ", ".join(f"{name} {kind}" for name, kind in CDRS_COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS cdrs ({columns})")
        columns = ", ".join(f"{name} {kind}" for name, kind in COUNTS_COLUMNS.items())
        db.execute(f"CREATE TABLE IF NOT EXISTS cdr_counts ({columns})")
        db.execute(
            "CREATE TEMP TABLE batch AS SELECT * FROM read_csv(?, header = false, "
            "nullstr = '\\N', columns = ?)",
            [handle.name, CDRS_COLUMNS],
        )
        db.execute("DELETE FROM cdrs WHERE uuid IN (SELECT uuid FROM batch)")
        db.execute("INSERT INTO cdrs SELECT * FROM batch")
        db.execute("DELETE FROM cdr_counts")
        db.execute(
            "INSERT INTO cdr_counts SELECT strftime(day, '%Y-%m-%d'), 'UTC', day, "
            "day + INTERVAL 1 DAY, count(*) FROM (SELECT date_trunc('day', start_stamp) AS day "
            "FROM cdrs) GROUP BY day"
        )
    finally:
        db.close()
        os.unlink(handle.name)
    return written


def dbt(*args: str, env: dict[str, str]) -> tuple[float, float]:
    """Run dbt; (wall seconds, summed model execution seconds)."""
    began = time.monotonic()
    done = subprocess.run(
        [str(DBT), *args],
        cwd=ROOT / "transform",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - began
    if done.returncode:
        sys.exit(f"dbt {' '.join(args)} failed:\n{done.stdout[-4000:]}")
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    return wall, sum(result["execution_time"] for result in results["results"])


def late_copies(legs: list[Leg], since: datetime) -> list[Leg]:
    """Legs of the last day read again after billing settled: each a new copy, its cost
    a hundredth of a cent higher (the newest copy wins in the models).
    """
    copies = []
    for leg in legs:
        if leg.start >= since and leg.fields["billusec"]:
            fields = {**leg.fields, "cost": Decimal(str(leg.fields["cost"])) + Decimal("0.0001")}
            copies.append(Leg(leg.uuid, leg.start, leg.visible_at, fields, leg.outcome))
    return copies


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--legs", type=int, default=1_000_000, help="legs in the full build")
    parser.add_argument("--days", type=int, default=60, help="days they span")
    args = parser.parse_args()
    if not DBT.exists():
        sys.exit("dbt-duckdb is not installed: run `meltano install` first")

    # About 2.2 legs a call.
    calls_per_day = round(args.legs / 2.2 / args.days)
    end = START + timedelta(days=args.days)
    workdir = Path(tempfile.mkdtemp(prefix="benchmark-dbt-"))
    warehouse = workdir / "warehouse.duckdb"
    env = {
        **os.environ,
        "DBT_PROFILES_DIR": str(ROOT / "transform" / "profiles" / "duckdb"),
        "DBT_DUCKDB_PATH": str(warehouse),
        "DBT_TARGET_PATH": str(workdir / "target"),
        "DBT_LOG_PATH": str(workdir / "logs"),
    }
    print(f"Generating {args.days} days of calls ({calls_per_day} a day) ...", flush=True)
    legs = generate(START, end, calls_per_day, seed=7)
    legs += generate_outbound(START, end, calls_per_day // 10, seed=9)
    loaded = load_duckdb(warehouse, legs)
    roles = Counter(str(leg.fields["call_type"]) for leg in legs)
    print(f"    {loaded} legs ({', '.join(f'{k} {v}' for k, v in sorted(roles.items()))})")

    dbt("seed", env=env)
    dbt("run", "--full-refresh", env=env)  # warms the file and dbt's caches
    full = dbt("run", "--full-refresh", env=env)
    next_day = generate(end, end + timedelta(days=1), calls_per_day, seed=8)
    next_day += generate_outbound(end, end + timedelta(days=1), calls_per_day // 10, seed=10)
    late = late_copies(legs, end - timedelta(days=1))
    added = load_duckdb(warehouse, [*next_day, *late])
    print(f"    then {len(next_day)} legs of one more day and {len(late)} late copies ({added})")
    incremental = dbt("run", env=env)

    print(f"\ndbt run on DuckDB, {loaded} legs ({os.cpu_count()} cores):")
    print(f"    {'':<26} {'wall s':>8} {'models s':>9}")
    print(f"    {'full rebuild':<26} {full[0]:>8.1f} {full[1]:>9.1f}")
    print(f"    {'incremental, one day':<26} {incremental[0]:>8.1f} {incremental[1]:>9.1f}")
    print(
        f"    {'ratio incremental / full':<26} {incremental[0] / full[0]:>8.2f} "
        f"{incremental[1] / full[1]:>9.2f}"
    )


if __name__ == "__main__":
    main()
