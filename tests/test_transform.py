"""The dbt project (``transform/``) on what users load, run the way users run it.

PostgreSQL: one ``meltano run tap-tenios target-postgres dbt-postgres:build-with-unit-tests``
from the emulator into a real server (models, data tests and unit tests), then the models are
compared with the outcome each call was generated with. Snowflake: the project parses
and compiles offline with its own adapter (no account, no connection).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import Leg, generate

from .helpers import END, MELTANO, PG_DSN, ROOT, START, meltano, pipeline_env, query

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.meltano

#: dbt-core versions tried with ``dbt parse`` on this project (the duckdb adapter): the
#: generic tests pass their ``arguments:``, which 1.9 and 1.10.0 to 1.10.7 reject
#: ("takes no keyword argument 'arguments'"); 1.12 does not install from the package
#: index alone, so it was not tried and is not admitted.
DBT_PARSES = ("1.10.8", "1.10.15", "1.11.16")
DBT_FAILS = ("1.9.11", "1.10.0", "1.10.5", "1.10.7")


def warehouse_env(tmp_path: Path, api_url: str, database: str) -> dict[str, str]:
    """Loader and dbt pointed at ``database``; dbt's target/ and logs/ in ``tmp_path``."""
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    server = {
        "HOST": str(info.get("host", "127.0.0.1")),
        "PORT": str(info.get("port", 5432)),
        "USER": str(info.get("user", "postgres")),
        "PASSWORD": str(info.get("password", "")),
    }
    return {
        **pipeline_env(tmp_path, api_url),
        **{f"TARGET_POSTGRES_{key}": value for key, value in server.items()},
        **{f"DBT_POSTGRES_{key}": value for key, value in server.items()},
        "TARGET_POSTGRES_DATABASE": database,
        "DBT_POSTGRES_DBNAME": database,
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }


def calls_of(legs: list[Leg]) -> dict[str, list[Leg]]:
    calls: dict[str, list[Leg]] = defaultdict(list)
    for leg in legs:
        calls[str(leg.fields["main_leg_uuid"] or leg.uuid)].append(leg)
    return calls


def complete_calls(legs: list[Leg]) -> tuple[set[str], dict[str, list[Leg]]]:
    """The legs loaded from [START, END), and the calls all of whose legs were loaded."""
    loaded = {leg.uuid for leg in legs if START <= leg.start < END}
    complete = {
        call_id: call
        for call_id, call in calls_of(legs).items()
        if all(leg.uuid in loaded for leg in call)
    }
    return loaded, complete


def cost_of(call: list[Leg]) -> Decimal:
    return sum((Decimal(str(leg.fields["cost"])) for leg in call), Decimal(0))


@pytest.mark.postgres
def test_dbt_build_turns_loaded_legs_into_the_calls_and_kpis_they_were_made_from(
    serve, database, tmp_path
):
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-postgres")
    meltano("install", "--plugin-type=utility", "dbt-postgres")
    legs = generate(START, END, calls_per_day=150, seed=10)
    emulator = serve(legs)
    env = warehouse_env(tmp_path, emulator.url, database)

    done = meltano(
        "run", "tap-tenios", "target-postgres", "dbt-postgres:build-with-unit-tests", env=env
    )

    summary = re.findall(r"Done\. PASS=(\d+) WARN=0 ERROR=0 SKIP=0", done.stderr)
    assert summary, done.stderr[-3000:]
    # Every model and every column it builds is documented; every unit test ran.
    manifest = json.loads((tmp_path / "dbt-target" / "manifest.json").read_text())
    assert len(manifest["unit_tests"]) >= 16
    assert len(re.findall(r"PASS \S+::\S+", done.stderr)) == len(manifest["unit_tests"])
    built: dict[str, set[str]] = defaultdict(set)
    for table, column in query(
        database,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'analytics'",
    ):
        built[table].add(column)
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    assert {node["name"] for node in models if node["config"]["materialized"] != "ephemeral"} == (
        built.keys()
    )
    for node in models:
        assert node["description"].strip(), node["name"]
        documented = {name for name, column in node["columns"].items() if column["description"]}
        assert documented == built.get(node["name"], documented), node["name"]

    # Every call whose legs all lie in the loaded range has the outcome and the exact
    # cost it was generated with.
    loaded, complete = complete_calls(legs)
    rows = {
        row[0]: row[1:]
        for row in query(
            database,
            "SELECT call_id, outcome, total_cost, forward_attempts, service_number, is_answered "
            "FROM analytics.tenios__calls",
        )
    }
    assert len(complete) > 300
    assert len(rows) == len(calls_of([leg for leg in legs if leg.uuid in loaded]))
    outcomes = {call_id: rows[call_id][0] for call_id in complete}
    assert outcomes == {call_id: call[0].outcome for call_id, call in complete.items()}
    assert set(outcomes.values()) >= {"answered", "abandoned", "busy", "no_answer"}
    for call_id, call in complete.items():
        assert rows[call_id][1] == cost_of(call)
        assert rows[call_id][2] == len(call) - 1

    # Daily KPIs per UTC day and service number, recomputed from the generated calls.
    expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, Decimal(0)])
    incomplete_groups = set()
    for call_id, call in calls_of([leg for leg in legs if leg.uuid in loaded]).items():
        root = next((leg for leg in call if leg.uuid == call_id), None)
        if root is None:
            continue
        key = (root.start.date().isoformat(), str(root.fields["destination_number"]))
        if call_id not in complete:
            incomplete_groups.add(key)
        group = expected[key]
        group[0] += 1
        group[1] += root.outcome == "answered"
        group[2] += root.outcome == "abandoned"
        group[3] += cost_of(call)
    kpis = {
        (day.isoformat(), number): [offered, answered, abandoned, cost]
        for day, number, offered, answered, abandoned, cost in query(
            database,
            "SELECT start_date_local, service_number, calls_offered, calls_answered, "
            "calls_abandoned, cost_total FROM analytics.tenios__daily_kpis",
        )
    }
    assert kpis.keys() == expected.keys()
    checked = [key for key in expected if key not in incomplete_groups]
    assert len(checked) >= 8
    assert {key: kpis[key] for key in checked} == {key: expected[key] for key in checked}

    # The reconciliation agrees with the API's counts on every day.
    assert query(
        database, "SELECT status, count(*) FROM analytics.tenios__cdr_reconciliation GROUP BY 1"
    ) == [("match", 3)]

    # A leg lost from a closed day fails the reconciliation test.
    query(database, "DELETE FROM tenios.cdrs WHERE uuid = (SELECT min(uuid) FROM tenios.cdrs)")
    assert MELTANO is not None
    lost = subprocess.run(
        [MELTANO, "invoke", "dbt-postgres", "build", "--select", "tenios__cdr_reconciliation+"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert lost.returncode != 0
    assert re.search(r"FAIL 1 assert_closed_days_reconcile", lost.stdout + lost.stderr)
    assert query(
        database,
        "SELECT status, difference FROM analytics.tenios__cdr_reconciliation "
        "WHERE status <> 'match'",
    ) == [("missing_legs", -1)]


def test_dbt_build_on_the_duckdb_file_target_duckdb_loads(serve, tmp_path):
    """The demo's path: DuckDB stores cost as DOUBLE and dates as text; the models still
    give each call its generated outcome and its exact cost."""
    duckdb = pytest.importorskip("duckdb")
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-duckdb")
    meltano("install", "--plugin-type=utility", "dbt-duckdb")
    legs = generate(START, END, calls_per_day=60, seed=4)
    emulator = serve(legs)
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        **pipeline_env(tmp_path, emulator.url),
        "TARGET_DUCKDB_FILEPATH": str(warehouse),
        "DBT_DUCKDB_PATH": str(warehouse),
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }

    done = meltano("run", "tap-tenios--number", "target-duckdb", "dbt-duckdb:build", env=env)

    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", done.stderr), done.stderr[-3000:]
    _, complete = complete_calls(legs)
    db = duckdb.connect(str(warehouse), read_only=True)
    rows = {
        call_id: (outcome, cost)
        for call_id, outcome, cost in db.sql(
            "SELECT call_id, outcome, total_cost FROM analytics.tenios__calls"
        ).fetchall()
    }
    assert len(complete) > 100
    assert {call_id: rows[call_id] for call_id in complete} == {
        call_id: (call[0].outcome, cost_of(call)) for call_id, call in complete.items()
    }
    assert db.sql(
        "SELECT DISTINCT status FROM analytics.tenios__cdr_reconciliation"
    ).fetchall() == [("match",)]


def test_the_project_compiles_for_snowflake_offline(tmp_path):
    """dbt-snowflake parses and compiles every model without a connection.

    The password stays empty, so nothing could log in even if dbt tried to connect.
    """
    meltano("install", "--plugin-type=utility", "dbt-snowflake")
    target = tmp_path / "dbt-target"
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "DBT_SNOWFLAKE_ACCOUNT": "offline-test",
        "DBT_SNOWFLAKE_USER": "nobody",
        "DBT_SNOWFLAKE_PASSWORD": "",
        "DBT_SNOWFLAKE_WAREHOUSE": "none",
        "DBT_SNOWFLAKE_DATABASE": "none",
        "DBT_TARGET_PATH": str(target),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
    }
    meltano(
        "invoke",
        "dbt-snowflake",
        "compile",
        "--no-populate-cache",
        "--exclude",
        "test_type:unit",
        env=env,
    )
    compiled = target / "compiled" / "tenios" / "models"
    calls = (compiled / "marts" / "tenios__calls.sql").read_text()
    kpis = (compiled / "marts" / "tenios__daily_kpis.sql").read_text()
    legs = (compiled / "staging" / "stg_tenios__cdr_legs.sql").read_text()
    assert "convert_timezone('UTC', 'UTC'" in calls
    assert "at time zone" not in calls.lower()
    assert "percentile_cont(0.9) within group" in kpis
    assert "cast(cost as decimal(18, 6))" in legs


def test_the_required_dbt_version_admits_what_parses_the_project_and_nothing_older():
    yaml = pytest.importorskip("yaml")
    specifiers = pytest.importorskip("packaging.specifiers")
    project = yaml.safe_load((ROOT / "transform" / "dbt_project.yml").read_text())
    required = specifiers.SpecifierSet(",".join(project["require-dbt-version"]))
    assert [v for v in DBT_PARSES if v in required] == list(DBT_PARSES)
    assert [v for v in DBT_FAILS if v in required] == []
    assert "1.12.0" not in required
    # Every utility's pinned dbt-core is one of them.
    utilities = yaml.safe_load((ROOT / "meltano.yml").read_text())["plugins"]["utilities"]
    pins = {
        requirement.split("==")[1]
        for plugin in utilities
        for requirement in plugin["pip_url"].split()
        if requirement.startswith("dbt-core==")
    }
    assert pins and pins <= set(DBT_PARSES)
