"""``make demo``: the tap against the bundled emulator, and what it extracted.

Starts the emulator with three weeks of synthetic calls, runs ``tap-tenios`` over
them, and prints legs and calls per day next to the API's own daily count.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate

DAYS = 21
KEY = "demo-access-key"


def main() -> int:
    today = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = today - timedelta(days=DAYS), today
    legs = generate(start, end, calls_per_day=300, seed=2024)
    print(f"Emulator: {len(legs)} synthetic legs, {start:%Y-%m-%d} to {end:%Y-%m-%d}.")
    with (
        RunningEmulator(Emulator(legs, Behaviour(access_key=KEY))) as api,
        tempfile.TemporaryDirectory() as tmp,
    ):
        config = Path(tmp) / "config.json"
        config.write_text(
            json.dumps(
                {
                    "access_key": KEY,
                    "api_url": api.url,
                    "timezone": "UTC",
                    "start_date": start.date().isoformat(),
                    "end_date": end.date().isoformat(),
                }
            )
        )
        print("Running: tap-tenios --config config.json  (progress below)\n", flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "tap_tenios", "--config", str(config)],
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    if done.returncode:
        print(f"tap-tenios failed with exit code {done.returncode}", file=sys.stderr)
        return done.returncode
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    cdrs = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "cdrs"]
    counts = {
        m["record"]["date"]: m["record"]["total_items"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "cdr_counts"
    }
    report(cdrs, counts)
    print("\nFinal state:", json.dumps(messages[-1]["value"]))
    return 0 if all(counts.get(d, 0) == n for d, n in day_legs(cdrs).items()) else 1


def day_legs(cdrs: list[dict]) -> Counter[str]:
    return Counter(r["start_stamp"][:10] for r in cdrs)


def report(cdrs: list[dict], counts: dict[str, int]) -> None:
    legs = day_legs(cdrs)
    calls = Counter(r["start_stamp"][:10] for r in cdrs if r["main_leg_uuid"] is None)
    answered = Counter(
        r["start_stamp"][:10] for r in cdrs if r["main_leg_uuid"] is None and r["answer_stamp"]
    )
    print(f"\n{'day':<11} {'legs':>6} {'calls':>6} {'answered':>9} {'api count':>10}  check")
    for day in sorted(set(legs) | set(counts)):
        ok = "ok" if counts.get(day) == legs[day] else "MISMATCH"
        rate = answered[day] / calls[day] if calls[day] else 0
        api = counts.get(day, 0)
        print(f"{day:<11} {legs[day]:>6} {calls[day]:>6} {rate:>9.0%} {api:>10}  {ok}")
    cost: dict[str, Decimal] = {}
    for record in cdrs:
        cost[record["call_type"]] = cost.get(record["call_type"], Decimal(0)) + Decimal(
            str(record["cost"])
        )
    print("\nCost by call type (EUR, exact):")
    for call_type, total in sorted(cost.items()):
        print(f"  {call_type:<16} {total}")


if __name__ == "__main__":
    sys.exit(main())
