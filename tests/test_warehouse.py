"""What users run: ``meltano run tap-tenios target-postgres`` into a real PostgreSQL.

Needs a server (``scripts/postgres.sh start``; CI starts one) at TENIOS_TEST_PG_DSN;
skips, saying so, when none answers. Meltano and its plugins come from this
project's ``meltano.yml``, installed once per session into ``.meltano/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import subprocess
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import Leg, generate, make_call

from .helpers import (
    END,
    MELTANO,
    PG_DSN,
    ROOT,
    dataset,
    documented_commands,
    free_port,
    in_range,
    meltano,
    pipeline_env,
    query,
)

UTC = timezone.utc

psycopg = pytest.importorskip("psycopg")


pytestmark = [pytest.mark.postgres, pytest.mark.meltano]


@pytest.fixture(scope="module")
def installed() -> None:
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-postgres")


def load(
    tmp_path: Path,
    api_url: str,
    database: str,
    extractor: str = "tap-tenios",
    user: str | None = None,
    **tap: str,
) -> str:
    """``meltano run EXTRACTOR target-postgres`` into ``database``; its log.

    ``tap-tenios`` writes BATCH files (meltano.yml), ``tap-tenios--records`` RECORD
    messages.
    """
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    env = {
        **pipeline_env(tmp_path, api_url, **tap),
        "TARGET_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "TARGET_POSTGRES_PORT": str(info.get("port", 5432)),
        "TARGET_POSTGRES_USER": user or str(info.get("user", "postgres")),
        "TARGET_POSTGRES_PASSWORD": str(info.get("password", "")),
        "TARGET_POSTGRES_DATABASE": database,
    }
    return meltano("run", extractor, "target-postgres", env=env).stderr


def late_call() -> list[Leg]:
    """A call that started before the first run's end and appears only after it."""
    legs = make_call(random.Random(11), END - timedelta(hours=5))
    for leg in legs:
        leg.visible_at = END + timedelta(days=1)
    return legs


def test_meltano_loads_every_leg_once_exactly_and_resumes_incrementally(
    installed, serve, database, tmp_path
):
    legs = dataset(calls_per_day=40)
    late = late_call()
    emulator = serve(legs + late, now=END + timedelta(hours=1))
    expected = in_range(legs)

    load(tmp_path, emulator.url, database)

    rows = query(database, "SELECT uuid, cost, start_stamp FROM tenios.cdrs")
    assert len(rows) == len(expected)
    assert {r[0] for r in rows} == expected
    # cost is exact NUMERIC: its sum equals the emulator's exact decimal sum.
    exact = sum((leg.fields["cost"] for leg in legs if leg.uuid in expected), Decimal(0))
    (total,) = query(database, "SELECT sum(cost) FROM tenios.cdrs")[0]
    assert total == exact
    assert query(
        database,
        """
        SELECT data_type FROM information_schema.columns
        WHERE table_schema = 'tenios' AND table_name = 'cdrs' AND column_name = 'cost'
    """,
    ) == [("numeric",)]
    # Instants land as the right UTC instants.
    by_uuid = {leg.uuid: leg for leg in legs}
    for leg_uuid, _, start_stamp in rows[:50]:
        assert start_stamp.replace(tzinfo=None) == by_uuid[leg_uuid].start.replace(tzinfo=None)
    assert query(
        database,
        """
        SELECT kcu.column_name FROM information_schema.table_constraints tc
        JOIN information_schema.key_column_usage kcu USING (constraint_name, table_schema)
        WHERE tc.table_schema = 'tenios' AND tc.table_name = 'cdrs'
          AND tc.constraint_type = 'PRIMARY KEY'
    """,
    ) == [("uuid",)]

    # cdr_counts: one row per day, equal to the loaded legs of that day.
    counts = dict(query(database, "SELECT date::text, total_items FROM tenios.cdr_counts"))
    loaded = Counter(r[2].date().isoformat() for r in rows)
    assert counts == dict(loaded)

    # The late call appears; the second run resumes from Meltano's state, re-reads the
    # lookback, and the table keeps one row per leg.
    emulator.emulator.behaviour.now = END + timedelta(days=2)
    second = load(tmp_path, emulator.url, database)
    assert "Starting incremental sync of 'cdrs' with bookmark value: 2024-03-03T" in second
    rows = query(database, "SELECT uuid FROM tenios.cdrs")
    assert len(rows) == len({r[0] for r in rows})
    assert {r[0] for r in rows} == expected | in_range(late)
    assert in_range(late)


def test_instants_and_days_follow_the_configured_zone(installed, serve, database, tmp_path):
    legs = dataset(calls_per_day=20)
    emulator = serve(legs)
    load(tmp_path, emulator.url, database, timezone="Europe/Berlin")
    counts = query(
        database,
        """
        SELECT date::text, start_date_from, whole_day, total_items
        FROM tenios.cdr_counts ORDER BY date
    """,
    )
    # Berlin's 2024-03-01 began at 23:00 UTC the day before; the extraction begins at
    # start_date (00:00 UTC), so the day is counted from there, and marked partial.
    assert counts[0][:3] == ("2024-03-01", datetime(2024, 3, 1, 0, 0), False)
    assert counts[1][1:3] == (datetime(2024, 3, 1, 23, 0), True)  # Berlin midnight, as UTC
    local = Counter(
        (leg.start + timedelta(hours=1)).date().isoformat()
        for leg in legs
        if leg.uuid in in_range(legs)
    )
    assert {d: n for d, _, _, n in counts} == dict(local)


# --- The documented Meltano steps, run as written --------------------------------------

README = ROOT / "README.md"
OPERATIONS = ROOT / "docs" / "operations.md"
EMULATOR_PORT = "8766"  # the README's and meltano.yml's; tests use a free one instead


def readme_commands(name: str, document: Path = README) -> list[str]:
    """The shell lines of the block between ``<!-- NAME: ... -->`` markers."""
    return documented_commands(document, name, "tests/test_warehouse.py")


def stop_group(group: int) -> None:
    """SIGTERM every process the steps started, then SIGKILL what is left after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, signal.SIGTERM)
        for _ in range(100):
            time.sleep(0.1)  # waiting for processes to exit, not for a retry
            os.killpg(group, 0)
        os.killpg(group, signal.SIGKILL)


def shell(lines: list[str], env: dict[str, str], log: Path) -> str:
    """Run ``lines`` in one bash, as a user pastes them; stop anything they started.

    Output goes to a file, not a pipe: the emulator the steps start in the background
    holds it open until it is stopped.
    """
    script = "set -euo pipefail\n" + "\n".join(lines) + "\n"
    with log.open("w") as out:
        process = subprocess.Popen(
            ["bash", "-c", script],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # so its background jobs can be stopped with it
        )
        try:
            process.wait(timeout=900)
        finally:
            stop_group(process.pid)
    output = log.read_text()
    assert process.returncode == 0, output[-4000:]
    return output


def readme_env(tmp_path: Path, database: str, port: int) -> dict[str, str]:
    """What a user's shell would hold: the venv on PATH, and this test's own server,
    database, emulator port and Meltano system database (so tests can run side by side).
    """
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_TENIOS_", "MELTANO_"))}
    return {
        **env,
        "PATH": f"{Path(MELTANO or 'meltano').parent}{os.pathsep}{env.get('PATH', '')}",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_TENIOS_API_URL": f"http://127.0.0.1:{port}",
        "TARGET_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "TARGET_POSTGRES_PORT": str(info.get("port", 5432)),
        "TARGET_POSTGRES_DATABASE": database,
        # The job's dbt build: the same database; its target/ and logs/ this test's own.
        "DBT_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "DBT_POSTGRES_PORT": str(info.get("port", 5432)),
        "DBT_POSTGRES_DBNAME": database,
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }


def bookmark(tmp_path: Path, env: dict[str, str], state_id: str) -> str:
    state = json.loads(meltano("state", "get", state_id, env=env).stdout)
    return str(state["singer_state"]["bookmarks"]["cdrs"]["replication_key_value"])


def test_the_readme_meltano_steps_work_as_written_and_a_range_rerun_keeps_the_bookmark(
    server, database, tmp_path
):
    port = free_port()
    env = readme_env(tmp_path, database, port)
    steps = [
        line.replace(EMULATOR_PORT, str(port))
        for line in readme_commands("meltano steps")
        if not line.startswith("scripts/")  # the server: this test's own (CI starts it)
    ]
    assert any(line.startswith("meltano run") for line in steps)
    rerun = readme_commands("meltano range re-run", OPERATIONS)
    state_id = next(line.split()[-1] for line in steps if line.startswith("meltano state get"))

    # The emulator keeps running in the background while the README's later steps run.
    lines = [*steps, *rerun, *[s for s in steps if s.startswith("meltano run")][-1:]]
    output = shell(lines, env, tmp_path / "steps.log")

    first, end = datetime(2024, 1, 1, tzinfo=UTC), datetime(2024, 1, 22, tzinfo=UTC)
    legs = [leg for leg in generate(first, end, 400, seed=1) if leg.start < end]
    rows = query(database, "SELECT count(*), count(DISTINCT uuid) FROM tenios.cdrs")
    assert rows == [(len(legs), len(legs))]
    # Each plain run after the first resumed from the bookmark of the full load, the
    # range re-run included: it read only its range and left the bookmark alone.
    last_start = max(leg.start for leg in legs).strftime("%Y-%m-%dT%H:%M:%S")
    resumed = f"Starting incremental sync of 'cdrs' with bookmark value: {last_start}"
    assert output.count(resumed) == 2, output[-4000:]
    assert "cdrs: reading 2024-01-05T00:00:00.000Z to 2024-01-08T00:00:00.000Z" in output
    assert bookmark(tmp_path, env, state_id).startswith(last_start)
    # Every job ended with the models built from what it loaded; no dbt unit tests there.
    jobs = sum("meltano run" in line and "tenios-to-postgres" in line for line in lines)
    assert jobs == 3
    assert len(re.findall(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", output)) == jobs
    assert not re.search(r"unit_test|PASS \S+::\S+", output)
    assert query(database, "SELECT count(*) FROM analytics.tenios__calls")[0][0] > 0


# --- Instants and cost, exactly ------------------------------------------------------


@pytest.fixture
def berlin_role(server: Any, database: str) -> Iterator[str]:
    """A login role whose sessions default to Europe/Berlin (UTC+1 in March)."""
    role = f"berlin_{uuid.uuid4().hex[:8]}"
    server.execute(f'CREATE ROLE "{role}" LOGIN')
    server.execute(f"ALTER ROLE \"{role}\" SET timezone = 'Europe/Berlin'")
    server.execute(f'GRANT ALL ON DATABASE "{database}" TO "{role}"')
    dsn = psycopg.conninfo.make_conninfo(PG_DSN, dbname=database, user=role)
    with psycopg.connect(dsn) as connection:
        connection.execute(f'GRANT CREATE ON SCHEMA public TO "{role}"')
        assert connection.execute("SHOW timezone").fetchone() == ("Europe/Berlin",)
    yield role
    with psycopg.connect(psycopg.conninfo.make_conninfo(PG_DSN, dbname=database)) as connection:
        connection.execute(f'REASSIGN OWNED BY "{role}" TO CURRENT_USER')
        connection.execute(f'DROP OWNED BY "{role}"')
    server.execute(f'DROP ROLE "{role}"')


def test_instants_land_unshifted_through_a_role_in_another_time_zone(
    installed, serve, database, berlin_role, tmp_path
):
    legs = dataset(calls_per_day=10)
    emulator = serve(legs)
    load(tmp_path, emulator.url, database, user=berlin_role)
    stamps = {
        leg_uuid: (start, answer, end)
        for leg_uuid, start, answer, end in query(
            database, "SELECT uuid, start_stamp, answer_stamp, end_stamp FROM tenios.cdrs"
        )
    }
    expected = in_range(legs)
    assert set(stamps) == expected

    def naive(value: object) -> datetime | None:
        return value.astimezone(UTC).replace(tzinfo=None) if isinstance(value, datetime) else None

    for leg in legs:
        if leg.uuid in expected:
            wanted = tuple(
                naive(leg.fields[f]) for f in ("start_stamp", "answer_stamp", "end_stamp")
            )
            assert stamps[leg.uuid] == wanted, leg.uuid


#: Costs at the edges of DECIMAL(15, 6) and of what a float keeps: target-postgres's
#: COPY path (``use_copy``, as meltano.yml ships it) sends every numeric through a float.
EDGE_COSTS = [
    "999999999.999999",  # the largest the column holds: 15 significant digits
    "-999999999.999999",
    "123456789.123456",
    "987654321.000001",
    "0.000001",  # a float prints this as 1e-06
    "0.000050",
    "0.000000",
    "100000000",  # and this as 100000000.0
    "0.1",
    "0.3618",
    "1.10",
]


def test_decimal_cost_lands_digit_for_digit_through_copy(installed, serve, database, tmp_path):
    legs = dataset(calls_per_day=20)
    owned = [leg for leg in legs if leg.uuid in in_range(legs)]
    for leg, cost in zip(owned, EDGE_COSTS, strict=False):
        leg.fields["cost"] = Decimal(cost)
    emulator = serve(legs)
    log = load(tmp_path, emulator.url, database)  # meltano.yml: decimal cost, use_copy
    assert 'COPY "' in log  # the loader took the COPY path
    assert query(
        database,
        """
        SELECT format_type(atttypid, atttypmod) FROM pg_attribute
        WHERE attrelid = 'tenios.cdrs'::regclass AND attname = 'cost'
    """,
    ) == [("numeric(15,6)",)]
    costs = dict(query(database, "SELECT uuid, cost::text FROM tenios.cdrs"))
    assert set(costs) == {leg.uuid for leg in owned}
    for leg in owned:
        assert costs[leg.uuid] == format(leg.fields["cost"].quantize(Decimal("0.000001")), "f")
    assert [costs[leg.uuid] for leg in owned[:3]] == EDGE_COSTS[:3]


#: Every column as text: instants to the microsecond, ``cost`` with its scale.
EVERY_VALUE = """
SELECT uuid, main_leg_uuid, bleg_uuid, call_type,
    to_char(start_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    to_char(answer_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    to_char(end_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US'),
    duration, billusec, cost::text, prepaid, hangup_cause, callerid_number, callerid_name,
    destination_number, source_type, routing_status, billing_status
FROM tenios.cdrs ORDER BY uuid
"""


def test_batch_files_and_record_messages_load_the_same_values(
    installed, serve, database, other_database, tmp_path
):
    legs = dataset(calls_per_day=40)
    owned = [leg for leg in legs if leg.uuid in in_range(legs)]
    for leg, cost in zip(owned, EDGE_COSTS, strict=False):
        leg.fields["cost"] = Decimal(cost)
    emulator = serve(legs)
    (tmp_path / "batch").mkdir()
    (tmp_path / "record").mkdir()
    batch_log = load(tmp_path / "batch", emulator.url, database)  # meltano.yml: BATCH files
    record_log = load(tmp_path / "record", emulator.url, other_database, "tap-tenios--records")
    # cdrs in one BATCH file (cdr_counts always as RECORD messages), or as RECORD messages
    assert re.search(r"\d+ records, 1 batch manifests", batch_log)
    assert re.search(r"\d+ records, 0 batch manifests", record_log)
    batch = query(database, EVERY_VALUE)
    assert len(batch) == len(owned)
    assert batch == query(other_database, EVERY_VALUE)
    ((total,),) = query(database, "SELECT sum(cost) FROM tenios.cdrs")
    assert total == sum(leg.fields["cost"] for leg in owned)
