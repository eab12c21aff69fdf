"""Instants loaded in another time zone than UTC are caught by the dbt project.

A team that adds target-postgres to its own Meltano project, without this project's
``PGTZ: UTC``, loads through whatever zone its database or role has. target-postgres
then stores every instant shifted by that zone's offset, and nothing else notices: legs
and the API's counted periods are shifted alike. ``assert_loaded_instants_are_utc``
must fail, naming the zone and the offset, and pass on the same data loaded in UTC.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from .helpers import END, KEY, PG_DSN, ROOT, dataset, make_config, meltano, query

psycopg = pytest.importorskip("psycopg")

pytestmark = [pytest.mark.postgres, pytest.mark.meltano]

LOADER = ROOT / ".meltano" / "loaders" / "target-postgres" / "venv" / "bin" / "target-postgres"
TEST = "assert_loaded_instants_are_utc"


def load(tmp_path: Path, api_url: str, database: str, session_zone: str) -> None:
    """The tap's RECORD messages into target-postgres, run as a project of one's own
    runs it (no ``PGTZ`` pinned), its sessions in ``session_zone``."""
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    target = tmp_path / "target.json"
    target.write_text(
        json.dumps(
            {
                "host": str(info.get("host", "127.0.0.1")),
                "port": int(info.get("port", 5432)),
                "user": str(info.get("user", "postgres")),
                "password": str(info.get("password", "")),
                "database": database,
                "default_target_schema": "tenios",
            }
        )
    )
    config = tmp_path / "tap.json"
    config.write_text(json.dumps(make_config(api_url, end_date=END.isoformat())))
    env = {**os.environ, "PGTZ": session_zone}
    tap = subprocess.Popen(
        [sys.executable, "-m", "tap_tenios", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    loaded = subprocess.run(
        [str(LOADER), "--config", str(target)],
        stdin=tap.stdout,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    assert tap.wait(timeout=60) == 0
    assert loaded.returncode == 0, loaded.stderr[-3000:]


def dbt_test(tmp_path: Path, database: str, *, passes: bool) -> str:
    """The test (and the staging view it reads) built on ``database``; its output."""
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "DBT_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "DBT_POSTGRES_PORT": str(info.get("port", 5432)),
        "DBT_POSTGRES_USER": str(info.get("user", "postgres")),
        "DBT_POSTGRES_PASSWORD": str(info.get("password", "")),
        "DBT_POSTGRES_DBNAME": database,
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }
    done = meltano(
        "invoke",
        "dbt-postgres",
        "build",
        "--select",
        f"+{TEST}",
        "--exclude-resource-type",
        "unit_test",
        env=env,
        succeeds=passes,
    )
    return done.stdout + done.stderr


def test_instants_loaded_through_a_berlin_session_fail_the_utc_test(serve, database, tmp_path):
    meltano("install", "--plugin-type=loader", "target-postgres")
    meltano("install", "--plugin-type=utility", "dbt-postgres")
    emulator = serve(dataset(calls_per_day=10))

    load(tmp_path, emulator.url, database, "UTC")
    assert re.search(rf"PASS {TEST}", dbt_test(tmp_path, database, passes=True))

    # The same data again through a Berlin session (UTC+1 in March): upserted in place.
    load(tmp_path, emulator.url, database, "Europe/Berlin")
    ((first,),) = query(database, "SELECT min(start_date_from) FROM tenios.cdr_counts")
    assert first == datetime(2024, 3, 1, 1, 0)
    output = dbt_test(tmp_path, database, passes=False)
    # The three whole days of the range, each an hour off; the test's name says UTC.
    assert re.search(rf"FAIL 3 {TEST}", output), output[-3000:]
    problem = (
        "loaded instants are not UTC: the loader's session time zone was not UTC (set PGTZ=UTC)"
    )
    rows = query(
        database,
        f"SELECT count_date::text, timezone, hours_off, problem FROM ({compiled(tmp_path)}) t",
    )
    assert sorted(rows) == [
        (day, "UTC", 1, problem) for day in ("2024-03-01", "2024-03-02", "2024-03-03")
    ]
    assert KEY not in output


def compiled(tmp_path: Path) -> str:
    """The test's SQL as dbt compiled it: the rows it fails with."""
    found = list((tmp_path / "dbt-target" / "compiled").rglob(f"{TEST}.sql"))
    assert len(found) == 1, found
    return found[0].read_text()
