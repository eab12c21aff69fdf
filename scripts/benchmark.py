"""``make benchmark``: tap-tenios against a raw floor, measured in the same run.

Three measurements, each against the bundled emulator in its own process:

* ``cpu``: >= 100k CDRs, no latency. Records/s and CPU seconds of tap-tenios and of
  the raw floor (``scripts/raw_floor.py``: bare requests + stdlib json writing the
  same RECORD lines), and their ratio. Median of ``--runs`` alternating runs.
* ``latency``: 100 ms per request, a few hundred requests. Wall time of tap-tenios
  (default concurrency, and with ``max_concurrency=1``) against the sequential
  floor, requests x latency.
* ``memory``: peak RSS of tap-tenios at 1x and 10x the date range.

Output is a Markdown table (pasted into the README). Nothing here asserts a speed.
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
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KEY = "benchmark-key"
FIRST_DAY = "2024-01-01"


@dataclass
class Measure:
    wall: float
    cpu: float
    rss_mb: float
    records: int

    @property
    def rate(self) -> float:
        return self.records / self.wall


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class Emulator:
    """``tap-tenios-emulator`` in its own process, so its CPU is not counted."""

    def __init__(self, days: int, calls_per_day: int, latency_ms: float = 0) -> None:
        self.days = days
        self.url = f"http://127.0.0.1:{free_port()}"
        port = self.url.rsplit(":", 1)[1]
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tap_tenios.emulator",
                "--port",
                port,
                "--start",
                FIRST_DAY,
                "--days",
                str(days),
                "--calls-per-day",
                str(calls_per_day),
                "--access-key",
                KEY,
                "--latency-ms",
                str(latency_ms),
                "--order",
                "unsorted",
            ],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 300
        while True:
            try:
                self.stats()
                break
            except OSError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)

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


def measure(command: list[str], count: re.Pattern[str]) -> Measure:
    """Run to the end, stdout to /dev/null; CPU and peak RSS of that process alone."""
    with tempfile.TemporaryFile("w+") as err:
        began = time.perf_counter()
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=err)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - began
        err.seek(0)
        text = err.read()
    if status:
        raise SystemExit(f"{command[1:4]} failed:\n{text[-2000:]}")
    found = count.search(text)
    return Measure(
        wall,
        usage.ru_utime + usage.ru_stime,
        usage.ru_maxrss / 1024,
        int(found.group(1)) if found else 0,
    )


TAP_COUNT = re.compile(r'"record_count","value":(\d+),"tags":\{"stream":"cdrs"')
FLOOR_COUNT = re.compile(r"records=(\d+)")


def tap(emulator: Emulator, workdir: Path, page_size: int, **settings: object) -> Measure:
    days = emulator.days
    config = {
        "access_key": KEY,
        "api_url": emulator.url,
        "start_date": FIRST_DAY,
        "end_date": f"{FIRST_DAY}T00:00:00Z",
        "page_size": page_size,
        **settings,
    }
    end = time.strftime(
        "%Y-%m-%d",
        time.gmtime(time.mktime(time.strptime(FIRST_DAY, "%Y-%m-%d")) + days * 86400 + 43200),
    )
    config["end_date"] = end
    config_path = workdir / "config.json"
    config_path.write_text(json.dumps(config))
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
    catalog_path = workdir / "catalog.json"
    catalog_path.write_text(json.dumps(catalog))
    return measure(
        [
            sys.executable,
            "-m",
            "tap_tenios",
            "--config",
            str(config_path),
            "--catalog",
            str(catalog_path),
        ],
        TAP_COUNT,
    )


def floor(emulator: Emulator, page_size: int) -> Measure:
    return measure(
        [
            sys.executable,
            str(ROOT / "scripts" / "raw_floor.py"),
            emulator.url,
            KEY,
            FIRST_DAY,
            str(emulator.days),
            str(page_size),
        ],
        FLOOR_COUNT,
    )


def median(values: list[Measure]) -> Measure:
    return Measure(
        *(
            statistics.median(getattr(m, f) for m in values)
            for f in ("wall", "cpu", "rss_mb", "records")
        )
    )


def cpu_bound(runs: int, workdir: Path) -> list[str]:
    with Emulator(days=25, calls_per_day=2600) as emulator:
        taps, floors = [], []
        for _ in range(runs):
            taps.append(tap(emulator, workdir, 1000))
            floors.append(floor(emulator, 1000))
    t, f = median(taps), median(floors)
    return [
        f"CPU-bound: {t.records:,} CDRs, zero latency, median of {runs} runs each",
        "",
        "| | records/s | CPU s | CPU µs/record | wall s | peak RSS MB |",
        "|---|---:|---:|---:|---:|---:|",
        f"| raw floor (requests + json) | {f.rate:,.0f} | {f.cpu:.2f} | "
        f"{f.cpu / f.records * 1e6:.0f} | {f.wall:.2f} | {f.rss_mb:.0f} |",
        f"| tap-tenios | {t.rate:,.0f} | {t.cpu:.2f} | {t.cpu / t.records * 1e6:.0f} | "
        f"{t.wall:.2f} | {t.rss_mb:.0f} |",
        f"| **tap / floor** | **{t.rate / f.rate:.2f}×** | {t.cpu / f.cpu:.2f}× | | | |",
    ]


def latency_bound(runs: int, workdir: Path) -> list[str]:
    latency = 0.1
    with Emulator(days=60, calls_per_day=600, latency_ms=latency * 1000) as emulator:
        rows = []
        for label, settings in (
            ("tap-tenios (max_concurrency=4, default)", {}),
            ("tap-tenios (max_concurrency=1)", {"max_concurrency": 1}),
        ):
            walls, requests = [], 0
            for _ in range(runs):
                before = emulator.requests()
                walls.append(tap(emulator, workdir, 250, **settings))
                requests = emulator.requests() - before
            m = median(walls)
            sequential = requests * latency
            rows.append(
                f"| {label} | {requests} | {sequential:.1f} | {m.wall:.2f} | "
                f"**{m.wall / sequential:.2f}×** |"
            )
    return [
        f"Latency-bound: 100 ms per request, median of {runs} runs",
        "",
        "| | requests | sequential floor s (requests × latency) | wall s | wall / floor |",
        "|---|---:|---:|---:|---:|",
        *rows,
    ]


def memory(workdir: Path) -> list[str]:
    rows = []
    for scale, days in (("1×", 10), ("10×", 100)):
        with Emulator(days=days, calls_per_day=1200) as emulator:
            m = tap(emulator, workdir, 1000)
        rows.append(f"| {scale} ({days} days) | {m.records:,} | {m.rss_mb:.0f} |")
    return [
        "Memory: peak RSS of tap-tenios as the date range grows",
        "",
        "| range | CDRs | peak RSS MB |",
        "|---|---:|---:|",
        *rows,
    ]


def machine() -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return (
        f"Measured on {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{platform.system()} {platform.machine()}, {time.strftime('%Y-%m-%d')}."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("modes", nargs="*", default=["cpu", "latency", "memory"])
    args = parser.parse_args()
    out: list[str] = [machine(), ""]
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        for mode in args.modes:
            print(f"running {mode} ...", file=sys.stderr, flush=True)
            if mode == "cpu":
                out += cpu_bound(args.runs, workdir)
            elif mode == "latency":
                out += latency_bound(args.runs, workdir)
            elif mode == "memory":
                out += memory(workdir)
            out.append("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
