"""``make benchmark`` (pipeline part): where a whole ``meltano run`` spends its time.

Against the bundled emulator (its own process) with about 100k CDRs and no latency:

* the tap alone, its output thrown away: what the extraction side can do;
* the tap piped into each loader, with the loader settings that matter, each process
  measured on its own (CPU seconds from its rusage): which side bounds the pipeline;
* ``meltano run`` end to end, as users run it, with the settings ``meltano.yml`` ships.

Every PostgreSQL load goes into a fresh database and is checked against the first:
the same rows, the same values (``cost`` compared as a number). Needs the project's
PostgreSQL (``scripts/postgres.sh start``) and ``meltano install``. Output is the
Markdown table of docs/performance.md's "The pipeline at full speed"; nothing asserts a speed.

    python scripts/benchmark_pipeline.py [--runs 1] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from benchmark import cpu_model, free_port  # the same directory

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "performance.md"
MARKERS = ("<!-- pipeline benchmark table -->", "<!-- end of pipeline benchmark table -->")
MELTANO = str(Path(sys.executable).parent / "meltano")
DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
KEY = "benchmark-key"
#: 25 days of 1,900 calls: 100,914 CDRs (legs) from the emulator's seed.
FIRST_DAY, DAYS, CALLS_PER_DAY = "2024-01-01", 25, 1900
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
    peak_mib: float = 0.0


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


#: Where the measured processes' logs go (shown when one fails).
LOGS = Path(tempfile.gettempdir()) / f"benchmark-pipeline-{os.getpid()}.log"


def wait(process: subprocess.Popen[Any], began: float) -> Process:
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{process.args} failed:\n{LOGS.read_text()[-3000:]}")
    cpu = usage.ru_utime + usage.ru_stime
    return Process(time.perf_counter() - began, cpu, usage.ru_maxrss / 1024)


@dataclass
class Extractor:
    """A tap config and catalog as ``meltano run`` would pass them."""

    config: Path
    catalog: Path

    def command(self) -> list[str]:
        tap = executable("extractors", "tap-tenios")
        return [tap, "--config", str(self.config), "--catalog", str(self.catalog)]


def extractor(name: str, env: dict[str, str], workdir: Path) -> Extractor:
    config = plugin_config(name, env)
    catalog = workdir / f"{name}.catalog.json"
    discover = [executable("extractors", "tap-tenios"), "--config", str(config), "--discover"]
    catalog.write_text(subprocess.run(discover, capture_output=True, text=True, check=True).stdout)
    return Extractor(config, catalog)


def compile_bytecode() -> None:
    """Byte-compile Meltano and the plugins first, as their first run on any machine does.

    Without it, an environment that never writes bytecode (PYTHONDONTWRITEBYTECODE)
    would compile every module again in every measured process: seconds each.
    """
    venvs = [Path(sys.executable).parent.parent, *ROOT.glob(".meltano/*/*/venv")]
    for venv in venvs:
        for packages in venv.glob("lib/python*/site-packages"):
            subprocess.run(
                [sys.executable, "-m", "compileall", "-q", "-j", "0", str(packages)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                check=False,
            )


@dataclass
class Piped:
    wall: float
    tap_cpu: float
    loader_cpu: float
    loader_mib: float = 0.0


def tap_alone(tap: Extractor) -> Piped:
    began = time.perf_counter()
    with LOGS.open("a") as log:
        process = subprocess.Popen(tap.command(), stdout=subprocess.DEVNULL, stderr=log)
    done = wait(process, began)
    return Piped(done.wall, done.cpu, 0.0)


def piped(tap: Extractor, loader: str, loader_config: Path) -> Piped:
    """Tap | loader, the processes ``meltano run`` starts, each measured on its own."""
    began = time.perf_counter()
    with LOGS.open("a") as log:
        source = subprocess.Popen(tap.command(), stdout=subprocess.PIPE, stderr=log)
        sink = subprocess.Popen(
            [executable("loaders", loader), "--config", str(loader_config)],
            stdin=source.stdout,
            stdout=subprocess.DEVNULL,
            stderr=log,
            env={**os.environ, "PGTZ": "UTC"},  # as meltano.yml sets it
        )
    assert source.stdout is not None
    source.stdout.close()
    sink_done = wait(sink, began)
    source_done = wait(source, began)
    return Piped(sink_done.wall, source_done.cpu, sink_done.cpu, sink_done.peak_mib)


def end_to_end(job: str, env: dict[str, str]) -> Process:
    """``meltano run JOB`` as a user runs it: wall time and the CPU of every process."""
    before = os.times()
    began = time.perf_counter()
    # As the hourly job runs, except that no state is saved, so each run reads it all.
    meltano("run", "--no-state-update", job, env=env)
    after = os.times()
    user = after.children_user - before.children_user
    system = after.children_system - before.children_system
    return Process(time.perf_counter() - began, user + system)


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


METADATA = {"add_record_metadata": True, "activate_version": True}  # the loader's defaults
POSTGRES_VARIANTS: list[tuple[str, str, dict[str, Any]]] = [
    # label, extractor, loader settings over meltano.yml's
    (
        "defaults (validate_records, INSERT, metadata), cost a number",
        "tap-tenios--number",
        {**METADATA, "validate_records": True, "use_copy": False},
    ),
    ("validate_records: false", "tap-tenios--number", {**METADATA, "use_copy": False}),
    ("… and use_copy: true, cost DECIMAL(15, 6)", "tap-tenios", METADATA),
    ("… and add_record_metadata: false (**shipped**)", "tap-tenios", {}),
    ("… and batch_size_rows: 100000 (not shipped)", "tap-tenios", {"batch_size_rows": 100000}),
]


def row(label: str, measures: list[Piped], rows: int) -> str:
    wall = statistics.median(m.wall for m in measures)
    tap = statistics.median(m.tap_cpu for m in measures)
    loader = statistics.median(m.loader_cpu for m in measures)
    if not loader:
        return f"| {label} | {rows / wall:,.0f} | {wall:.1f} | {tap:.1f} | – | – | – |"
    mib = statistics.median(m.loader_mib for m in measures)
    bound = "loader" if loader > tap else "tap"
    return (
        f"| {label} | {rows / wall:,.0f} | {wall:.1f} | {tap:.1f} | {loader:.1f} | {mib:,.0f} "
        f"| {bound} |"
    )


def run(runs: int) -> list[str]:
    lines: list[str] = []
    loads: set[tuple[int, str]] = set()
    with tempfile.TemporaryDirectory() as tmp, emulator() as url:
        workdir = Path(tmp)
        env = meltano_env(url, workdir)
        server = psycopg.conninfo.conninfo_to_dict(DSN)
        env["TARGET_POSTGRES_HOST"] = str(server.get("host", "127.0.0.1"))
        env["TARGET_POSTGRES_PORT"] = str(server.get("port", 5432))
        taps = {
            name: extractor(name, env, workdir) for name in ("tap-tenios", "tap-tenios--number")
        }

        def into_postgres(tap: str, **overrides: Any) -> Piped:
            with database() as name:
                pg_env = {**env, "TARGET_POSTGRES_DATABASE": name}
                config = plugin_config("target-postgres", pg_env, **overrides)
                measured = piped(taps[tap], "target-postgres", config)
                loads.add(digest(name))
            return measured

        def into_duckdb() -> Piped:
            path = workdir / "bench.duckdb"
            path.unlink(missing_ok=True)
            config = plugin_config("target-duckdb", env, filepath=str(path))
            return piped(taps["tap-tenios--number"], "target-duckdb", config)

        compile_bytecode()
        alone = [tap_alone(taps["tap-tenios"]) for _ in range(runs)]
        postgres = [
            (label, [into_postgres(tap, **overrides) for _ in range(runs)])
            for label, tap, overrides in POSTGRES_VARIANTS
        ]
        duckdb = [into_duckdb() for _ in range(runs)]
        (cdrs, _), *_ = loads
        lines.append(row("tap-tenios alone (output discarded)", alone, cdrs))
        lines += [row(f"tap \\| target-postgres: {label}", m, cdrs) for label, m in postgres]
        lines.append(row("tap-tenios--number \\| target-duckdb (defaults)", duckdb, cdrs))

        shipped = []
        for job in ("tenios-to-postgres", "tenios-to-duckdb"):
            measures = []
            for _ in range(runs):
                with database() as name:
                    job_env = {
                        **env,
                        "TARGET_POSTGRES_DATABASE": name,
                        "TARGET_DUCKDB_FILEPATH": str(workdir / f"{name}.duckdb"),
                    }
                    measures.append(end_to_end(job, job_env))
                    if "postgres" in job:
                        loads.add(digest(name))
            wall = statistics.median(m.wall for m in measures)
            cpu = statistics.median(m.cpu for m in measures)
            shipped.append(f"| `meltano run {job}` | {cdrs / wall:,.0f} | {wall:.1f} | {cpu:.1f} |")
    if len(loads) != 1:
        raise SystemExit(f"the PostgreSQL loads differ: {loads}")
    return [
        machine(runs),
        "",
        f"{cdrs:,} CDRs (25 days), zero latency; the emulator runs in its own process.",
        "CPU is each process's own (rusage); wall includes the PostgreSQL server's work.",
        "Bytecode compiled beforehand, as after any first run.",
        "",
        "| pipeline | rows/s | wall s | tap CPU s | loader CPU s | loader peak MiB | bound by |",
        "|---|---:|---:|---:|---:|---:|---|",
        *lines,
        "",
        "| end to end, as shipped | rows/s | wall s | CPU s, all processes |",
        "|---|---:|---:|---:|",
        *shipped,
        "",
        f"Every PostgreSQL load above gave the same {cdrs:,} rows, value for value",
        "(cost compared as a number).",
    ]


def machine(runs: int) -> str:
    return (
        f"Measured on {cpu_model()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}; median of {runs} run(s)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()
    try:
        table = "\n".join(run(args.runs))
    finally:
        LOGS.unlink(missing_ok=True)
    print(table)
    if args.write:
        text = DOCUMENT.read_text()
        begin, end = MARKERS
        start, stop = text.index(begin) + len(begin), text.index(end)
        DOCUMENT.write_text(text[:start] + "\n" + table + "\n" + text[stop:])


if __name__ == "__main__":
    main()
