"""Run the tap in this process against an emulator, with waits recorded, not slept.

Used by the tests and the fault campaign: a run's Singer messages, the retry waits
it asked for, and the error it stopped with, if any.
"""

from __future__ import annotations

import io
import json
import sys
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from tap_tenios.client import TeniosStream
from tap_tenios.tap import TapTenios


class FakeClock:
    """Time that passes only when the tap waits."""

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
    """Give every stream of ``tap`` (this tap alone) ``clock``'s time and waits."""
    for stream in tap.streams.values():
        if isinstance(stream, TeniosStream):
            stream.sleep = clock.sleep
            stream.clock = clock.now


def run_tap(
    config: dict[str, Any],
    state: dict[str, Any] | None = None,
    streams: tuple[str, ...] = ("cdrs",),
    deselect: tuple[str, ...] = (),
    *,
    real_waits: bool = False,
) -> Run:
    """One sync; an exception ends up in ``Run.error`` with everything written before it.

    Retry waits are recorded, not slept, unless ``real_waits``.
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
