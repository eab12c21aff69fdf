"""The fault campaign: a full run through every transient fault, and what it cost.

    python scripts/fault_campaign.py      # prints the figures the README states

The emulator injects each fault the tap must survive, at random (seeded) and some
from a queue; the tap runs in this process with retry waits recorded, not slept.
The test suite runs the same campaign and requires zero legs lost or duplicated.
"""

from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from tap_tenios.emulator import TRANSIENT_FAULTS, Behaviour, Emulator, RunningEmulator, generate

# The in-process runner is test code, kept with the tests.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.helpers import run_tap

UTC = timezone.utc
START = datetime(2024, 3, 1, tzinfo=UTC)
DAYS = 5
KEY = "campaign-key"
#: Faults that a healthy run must ride out; "stall" costs real seconds, so it is queued.
RANDOM_KINDS = tuple(kind for kind in TRANSIENT_FAULTS if kind != "stall")
QUEUED = ("stall", "stall")


@dataclass
class Figures:
    requests: dict[str, int]
    faults: dict[str, int]
    legs: int
    emitted: int
    lost: int
    duplicated: int
    waited: float
    error: str | None

    def table(self) -> str:
        rows = [
            "| figure | value |",
            "|---|---:|",
            f"| requests made (`/cdrs/retrieve` + `/cdrs/count`) | {sum(self.requests.values())} |",
            *[f"| faults injected: `{kind}` | {n} |" for kind, n in sorted(self.faults.items())],
            f"| faults injected, all kinds | {sum(self.faults.values())} |",
            f"| legs in range | {self.legs} |",
            f"| legs emitted | {self.emitted} |",
            f"| **legs lost** | **{self.lost}** |",
            f"| legs emitted twice | {self.duplicated} |",
            f"| back-off waited (simulated seconds) | {self.waited:.0f} |",
        ]
        return "\n".join(rows)


def campaign(fault_rate: float = 0.3, seed: int = 7) -> Figures:
    end = START + timedelta(days=DAYS)
    legs = generate(START, end, calls_per_day=150, seed=seed)
    behaviour = Behaviour(
        access_key=KEY,
        now=end + timedelta(days=1),
        order="unsorted",
        bounds="inclusive",
        fault_rate=fault_rate,
        fault_kinds=RANDOM_KINDS,
        fault_seed=seed,
        stall_seconds=1.5,
        retry_after_seconds=3,
        fault_queue=[{"kind": kind} for kind in QUEUED],
    )
    emulator = Emulator(legs, behaviour)
    with RunningEmulator(emulator) as api:
        run = run_tap(
            {
                "access_key": KEY,
                "api_url": api.url,
                "start_date": START.isoformat(),
                "end_date": end.isoformat(),
                "page_size": 10,
                "max_retries": 10,
                "request_timeout_seconds": 1,
                "lookback_minutes": 0,
            },
            streams=("cdrs", "cdr_counts"),
        )
    expected = {leg.uuid for leg in legs if START <= leg.start < end}
    uuids = Counter(r["uuid"] for r in run.records())
    return Figures(
        requests=dict(emulator.stats.requests),
        faults=dict(emulator.stats.faults),
        legs=len(expected),
        emitted=len(uuids),
        lost=len(expected - set(uuids)),
        duplicated=sum(1 for n in uuids.values() if n > 1),
        waited=sum(run.waits),
        error=None if run.error is None else str(run.error),
    )


def main() -> int:
    figures = campaign()
    print(figures.table())
    if figures.error:
        print(f"\nthe run failed: {figures.error}", file=sys.stderr)
    return 1 if figures.error or figures.lost or figures.duplicated else 0


if __name__ == "__main__":
    sys.exit(main())
