"""What users run: ``meltano run tap-tenios target-postgres`` into a real PostgreSQL.

Needs a server (``scripts/postgres.sh start``; CI starts one) at TENIOS_TEST_PG_DSN;
skips, saying so, when none answers. Meltano and its plugins come from this
project's ``meltano.yml``, installed once per session into ``.meltano/``.
"""

from __future__ import annotations

import os
import random
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import Leg, make_call

from .helpers import END, dataset, in_range, meltano, pipeline_env

psycopg = pytest.importorskip("psycopg")

DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def server() -> Any:
    try:
        return psycopg.connect(DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = (
            f"no PostgreSQL at {DSN} ({exc.__class__.__name__}); "
            "start one with: scripts/postgres.sh start"
        )
        if os.environ.get("TENIOS_REQUIRE_POSTGRES"):
            pytest.fail(reason)  # CI starts a server: a skip there would hide a failure
        pytest.skip(reason)


@pytest.fixture(scope="module")
def installed() -> None:
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-postgres")


@pytest.fixture
def database(server: Any) -> Iterator[str]:
    name = f"tenios_test_{uuid.uuid4().hex[:10]}"
    server.execute(f'CREATE DATABASE "{name}"')
    yield name
    server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def load(tmp_path: Path, api_url: str, database: str, **tap: str) -> str:
    """``meltano run tap-tenios target-postgres`` into ``database``; its log."""
    info = psycopg.conninfo.conninfo_to_dict(DSN)
    env = {
        **pipeline_env(tmp_path, api_url, **tap),
        "TARGET_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "TARGET_POSTGRES_PORT": str(info.get("port", 5432)),
        "TARGET_POSTGRES_USER": str(info.get("user", "postgres")),
        "TARGET_POSTGRES_PASSWORD": str(info.get("password", "")),
        "TARGET_POSTGRES_DATABASE": database,
    }
    return meltano("run", "tap-tenios", "target-postgres", env=env).stderr


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    dsn = psycopg.conninfo.make_conninfo(DSN, dbname=database)
    with psycopg.connect(dsn) as connection:
        return connection.execute(sql).fetchall()


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
        SELECT date::text, start_date_from, total_items FROM tenios.cdr_counts ORDER BY date
    """,
    )
    assert counts[0][0] == "2024-03-01"
    assert counts[0][1] == datetime(2024, 2, 29, 23, 0)  # Berlin midnight, as UTC
    local = Counter(
        (leg.start + timedelta(hours=1)).date().isoformat()
        for leg in legs
        if leg.uuid in in_range(legs)
    )
    # The last Berlin day (03-04) also holds legs after END (UTC 23:00 onwards).
    assert {d: n for d, _, n in counts if d != "2024-03-04"} == {
        d: n for d, n in local.items() if d != "2024-03-04"
    }
