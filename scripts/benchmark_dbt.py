"""``make benchmark``: the dbt build on PostgreSQL as the hourly job runs it, the first
build of an account's history against the hourly build after one more hour of legs.

For each size (legs, service numbers) a database of its own gets the emulator's calls
over ``--days`` days, their inbound legs spread over that many service numbers (a
call-tracking account has thousands), written straight into ``tenios.cdrs`` and
``tenios.cdr_counts`` with the column types target-postgres creates (so the loader is
not what gets measured). Then ``dbt build`` as Meltano's ``dbt-postgres:build`` runs it
(data tests included, unit tests not): the first build; one more hour of new legs plus
late ones (legs of the last day read again with their final cost, upserted on uuid as
the loader does, and the counts of their days); the hourly build. Figures: dbt's own
elapsed time (``run_results.json``) with the wall time, dbt's start included, beside it;
the ratio hourly / first measured in the same run; the same build once more with
nothing new (dbt's fixed cost per node, whatever the data); the rows of tenios__interval_kpis
against the bound the models keep them under. The databases are dropped afterwards.

    .venv/bin/python scripts/benchmark_dbt.py [--sizes 100000:200,100000:2000,1000000:2000]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import psycopg
import yaml

from tap_tenios.emulator import Leg, generate
from tap_tenios.emulator.data import generate_outbound

ROOT = Path(__file__).resolve().parent.parent
DBT = ROOT / ".meltano" / "utilities" / "dbt-postgres" / "venv" / "bin" / "dbt"
DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
UTC = timezone.utc
START = datetime(2024, 1, 1, tzinfo=UTC)

#: What target-postgres creates for the two streams (docs/operations.md, "Column
#: types by target"), with its primary keys (it upserts on them).
CDRS_COLUMNS = {
    "uuid": "TEXT PRIMARY KEY",
    "main_leg_uuid": "TEXT",
    "bleg_uuid": "TEXT",
    "call_type": "TEXT",
    "start_stamp": "TIMESTAMP WITHOUT TIME ZONE",
    "answer_stamp": "TIMESTAMP WITHOUT TIME ZONE",
    "end_stamp": "TIMESTAMP WITHOUT TIME ZONE",
    "duration": "BIGINT",
    "billusec": "BIGINT",
    "cost": "DECIMAL",
    "prepaid": "BOOLEAN",
    "hangup_cause": "TEXT",
    "callerid_number": "TEXT",
    "callerid_name": "TEXT",
    "destination_number": "TEXT",
    "source_type": "TEXT",
    "routing_status": "TEXT",
    "billing_status": "TEXT",
}
COUNTS_TABLE = (
    "CREATE TABLE tenios.cdr_counts (date DATE, timezone TEXT, "
    "start_date_from TIMESTAMP WITHOUT TIME ZONE, start_date_to TIMESTAMP WITHOUT TIME ZONE, "
    "total_items BIGINT, whole_day BOOLEAN, PRIMARY KEY (date, timezone))"
)
#: The counts of the UTC days of the legs in ``batch`` (or of every day), counted anew.
RECOUNT = """
    INSERT INTO tenios.cdr_counts
    SELECT day::date, 'UTC', day, day + interval '1 day', count(*), true
    FROM (SELECT date_trunc('day', start_stamp) AS day FROM tenios.cdrs) AS legs
    WHERE day::date IN (SELECT DISTINCT start_stamp::date FROM {days})
    GROUP BY day
    ON CONFLICT (date, timezone) DO UPDATE SET total_items = excluded.total_items
"""
INBOUND = ("INBOUND", "WEBRTCINBOUND")


@dataclass
class Build:
    """One ``dbt build``: dbt's own elapsed seconds, the wall seconds, the slowest nodes."""

    elapsed: float
    wall: float
    slowest: list[tuple[str, float]]


def spread(legs: Iterable[Leg], numbers: int) -> Iterator[Leg]:
    """The legs with each call's inbound leg dialled to one of ``numbers`` service
    numbers (by its uuid, so a leg read again keeps its number).
    """
    for leg in legs:
        if leg.fields["call_type"] in INBOUND and leg.fields["main_leg_uuid"] is None:
            number = f"+4930{int(leg.uuid.replace('-', '')[:8], 16) % numbers:07d}"
            fields = {**leg.fields, "destination_number": number}
            yield Leg(leg.uuid, leg.start, leg.visible_at, fields, leg.outcome)
        else:
            yield leg


def _text(value: object) -> str:
    """A COPY text field: NULL as a backslash and N, instants as naive UTC (as the loader
    writes them).
    """
    if value is None:
        return "\\N"
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ")
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")


def load(connection: psycopg.Connection, legs: Iterable[Leg]) -> int:
    """Upsert ``legs`` into tenios.cdrs on uuid and count their days again; how many."""
    buffer = io.StringIO()
    written = 0
    for leg in legs:
        buffer.write("\t".join(_text(leg.fields[name]) for name in CDRS_COLUMNS) + "\n")
        written += 1
    columns = ", ".join(CDRS_COLUMNS)
    with connection.transaction():
        connection.execute("CREATE TEMP TABLE batch (LIKE tenios.cdrs) ON COMMIT DROP")
        with connection.cursor().copy(f"COPY batch ({columns}) FROM STDIN") as copy:
            copy.write(buffer.getvalue())
        connection.execute("DELETE FROM tenios.cdrs WHERE uuid IN (SELECT uuid FROM batch)")
        connection.execute(f"INSERT INTO tenios.cdrs SELECT {columns} FROM batch")  # noqa: S608
        connection.execute(RECOUNT.format(days="batch"))
    connection.execute("ANALYZE tenios.cdrs")
    return written


def late_copies(legs: list[Leg], since: datetime, share: int = 20) -> list[Leg]:
    """One in ``share`` answered legs started since ``since``, read again after billing
    settled: a new copy, its cost a hundredth of a cent higher.
    """
    copies = []
    for index, leg in enumerate(leg for leg in legs if leg.start >= since):
        if leg.fields["billusec"] and index % share == 0:
            fields = {**leg.fields, "cost": Decimal(str(leg.fields["cost"])) + Decimal("0.0001")}
            copies.append(Leg(leg.uuid, leg.start, leg.visible_at, fields, leg.outcome))
    return copies


def dbt_postgres_env() -> dict[str, str]:
    """The environment meltano.yml's dbt-postgres utility runs dbt with."""
    project = yaml.safe_load((ROOT / "meltano.yml").read_text())
    (utility,) = (u for u in project["plugins"]["utilities"] if u["name"] == "dbt-postgres")
    return {name: str(value) for name, value in utility.get("env", {}).items()}


def dbt_build(env: dict[str, str]) -> Build:
    """``dbt build`` without the unit tests, as the hourly job's ``dbt-postgres:build``."""
    began = time.monotonic()
    done = subprocess.run(
        [str(DBT), "build", "--exclude-resource-type", "unit_test"],
        cwd=ROOT / "transform",
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.monotonic() - began
    if done.returncode:
        sys.exit(f"dbt build failed:\n{done.stdout[-4000:]}")
    results = json.loads((Path(env["DBT_TARGET_PATH"]) / "run_results.json").read_text())
    nodes = sorted(
        ((r["unique_id"].split(".")[-1], r["execution_time"]) for r in results["results"]),
        key=lambda node: -node[1],
    )
    return Build(results["elapsed_time"], wall, nodes[:4])


@contextmanager
def database() -> Iterator[tuple[str, psycopg.Connection]]:
    """A database of its own on the server (dropped afterwards), and a connection to it."""
    name = f"tenios_benchmark_dbt_{secrets.token_hex(4)}"
    with psycopg.connect(DSN, autocommit=True) as server:
        server.execute(f"CREATE DATABASE {name}")
        try:
            own = psycopg.conninfo.make_conninfo(DSN, dbname=name)
            with psycopg.connect(own, autocommit=True) as connection:
                yield name, connection
        finally:
            server.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def measure(legs_wanted: int, numbers: int, days: int) -> dict[str, object]:
    """The first and the hourly build of one size; its figures."""
    calls_per_day = round(legs_wanted / 2.2 / days)  # about 2.2 legs a call
    end = START + timedelta(days=days)
    legs = generate(START, end, calls_per_day, seed=7)
    legs += generate_outbound(START, end, max(1, calls_per_day // 10), seed=9)
    legs = list(spread(legs, numbers))
    hour = generate(end, end + timedelta(hours=1), calls_per_day, seed=8)
    hour += generate_outbound(end, end + timedelta(hours=1), max(1, calls_per_day // 10), seed=10)
    late = late_copies(legs, end - timedelta(days=1))
    info = psycopg.conninfo.conninfo_to_dict(DSN)
    with database() as (name, connection):
        connection.execute("CREATE SCHEMA tenios")
        columns = ", ".join(f"{column} {kind}" for column, kind in CDRS_COLUMNS.items())
        connection.execute(f"CREATE TABLE tenios.cdrs ({columns})")
        connection.execute(COUNTS_TABLE)
        loaded = load(connection, legs)
        workdir = Path(tempfile.mkdtemp(prefix=f"{name}-"))
        env = {
            **os.environ,
            "DBT_PROFILES_DIR": str(ROOT / "transform" / "profiles" / "postgres"),
            "DBT_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
            "DBT_POSTGRES_PORT": str(info.get("port", 5432)),
            "DBT_POSTGRES_USER": str(info.get("user", "postgres")),
            "DBT_POSTGRES_PASSWORD": str(info.get("password", "")),
            "DBT_POSTGRES_DBNAME": name,
            "DBT_TARGET_PATH": str(workdir / "target"),
            "DBT_LOG_PATH": str(workdir / "logs"),
            # One account in the schema tenios, days in UTC (as the counts are).
            "TENIOS_SOURCES": "",
            "TENIOS_FIRST_DAY": "",
            "TENIOS_REPORT_TIMEZONE": "UTC",
            # What meltano.yml's dbt-postgres sets for the hourly job (PGOPTIONS).
            **dbt_postgres_env(),
        }
        first = dbt_build(env)
        added = load(connection, [*spread(hour, numbers), *spread(late, numbers)])
        hourly = dbt_build(env)
        # The same build once more with nothing loaded since: what any hourly build costs
        # whatever the data (dbt's work per node), beside what this hour's legs cost.
        idle = dbt_build(env)
        rows, accounts, numbered = connection.execute(
            "SELECT count(*), count(*) FILTER (WHERE is_account_total), "
            "count(*) FILTER (WHERE NOT is_account_total) FROM analytics.tenios__interval_kpis"
        ).fetchone()
        intervals_with_calls = connection.execute(
            "SELECT count(DISTINCT (account, service_number, interval_start_at)) "
            "FROM analytics.int_tenios__inbound_calls"
        ).fetchone()[0]
    return {
        "legs": loaded,
        "numbers": numbers,
        "added": added,
        "new": len(hour),
        "late": len(late),
        "first": first,
        "hourly": hourly,
        "idle": idle,
        "interval_rows": rows,
        "account_intervals": accounts,
        "number_intervals": numbered,
        "number_intervals_with_calls": intervals_with_calls,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes",
        default="100000:200,100000:2000,1000000:2000",
        help="legs:service numbers, comma-separated",
    )
    parser.add_argument("--days", type=int, default=40, help="days the legs span")
    args = parser.parse_args()
    if not DBT.exists():
        sys.exit("dbt-postgres is not installed: run `meltano install` first")
    results = []
    for size in args.sizes.split(","):
        legs, numbers = (int(part) for part in size.split(":"))
        print(f"Building {legs} legs over {args.days} days, {numbers} service numbers ...")
        result = measure(legs, numbers, args.days)
        results.append(result)
        print(
            f"    {result['legs']} legs; then {result['new']} new legs of one hour and "
            f"{result['late']} late copies; slowest first build: "
            + ", ".join(f"{node} {seconds:.1f} s" for node, seconds in result["first"].slowest)
            + "; slowest hourly: "
            + ", ".join(f"{node} {seconds:.2f} s" for node, seconds in result["hourly"].slowest),
            flush=True,
        )
    print(f"\ndbt build on PostgreSQL ({os.cpu_count()} cores), seconds: dbt's own (wall):")
    header = (
        "legs",
        "numbers",
        "first build",
        "hourly build",
        "hourly / first",
        "nothing new",
        "interval rows",
    )
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for result in results:
        first, hourly, idle = result["first"], result["hourly"], result["idle"]
        assert isinstance(first, Build) and isinstance(hourly, Build) and isinstance(idle, Build)
        print(
            f"| {result['legs']:,} | {result['numbers']:,} "
            f"| {first.elapsed:.1f} ({first.wall:.1f}) | {hourly.elapsed:.1f} ({hourly.wall:.1f}) "
            f"| {hourly.elapsed / first.elapsed:.3f} ({hourly.wall / first.wall:.3f}) "
            f"| {idle.elapsed:.1f} ({idle.wall:.1f}) "
            f"| {result['interval_rows']:,} = {result['account_intervals']:,} account + "
            f"{result['number_intervals']:,} number intervals "
            f"({result['number_intervals_with_calls']:,} with calls) |"
        )


if __name__ == "__main__":
    main()
