"""``make demo``: a whole pipeline on this machine, no Tenios account needed.

1. starts the bundled API emulator with three weeks of synthetic calls;
2. runs ``meltano run tap-tenios target-duckdb`` (a full load), then once more
   (incremental: it resumes from the state Meltano saved);
3. reads the warehouse back: legs, calls and answer rate per day, cost by call type,
   and each day's loaded legs against the API's own count (``cdr_counts``).

Exits non-zero if any day disagrees. Each demo starts from an empty warehouse.
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
#: Lines of Meltano's output worth showing live: the tap's progress and the verdicts.
SHOWN = re.compile(
    r"cdrs: (window|reading)|cdr_counts: counting|Block run completed|error", re.IGNORECASE
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

    legs = generate(start, end, calls_per_day=300, seed=2024)
    with RunningEmulator(Emulator(legs, Behaviour(access_key=KEY, order="unsorted"))) as api:
        step(f"Emulator on {api.url}: {len(legs)} legs from {start:%Y-%m-%d} to {end:%Y-%m-%d}")
        env.update(
            {
                "TAP_TENIOS_API_URL": api.url,
                "TAP_TENIOS_ACCESS_KEY": KEY,
                "TAP_TENIOS_START_DATE": start.date().isoformat(),
                "TAP_TENIOS_END_DATE": end.date().isoformat(),
                "TARGET_DUCKDB_FILEPATH": str(WAREHOUSE),
            }
        )
        step("meltano run tap-tenios target-duckdb  (full load)")
        began = time.monotonic()
        meltano("run", "--full-refresh", "tap-tenios", "target-duckdb", env=env, show=True)
        print(f"    done in {time.monotonic() - began:.1f} s")
        step("meltano run tap-tenios target-duckdb  (again: incremental, from saved state)")
        meltano("run", "tap-tenios", "target-duckdb", env=env, show=True)
    return report()


def report() -> int:
    db = duckdb.connect(str(WAREHOUSE), read_only=True)
    step(f"Read back from {WAREHOUSE.relative_to(ROOT)}")
    rows = db.sql("""
        WITH legs AS (
            SELECT start_stamp::DATE AS day, count(*) AS legs,
                   count(*) FILTER (WHERE main_leg_uuid IS NULL) AS calls,
                   count(*) FILTER (WHERE main_leg_uuid IS NULL AND answer_stamp IS NOT NULL)
                       AS answered
            FROM tenios.cdrs GROUP BY 1
        )
        SELECT coalesce(l.day, c.date::DATE) AS day, coalesce(l.legs, 0), coalesce(l.calls, 0),
               coalesce(l.answered, 0), coalesce(c.total_items, 0)
        FROM legs l FULL JOIN tenios.cdr_counts c ON l.day = c.date::DATE
        ORDER BY 1
    """).fetchall()
    print(f"    {'day':<11} {'legs':>6} {'calls':>6} {'answered':>9} {'API count':>10}  check")
    bad = 0
    for day, legs, calls, answered, counted in rows:
        ok = legs == counted
        bad += not ok
        rate = f"{answered / calls:.0%}" if calls else "-"
        print(
            f"    {day!s:<11} {legs:>6} {calls:>6} {rate:>9} {counted:>10}  "
            f"{'ok' if ok else 'MISMATCH'}"
        )
    total, distinct = db.sql("SELECT count(*), count(DISTINCT uuid) FROM tenios.cdrs").fetchone()
    print(
        f"    {total} rows, {distinct} distinct legs (the second run's re-read legs were upserted)"
    )

    step("Cost by call type (EUR; each value cast to DECIMAL before summing, see README)")
    for call_type, legs, cost in db.sql("""
        SELECT call_type, count(*), sum(cost::DECIMAL(18, 6)) FROM tenios.cdrs
        GROUP BY 1 ORDER BY 3 DESC
    """).fetchall():
        print(f"    {call_type:<16} {legs:>6} legs {cost:>14}")
    if bad or total != distinct:
        print(f"\n{bad} day(s) disagree with the API's count.")
        return 1
    print(f"\nEvery day agrees with the API's count. Meltano's log: {LOG.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
