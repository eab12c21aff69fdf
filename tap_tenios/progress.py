"""What the log says about a stream's progress: its progress lines and the SDK's metrics.

A long backfill must never look hung, and an hourly run must not fill its log: a
line when ``every_seconds`` have passed (or ``every_steps`` steps, where a step is
worth a line on its own), and one at the end. The SDK's record-count metric is kept
too, at a fraction of its cost per record (``SparseCounter``), and its request
metrics are logged as its REST streams log them (``RequestMetrics``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from singer_sdk import metrics
from typing_extensions import override

if TYPE_CHECKING:
    import requests


class Progress:
    """A share of the work done, the time it took, and the time it should still take.

    ``total`` is in the stream's own unit (seconds of the range read, days counted);
    ``advance`` says how much of it is done.
    """

    def __init__(
        self,
        total: float,
        *,
        every_seconds: float,
        every_steps: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.total = total
        self.every_seconds = every_seconds
        self.every_steps = every_steps
        self.clock = clock
        self.done = 0.0
        self.steps = 0
        self.started = self._last = clock()
        self._last_steps = 0

    def advance(self, done: float) -> bool:
        """Record that ``done`` of ``total`` is done (one more step); whether a line is
        due now: enough time or steps since the last line, or the end reached.
        """
        self.done = done
        self.steps += 1
        now = self.clock()
        due = now - self._last >= self.every_seconds or (
            self.every_steps is not None and self.steps - self._last_steps >= self.every_steps
        )
        if not due and done < self.total:
            return False
        self._last, self._last_steps = now, self.steps
        return True

    @property
    def share(self) -> float:
        """The share done; an empty task is all done."""
        return self.done / self.total if self.total > 0 else 1.0

    @property
    def elapsed(self) -> float:
        return self.clock() - self.started

    @property
    def left(self) -> float:
        """Seconds still to go at the pace so far (0 before anything is done)."""
        share, elapsed = self.share, self.elapsed
        return elapsed / share - elapsed if share > 0 else 0.0

    def timing(self, of: str = "") -> str:
        """``42%{of} after 0:00:05, about 0:00:07 left``: the end of every progress line."""
        return (
            f"{self.share * 100:.0f}%{of} after {timedelta(seconds=round(self.elapsed))}, "
            f"about {timedelta(seconds=round(self.left))} left"
        )


class SparseCounter(metrics.Counter):
    """A counter that hands its increments to the SDK's a thousand at a time: the SDK's
    counter reads the clock at every increment, to see whether a metric line is due.
    """

    EVERY = 1000

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pending = 0

    @override
    def increment(self, value: int = 1) -> None:
        self.pending += value
        if self.pending >= self.EVERY:
            super().increment(self.pending)
            self.pending = 0

    @override
    def exit(self) -> None:
        self.value += self.pending
        self.pending = 0
        super().exit()


class RequestMetrics:
    """The SDK's HTTP metrics, as its REST streams log them: ``http_request_duration``
    for every answer (endpoint, status code, succeeded or failed) and
    ``http_request_count`` per endpoint (each minute, and at ``close``).

    ``observe`` is the transport's observer, called from the threads that make the
    requests (a try without an answer has no duration to log). Answers that come
    in after ``close`` (requests abandoned when a stream stopped early) are not logged:
    the stream's metrics end with the stream, before the run's last line.
    """

    def __init__(self, stream: str, logger: logging.Logger) -> None:
        self.stream = stream
        self.logger = logger
        self._counters: dict[str, metrics.Counter] = {}
        self._lock = threading.Lock()
        self._open = True

    def observe(self, endpoint: str, response: requests.Response | None) -> None:
        """One try at ``endpoint``: its answer, whatever its status, or none."""
        if response is not None:
            self.answer(endpoint, response.status_code, response.elapsed.total_seconds())

    def answer(self, endpoint: str, status: int, seconds: float) -> None:
        """One answer from ``endpoint`` (whatever its status), ``seconds`` after asking."""
        point = metrics.Point(
            "timer",
            metric=metrics.Metric.HTTP_REQUEST_DURATION,
            value=seconds,
            tags={
                metrics.Tag.STREAM: self.stream,
                metrics.Tag.ENDPOINT: endpoint,
                metrics.Tag.HTTP_STATUS_CODE: status,
                metrics.Tag.STATUS: (
                    metrics.Status.SUCCEEDED if status < 400 else metrics.Status.FAILED  # noqa: PLR2004
                ),
            },
        )
        with self._lock:
            if not self._open:
                return
            metrics.log(self.logger, point)
            counter = self._counters.get(endpoint)
            if counter is None:
                counter = metrics.http_request_counter(self.stream, endpoint=endpoint)
                self._counters[endpoint] = counter.__enter__()
            counter.increment()

    def close(self) -> None:
        """Log each endpoint's request count (the rest since its last line)."""
        with self._lock:
            for counter in self._counters.values():
                counter.exit()
            self._counters.clear()
            self._open = False

    def open(self) -> None:
        """Count again: the stream syncs once more."""
        with self._lock:
            self._open = True
