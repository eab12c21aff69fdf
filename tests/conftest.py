"""Fixtures: an emulator on 127.0.0.1, and the tap run in this process against it.

``run_tap`` runs the tap in this process (fast; waits are injected, never slept);
``helpers.run_cli`` runs the real console script in a subprocess (kill tests, secrets).
Plain helpers live in ``helpers.py``.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from tap_tenios.emulator import Behaviour, Emulator, Leg, RunningEmulator

from . import helpers
from .helpers import END, KEY, PG_DSN, Run, dataset

#: Seconds a test marked ``meltano`` or ``slow`` may take (plugin installs, dbt builds,
#: long properties) before it counts as hung; others get ``timeout`` in pyproject.toml.
LONG_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.get_closest_marker("meltano") or item.get_closest_marker("slow"):
            item.add_marker(pytest.mark.timeout(LONG_TIMEOUT))


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
        result = helpers.run_tap(config, state, streams, deselect, real_waits=real_waits)
        if fails and result.error is None:
            pytest.fail("the run was expected to fail but succeeded")
        if not fails and result.error is not None:
            raise result.error
        return result

    return run


@pytest.fixture(scope="module")
def server() -> Any:
    """An autocommit connection to the test PostgreSQL server.

    Skips, saying how to start one, when none answers; fails instead under
    ``TENIOS_REQUIRE_POSTGRES`` (CI starts a server: a skip there would hide a failure).
    """
    psycopg = pytest.importorskip("psycopg")
    try:
        return psycopg.connect(PG_DSN, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = (
            f"no PostgreSQL at {PG_DSN} ({exc.__class__.__name__}); "
            "start one with: scripts/postgres.sh start"
        )
        if os.environ.get("TENIOS_REQUIRE_POSTGRES"):
            pytest.fail(reason)
        pytest.skip(reason)


def own_database(server: Any) -> Iterator[str]:
    """A database of the test's own on the test server, dropped afterwards."""
    name = f"tenios_test_{uuid.uuid4().hex[:10]}"
    server.execute(f'CREATE DATABASE "{name}"')
    yield name
    server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
def database(server: Any) -> Iterator[str]:
    """A database of this test's own on the test server, dropped afterwards."""
    yield from own_database(server)


@pytest.fixture
def other_database(server: Any) -> Iterator[str]:
    """A second one, for tests that compare two loads."""
    yield from own_database(server)
