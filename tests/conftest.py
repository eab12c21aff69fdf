"""Shared fixtures: an emulator on 127.0.0.1, and ways to run the tap against it.

``run_tap`` runs the tap in this process (fast; waits are injected, never slept);
``run_cli`` runs the real console script in a subprocess (kill tests, secrets).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import (
    Behaviour,
    Emulator,
    Leg,
    RunningEmulator,
    generate,
    harness,
    make_call,
)
from tap_tenios.emulator.harness import Run, parse_messages

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


@pytest.fixture
def run_tap() -> Callable[..., Run]:
    """Run the tap in this process; retry waits are recorded, not slept.

    With ``fails=True`` the run must fail: its exception is in ``Run.error`` together
    with everything written before it. Otherwise an exception is raised as is.
    """

    def run(
        config: dict[str, Any],
        state: dict[str, Any] | None = None,
        streams: tuple[str, ...] = ("cdrs",),
        *,
        fails: bool = False,
        deselect: tuple[str, ...] = (),
        real_waits: bool = False,
    ) -> Run:
        result = harness.run_tap(config, state, streams, deselect, real_waits=real_waits)
        if fails and result.error is None:
            pytest.fail("the run was expected to fail but succeeded")
        if not fails and result.error is not None:
            raise result.error
        return result

    return run


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
    sys.modules[name] = module  # dataclasses look their module up while it loads
    spec.loader.exec_module(module)
    return module


ROOT = Path(__file__).resolve().parent.parent
MELTANO = shutil.which("meltano", path=str(Path(sys.executable).parent)) or shutil.which("meltano")


def meltano(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``meltano ARGS`` in this project (its ``meltano.yml``), which must succeed."""
    if MELTANO is None:
        pytest.skip("meltano is not installed (pip install -e '.[dev]')")
    done = subprocess.run(
        [MELTANO, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-4000:]
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
