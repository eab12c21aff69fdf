"""``make demo``: a whole pipeline on this machine, no Tenios account needed.

1. starts the bundled API emulator with three weeks of synthetic calls;
2. runs ``meltano run tap-tenios--number target-duckdb`` (a full load), then
   ``meltano run tap-tenios--number target-duckdb dbt-duckdb:build`` (incremental: it resumes
   from the state Meltano saved, then builds and tests the dbt models in transform/);
3. reports from the models: calls, answer rate, abandonment, service level, ACD, wait
   and cost per local day, and each day's loaded legs against the API's own count.

Days are Europe/Berlin days, for the tap's counts and the models alike. Exits non-zero
if any day disagrees. Each demo starts from an empty warehouse.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "output"
WAREHOUSE = OUTPUT / "demo.duckdb"
LOG = OUTPUT / "demo-meltano.log"
MELTANO = str(Path(sys.executable).parent / "meltano")
DAYS = 21
KEY = "demo-access-key"
ZONE = "Europe/Berlin"
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


def main() -> int:
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
    with RunningEmulator(Emulator(legs, Behaviour(access_key=KEY, order="unsorted"))) as api:
        step(f"Emulator on {api.url}: {len(legs)} legs from {start:%Y-%m-%d} to {end:%Y-%m-%d}")
        env.update(
            {
                "TAP_TENIOS_API_URL": api.url,
                "TAP_TENIOS_ACCESS_KEY": KEY,
                "TAP_TENIOS_START_DATE": start.date().isoformat(),
                "TAP_TENIOS_END_DATE": end.date().isoformat(),
                "TAP_TENIOS_TIMEZONE": ZONE,
                "TARGET_DUCKDB_FILEPATH": str(WAREHOUSE),
                "DBT_DUCKDB_PATH": str(WAREHOUSE),
                "TENIOS_REPORT_TIMEZONE": ZONE,
                "DBT_TARGET_PATH": str(OUTPUT / "dbt-target"),
                "DBT_LOG_PATH": str(OUTPUT / "dbt-logs"),
                "DBT_USE_COLORS": "false",
            }
        )
        step("meltano run tap-tenios--number target-duckdb  (full load)")
        began = time.monotonic()
        meltano("run", "--full-refresh", "tap-tenios--number", "target-duckdb", env=env, show=True)
        print(f"    done in {time.monotonic() - began:.1f} s")
        step(
            "meltano run tap-tenios--number target-duckdb dbt-duckdb:build"
            "  (incremental, then the dbt models and their tests)"
        )
        meltano(
            "run", "tap-tenios--number", "target-duckdb", "dbt-duckdb:build", env=env, show=True
        )
    return report()


def percent(value: object) -> str:
    return "-" if value is None else f"{float(str(value)):.0%}"


def report() -> int:
    """Print what the dbt models say; every figure comes from a model, none is computed here."""
    db = duckdb.connect(str(WAREHOUSE), read_only=True)
    step(f"Calls per day ({ZONE}), from analytics.tenios__daily_totals")
    print(
        f"    {'day':<11} {'calls':>6} {'answered':>9} {'abandoned':>10} {'SL 20 s':>8} "
        f"{'ACD s':>6} {'wait s':>7} {'p90 s':>6} {'cost EUR':>10}"
    )
    for row in db.sql("""
        SELECT start_date_local, calls_offered, answer_rate, abandon_rate, service_level,
               acd_seconds, avg_wait_seconds, p90_wait_seconds, cost_total
        FROM analytics.tenios__daily_totals ORDER BY start_date_local
    """).fetchall():
        day, offered, answered, abandoned, level, acd, wait, p90, cost = row
        print(
            f"    {day!s:<11} {offered:>6} {percent(answered):>9} {percent(abandoned):>10} "
            f"{percent(level):>8} {acd!s:>6} {wait!s:>7} {p90!s:>6} {cost:>10.2f}"
        )

    step("Outcomes of all calls, from analytics.tenios__calls")
    outcomes = db.sql("""
        SELECT outcome, count(*) FROM analytics.tenios__calls GROUP BY outcome ORDER BY 2 DESC
    """).fetchall()
    print("    " + ", ".join(f"{outcome} {calls}" for outcome, calls in outcomes))

    step("Loaded legs against the API's count, from analytics.tenios__cdr_reconciliation")
    print(f"    {'day':<11} {'API count':>10} {'loaded':>7} {'diff':>5}  status")
    bad = 0
    for day, counted, loaded, difference, status, closed in db.sql("""
        SELECT count_date, api_leg_count, loaded_leg_count, difference, status, is_closed
        FROM analytics.tenios__cdr_reconciliation ORDER BY count_date
    """).fetchall():
        bad += bool(difference) and closed
        print(f"    {day!s:<11} {counted:>10} {loaded:>7} {difference:>5}  {status}")
    total, distinct = db.sql("SELECT count(*), count(DISTINCT uuid) FROM tenios.cdrs").fetchone()
    print(
        f"    {total} rows, {distinct} distinct legs (the second run's re-read legs were upserted)"
    )
    if bad or total != distinct:
        print(f"\n{bad} closed day(s) disagree with the API's count.")
        return 1
    print(
        "\nEvery day agrees with the API's count. Models: transform/ (README: dbt models);"
        f" Meltano's log: {LOG.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
