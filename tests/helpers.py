"""Shared test helpers: datasets, configurations, and ways to run the tap and Meltano.

Plain functions and classes, imported by test modules, by ``conftest.py`` (which
holds the fixtures) and by the fault campaign script. Nothing here starts a server
or touches the network on import.

``run_tap`` runs the tap in this process against an emulator, with retry waits
recorded, not slept: a run's Singer messages, the waits it asked for, and the error
it stopped with, if any.
"""

from __future__ import annotations

import http.server
import importlib.util
import io
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import Leg, generate, make_call
from tap_tenios.streams import TeniosStream
from tap_tenios.tap import TapTenios
from tap_tenios.transport import Transport

UTC = timezone.utc
KEY = "5b0c1f3e-7a2d-4c11-9e8f-secret-test-key"
START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 4, tzinfo=UTC)
ROOT = Path(__file__).resolve().parent.parent
#: The PostgreSQL server the warehouse tests load into (``scripts/postgres.sh start``).
PG_DSN = os.environ.get("TENIOS_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:15432/postgres")
MELTANO = shutil.which("meltano", path=str(Path(sys.executable).parent)) or shutil.which("meltano")

__all__ = [
    "END",
    "KEY",
    "MELTANO",
    "ROOT",
    "START",
    "UTC",
    "CliResult",
    "FakeClock",
    "Run",
    "dataset",
    "documented_commands",
    "edge_legs",
    "free_port",
    "in_range",
    "item",
    "load_script",
    "log_lines",
    "make_config",
    "meltano",
    "moved",
    "parse_messages",
    "pipeline_env",
    "run_cli",
    "run_tap",
    "run_until",
    "select",
    "tap_command",
    "write_json",
]


class FakeClock:
    """Time that passes only when the tap waits."""

    def __init__(self) -> None:
        self.moment = 1000.0
        self.waits: list[float] = []
        self.lock = threading.Lock()

    def now(self) -> float:
        with self.lock:
            return self.moment

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.waits.append(seconds)
            self.moment += seconds


@dataclass
class Run:
    """What one tap run wrote, waited and raised."""

    messages: list[dict[str, Any]]
    waits: list[float] = field(default_factory=list)
    error: BaseException | None = None

    def records(self, stream: str = "cdrs") -> list[dict[str, Any]]:
        return [
            m["record"] for m in self.messages if m["type"] == "RECORD" and m["stream"] == stream
        ]

    @property
    def states(self) -> list[dict[str, Any]]:
        return [m["value"] for m in self.messages if m["type"] == "STATE"]

    @property
    def final_state(self) -> dict[str, Any]:
        return self.states[-1]


def parse_messages(text: str) -> list[dict[str, Any]]:
    """Messages with numbers as exact ``Decimal`` (as a careful target reads them)."""
    return [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line.strip()]


def select(tap: TapTenios, streams: set[str], deselect: tuple[str, ...] = ()) -> None:
    """Select ``streams`` only, without the fields in ``deselect``."""
    for entry in tap.catalog.streams:
        entry.metadata.root.selected = entry.tap_stream_id in streams
        for name in deselect:
            entry.metadata[("properties", name)].selected = False


def pace(tap: TapTenios, clock: FakeClock) -> None:
    """Give every stream of ``tap`` a transport on ``clock``'s time, its waits recorded."""
    for stream in tap.streams.values():
        if isinstance(stream, TeniosStream):
            real = stream.transport
            stream.transport = Transport(
                real.url,
                str(stream.config["access_key"]),
                timeout=real.timeout,
                tries=real.tries,
                concurrency=stream.settings.max_concurrency,
                user_agent=real.user_agent,
                logger=real.logger,
                stop=stream.stopping,
                clock=clock.now,
                sleep=clock.sleep,
                observe=real.observe,
            )


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    streams: tuple[str, ...] = ("cdrs",),
    deselect: tuple[str, ...] = (),
    *,
    real_waits: bool = False,
) -> Run:
    """One sync in this process; an exception ends up in ``Run.error`` with everything
    written before it. Retry waits are recorded, not slept, unless ``real_waits``.
    """
    clock = FakeClock()
    saved = sys.stdout
    buffer = io.BytesIO()
    out = io.TextIOWrapper(buffer, encoding="utf-8")
    error: BaseException | None = None
    try:
        sys.stdout = out
        tap = TapTenios(config=config, state=state or {}, parse_env_config=False)
        if not real_waits:
            pace(tap, clock)
        select(tap, set(streams), deselect)
        tap.sync_all()
    except Exception as exc:
        error = exc
    finally:
        out.flush()
        sys.stdout = saved
    return Run(parse_messages(buffer.getvalue().decode()), clock.waits, error)


def edge_legs() -> list[Leg]:
    """Calls that start exactly on window edges, and two legs sharing one instant."""
    rng = random.Random(99)
    legs: list[Leg] = []
    for moment in (
        START,
        START + timedelta(days=1),
        START + timedelta(days=2),
        START + timedelta(days=1, seconds=-1),
        END - timedelta(seconds=1),
        END,
    ):
        legs.extend(make_call(rng, moment))
    twin = make_call(rng, START + timedelta(hours=12))
    legs.extend(twin)
    legs.extend(make_call(rng, START + timedelta(hours=12)))
    return legs


def dataset(calls_per_day: int = 60, seed: int = 3) -> list[Leg]:
    """Three days of calls, plus the edge cases; a few legs start after END on purpose."""
    return generate(START, END, calls_per_day, seed=seed) + edge_legs()


def moved(leg: Leg, start: datetime) -> Leg:
    """``leg`` starting at ``start`` instead (e.g. off the whole second)."""
    return Leg(leg.uuid, start, leg.visible_at, {**leg.fields, "start_stamp": start})


def in_range(legs: list[Leg], start: datetime = START, end: datetime = END) -> set[str]:
    return {leg.uuid for leg in legs if start <= leg.start < end}


def item(**changes: Any) -> dict[str, Any]:
    """One documented API item (as parsed from JSON), with ``changes`` applied."""
    base: dict[str, Any] = {
        "uuid": "leg-1",
        "main_leg_uuid": None,
        "bleg_uuid": "leg-2",
        "call_type": "INBOUND",
        "start_stamp": "2024-03-01 12:00:00",
        "answer_stamp": None,
        "end_stamp": "2024-03-01 12:00:30",
        "duration": 30,
        "billusec": 0,
        "cost": Decimal("0.000100"),
        "prepaid": False,
        "hangup_cause": "NO_ANSWER",
        "callerid_number": "+4915100000000",
        "callerid_name": None,
        "destination_number": "+498005550100",
        "source_type": "MOBILE",
        "routing_status": None,
        "billing_status": None,
    }
    base.update(changes)
    return base


def make_config(url: str, **overrides: Any) -> dict[str, Any]:
    """A tap configuration for the test range against ``url``; ``None`` drops a setting."""
    config: dict[str, Any] = {
        "access_key": KEY,
        "start_date": START.isoformat(),
        "end_date": END.isoformat(),
        "api_url": url,
        "page_size": 50,
        "lookback_minutes": 0,
        "request_timeout_seconds": 5,
    }
    config.update(overrides)
    return {k: v for k, v in config.items() if v is not None}


@dataclass
class CliResult:
    returncode: int
    stdout: str
    stderr: str

    @property
    def messages(self) -> list[dict[str, Any]]:
        return parse_messages(self.stdout)


def write_json(tmp_path: Path, name: str, content: dict[str, Any]) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(content))
    return path


def tap_command(
    tmp_path: Path, config: dict[str, Any], state: dict[str, Any] | None = None
) -> list[str]:
    """The console script's command line, with ``config`` (and ``state``) as files."""
    command = [
        sys.executable,
        "-m",
        "tap_tenios",
        "--config",
        str(write_json(tmp_path, "config.json", config)),
    ]
    if state is not None:
        command += ["--state", str(write_json(tmp_path, "state.json", state))]
    return command


def run_cli(
    tmp_path: Path,
    config: dict[str, Any],
    *args: str,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> CliResult:
    """The console script as a user runs it."""
    done = subprocess.run(
        [*tap_command(tmp_path, config, state), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


#: One line of the tap's log on stderr: time, level, logger, message.
LOG_LINE = re.compile(r"^\S+ \S+ \| (?P<level>\w+)\s+\| (?P<logger>\S+)\s+\| (?P<message>.*)$")


def log_lines(stderr: str) -> list[tuple[str, str]]:
    """(level, message) of every line; a line that is not a log line (a traceback) fails."""
    parsed = [LOG_LINE.match(line) for line in stderr.splitlines()]
    assert all(parsed), stderr[-3000:]
    return [(m["level"], m["message"]) for m in parsed if m]


def run_until(
    tmp_path: Path,
    config: dict[str, Any],
    state: dict[str, Any] | None,
    messages_before_kill: int,
    sig: signal.Signals,
    *,
    kind: str = "RECORD",
    delay: float = 0.0,
) -> list[dict[str, Any]]:
    """Run the CLI and send ``sig`` (``delay`` seconds) after it has written that many
    cdrs messages of ``kind`` (RECORD, or BATCH: a file announced)."""
    process = subprocess.Popen(
        tap_command(tmp_path, config, state or None),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    seen = 0
    wanted = f'{{"type":"{kind}","stream":"cdrs"'
    assert process.stdout is not None
    for line in process.stdout:
        lines.append(line)
        if line.startswith(wanted):
            seen += 1
            if seen == messages_before_kill:
                time.sleep(delay)
                process.send_signal(sig)
                break
    lines.extend(process.stdout.readlines() if sig != signal.SIGKILL else [])
    process.wait(timeout=60)
    # A killed process may leave half a line: it was never a message.
    return parse_messages("".join(line for line in lines if line.endswith("\n")))


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def load_script(name: str) -> Any:
    """A module from ``scripts/`` (they are not part of the package)."""
    path = ROOT / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


def documented_commands(document: Path, name: str, test: str) -> list[str]:
    """The shell lines of ``document``'s block between the markers
    ``<!-- NAME: run as written by TEST ... -->`` and ``<!-- end of NAME -->``."""
    text = document.read_text()
    begin = text.index(f"<!-- {name}: run as written by {test}")
    block = text[begin : text.index(f"<!-- end of {name} -->", begin)]
    code = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in code.splitlines() if line.strip()]


def meltano(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path = ROOT,
    succeeds: bool = True,
) -> subprocess.CompletedProcess[str]:
    """``meltano ARGS`` in this project (its ``meltano.yml``) or the one in ``cwd``;
    it must succeed, or with ``succeeds=False`` fail."""
    if MELTANO is None:
        pytest.skip("meltano is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [MELTANO, *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert (done.returncode == 0) == succeeds, done.stderr[-4000:]
    return done


def pipeline_env(tmp_path: Path, api_url: str, **tap_settings: str) -> dict[str, str]:
    """Environment for ``meltano run`` against an emulator, with this test's own state."""
    return {
        **os.environ,
        "MELTANO_ENVIRONMENT": "emulator",
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_TENIOS_API_URL": api_url,
        "TAP_TENIOS_ACCESS_KEY": KEY,
        "TAP_TENIOS_START_DATE": START.isoformat(),
        "TAP_TENIOS_END_DATE": END.isoformat(),
        **{f"TAP_TENIOS_{name.upper()}": value for name, value in tap_settings.items()},
    }


def query(database: str, sql: str) -> list[tuple[Any, ...]]:
    """Run ``sql`` in ``database`` on the test server; its rows (none for a command)."""
    import psycopg

    dsn = psycopg.conninfo.make_conninfo(PG_DSN, dbname=database)
    with psycopg.connect(dsn) as connection:
        cursor = connection.execute(sql)
        return cursor.fetchall() if cursor.description else []


@contextmanager
def http_server(
    handler: type[http.server.BaseHTTPRequestHandler], **attributes: Any
) -> Iterator[tuple[str, http.server.ThreadingHTTPServer]]:
    """A stand-in API on 127.0.0.1 answering with ``handler`` (for answers the
    emulator never gives); ``attributes`` are set on the server for the handler."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in attributes.items():
        setattr(server, name, value)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", server
    finally:
        server.shutdown()
        server.server_close()
