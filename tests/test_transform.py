"""The dbt project (``transform/``) on what users load, run the way users run it.

PostgreSQL and DuckDB, each with three accounts whose APIs hold calls before and after
the extracted range (as every real account's does), counted in three time zones (UTC,
Europe/Berlin, America/New_York; the report zone is the first account's):
``meltano run tap... target-... dbt-...:build`` from the emulators, then again after late
legs appeared (an incremental build, with the dbt unit tests). Both must pass, edge days
included; the tables are then compared with a full rebuild and with the outcome and cost
each call was generated with. dbt runs in a session zone other than UTC (PostgreSQL:
Europe/Berlin; DuckDB: the machine's, America/New_York). PostgreSQL also loses an
account's data behind Meltano's state, which the coverage test must name, and recovers
as the troubleshooting guide says. Snowflake: the project parses and compiles offline
with its own adapter (no account, no connection), both branches of the incremental
models.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from hashlib import md5
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from tap_tenios.emulator import Leg, generate
from tap_tenios.emulator.data import generate_outbound

from .helpers import (
    END,
    PG_DSN,
    ROOT,
    START,
    documented_commands,
    meltano,
    pipeline_env,
    query,
)

#: The emulator's clock for the first run: legs still going on then (they appear when
#: they end) arrive late, in the second run's lookback.
FIRST_RUN_AT = END - timedelta(hours=6)

TROUBLESHOOTING = ROOT / "docs" / "troubleshooting.md"

#: Every emulated API holds calls from two days before the range to two days after it.
AROUND = (START - timedelta(days=2), END + timedelta(days=2))

#: The third account starts two days earlier (its first_day in tenios_sources), so that
#: losing its data leaves days that its next incremental run does not load again.
THIRD_START = START - timedelta(days=2)

#: The third account's tap lags (a paused schedule): its first run ends here, so its
#: legs of the last evening of February and of the whole range arrive only in the
#: second run, days behind the other accounts' newest legs: late legs of a closed day
#: and of a closed month, which its incremental build must not lose.
#: (Account b's plugin inherits from c's: it keeps the range's end.)
LAGGING = {
    "TAP_TENIOS__NUMBER_END_DATE": (START - timedelta(hours=6)).isoformat(),
    "TAP_TENIOS__ACCOUNT_B_END_DATE": END.isoformat(),
}

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


#: Personal data as docs/operations.md removes it: callers' numbers as salted hashes
#: (account b), or not loaded at all (account c); names dropped in both.
SALT = "a-secret-salt"
HASH_CALLERS = {
    "cdrs": {
        "callerid_number": (
            "callerid_number if not callerid_number or callerid_number == 'anonymous' "
            "else md5(config['caller_salt'] + callerid_number)"
        ),
        "callerid_name": "__NULL__",
    }
}
DROP_CALLERS = {"cdrs": {"callerid_number": "__NULL__", "callerid_name": "__NULL__"}}


def three_accounts(zones: tuple[str, str, str], urls: tuple[str, str]) -> dict[str, str]:
    """Settings for accounts a (tap-tenios, schema tenios, ``pipeline_env``'s API), b
    (tap-tenios--account-b) and c (tap-tenios--number, schema tenios_c, from
    THIRD_START), each in its zone, with the report zone a's."""
    first_day = THIRD_START.date().isoformat()
    return {
        "TAP_TENIOS_TIMEZONE": zones[0],
        "TAP_TENIOS__ACCOUNT_B_API_URL": urls[0],
        "TAP_TENIOS__ACCOUNT_B_TIMEZONE": zones[1],
        "TAP_TENIOS__ACCOUNT_B_START_DATE": START.isoformat(),
        "TAP_TENIOS__NUMBER_API_URL": urls[1],
        "TAP_TENIOS__NUMBER_TIMEZONE": zones[2],
        "TAP_TENIOS__NUMBER_START_DATE": THIRD_START.isoformat(),
        "TAP_TENIOS__NUMBER__LOAD_SCHEMA": "tenios_c",
        "TENIOS_SOURCES": (
            "[{schema: tenios, account: a}, {schema: tenios_account_b, account: b}, "
            f"{{schema: tenios_c, account: c, first_day: {first_day}}}]"
        ),
        "TENIOS_REPORT_TIMEZONE": zones[0],
    }


def blocks(loader: str) -> list[str]:
    """The extract-load blocks of the three accounts. Account a's plugin is the one the
    loader's job runs: tap-tenios writes BATCH files, which target-duckdb does not
    read, so DuckDB gets tap-tenios--records (the same tap and schema, RECORD messages,
    cost still a decimal string)."""
    first = "tap-tenios" if loader == "target-postgres" else "tap-tenios--records"
    return [name for tap in (first, *PIPELINE[1:]) for name in (tap, loader)]


#: The plugins of accounts a, b and c.
PIPELINE = ("tap-tenios", "tap-tenios--account-b", "tap-tenios--number")


def counted_periods(zone: str, start: datetime, end: datetime) -> dict[date, str]:
    """What the reconciliation must say of each local day of ``zone`` that [start, end)
    touches: ``whole day``, or why the tap counted it in part."""
    local = ZoneInfo(zone)
    day = start.astimezone(local).date()
    periods = {}
    while datetime.combine(day, datetime.min.time(), local) < end:
        begins = datetime.combine(day, datetime.min.time(), local)
        ends = datetime.combine(day + timedelta(days=1), datetime.min.time(), local)
        if begins < start:
            periods[day] = "partial: the extraction begins at start_date within this local day"
        elif ends > end:
            periods[day] = "partial: the extraction ends at end_date within this local day"
        else:
            periods[day] = "whole day"
        day += timedelta(days=1)
    return periods


def reconciliation(rows: list[tuple[Any, ...]]) -> dict[tuple[str, date], tuple[str, str]]:
    """(account, day) -> (counted_period without its parenthesis, status)."""
    return {
        (account, day): (re.sub(r" \(.*\)$", "", period), status)
        for account, day, period, status in rows
    }


RECONCILIATION = (
    "SELECT account, count_date, counted_period, status FROM analytics.tenios__cdr_reconciliation"
)


def expected_reconciliation(zones: tuple[str, str, str]) -> dict[tuple[str, date], Any]:
    return {
        (account, day): (period, "match")
        for account, zone, start in zip("abc", zones, (START, START, THIRD_START), strict=True)
        for day, period in counted_periods(zone, start, END).items()
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


def month_costs(legs: list[Leg], zone: str) -> dict[str, Decimal]:
    """What each local month's invoice bills: the exact sum of the loaded legs' cost."""
    months: dict[str, Decimal] = defaultdict(Decimal)
    for leg in legs:
        if START <= leg.start < END:
            month = leg.start.astimezone(ZoneInfo(zone)).strftime("%Y-%m-01")
            months[month] += Decimal(str(leg.fields["cost"]))
    return dict(months)


def settle_billing_late(api: Any, legs: list[Leg]) -> int:
    """Some answered legs of the last day, already served, get their final cost only
    later (the next run reads them again within its lookback): a hundredth of a cent
    more. The emulator keeps each leg's rendered JSON: it renders them anew."""
    changed = 0
    for leg in legs:
        if END - timedelta(days=1) <= leg.start < END and leg.fields["billusec"] and changed < 25:
            leg.fields["cost"] = Decimal(str(leg.fields["cost"])) + Decimal("0.0001")
            changed += 1
    api.emulator.store.rerender()
    return changed


#: Seeds and models built from scratch in one dbt run (no tests: the builds compared
#: with this one ran them).
FULL_REBUILD = ("build", "--full-refresh", "--exclude-resource-type", "test", "unit_test")

#: Every table the models build, compared between an incremental and a full build.
TABLES = (
    "tenios__legs",
    "tenios__calls",
    "int_tenios__inbound_calls",
    "int_tenios__forward_attempts",
    "tenios__daily_kpis",
    "tenios__daily_totals",
    "tenios__hourly_heatmap",
    "tenios__interval_kpis",
    "tenios__spend",
    "tenios__monthly_spend",
    "tenios__forward_destinations",
    "tenios__daily_hangup_causes",
    "tenios__cdr_reconciliation",
    "tenios__daily_coverage",
)


def differences(run: Any, schema: str, other: str) -> dict[str, int]:
    """Rows of each table in ``schema`` and not in ``other`` or the reverse (as
    multisets), by ``run(sql) -> rows``, every column but ``built_at`` (when each row
    was rebuilt); only tables that differ."""
    found = {}
    for table in TABLES:
        a, b = f"{schema}.{table}", f"{other}.{table}"
        names = run(
            "SELECT column_name FROM information_schema.columns "
            f"WHERE table_schema = '{schema}' AND table_name = '{table}' "
            "AND column_name <> 'built_at' ORDER BY ordinal_position"
        )
        columns = ", ".join(name for (name,) in names)
        assert columns, table
        x, y = f"SELECT {columns} FROM {a}", f"SELECT {columns} FROM {b}"
        rows = run(
            f"SELECT count(*) FROM (({x} EXCEPT ALL {y}) UNION ALL ({y} EXCEPT ALL {x})) AS d"
        )
        if rows[0][0]:
            found[table] = rows[0][0]
    return found


#: The models' timestamp columns named like instants (``..._at``), with their types.
INSTANT_COLUMNS = (
    "SELECT table_name, column_name, upper(data_type) FROM information_schema.columns "
    "WHERE table_schema = 'analytics' AND right(column_name, 3) = '_at' "
    "AND upper(data_type) LIKE 'TIMESTAMP%'"
)


def naive_instants(columns: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    """The instant columns that are not zone-aware (there are many instant columns)."""
    assert len(columns) > 10
    return [column for column in columns if column[2] != "TIMESTAMP WITH TIME ZONE"]


def generated(seed: int, calls_per_day: int, outbound_per_day: int = 0) -> list[Leg]:
    """Calls (and faxes and calls out) on both sides of the range, in order."""
    legs = generate(*AROUND, calls_per_day=calls_per_day, seed=seed)
    if outbound_per_day:
        legs += generate_outbound(*AROUND, legs_per_day=outbound_per_day, seed=seed + 1)
    return sorted(legs, key=lambda leg: (leg.start, leg.uuid))


def dbt_summary(done: Any) -> None:
    """A build that ran every node and passed every test (``meltano run`` logs dbt's
    output, ``meltano invoke`` passes it through)."""
    output = done.stdout + done.stderr
    assert re.search(r"Done\. PASS=\d+ WARN=0 ERROR=0 SKIP=0", output), output[-3000:]


@pytest.mark.postgres
def test_dbt_build_on_postgres_turns_three_accounts_legs_into_calls_kpis_and_spend(
    serve, database, tmp_path
):
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-postgres")
    meltano("install", "--plugin-type=utility", "dbt-postgres")
    zones = ("Europe/Berlin", "America/New_York", "UTC")
    legs = generated(10, calls_per_day=150, outbound_per_day=20)
    emulator = serve(legs, now=FIRST_RUN_AT)
    others = serve(generated(12, calls_per_day=20)), serve(generated(13, calls_per_day=20))
    env = {
        **warehouse_env(tmp_path, emulator.url, database),
        **three_accounts(zones, (others[0].url, others[1].url)),
        # dbt's sessions in Berlin (the loader's stay in UTC: meltano.yml pins them).
        "PGTZ": "Europe/Berlin",
    }

    meltano("run", *blocks("target-postgres"), "dbt-postgres:build", env={**env, **LAGGING})
    late = [leg for leg in legs if FIRST_RUN_AT < leg.visible_at and leg.start < END]
    assert len(late) > 20
    assert settle_billing_late(emulator, legs) == 25
    emulator.emulator.behaviour.now = END + timedelta(days=30)
    done = meltano("run", *blocks("target-postgres"), "dbt-postgres:build-with-unit-tests", env=env)

    dbt_summary(done)
    assert "incremental model analytics.tenios__calls" in done.stderr
    # Each account in its own schema (the loader follows the extractor's load_schema).
    schemas = {
        row[0]
        for row in query(
            database,
            "SELECT DISTINCT table_schema FROM information_schema.tables WHERE table_name = 'cdrs'",
        )
    }
    assert schemas == {"tenios", "tenios_account_b", "tenios_c"}
    # Every model and every column it builds is documented; every unit test ran.
    manifest = json.loads((tmp_path / "dbt-target" / "manifest.json").read_text())
    assert len(manifest["unit_tests"]) >= 25
    assert len(re.findall(r"PASS \S+::\S+", done.stderr)) == len(manifest["unit_tests"])
    built: dict[str, set[str]] = defaultdict(set)
    for table, column in query(
        database,
        "SELECT table_name, column_name FROM information_schema.columns "
        "WHERE table_schema = 'analytics'",
    ):
        built[table].add(column)
    models = [node for node in manifest["nodes"].values() if node["resource_type"] == "model"]
    seeds = {node["name"] for node in manifest["nodes"].values() if node["resource_type"] == "seed"}
    assert {node["name"] for node in models if node["config"]["materialized"] != "ephemeral"} == (
        built.keys() - seeds
    )
    for node in models:
        assert node["description"].strip(), node["name"]
        documented = {name for name, column in node["columns"].items() if column["description"]}
        assert documented == built.get(node["name"], documented), node["name"]

    # Edge days: every row reconciles exactly, and says whether its day is whole.
    assert reconciliation(query(database, RECONCILIATION)) == expected_reconciliation(zones)

    # Instants read right in a Berlin session: the models' and the raw table's read as
    # documented; a plain ::timestamptz of the raw column reads them an hour off.
    assert naive_instants(query(database, INSTANT_COLUMNS)) == []
    loaded, complete = complete_calls(legs)
    truth = {leg.uuid: leg.start for leg in legs if leg.uuid in loaded}
    berlin = psycopg.conninfo.make_conninfo(
        PG_DSN, dbname=database, options="-c TimeZone=Europe/Berlin"
    )
    with psycopg.connect(berlin) as session:

        def instants(sql: str) -> dict[str, datetime]:
            return dict(session.execute(sql).fetchall())

        marts = instants(
            "SELECT leg_id, started_at FROM analytics.tenios__legs WHERE account = 'a'"
        )
        documented = instants("SELECT uuid, start_stamp AT TIME ZONE 'UTC' FROM tenios.cdrs")
        plain = instants("SELECT uuid, start_stamp::timestamptz FROM tenios.cdrs")
    assert marts == truth
    assert documented == truth
    assert {plain[uuid] - start for uuid, start in truth.items()} == {timedelta(hours=-1)}

    # The incremental build after the late legs equals a full rebuild, table by table.
    full = {**env, "DBT_POSTGRES_SCHEMA": "analytics_full"}
    meltano("invoke", "dbt-postgres", *FULL_REBUILD, env=full)
    assert differences(lambda sql: query(database, sql), "analytics", "analytics_full") == {}

    # A leg lost between the loaded table and the marts fails the build's tie-out, on
    # its account and day.
    query(
        database,
        "DELETE FROM analytics.tenios__legs WHERE (account, leg_id) IN (SELECT account, leg_id "
        "FROM analytics.tenios__legs WHERE account = 'c' AND start_date_local = '2024-02-29' "
        "LIMIT 1)",
    )
    tie = "assert_marts_tie_to_the_loaded_legs"
    lost = meltano(
        "invoke",
        "dbt-postgres",
        "test",
        "--select",
        tie,
        "--store-failures",
        env=env,
        succeeds=False,
    )
    assert re.search(rf"FAIL 2 {tie}", lost.stdout + lost.stderr)
    failures = query(database, f"SELECT account, period, mart FROM analytics_dbt_test__audit.{tie}")
    assert sorted(failures) == [
        ("c", date(2024, 2, 29), "tenios__legs"),
        ("c", date(2024, 2, 29), "tenios__legs (copies loaded)"),
    ]

    # Every call whose legs all lie in the loaded range has the outcome and the exact
    # cost it was generated with.
    rows = {
        row[0]: row[1:]
        for row in query(
            database,
            "SELECT call_id, outcome, total_cost, forward_attempts, service_number, is_answered "
            "FROM analytics.tenios__calls WHERE account = 'a'",
        )
    }
    assert len(complete) > 300
    assert len(rows) == len(calls_of([leg for leg in legs if leg.uuid in loaded]))
    outcomes = {call_id: rows[call_id][0] for call_id in complete}
    assert outcomes == {call_id: call[0].outcome for call_id, call in complete.items()}
    assert set(outcomes.values()) >= {"answered", "abandoned", "busy", "no_answer", "failed"}
    for call_id, call in complete.items():
        assert rows[call_id][1] == cost_of(call)
        assert rows[call_id][2] == sum(leg.fields["main_leg_uuid"] is not None for leg in call)

    # Daily KPIs per Berlin day and service number, recomputed from the generated
    # calls: offered; answered (E.411: any answer, announcements too); by a person;
    # effective for the NER (all but failures); abandoned; the cost of the calls' legs.
    expected: dict[tuple[str, str], list[Any]] = defaultdict(lambda: [0, 0, 0, 0, 0, Decimal(0)])
    incomplete_groups = set()
    for call_id, call in calls_of([leg for leg in legs if leg.uuid in loaded]).items():
        root = next((leg for leg in call if leg.uuid == call_id), None)
        if root is None or root.fields["call_type"] not in ("INBOUND", "WEBRTCINBOUND"):
            continue
        day = root.start.astimezone(ZoneInfo(zones[0])).date().isoformat()
        key = (day, str(root.fields["destination_number"]))
        if call_id not in complete:
            incomplete_groups.add(key)
        group = expected[key]
        group[0] += 1
        group[1] += root.outcome in ("answered", "announcement")
        group[2] += root.outcome == "answered"
        group[3] += root.outcome != "failed"
        group[4] += root.outcome == "abandoned"
        group[5] += cost_of(call)
    kpis = {
        (day.isoformat(), number): values
        for day, number, *values in query(
            database,
            "SELECT start_date_local, service_number, calls_offered, calls_answered, "
            "calls_answered_by_person, calls_ner_effective, calls_abandoned, inbound_calls_cost "
            "FROM analytics.tenios__daily_kpis WHERE account = 'a'",
        )
    }
    assert kpis.keys() == expected.keys()
    checked = [key for key in expected if key not in incomplete_groups]
    assert len(checked) >= 8
    assert {key: kpis[key] for key in checked} == {key: expected[key] for key in checked}

    # The month's spend is what the invoice bills: the exact sum of every loaded leg's
    # cost, faxes, calls placed and failed legs included.
    spend = dict(
        query(
            database,
            "SELECT cast(start_month_local as text), sum(spend_all_legs) "
            "FROM analytics.tenios__monthly_spend WHERE account = 'a' GROUP BY 1",
        )
    )
    assert spend == month_costs(legs, zones[0])
    categories = dict(
        query(
            database,
            "SELECT spend_category, sum(legs) FROM analytics.tenios__spend "
            "WHERE account = 'a' GROUP BY 1",
        )
    )
    assert categories.keys() == {"inbound", "forwarded", "outbound", "fax"}

    # The documentation site builds: the catalog of every model, the demo's exposure.
    meltano("invoke", "dbt-postgres", "docs", "generate", env=env)
    catalog = json.loads((tmp_path / "dbt-target" / "catalog.json").read_text())
    assert {node["metadata"]["name"] for node in catalog["nodes"].values()} >= set(TABLES)
    assert "exposure.tenios.tenios_demo_report" in manifest["exposures"]

    lose_data_and_recover(database, env)


def lose_data_and_recover(database: str, env: dict[str, str]) -> None:
    """Account c's schema wiped behind Meltano's state: its next run loads only the
    lookback and exits 0, and the build's coverage test names the days lost (from the
    account's first_day on); the recovery of docs/troubleshooting.md brings them back."""
    query(database, "DELETE FROM tenios_c.cdrs")
    query(database, "DELETE FROM tenios_c.cdr_counts")
    lost = meltano(
        "run",
        "tap-tenios--number",
        "target-postgres",
        "dbt-postgres:build",
        env=env,
        succeeds=False,
    )
    output = lost.stdout + lost.stderr
    missing = [THIRD_START.date() + timedelta(days=n) for n in range(3)]
    problems = query(
        database,
        "SELECT account, count_date, problem FROM analytics.tenios__daily_coverage "
        "WHERE problem IS NOT NULL ORDER BY count_date",
    )
    no_row = (
        "missing: no cdr_counts row for this day (not loaded, or lost: a warehouse "
        "restored or wiped behind the state)"
    )
    assert [row for row in problems if row[2] == no_row] == [("c", day, no_row) for day in missing]
    # The lookback reloaded part of the next day at most: the reconciliation says so
    # (and the coverage too, if none of its legs came back).
    assert {row[:2] for row in problems if row[2] != no_row} <= {
        ("c", missing[-1] + timedelta(days=1))
    }
    assert re.search(rf"FAIL {len(problems)} assert_every_day_is_loaded", output), output[-3000:]
    # tenios__legs still holds the legs deleted from the loaded tables (the lookback
    # reloaded some): the tie-out says so, for the account and each day it checks.
    assert re.search(r"FAIL \d+ assert_marts_tie_to_the_loaded_legs", output), output[-3000:]

    # The recovery, as the troubleshooting guide writes it: the days the tests name read
    # again (the range's ends at local midnights; --no-state-update keeps the bookmark,
    # as test_warehouse.py shows), then the models rebuilt in full. Run for account c:
    # its plugin, its settings, its days.
    days = {"START_DATE": missing[0], "END_DATE": missing[-1] + timedelta(days=2)}
    for line in documented_commands(
        TROUBLESHOOTING, "warehouse recovery", "tests/test_transform.py"
    ):
        words = shlex.split(line)
        settings = {}
        while "=" in words[0]:
            name = words.pop(0).split("=")[0].removeprefix("TAP_TENIOS_")
            settings[f"TAP_TENIOS__NUMBER_{name}"] = days[name].isoformat()
        assert words[0] == "meltano", line
        args = ["tap-tenios--number" if word == "tap-tenios" else word for word in words[1:]]
        done = meltano(*args, env={**env, **settings})
    dbt_summary(done)
    assert query(
        database, "SELECT count(*) FROM analytics.tenios__daily_coverage WHERE problem IS NOT NULL"
    ) == [(0,)]
    assert query(database, "SELECT DISTINCT status FROM analytics.tenios__cdr_reconciliation") == [
        ("match",)
    ]


def test_dbt_build_on_duckdb_in_another_machine_zone_with_three_accounts(serve, tmp_path):
    """The demo's path, three accounts in the file target-duckdb loads (cost a DOUBLE,
    or a decimal string for account a; dates text), on a machine whose zone is New
    York. Keys are unique within an account only: account b's API returns some of a's
    legs, ids and all. An incremental build after late legs equals a full rebuild; each
    call has its generated outcome and its exact cost; each local month's spend is the
    exact sum; every edge day reconciles. Account b's callers are loaded as salted
    hashes and account c's not at all (stream maps): the models build, and c's repeat
    callers are unavailable. No report zone is set: each account's months are in the
    zone it was counted in (New York for a, Berlin for b)."""
    duckdb = pytest.importorskip("duckdb")
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-duckdb")
    meltano("install", "--plugin-type=utility", "dbt-duckdb")
    zones = ("America/New_York", "Europe/Berlin", "UTC")
    legs_a = generated(4, calls_per_day=60, outbound_per_day=10)
    legs_b = [leg for leg in legs_a if START <= leg.start < START + timedelta(hours=12)]
    legs_b = sorted(legs_b + generated(6, calls_per_day=20), key=lambda leg: (leg.start, leg.uuid))
    legs_c = generated(7, calls_per_day=10)
    api_a, api_b, api_c = serve(legs_a, now=FIRST_RUN_AT), serve(legs_b), serve(legs_c)
    warehouse = tmp_path / "warehouse.duckdb"
    env = {
        **pipeline_env(tmp_path, api_a.url),
        **three_accounts(zones, (api_b.url, api_c.url)),
        "TARGET_DUCKDB_FILEPATH": str(warehouse),
        "DBT_DUCKDB_PATH": str(warehouse),
        "DBT_TARGET_PATH": str(tmp_path / "dbt-target"),
        "DBT_LOG_PATH": str(tmp_path / "dbt-logs"),
        # The machine's zone: DuckDB's sessions take it.
        "TZ": "America/New_York",
        "TAP_TENIOS__ACCOUNT_B_STREAM_MAPS": json.dumps(HASH_CALLERS),
        "TAP_TENIOS__ACCOUNT_B_STREAM_MAP_CONFIG": json.dumps({"caller_salt": SALT}),
        "TAP_TENIOS__NUMBER_STREAM_MAPS": json.dumps(DROP_CALLERS),
        # No report zone: each account's days and months are in the zone it was counted in.
        "TENIOS_REPORT_TIMEZONE": "",
        # The incremental models join the keys they rebuild from their query here (the
        # PostgreSQL test writes them in as literals, the default).
        "TENIOS_LITERAL_KEYS_LIMIT": "0",
    }

    meltano("run", *blocks("target-duckdb"), "dbt-duckdb:build", env={**env, **LAGGING})
    assert settle_billing_late(api_a, legs_a) == 25
    api_a.emulator.behaviour.now = END + timedelta(days=30)
    done = meltano("run", *blocks("target-duckdb"), "dbt-duckdb:build-with-unit-tests", env=env)

    dbt_summary(done)
    assert "incremental model analytics.tenios__calls" in done.stderr
    full = {**env, "DBT_DUCKDB_SCHEMA": "analytics_full"}
    meltano("invoke", "dbt-duckdb", *FULL_REBUILD, env=full)
    db = duckdb.connect(str(warehouse), read_only=True)
    assert differences(lambda sql: db.sql(sql).fetchall(), "analytics", "analytics_full") == {}
    assert reconciliation(db.sql(RECONCILIATION).fetchall()) == expected_reconciliation(zones)
    assert naive_instants(db.sql(INSTANT_COLUMNS).fetchall()) == []

    rows = {
        (account, call_id): (outcome, cost)
        for account, call_id, outcome, cost in db.sql(
            "SELECT account, call_id, outcome, total_cost FROM analytics.tenios__calls"
        ).fetchall()
    }
    for account, legs, zone in (("a", legs_a, zones[0]), ("b", legs_b, zones[1])):
        _, complete = complete_calls(legs)
        assert len(complete) > 30
        assert {call_id: rows[account, call_id] for call_id in complete} == {
            call_id: (call[0].outcome, cost_of(call)) for call_id, call in complete.items()
        }
        spend = dict(
            db.sql(
                "SELECT strftime(start_month_local, '%Y-%m-%d'), sum(spend_all_legs) "
                f"FROM analytics.tenios__monthly_spend WHERE account = '{account}' GROUP BY 1"
            ).fetchall()
        )
        assert spend == month_costs(legs, zone)
    starts = dict(
        db.sql(
            "SELECT leg_id, started_at FROM analytics.tenios__legs WHERE account = 'a'"
        ).fetchall()
    )
    assert starts == {leg.uuid: leg.start for leg in legs_a if START <= leg.start < END}

    # Personal data: b's numbers are the salted hashes of the API's, c's are not loaded.
    callers = dict(
        db.sql(
            "SELECT leg_id, caller_number FROM analytics.tenios__legs WHERE account = 'b'"
        ).fetchall()
    )
    truth = {leg.uuid: leg.fields["callerid_number"] for leg in legs_b}
    assert (
        callers
        and {
            leg_id: number if number == "anonymous" else md5((SALT + number).encode()).hexdigest()
            for leg_id, number in truth.items()
            if leg_id in callers
        }
        == callers
    )
    assert "callerid_number" not in {
        name for (name,) in db.sql("SELECT column_name FROM (DESCRIBE tenios_c.cdrs)").fetchall()
    }
    assert db.sql(
        "SELECT account, sum(calls_with_caller_number) > 0, count(repeat_caller_rate) > 0 "
        "FROM analytics.tenios__daily_totals GROUP BY 1 ORDER BY 1"
    ).fetchall() == [("a", True, True), ("b", True, True), ("c", False, False)]


def test_the_project_compiles_for_snowflake_offline(tmp_path):
    """dbt-snowflake parses and compiles every model, both branches of the incremental
    ones, without a connection.

    The password stays empty, so nothing could log in even if dbt tried to connect.
    """
    meltano("install", "--plugin-type=utility", "dbt-snowflake")
    compiled: dict[str, Path] = {}
    for mode in ("full", "incremental"):
        target = tmp_path / f"dbt-target-{mode}"
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
            "--vars",
            json.dumps({"tenios_incremental_mode": mode}),
            env=env,
        )
        compiled[mode] = target / "compiled" / "tenios" / "models"
    marts = compiled["full"] / "marts"
    calls = (marts / "tenios__calls.sql").read_text()
    kpis = (marts / "tenios__daily_kpis.sql").read_text()
    legs = (compiled["full"] / "staging" / "stg_tenios__cdr_legs.sql").read_text()
    assert "cast(convert_timezone('UTC', started_at) as timestamp_ntz)" in calls
    assert "at time zone" not in calls.lower()
    # Instants: TIMESTAMP_TZ from the loaded stamps, whatever their type (NTZ, TZ, LTZ).
    assert "to_timestamp_tz(date_part(epoch_nanosecond, start_stamp), 9)" in legs
    assert "percentile_cont(0.9) within group" in kpis
    assert "cast(cost as decimal(18, 6))" in legs
    assert (
        "regexp_replace(destination_number, '[^0-9]', '')"
        in (marts / "tenios__legs.sql").read_text()
    )
    incremental = compiled["incremental"] / "marts"
    assert "built_at >" not in calls
    assert "built_at >" in (incremental / "tenios__calls.sql").read_text()
    assert re.search(
        r"dateadd\(\s*minute,\s*-2880,\s*max\(started_at\)",
        (incremental / "tenios__legs.sql").read_text(),
    )


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
