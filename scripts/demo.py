"""``make demo``: a whole pipeline on this machine, no Tenios account needed.

1. starts the bundled API emulator twice, for two Tenios accounts, with three weeks of
   synthetic calls, faxes and calls placed;
2. runs ``meltano run tap-tenios--number target-duckdb tap-tenios--account-b target-duckdb``
   (a full load of each account into its own schema), then the same with
   ``dbt-duckdb:build`` (incremental: each tap resumes from the state Meltano saved, then
   the dbt models in transform/ union both accounts, build and test);
3. reports from the models: calls, ASR, NER, service level, abandonment, speed of answer,
   the inbound calls' cost and the spend of every leg per local day, one day's 15-minute
   intervals, the month's spend by call type, and each day's loaded legs against the
   API's own count.

``--callers hash`` loads the callers' numbers as salted hashes and ``--callers drop``
without them (stream maps, docs/operations.md "Personal data"): the models build either
way, repeat callers then count hashes, or say they are unavailable. The salt comes from
the environment's TENIOS_CALLER_SALT, or a random one for this demo.

Days are Europe/Berlin days, for the tap's counts and the models alike (the models take
each account's zone from its counts); the service numbers keep the opening hours and
holidays of transform/seeds/demo/. Exits non-zero if any day
disagrees. Each demo starts from an empty warehouse.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate
from tap_tenios.emulator.data import generate_outbound

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "output"
WAREHOUSE = OUTPUT / "demo.duckdb"
LOG = OUTPUT / "demo-meltano.log"
MELTANO = str(Path(sys.executable).parent / "meltano")
DAYS = 21
KEY = "demo-access-key"
KEY_B = "demo-access-key-b"
ZONE = "Europe/Berlin"
#: The two accounts' schemas, unioned by the dbt models.
SOURCES = "[{schema: tenios, account: main}, {schema: tenios_account_b, account: branch}]"
TAPS = ("tap-tenios--number", "target-duckdb", "tap-tenios--account-b", "target-duckdb")
#: Lines of Meltano's output worth showing live: the tap's progress and the verdicts.
SHOWN = re.compile(
    r"cdrs: (window|reading)|cdr_counts: counting|Block run completed|error|dbt-duckdb.*Done\.",
    re.IGNORECASE,
)


def step(text: str) -> None:
    print(f"\n==> {text}", flush=True)


def meltano(*args: str, env: dict[str, str], show: bool = False) -> None:
    """Run meltano, echoing the progress lines; the whole output goes to the log."""
    with LOG.open("a") as log:
        process = subprocess.Popen(
            [MELTANO, *args],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        assert process.stdout is not None
        for line in process.stdout:
            log.write(line)
            if show and SHOWN.search(line):
                message = line.split("cmd_type=elb", 1)[0].split("] ", 1)[-1]
                print("    " + " ".join(message.split())[:150], flush=True)
        if process.wait():
            raise SystemExit(f"meltano {' '.join(args)} failed; see {LOG}")


def caller_maps(callers: str) -> dict[str, str]:
    """The tap settings (per account plugin) that hash or drop the callers' numbers and
    names before they leave the tap; none to keep them.
    """
    if callers == "keep":
        return {}
    number = "__NULL__"
    if callers == "hash":
        number = (
            "callerid_number if not callerid_number or callerid_number == 'anonymous' "
            "else md5(config['caller_salt'] + callerid_number)"
        )
    maps = json.dumps({"cdrs": {"callerid_number": number, "callerid_name": "__NULL__"}})
    salt = os.environ.get("TENIOS_CALLER_SALT") or secrets.token_hex(16)
    config = json.dumps({"caller_salt": salt})
    settings = {}
    for plugin in ("TAP_TENIOS__NUMBER", "TAP_TENIOS__ACCOUNT_B"):
        settings[f"{plugin}_STREAM_MAPS"] = maps
        settings[f"{plugin}_STREAM_MAP_CONFIG"] = config
    return settings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--callers",
        choices=("keep", "hash", "drop"),
        default=os.environ.get("DEMO_CALLERS", "keep"),
        help="load the callers' numbers as they are, as salted hashes, or not at all",
    )
    callers = parser.parse_args().callers
    OUTPUT.mkdir(exist_ok=True)
    LOG.write_text("")
    WAREHOUSE.unlink(missing_ok=True)
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=DAYS), today

    step("Installing the Meltano plugins (quick after the first time)")
    env = {**os.environ, "MELTANO_ENVIRONMENT": "emulator"}
    meltano("install", "--plugin-type=extractor", "tap-tenios", env=env)
    meltano("install", "--plugin-type=loader", "target-duckdb", env=env)
    meltano("install", "--plugin-type=utility", "dbt-duckdb", env=env)

    legs = generate(start, end, calls_per_day=300, seed=2024)
    legs += generate_outbound(start, end, legs_per_day=40, seed=2025)
    legs.sort(key=lambda leg: (leg.start, leg.uuid))
    legs_b = generate(start, end, calls_per_day=80, seed=2026)
    legs_b += generate_outbound(start, end, legs_per_day=10, seed=2027)
    legs_b.sort(key=lambda leg: (leg.start, leg.uuid))
    account_a = RunningEmulator(Emulator(legs, Behaviour(access_key=KEY, order="unsorted")))
    account_b = RunningEmulator(Emulator(legs_b, Behaviour(access_key=KEY_B)))
    with account_a as api, account_b as api_b:
        step(
            f"Emulators on {api.url} and {api_b.url}: {len(legs)} and {len(legs_b)} legs "
            f"from {start:%Y-%m-%d} to {end:%Y-%m-%d}"
        )
        env.update(
            {
                "TAP_TENIOS_API_URL": api.url,
                "TAP_TENIOS_ACCESS_KEY": KEY,
                "TAP_TENIOS__ACCOUNT_B_API_URL": api_b.url,
                "TAP_TENIOS__ACCOUNT_B_ACCESS_KEY": KEY_B,
                "TAP_TENIOS_START_DATE": start.date().isoformat(),
                "TAP_TENIOS_END_DATE": end.date().isoformat(),
                "TAP_TENIOS_TIMEZONE": ZONE,
                "TARGET_DUCKDB_FILEPATH": str(WAREHOUSE),
                "DBT_DUCKDB_PATH": str(WAREHOUSE),
                "TENIOS_SOURCES": SOURCES,
                # Unset: each account's days in the zone its days were counted in.
                "TENIOS_REPORT_TIMEZONE": "",
                "TENIOS_OPENING_HOURS": "tenios__demo_opening_hours",
                "TENIOS_HOLIDAYS": "tenios__demo_holidays",
                "DBT_TARGET_PATH": str(OUTPUT / "dbt-target"),
                "DBT_LOG_PATH": str(OUTPUT / "dbt-logs"),
                "DBT_USE_COLORS": "false",
                **caller_maps(callers),
            }
        )
        if callers != "keep":
            step(f"Callers' numbers: {callers} (stream maps), names dropped")
        step(f"meltano run {' '.join(TAPS)}  (full loads)")
        began = time.monotonic()
        meltano("run", "--full-refresh", *TAPS, env=env, show=True)
        print(f"    done in {time.monotonic() - began:.1f} s")
        step(
            f"meltano run {' '.join(TAPS)} dbt-duckdb:build"
            "  (incremental, then the dbt models and their tests)"
        )
        meltano("run", *TAPS, "dbt-duckdb:build", env=env, show=True)
    return report()


def percent(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.0%}"


def report() -> int:
    """Print what the dbt models say; every figure comes from a model, none is computed here."""
    db = duckdb.connect(str(WAREHOUSE), read_only=True)
    step(
        f"Calls per day ({ZONE}), account main, from analytics.tenios__daily_totals"
        " and analytics.tenios__spend"
    )
    print(
        "    inbound EUR: the inbound calls' cost (their inbound and forwarded legs);"
        " spend EUR: every leg's\n    cost, faxes and calls placed included (the invoice's"
        " sum). NER strict: ITU-T E.425, a caller's\n    hang-up counted only where a"
        " destination rang. SL: answered within 20 s / (answered + abandoned)."
    )
    print(
        f"    {'day':<11} {'calls':>6} {'ASR':>5} {'NER':>5} {'strict':>6} {'closed':>7} "
        f"{'SL 20 s':>8} {'lost':>5} {'ASA s':>6} {'AHT s':>6} {'inbound EUR':>12} "
        f"{'spend EUR':>10}"
    )
    for row in db.sql("""
        SELECT kpis.start_date_local, calls_offered, asr, ner, ner_strict, calls_closed,
               service_level, lost_call_rate, asa_seconds, aht_seconds, inbound_calls_cost,
               spend.spend_all_legs
        FROM analytics.tenios__daily_totals AS kpis
        LEFT JOIN (
            SELECT account, start_date_local, sum(spend_all_legs) AS spend_all_legs
            FROM analytics.tenios__spend GROUP BY ALL
        ) AS spend USING (account, start_date_local)
        WHERE account = 'main' ORDER BY kpis.start_date_local
    """).fetchall():
        day, offered, asr, ner, strict, closed, level, lost, asa, aht, cost, spend = row
        print(
            f"    {day!s:<11} {offered:>6} {percent(asr):>5} {percent(ner):>5} "
            f"{percent(strict):>6} {closed:>7} {percent(level):>8} {percent(lost):>5} "
            f"{asa or '-'!s:>6} {aht or '-'!s:>6} {cost:>12.2f} {spend or 0:>10.2f}"
        )
    caller_ids, repeat_rate = db.sql("""
        SELECT sum(calls_with_caller_number),
               sum(calls_repeat_caller) / nullif(sum(calls_with_caller_number), 0)
        FROM analytics.tenios__daily_totals WHERE account = 'main'
    """).fetchone()
    print(
        f"    repeat callers (the same number twice a day): {percent(repeat_rate)} of "
        f"{caller_ids} calls with a caller number"
        + ("" if caller_ids else " (unavailable: the numbers were not loaded)")
    )

    number, day = db.sql("""
        SELECT service_number, max(interval_date_local) FROM analytics.tenios__interval_kpis
        WHERE account = 'main' AND NOT is_account_total AND calls_closed < calls_offered
          AND dayofweek(interval_date_local) BETWEEN 1 AND 5
        GROUP BY 1 ORDER BY sum(calls_offered) DESC LIMIT 1
    """).fetchone()
    step(f"{number} on {day}, per 15 minutes while open, from analytics.tenios__interval_kpis")
    print(
        f"    {'from':<6} {'offered':>8} {'to person':>10} {'answered':>9} {'aband.':>7} "
        f"{'SL 20 s':>8} {'ASA s':>6} {'AHT s':>6}"
    )
    for row in db.execute(
        """
        SELECT strftime(interval_start_local, '%H:%M'), calls_offered, calls_offered_to_person,
               calls_answered_by_person, calls_abandoned_in_hours, service_level, asa_seconds,
               aht_seconds
        FROM analytics.tenios__interval_kpis
        WHERE account = 'main' AND NOT is_account_total AND service_number = ?
          AND interval_date_local = ?
          AND (calls_offered > calls_closed OR calls_offered_to_person > 0)
        ORDER BY interval_start_at
        """,
        [number, day],
    ).fetchall():
        start, offered, to_person, answered, abandoned, level, asa, aht = row
        print(
            f"    {start:<6} {offered:>8} {to_person:>10} {answered:>9} {abandoned:>7} "
            f"{percent(level):>8} {asa or '-'!s:>6} {aht or '-'!s:>6}"
        )

    step("Spend per month by call type (every leg), from analytics.tenios__monthly_spend")
    print(
        f"    {'account':<8} {'month':<8} {'category':<10} {'call type':<16} {'legs':>6} "
        f"{'answered':>9} {'failed':>7} {'EUR':>10} {'EUR/min':>8}"
    )
    for row in db.sql("""
        SELECT account, strftime(start_month_local, '%Y-%m'), spend_category, call_type,
               sum(legs), sum(legs_answered), sum(legs_failed), sum(spend_all_legs),
               sum(spend_all_legs) * 60 / nullif(sum(answered_billed_seconds), 0)
        FROM analytics.tenios__monthly_spend
        GROUP BY ALL ORDER BY 1, 2, 3, 4
    """).fetchall():
        account, month, category, call_type, count, answered, failed, cost, per_minute = row
        print(
            f"    {account:<8} {month:<8} {category:<10} {call_type:<16} {count:>6} "
            f"{answered:>9} {failed:>7} {cost:>10.4f} {float(per_minute or 0):>8.4f}"
        )

    step("Outcomes of the inbound calls, from analytics.tenios__calls")
    outcomes = db.sql("""
        SELECT outcome, count(*) FROM analytics.tenios__calls WHERE call_kind = 'inbound'
        GROUP BY outcome ORDER BY 2 DESC
    """).fetchall()
    print("    " + ", ".join(f"{outcome} {calls}" for outcome, calls in outcomes))

    step("Loaded legs against the API's count, from analytics.tenios__cdr_reconciliation")
    for account, days, legs, matching in db.sql("""
        SELECT account, count(*), sum(loaded_leg_count), count(*) FILTER (WHERE status = 'match')
        FROM analytics.tenios__cdr_reconciliation GROUP BY account ORDER BY account
    """).fetchall():
        print(f"    {account:<8} {days} days, {legs} legs: {matching} days match the API's count")
    bad = 0
    for day, account, api, loaded, difference, status, closed in db.sql("""
        SELECT count_date, account, api_leg_count, loaded_leg_count, difference, status, is_closed
        FROM analytics.tenios__cdr_reconciliation WHERE status <> 'match'
        ORDER BY account, count_date
    """).fetchall():
        bad += bool(difference) and closed
        print(f"    {day!s:<11} {account:<8} API {api}, loaded {loaded}: {difference:+} {status}")
    total, distinct = db.sql("""
        SELECT sum(copies), sum(legs) FROM (
            SELECT count(*) AS copies, count(DISTINCT uuid) AS legs FROM tenios.cdrs
            UNION ALL SELECT count(*), count(DISTINCT uuid) FROM tenios_account_b.cdrs
        )
    """).fetchone()
    print(
        f"    {total} rows, {distinct} distinct legs (the second run's re-read legs were upserted)"
    )
    if bad or total != distinct:
        print(f"\n{bad} closed day(s) disagree with the API's count.")
        return 1
    print(
        "\nEvery day agrees with the API's count. Models: transform/ (docs/analytics.md);"
        f" Meltano's log: {LOG.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
