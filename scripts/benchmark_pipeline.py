"""``make benchmark`` (pipeline part): where a whole ``meltano run`` spends its time.

Against the bundled emulator (its own process, pages kept once rendered, every page
read once before anything is measured) with about 100k CDRs and no latency:

* the tap alone, its output thrown away, with RECORD messages and with BATCH files:
  what the extraction side can do;
* target-postgres alone, reading a file of RECORD messages, and BATCH files, written
  beforehand: what the loader can do on its own;
* the tap piped into target-postgres, both ways, each process measured on its own;
* ``meltano run`` of the PostgreSQL job's tap and loader, with BATCH files
  (``batch_config`` set through the environment, over meltano.yml's) and with RECORD
  messages (``tap-tenios--records`` where meltano.yml declares it), CPU per process:
  Meltano itself, catalog discovery, the tap, the loader. Once as this repository
  runs it (an editable install: Meltano discovers the catalog on every run) and once
  with the catalog given, as a released package runs from its second run on
  (Meltano caches its catalog).

Ratios: ``meltano run``'s rows/s over the tap alone's (RECORD), and over the loader
alone's (from the RECORD file). Every PostgreSQL load goes into a fresh database and
must be identical to the first: the same rows, every value (instants, and ``cost``
to the last digit, its sum compared with the sum of the tap's own records). Needs
the project's PostgreSQL (``scripts/postgres.sh start``, or ``TENIOS_TEST_PG_DSN``)
and ``meltano install``. Output is the Markdown of docs/performance.md's "The
pipeline at full speed"; nothing asserts a speed.

    python scripts/benchmark_pipeline.py [--runs 3] [--batch-compression none] [--write]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psycopg
from benchmark import cpu_model, free_port  # the same directory

if TYPE_CHECKING:
    import psutil

ROOT = Path(__file__).resolve().parent.parent
DOCUMENT = ROOT / "docs" / "performance.md"
MARKERS = ("<!-- pipeline benchmark table -->", "<!-- end of pipeline benchmark table -->")
MELTANO = str(Path(sys.executable).parent / "meltano")
DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
KEY = "benchmark-key"
#: 25 days of 1,900 calls: 100,914 CDRs (legs) from the emulator's seed.
FIRST_DAY, DAYS, CALLS_PER_DAY = "2024-01-01", 25, 1900
LAST_DAY = "2024-01-26"
#: The BATCH configuration measured: uncompressed JSON Lines (the loader reads them
#: from this machine; gzip would only cost both sides CPU).
BATCH_ENCODING = {"format": "jsonl", "compression": "none"}
#: What the loads' digest compares: every column the tap emits, ``cost`` as a number.
DIGEST = """
SELECT count(*), md5(string_agg(concat_ws('|', uuid, main_leg_uuid, bleg_uuid, call_type,
    start_stamp, answer_stamp, end_stamp, duration, billusec, trim_scale(cost), prepaid,
    hangup_cause, callerid_number, callerid_name, destination_number, source_type,
    routing_status, billing_status), ',' ORDER BY uuid)), sum(cost)::text
FROM tenios.cdrs
"""
#: Each leg's instants and cost as loaded, to compare with the tap's own records.
VALUES = """
SELECT uuid, to_char(start_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    to_char(answer_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
    to_char(end_stamp, 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), cost::text
FROM tenios.cdrs
"""
#: The extractor meltano.yml declares for RECORD messages (where ``tap-tenios`` is set
#: to write BATCH files).
RECORDS = "tap-tenios--records"
#: How often the processes of a ``meltano run`` are sampled for their CPU time.
POLL_SECONDS = 0.05


@dataclass
class Measure:
    """One measured run: wall time, and CPU seconds by process ("tap", "loader", ...)."""

    wall: float
    cpu: dict[str, float] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(self.cpu.values())


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
            "--cache-pages",
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
    server = psycopg.conninfo.conninfo_to_dict(DSN)
    return {
        **os.environ,
        "MELTANO_ENVIRONMENT": "emulator",
        "MELTANO_DATABASE_URI": f"sqlite:///{workdir / 'meltano.db'}",
        "TAP_TENIOS_API_URL": url,
        "TAP_TENIOS_ACCESS_KEY": KEY,
        "TAP_TENIOS_START_DATE": FIRST_DAY,
        "TAP_TENIOS_END_DATE": LAST_DAY,
        "TARGET_POSTGRES_HOST": str(server.get("host", "127.0.0.1")),
        "TARGET_POSTGRES_PORT": str(server.get("port", 5432)),
    }


def meltano(*args: str, env: dict[str, str]) -> str:
    done = subprocess.run(
        [MELTANO, *args], cwd=ROOT, env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(f"meltano {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def batch_config(root: Path) -> dict[str, Any]:
    return {"encoding": BATCH_ENCODING, "storage": {"root": root.as_uri()}}


def plugin_config(plugin: str, env: dict[str, str], path: Path, **overrides: Any) -> Path:
    """The config ``meltano run`` would give ``plugin``, as a file for running it bare."""
    config = json.loads(meltano("config", "--unsafe", "print", plugin, env=env))
    path.write_text(json.dumps({**config, **overrides}))
    return path


def executable(kind: str, plugin: str) -> str:
    return str(ROOT / ".meltano" / kind / plugin / "venv" / "bin" / plugin)


#: Where the measured processes' logs go (shown when one fails).
LOGS = Path(tempfile.gettempdir()) / f"benchmark-pipeline-{os.getpid()}.log"


def finish(process: subprocess.Popen[Any]) -> float:
    """Wait for ``process``; its CPU seconds (with those of children it waited for)."""
    _, status, usage = os.wait4(process.pid, 0)
    if status:
        raise SystemExit(f"{process.args} failed:\n{LOGS.read_text()[-3000:]}")
    return usage.ru_utime + usage.ru_stime


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
class Setup:
    """Everything the measured commands need, written once."""

    workdir: Path
    env: dict[str, str]
    tap_config: Path
    catalog: Path
    batch_root: Path

    def tap(self, *, batch: bool, root: Path | None = None) -> list[str]:
        """The tap's command; with ``batch``, its files go under ``root`` (or the
        folder ``clear_batches`` empties after each measured run).
        """
        config = self.tap_config
        if batch:
            root = root or self.batch_root
            config = self.workdir / f"tap-batch-{root.name}.json"
            if not config.exists():
                settings = json.loads(self.tap_config.read_text())
                settings["batch_config"] = batch_config(root)
                config.write_text(json.dumps(settings))
        tap = executable("extractors", "tap-tenios")
        return [tap, "--config", str(config), "--catalog", str(self.catalog)]

    def loader(self, database: str) -> list[str]:
        # The schema ``meltano run`` gives the loader: tap-tenios's load_schema.
        schema = {"MELTANO_EXTRACT__LOAD_SCHEMA": "tenios"}
        config = plugin_config(
            "target-postgres",
            {**self.env, **schema, "TARGET_POSTGRES_DATABASE": database},
            self.workdir / f"target-postgres-{database}.json",
        )
        return [executable("loaders", "target-postgres"), "--config", str(config)]

    def clear_batches(self) -> None:
        shutil.rmtree(self.batch_root, ignore_errors=True)


def setup(url: str, workdir: Path) -> Setup:
    env = meltano_env(url, workdir)
    config = plugin_config("tap-tenios", env, workdir / "tap.json")
    settings = json.loads(config.read_text())
    settings.pop("batch_config", None)  # RECORD messages; BATCH files: ``Setup.tap``
    config.write_text(json.dumps(settings))
    discover = [executable("extractors", "tap-tenios"), "--config", str(config), "--discover"]
    catalog = workdir / "tap-tenios.catalog.json"
    found = json.loads(subprocess.run(discover, capture_output=True, text=True, check=True).stdout)
    for entry in found["streams"]:  # the selection meltano.yml makes
        for meta in entry["metadata"]:
            if not meta["breadcrumb"]:
                meta["metadata"]["selected"] = True
    catalog.write_text(json.dumps(found))
    return Setup(workdir, env, config, catalog, workdir / "batches")


def tap_alone(s: Setup, *, batch: bool, keep: Path | None = None) -> Measure:
    """The tap, its output thrown away (or kept in ``keep`` for the loader alone)."""
    began = time.perf_counter()
    with LOGS.open("a") as log, (keep or Path(os.devnull)).open("wb") as out:
        root = s.workdir / "kept" if keep else None
        process = subprocess.Popen(s.tap(batch=batch, root=root), stdout=out, stderr=log)
        cpu = finish(process)
    measured = Measure(time.perf_counter() - began, {"tap": cpu})
    if keep is None:
        s.clear_batches()
    return measured


def loader_alone(s: Setup, source: Path, database: str) -> Measure:
    """target-postgres reading a file of Singer messages written beforehand."""
    command = s.loader(database)
    began = time.perf_counter()
    with LOGS.open("a") as log, source.open("rb") as messages:
        process = subprocess.Popen(
            command, stdin=messages, stdout=subprocess.DEVNULL, stderr=log, env=loader_env()
        )
        cpu = finish(process)
    return Measure(time.perf_counter() - began, {"loader": cpu})


def loader_env() -> dict[str, str]:
    return {**os.environ, "PGTZ": "UTC"}  # as meltano.yml sets it


def piped(s: Setup, database: str, *, batch: bool) -> Measure:
    """Tap | loader, the processes ``meltano run`` starts, each measured on its own."""
    command = s.loader(database)
    began = time.perf_counter()
    with LOGS.open("a") as log:
        source = subprocess.Popen(s.tap(batch=batch), stdout=subprocess.PIPE, stderr=log)
        sink = subprocess.Popen(
            command, stdin=source.stdout, stdout=subprocess.DEVNULL, stderr=log, env=loader_env()
        )
    assert source.stdout is not None
    source.stdout.close()
    loader = finish(sink)
    tap = finish(source)
    measured = Measure(time.perf_counter() - began, {"tap": tap, "loader": loader})
    s.clear_batches()
    return measured


def role(command: list[str]) -> str:
    names = {Path(part).name for part in command}
    if "tap-tenios" in names:
        return "discovery" if "--discover" in command else "tap"
    if "target-postgres" in names:
        return "loader"
    return "other"


def end_to_end(s: Setup, database: str, *, batch: bool, catalog: bool) -> Measure:
    """``meltano run tap-tenios target-postgres`` (the job) as a user runs it, with BATCH
    files or RECORD messages; CPU per process.

    Each child's CPU is sampled until it exits (the last ``POLL_SECONDS`` of each may
    be missed); Meltano's own is the rest of the total, which is exact.
    """
    env = {**s.env, "TARGET_POSTGRES_DATABASE": database}
    extractor = "tap-tenios"
    if batch:
        # Over whatever meltano.yml sets, the files in this run's folder.
        env["TAP_TENIOS_BATCH_CONFIG"] = json.dumps(batch_config(s.batch_root))
    elif RECORDS in (ROOT / "meltano.yml").read_text():
        # Meltano merges settings, so none can take away a batch_config meltano.yml
        # sets: RECORD messages come from the extractor declared for them.
        extractor = RECORDS
    if catalog:
        env[f"{extractor.upper().replace('-', '_')}__CATALOG"] = str(s.catalog)
    # As the hourly job runs, except that no state is saved, so each run reads it all.
    command = [MELTANO, "run", "--no-state-update", extractor, "target-postgres"]
    seen: dict[int, tuple[str, float]] = {}
    began = time.perf_counter()
    with LOGS.open("a") as log:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log)
        import psutil  # Meltano's dependency: only the `dev` extra has it

        parent = psutil.Process(process.pid)
        while True:
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            with_children(parent, seen)
            time.sleep(POLL_SECONDS)
    wall = time.perf_counter() - began
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode:
        raise SystemExit(f"meltano run failed:\n{LOGS.read_text()[-3000:]}")
    cpu: dict[str, float] = {}
    for name, seconds in seen.values():
        cpu[name] = cpu.get(name, 0.0) + seconds
    cpu["meltano"] = max(0.0, usage.ru_utime + usage.ru_stime - sum(cpu.values()))
    s.clear_batches()
    return Measure(wall, cpu)


def with_children(parent: psutil.Process, seen: dict[int, tuple[str, float]]) -> None:
    """Each descendant's CPU so far, by pid, with its role (known from its command line
    while it runs: an exiting process shows an empty one).
    """
    import psutil

    for child in parent.children(recursive=True):
        try:
            with child.oneshot():
                times = child.cpu_times()
                known = seen.get(child.pid, ("other", 0.0))[0]
                name = known if known != "other" else role(child.cmdline())
                seen[child.pid] = (name, times.user + times.system)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue


@contextmanager
def database() -> Iterator[str]:
    name = f"tenios_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(DSN, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
        try:
            yield name
        finally:
            admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


def connect(name: str) -> psycopg.Connection[Any]:
    return psycopg.connect(psycopg.conninfo.make_conninfo(DSN, dbname=name))


def digest(name: str) -> tuple[int, str, str]:
    with connect(name) as connection:
        row = connection.execute(DIGEST).fetchone()
    assert row is not None
    return int(row[0]), str(row[1]), str(row[2])


def check_values(name: str, records: Path) -> None:
    """The load holds the tap's own records: each leg's instants and exact cost."""
    emitted: dict[str, tuple[str, str | None, str, Decimal]] = {}
    with records.open("rb") as lines:
        for line in lines:
            message = json.loads(line, parse_float=Decimal)
            if message.get("type") == "RECORD" and message["stream"] == "cdrs":
                r = message["record"]
                cost = Decimal(str(r["cost"]))
                emitted[r["uuid"]] = (r["start_stamp"], r["answer_stamp"], r["end_stamp"], cost)
    with connect(name) as connection:
        loaded = {
            row[0]: (row[1], row[2], row[3], Decimal(row[4]))
            for row in connection.execute(VALUES).fetchall()
        }
    if loaded != emitted:
        wrong = sorted(u for u in emitted.keys() | loaded.keys() if emitted.get(u) != loaded.get(u))
        raise SystemExit(f"the load differs from the tap's records for {len(wrong)} legs")


def medians(measures: list[Measure]) -> Measure:
    names = {name for m in measures for name in m.cpu}
    return Measure(
        statistics.median(m.wall for m in measures),
        {n: statistics.median(m.cpu.get(n, 0.0) for m in measures) for n in sorted(names)},
    )


PROCESSES = ("meltano", "discovery", "tap", "loader")  # anything else counts in "all" only


def row(label: str, m: Measure, rows: int, baselines: tuple[float, float] | None) -> str:
    cells = [f"{m.cpu[n]:.1f}" if n in m.cpu else "–" for n in PROCESSES]
    speed = rows / m.wall
    ratios = [f"**{speed / b:.2f}**" for b in baselines] if baselines else ["–", "–"]
    return (
        f"| {label} | {speed:,.0f} | {' | '.join(ratios)} | {m.wall:.1f} | {' | '.join(cells)} "
        f"| {m.total:.1f} |"
    )


def run(runs: int) -> list[str]:
    loads: set[tuple[int, str, str]] = set()
    results: list[tuple[str, Measure]] = []
    with tempfile.TemporaryDirectory() as tmp, emulator() as url:
        s = setup(url, Path(tmp))
        compile_bytecode()
        records_file, batch_file = s.workdir / "records.jsonl", s.workdir / "batch.jsonl"
        tap_alone(s, batch=False, keep=records_file)  # renders every page once
        tap_alone(s, batch=True, keep=batch_file)  # files kept for the loader alone
        tap_sum = sum(
            (
                Decimal(str(json.loads(line, parse_float=Decimal)["record"]["cost"]))
                for line in records_file.open("rb")
                if line.startswith(b'{"type":"RECORD","stream":"cdrs"')
            ),
            Decimal(0),
        )

        def load(measure: Callable[[str], Measure]) -> Measure:
            with database() as name:
                measured = measure(name)
                found = digest(name)
                if found not in loads:
                    check_values(name, records_file)
                    if Decimal(found[2]) != tap_sum:
                        raise SystemExit(f"sum(cost) {found[2]} != the tap's {tap_sum}")
                loads.add(found)
            return measured

        cases: list[tuple[str, Callable[[], Measure]]] = [
            ("tap alone, RECORD messages (baseline)", lambda: tap_alone(s, batch=False)),
            ("tap alone, BATCH files", lambda: tap_alone(s, batch=True)),
            (
                "target-postgres alone, from a RECORD file",
                lambda: load(lambda db: loader_alone(s, records_file, db)),
            ),
            (
                "target-postgres alone, from BATCH files",
                lambda: load(lambda db: loader_alone(s, batch_file, db)),
            ),
            ("tap \\| target-postgres, RECORD", lambda: load(lambda db: piped(s, db, batch=False))),
            ("tap \\| target-postgres, BATCH", lambda: load(lambda db: piped(s, db, batch=True))),
        ]
        for batch in (False, True):
            for catalog in (False, True):
                what = "BATCH" if batch else "RECORD"
                how = "catalog cached" if catalog else "discovery every run"
                cases.append(
                    (
                        f"`meltano run`, {what}, {how}",
                        lambda b=batch, c=catalog: load(
                            lambda db: end_to_end(s, db, batch=b, catalog=c)
                        ),
                    )
                )
        for label, measure in cases:
            print(f"  {label} ...", file=sys.stderr, flush=True)
            results.append((label, medians([measure() for _ in range(runs)])))
    if len(loads) != 1:
        raise SystemExit(f"the PostgreSQL loads differ: {loads}")
    ((cdrs, _, total),) = loads
    # The pipeline's speed over the tap's alone, and over the loader's alone from a
    # file of RECORD messages (what a user would run the loader on instead).
    baselines = (cdrs / results[0][1].wall, cdrs / results[2][1].wall)
    lines = [row(label, m, cdrs, baselines if "meltano" in label else None) for label, m in results]
    return [
        machine(runs),
        "",
        f"{cdrs:,} CDRs (25 days), zero latency; the emulator runs in its own process and",
        "serves pages it has already rendered. CPU seconds are each process's own (rusage;",
        f"a `meltano run`'s children sampled every {POLL_SECONDS * 1000:.0f} ms, Meltano's own the",
        "rest of the exact total). Ratios: rows/s over the tap alone's (RECORD) and over "
        "target-postgres alone's from a RECORD file. BATCH: "
        f"`{json.dumps(BATCH_ENCODING)}`.",
        "",
        "| pipeline | rows/s | ÷ tap alone | ÷ loader alone | wall s | CPU s: Meltano "
        "| discovery | tap | loader | all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        *lines,
        "",
        f"Every PostgreSQL load above gave the same {cdrs:,} rows, value for value: each",
        f"leg's instants and `cost` as the tap emitted them, `sum(cost)` = {total}.",
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
    parser.add_argument(
        "--batch-compression",
        choices=("none", "gzip"),
        default=BATCH_ENCODING["compression"],
        help="compression of the BATCH files measured",
    )
    parser.add_argument("--write", action="store_true", help="write docs/performance.md")
    args = parser.parse_args()
    BATCH_ENCODING["compression"] = args.batch_compression
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
