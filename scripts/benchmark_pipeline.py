"""``make benchmark`` (pipeline part): where a whole ``meltano run`` spends its time.

Against the bundled emulator (its own process) with about 100k CDRs and no latency:

* the tap alone, its output thrown away: what the extraction side can do;
* the tap piped into each loader, with the loader settings that matter, each process
  measured on its own (CPU seconds from its rusage): which side bounds the pipeline;
* ``meltano run`` end to end, as users run it, with the settings ``meltano.yml`` ships.

Every PostgreSQL load goes into a fresh database and is checked against the first:
the same rows, the same values (``cost`` compared as a number). Needs the project's
PostgreSQL (``scripts/postgres.sh start``) and ``meltano install``. Output is the
Markdown table of the README's "The pipeline at full speed"; nothing asserts a speed.

    python scripts/benchmark_pipeline.py [--runs 1] [--write]
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
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
MARKERS = ("<!-- pipeline benchmark table -->", "<!-- end of pipeline benchmark table -->")
MELTANO = str(Path(sys.executable).parent / "meltano")
DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
KEY = "benchmark-key"
FIRST_DAY, DAYS, CALLS_PER_DAY = "2024-01-01", 25, 2600
LAST_DAY = "2024-01-26"
#: What the loaders' digest compares: every column the tap emits, ``cost`` as a number.
DIGEST = """
SELECT count(*), md5(string_agg(concat_ws('|', uuid, main_leg_uuid, bleg_uuid, call_type,
    start_stamp, answer_stamp, end_stamp, duration, billusec, trim_scale(cost), prepaid,
    hangup_cause, callerid_number, callerid_name, destination_number, source_type,
    routing_status, billing_status), ',' ORDER BY uuid))
FROM tenios.cdrs
"""


@dataclass
class Process:
    wall: float
    cpu: float


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def emulator() -> Iterator[str]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_tenios.emulator",
            "--port",
            str(port),
            "--start",
            FIRST_DAY,
            "--days",
            str(DAYS),
            "--calls-per-day",
            str(CALLS_PER_DAY),
            "--access-key",
            KEY,
        ],
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise SystemExit("the emulator did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        process.wait()


def meltano_env(url: str, workdir: Path) -> dict[str, str]:
    return {
        **os.environ,
        "MELTANO_ENVIRONMENT": "emulator",
        "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
        "TAP_TENIOS_API_URL": url,
        "TAP_TENIOS_ACCESS_KEY": KEY,
        "TAP_TENIOS_START_DATE": FIRST_DAY,
        "TAP_TENIOS_END_DATE": LAST_DAY,
    }


def meltano(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"meltano {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def plugin_config(plugin: str, env: dict[str, str], **overrides: Any) -> Path:
    """The config ``meltano run`` would give ``plugin``, as a file for running it bare."""
    config = json.loads(meltano("config", "--unsafe", "print", plugin, env=env))
    path = Path(env["MELTANO_DATABASE_URI"].removeprefix("sqlite:///")).parent
    target = path / f"{plugin}-{uuid.uuid4().hex[:6]}.json"
    target.write_text(json.dumps({**config, **overrides}))
    return target


def executable(kind: str, plugin: str) -> str:
    name = "tap-tenios" if kind == "extractors" else plugin
    return str(ROOT / ".meltano" / kind / plugin / "venv" / "bin" / name)


def wait(process: subprocess.Popen[Any], began: float) -> Process:
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        log = Path(LOGS.name).read_text()[-3000:]
        raise SystemExit(f"{process.args} failed with status {status}:\n{log}")
    return Process(time.perf_counter() - began, usage.ru_utime + usage.ru_stime)


#: Where the measured processes' logs go (shown when one fails).
LOGS = tempfile.NamedTemporaryFile("w", suffix=".log")


def tap_alone(tap_config: Path, catalog: Path) -> Process:
    began = time.perf_counter()
    tap = subprocess.Popen(
        [executable("extractors", "tap-tenios"), "--config", str(tap_config)]
        + ["--catalog", str(catalog)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return wait(tap, began)


def piped(tap_config: Path, catalog: Path, loader: str, loader_config: Path) -> dict[str, Process]:
    """Tap | loader, the processes ``meltano run`` starts, each measured on its own."""
    began = time.perf_counter()
    tap = subprocess.Popen(
        [executable("extractors", "tap-tenios"), "--config", str(tap_config)]
        + ["--catalog", str(catalog)],
        stdout=subprocess.PIPE,
        stderr=LOGS,
    )
    target = subprocess.Popen(
        [executable("loaders", loader), "--config", str(loader_config)],
        stdin=tap.stdout,
        stdout=subprocess.DEVNULL,
        stderr=LOGS,
        env={**os.environ, "PGTZ": "UTC"},
    )
    assert tap.stdout is not None
    tap.stdout.close()
    target_done = wait(target, began)
    tap_done = wait(tap, began)
    return {"tap": tap_done, "loader": target_done, "all": Process(target_done.wall, 0.0)}


def end_to_end(job: list[str], env: dict[str, str]) -> Process:
    """``meltano run`` as a user runs it: wall time and the CPU of every process."""
    before = os.times()
    began = time.perf_counter()
    meltano("run", "--full-refresh", "--no-state-update", *job, env=env)
    after = os.times()
    cpu = after.children_user - before.children_user
    return Process(
        time.perf_counter() - began, cpu + after.children_system - before.children_system
    )


@contextmanager
def database() -> Iterator[str]:
    name = f"tenios_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def digest(name: str) -> tuple[int, str]:
    with psycopg.connect(psycopg.conninfo.make_conninfo(DSN, dbname=name)) as connection:
        row = connection.execute(DIGEST).fetchone()
    assert row is not None
    return int(row[0]), str(row[1])


POSTGRES_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    # label, extractor, loader settings over meltano.yml's
    ("target-postgres defaults (validate, INSERT)", "tap-tenios", {"validate_records": True}),
    ("validate_records: false (shipped)", "tap-tenios", {}),
    (
        "validate_records: false, use_copy: true, decimal cost",
        "tap-tenios--decimal",
        {"use_copy": True},
    ),
    (
        "… and batch_size_rows: 100000",
        "tap-tenios--decimal",
        {"use_copy": True, "batch_size_rows": 100000},
    ),
    (
        "… and add_record_metadata: false",
        "tap-tenios--decimal",
        {"use_copy": True, "add_record_metadata": False, "activate_version": False},
    ),
]


def run(runs: int) -> list[str]:
    rows: list[str] = []
    checks: set[tuple[int, str]] = set()
    with tempfile.TemporaryDirectory() as tmp, emulator() as url:
        workdir = Path(tmp)
        env = meltano_env(url, workdir)
        conninfo = psycopg.conninfo.conninfo_to_dict(DSN)
        pg_env = {
            **env,
            "TARGET_POSTGRES_HOST": str(conninfo.get("host", "127.0.0.1")),
            "TARGET_POSTGRES_PORT": str(conninfo.get("port", 5432)),
        }
        catalogs = {}
        tap_configs = {}
        for extractor in ("tap-tenios", "tap-tenios--decimal"):
            tap_configs[extractor] = plugin_config(extractor, env)
            catalog = workdir / f"{extractor}.catalog.json"
            catalog.write_text(
                subprocess.run(
                    [executable("extractors", "tap-tenios"), "--config"]
                    + [str(tap_configs[extractor]), "--discover"],
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
            )
            catalogs[extractor] = catalog
        alone = [tap_alone(tap_configs["tap-tenios"], catalogs["tap-tenios"]) for _ in range(runs)]
        cdrs = 0

        def line(label: str, measures: list[dict[str, Process]], rows_loaded: int) -> str:
            wall = statistics.median(m["all"].wall for m in measures)
            tap_cpu = statistics.median(m["tap"].cpu for m in measures)
            loader_cpu = statistics.median(m["loader"].cpu for m in measures)
            bound = "loader" if loader_cpu > tap_cpu else "tap"
            return (
                f"| {label} | {rows_loaded / wall:,.0f} | {wall:.1f} | {tap_cpu:.1f} | "
                f"{loader_cpu if loader_cpu else float('nan'):.1f} | {bound} |"
            )

        tap_m = [{"tap": m, "loader": Process(0, 0), "all": m} for m in alone]
        for label, extractor, overrides in POSTGRES_VARIANTS:
            measures = []
            for _ in range(runs):
                with database() as name:
                    config = plugin_config(
                        "target-postgres", {**pg_env, "TARGET_POSTGRES_DATABASE": name}, **overrides
                    )
                    measures.append(
                        piped(
                            tap_configs[extractor], catalogs[extractor], "target-postgres", config
                        )
                    )
                    checks.add(digest(name))
                    cdrs = digest(name)[0]
            rows.append(line(f"tap \\| {label}", measures, cdrs))
        rows.insert(
            0,
            line("tap-tenios alone (output discarded)", tap_m, cdrs).replace(
                "| nan | tap |", "| – | – |"
            ),
        )
        duck = []
        for _ in range(runs):
            config = plugin_config("target-duckdb", env, filepath=str(workdir / "b.duckdb"))
            (workdir / "b.duckdb").unlink(missing_ok=True)
            duck.append(
                piped(tap_configs["tap-tenios"], catalogs["tap-tenios"], "target-duckdb", config)
            )
        rows.append(line("tap \\| target-duckdb (defaults)", duck, cdrs))

        e2e = []
        for job, loader_env, label in (
            (["tenios-to-postgres"], pg_env, "`meltano run tenios-to-postgres`"),
            (
                ["tenios-to-duckdb"],
                {**env, "TARGET_DUCKDB_FILEPATH": str(workdir / "e.duckdb")},
                "`meltano run tenios-to-duckdb`",
            ),
        ):
            walls = []
            for _ in range(runs):
                with database() as name:
                    walls.append(end_to_end(job, {**loader_env, "TARGET_POSTGRES_DATABASE": name}))
                    if "postgres" in job[0]:
                        checks.add(digest(name))
            wall = statistics.median(m.wall for m in walls)
            cpu = statistics.median(m.cpu for m in walls)
            e2e.append(f"| {label} | {cdrs / wall:,.0f} | {wall:.1f} | {cpu:.1f} (all processes) |")
    if len(checks) != 1:
        raise SystemExit(f"the PostgreSQL loads differ: {checks}")
    return [
        machine(runs),
        "",
        f"{cdrs:,} CDRs (25 days), zero latency; the emulator runs in its own process.",
        "",
        "| pipeline | rows/s | wall s | tap CPU s | loader CPU s | bound by |",
        "|---|---:|---:|---:|---:|---|",
        *rows,
        "",
        "| end to end, as shipped | rows/s | wall s | CPU s |",
        "|---|---:|---:|---|",
        *e2e,
        "",
        f"Every PostgreSQL load above gave the same {cdrs:,} rows, value for value.",
    ]


def machine(runs: int) -> str:
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"model name\s*:\s*(.+)", cpuinfo.read_text())
        model = found.group(1).strip() if found else model
    return (
        f"Measured on {model}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; median of {runs} run(s)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--write", action="store_true", help="put the table into README.md")
    args = parser.parse_args()
    table = "\n".join(run(args.runs))
    print(table)
    if args.write:
        text = README.read_text()
        begin, end = MARKERS
        start, stop = text.index(begin) + len(begin), text.index(end)
        README.write_text(text[:start] + "\n" + table + "\n" + text[stop:])


if __name__ == "__main__":
    main()
