"""Fixtures: an emulator on 127.0.0.1, and the tap run in this process against it.

``run_tap`` runs the tap in this process (fast; waits are injected, never slept);
``helpers.run_cli`` runs the real console script in a subprocess (kill tests, secrets).
Plain helpers live in ``helpers.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest

from tap_tenios.emulator import Behaviour, Emulator, Leg, RunningEmulator, harness
from tap_tenios.emulator.harness import Run

from .helpers import END, KEY, dataset


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
        result = harness.run_tap(config, state, streams, deselect, real_waits=real_waits)
        if fails and result.error is None:
            pytest.fail("the run was expected to fail but succeeded")
        if not fails and result.error is not None:
            raise result.error
        return result

    return run
