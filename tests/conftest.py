"""Shared fixtures: an emulator on 127.0.0.1, and ways to run the tap against it.

``run_tap`` runs the tap in this process (fast; waits are injected, never slept);
``run_cli`` runs the real console script in a subprocess (kill tests, secrets).
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.client import TeniosStream
from tap_tenios.emulator import Behaviour, Emulator, Leg, RunningEmulator, generate, make_call
from tap_tenios.tap import TapTenios

UTC = timezone.utc
KEY = "5b0c1f3e-7a2d-4c11-9e8f-secret-test-key"
START = datetime(2024, 3, 1, tzinfo=UTC)
END = datetime(2024, 3, 4, tzinfo=UTC)


def edge_legs() -> list[Leg]:
    """Calls that start exactly on window edges, and two legs sharing one instant."""
    import random

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


def in_range(legs: list[Leg], start: datetime = START, end: datetime = END) -> set[str]:
    return {leg.uuid for leg in legs if start <= leg.start < end}


@dataclass
class Run:
    """What one tap run wrote."""

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


@pytest.fixture
def legs() -> list[Leg]:
    return dataset()


@pytest.fixture
def serve() -> Iterator[Callable[..., RunningEmulator]]:
    """Start emulators (stopped at teardown): ``serve(legs, order="unsorted", ...)``."""
    running: list[RunningEmulator] = []

    def start(legs: list[Leg], **behaviour: Any) -> RunningEmulator:
        behaviour.setdefault("access_key", KEY)
        behaviour.setdefault("now", END + timedelta(days=30))
        emulator = RunningEmulator(Emulator(legs, Behaviour(**behaviour))).start()
        running.append(emulator)
        return emulator

    yield start
    for emulator in running:
        emulator.stop()


def make_config(url: str, **overrides: Any) -> dict[str, Any]:
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


def select_only(tap: TapTenios, streams: set[str], deselect: tuple[str, ...] = ()) -> None:
    for entry in tap.catalog.streams:
        selected = entry.tap_stream_id in streams
        entry.metadata.root.selected = selected
        for field_name in deselect:
            entry.metadata[("properties", field_name)].selected = False


class FakeClock:
    """Time that passes only when the tap waits: waits are asserted, never slept."""

    def __init__(self) -> None:
        self._now = 1000.0
        self.waits: list[float] = []
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.waits.append(seconds)
            self._now += seconds


@pytest.fixture
def run_tap(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Run]:
    """Run the tap in this process; retry waits are recorded, not slept.

    With ``fails=True`` the run's exception is kept in ``Run.error`` together with
    everything written before it, instead of being raised.
    """

    def run(
        config: dict[str, Any],
        state: dict[str, Any] | None = None,
        streams: tuple[str, ...] = ("cdrs",),
        *,
        fails: bool = False,
        deselect: tuple[str, ...] = (),
    ) -> Run:
        clock = FakeClock()
        monkeypatch.setattr(TeniosStream, "sleep", staticmethod(clock.sleep))
        monkeypatch.setattr(TeniosStream, "clock", staticmethod(clock.now))
        buffer = io.BytesIO()
        out = io.TextIOWrapper(buffer, encoding="utf-8")
        error: BaseException | None = None
        with monkeypatch.context() as patch:
            patch.setattr(sys, "stdout", out)
            try:
                tap = TapTenios(config=config, state=state or {}, parse_env_config=False)
                select_only(tap, set(streams), deselect)
                tap.sync_all()
            except Exception as exc:
                if not fails:
                    raise
                error = exc
            out.flush()
        result = Run(parse_messages(buffer.getvalue().decode()), clock.waits, error)
        if fails and error is None:
            pytest.fail("the run was expected to fail but succeeded")
        return result

    return run


def parse_messages(text: str) -> list[dict[str, Any]]:
    """Messages with numbers as exact ``Decimal`` (as a careful target reads them)."""
    return [json.loads(line, parse_float=Decimal) for line in text.splitlines() if line.strip()]


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


def run_cli(
    tmp_path: Path,
    config: dict[str, Any],
    *args: str,
    state: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> CliResult:
    """The console script as a user runs it."""
    command = [
        sys.executable,
        "-m",
        "tap_tenios",
        "--config",
        str(write_json(tmp_path, "config.json", config)),
        *args,
    ]
    if state is not None:
        command += ["--state", str(write_json(tmp_path, "state.json", state))]
    done = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )
    return CliResult(done.returncode, done.stdout, done.stderr)


def load_script(name: str) -> Any:
    """A module from ``scripts/`` (they are not part of the package)."""
    import importlib.util

    path = Path(__file__).resolve().parent.parent / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
