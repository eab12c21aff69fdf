"""``make benchmark``: tap-tenios against the client a user would write instead.

The baseline (``scripts/raw_floor.py``) is the naive client: one query over the
whole range, page after page, one request at a time, writing each item as a
RECORD line. Both run against the bundled emulator in its own process, on the same
data, in the same run, alternating; the emulator keeps every page it has served
(``--cache-pages``) and both clients read everything once before the measured
runs, so what is measured is the client, not the emulator. Only the ``cdrs``
stream runs, and every request counts, ``/cdrs/count`` included.

Per case: requests, wall time and CPU seconds (rusage of the client process) of
each, and the ratios (medians of ``--runs``). A case with pages that shift (ties
reshuffled per query) shows what each client emitted instead. Then peak memory as
the range grows. ``--write`` puts the tables into docs/performance.md. Nothing asserts a speed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "performance.md"
KEY = "benchmark-key"
FIRST_DAY = date(2024, 1, 1)
BEGIN_MARK, END_MARK = "<!-- benchmark table -->", "<!-- end of benchmark table -->"


@dataclass(frozen=True)
class Case:
    label: str
    days: int
    calls_per_day: float
    latency_ms: float
    page_size: int = 1000
    order: str = "unsorted"


#: The cases of the issue that set the targets, plus a CPU-bound one. Calls per day are
#: set for the emulator's mix of about 2.1 legs per call, so the CDR counts match the labels.
CASES = (
    Case("50k CDRs / 60 days, 100 ms per request", 60, 395, 100),
    Case("3k CDRs / 365 days, 100 ms per request", 365, 3.9, 100),
    Case("100k CDRs / 40 days, no latency (CPU-bound)", 40, 1200, 0),
)
SHIFTING = Case(
    "8k CDRs in one day, pages of 100, ties reshuffled per query, 20 ms",
    1,
    3750,
    20,
    page_size=100,
    order="ties_shuffled",
)


@dataclass
class Measure:
    wall: float
    cpu: float
    rss_mb: float
    requests: int
    output: str = ""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Emulator:
    """``tap-tenios-emulator`` in its own process, so its CPU is not the client's."""

    def __init__(self, case: Case) -> None:
        self.case = case
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        command = [
            sys.executable,
            "-m",
            "tap_tenios.emulator",
            "--port",
            str(port),
            "--start",
            FIRST_DAY.isoformat(),
            "--days",
            str(case.days),
            "--calls-per-day",
            str(case.calls_per_day),
            "--access-key",
            KEY,
            "--latency-ms",
            str(case.latency_ms),
            "--order",
            case.order,
        ]
        if case.order != "ties_shuffled":
            command.append("--cache-pages")
        self.process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 300
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)

    @property
    def end(self) -> date:
        return FIRST_DAY + timedelta(days=self.case.days)

    def stats(self) -> dict:
        with urllib.request.urlopen(self.url + "/_emulator/stats", timeout=5) as answer:
            return json.loads(answer.read())

    def requests(self) -> int:
        return sum(int(n) for n in self.stats()["requests"].values())

    def __enter__(self) -> Emulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.terminate()
        self.process.wait()


def measure(emulator: Emulator, command: list[str], *, keep_output: bool = False) -> Measure:
    """Run to the end; CPU and peak RSS of that process alone, requests it made."""
    before = emulator.requests()
    with tempfile.TemporaryFile("w+") as err, tempfile.TemporaryFile("w+") as out:
        began = time.perf_counter()
        process = subprocess.Popen(
            command, stdout=out if keep_output else subprocess.DEVNULL, stderr=err
        )
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        err.seek(0)
        if status:
            raise SystemExit(f"{command[1:4]} failed:\n{err.read()[-2000:]}")
        out.seek(0)
        output = out.read() if keep_output else ""
    return Measure(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        emulator.requests() - before,
        output,
    )


def tap_command(emulator: Emulator, workdir: Path) -> list[str]:
    config = {
        "access_key": KEY,
        "api_url": emulator.url,
        "start_date": FIRST_DAY.isoformat(),
        "end_date": emulator.end.isoformat(),
        "page_size": emulator.case.page_size,
        "lookback_minutes": 0,
    }
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
    catalog_path = workdir / "catalog.json"
    if not catalog_path.exists():
        catalog = json.loads(
            subprocess.run(
                [sys.executable, "-m", "tap_tenios", "--config", str(config_path), "--discover"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        for entry in catalog["streams"]:
            for meta in entry["metadata"]:
                if not meta["breadcrumb"]:
                    meta["metadata"]["selected"] = entry["stream"] == "cdrs"
        catalog_path.write_text(json.dumps(catalog))
    return [
        sys.executable,
        "-m",
        "tap_tenios",
        "--config",
        str(config_path),
        "--catalog",
        str(catalog_path),
    ]


def naive_command(emulator: Emulator) -> list[str]:
    return [
        sys.executable,
        str(ROOT / "scripts" / "raw_floor.py"),
        emulator.url,
        KEY,
        f"{FIRST_DAY.isoformat()}T00:00:00.000Z",
        f"{emulator.end.isoformat()}T00:00:00.000Z",
        str(emulator.case.page_size),
    ]


def median(values: list[Measure]) -> Measure:
    return Measure(
        *(
            statistics.median(getattr(m, f) for m in values)
            for f in ("wall", "cpu", "rss_mb", "requests")
        )
    )


def legs_in(output: str) -> Counter[str]:
    return Counter(
        json.loads(line)["record"]["uuid"]
        for line in output.splitlines()
        if line.startswith('{"type":"RECORD"') or line.startswith('{"type": "RECORD"')
    )


def speed(runs: int, workdir: Path) -> list[str]:
    rows = []
    for case in CASES:
        print(f"  {case.label} ...", file=sys.stderr, flush=True)
        with Emulator(case) as emulator:
            tap, naive = tap_command(emulator, workdir), naive_command(emulator)
            measure(emulator, tap)  # every page rendered once, before any measured run
            measure(emulator, naive)
            taps, naives = [], []
            for _ in range(runs):
                taps.append(measure(emulator, tap))
                naives.append(measure(emulator, naive))
            legs = emulator.stats()["legs"]
        t, n = median(taps), median(naives)
        rows.append(
            f"| {case.label} | {legs:,} | {t.requests:.0f} / {n.requests:.0f} | "
            f"**{t.requests / n.requests:.2f}×** | {t.wall:.2f} / {n.wall:.2f} | "
            f"**{t.wall / n.wall:.2f}×** | {t.cpu:.2f} / {n.cpu:.2f} | {t.cpu / n.cpu:.2f}× |"
        )
    return [
        f"Speed: tap-tenios / the naive client, medians of {runs} runs each",
        "",
        "| case | CDRs | requests | ratio | wall s | ratio | CPU s | ratio |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
        *rows,
    ]


def shifting(workdir: Path) -> list[str]:
    case = SHIFTING
    print(f"  {case.label} ...", file=sys.stderr, flush=True)
    with Emulator(case) as emulator:
        legs = emulator.stats()["legs"]
        rows = []
        for label, command in (
            ("tap-tenios", tap_command(emulator, workdir)),
            ("naive client", naive_command(emulator)),
        ):
            m = measure(emulator, command, keep_output=True)
            seen = legs_in(m.output)
            twice = sum(1 for n in seen.values() if n > 1)
            rows.append(
                f"| {label} | {m.requests} | {m.wall:.2f} | {len(seen):,} | {twice:,} | "
                f"**{legs - len(seen):,}** |"
            )
    return [
        f"Pages that shift: {case.label}, {legs:,} legs",
        "",
        "| client | requests | wall s | distinct legs emitted | emitted twice | missed |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ]


def memory(workdir: Path) -> list[str]:
    rows = []
    for scale, days in (("1×", 10), ("10×", 100)):
        case = Case(f"{days} days", days, 570, 0)
        with Emulator(case) as emulator:
            m = measure(emulator, tap_command(emulator, workdir))
            legs = emulator.stats()["legs"]
        rows.append(f"| {scale} ({days} days) | {legs:,} | {m.rss_mb:.0f} |")
    return [
        "Memory: peak RSS of tap-tenios as the range grows",
        "",
        "| range | CDRs | peak RSS MB |",
        "|---|---:|---:|",
        *rows,
    ]


def cpu_model() -> str:
    """The processor's name, as Linux gives it (also used by ``benchmark_pipeline``)."""
    cpuinfo = Path("/proc/cpuinfo")
    found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text()) if cpuinfo.exists() else None
    return found.group(1).strip() if found else "unknown CPU"


def machine() -> str:
    return (
        f"Measured on {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {time.strftime('%Y-%m-%d')}."
    )


def write_readme(table: str) -> None:
    text = DOCUMENT.read_text()
    head, rest = text.split(BEGIN_MARK, 1)
    _, tail = rest.split(END_MARK, 1)
    DOCUMENT.write_text(f"{head}{BEGIN_MARK}\n{table}\n{END_MARK}{tail}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write docs/performance.md")
    parser.add_argument("modes", nargs="*", default=["speed", "shifting", "memory"])
    args = parser.parse_args()
    out: list[str] = [machine(), ""]
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes:
            workdir = Path(tmp) / mode
            workdir.mkdir()
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            if mode == "speed":
                out += speed(args.runs, workdir)
            elif mode == "shifting":
                out += shifting(workdir)
            elif mode == "memory":
                out += memory(workdir)
            out.append("")
    table = "\n".join(out).rstrip()
    print(table)
    if args.write:
        write_readme(table)


if __name__ == "__main__":
    main()
