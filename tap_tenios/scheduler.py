"""Reads run ahead on worker threads; results come back in order, memory bounded.

Records and state stay on the main thread (the SDK's side effects are not
thread-safe); only requests run on workers. The workers are daemon threads that
nobody waits for: a run told to stop (SIGTERM, or a read that failed for good)
exits at once instead of waiting for a request that hangs, and whatever such a
request brings back is thrown away, never emitted.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")
_Job = tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]


class DaemonPool:
    """A minimal thread pool whose threads never hold up the process's exit.

    ``concurrent.futures.ThreadPoolExecutor`` joins its threads when the interpreter
    exits, so one request hanging for ``request_timeout_seconds`` would delay a
    SIGTERM that long.
    """

    def __init__(self, workers: int, name: str) -> None:
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True)
            for i in range(max(1, workers))
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., R], *args: Any) -> Future[R]:
        future: Future[R] = Future()
        self._jobs.put((future, fn, args))
        return future

    def map(self, fn: Callable[[T], R], items: Iterable[T]) -> list[R]:
        """``fn`` over ``items`` at once, results in order (the first error is raised)."""
        futures = [self.submit(fn, item) for item in items]
        return [future.result() for future in futures]

    def shutdown(self) -> None:
        """Let the threads end once their current job is done; do not wait for them."""
        for _ in self._threads:
            self._jobs.put(None)

    def _work(self) -> None:
        while (job := self._jobs.get()) is not None:
            future, fn, args = job
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:  # handed to whoever waits for the result
                future.set_exception(exc)
            else:
                future.set_result(result)

    def __enter__(self) -> DaemonPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, stop: threading.Event
) -> Iterator[R]:
    """``map`` with ``workers`` threads, results in input order.

    Up to ``2 * workers`` calls are queued or running, so a slow item never leaves
    the other threads idle, and memory stays bounded however long the range. When
    the consumer stops or a call fails, pending calls are cancelled and ``stop`` is
    set, so running calls give up instead of finishing their retries. A map that
    ends normally leaves ``stop`` alone.
    """
    pending: deque[Future[R]] = deque()
    finished = False
    with DaemonPool(workers, "tenios") as pool:
        try:
            for item in items:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
            finished = True
        finally:
            if not finished:
                stop.set()
            for future in pending:
                future.cancel()


@dataclass(frozen=True)
class Split(Generic[T]):
    """A read's answer when its item must be read as these parts instead, in order."""

    parts: list[T]


class _Slot(Generic[T, R]):
    __slots__ = ("future", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.future: Future[R | Split[T]] | None = None


def ordered_plan(
    read: Callable[[T], R | Split[T]],
    items: Iterable[T],
    workers: int,
    stop: threading.Event,
    ahead: int | None = None,
) -> Iterator[R]:
    """Like ``ordered_map``, but a read may answer ``Split(parts)``: the parts are read
    in its place, and their results come out where its result would have.

    At most ``ahead`` reads (``2 * workers`` by default) are queued, running, or done
    and waiting for an earlier one: that bounds memory whatever the range, and keeps
    ``workers`` threads busy. Reads start earliest first, so the result to emit next
    is never starved by later ones.
    """
    limit = ahead or 2 * workers
    slots: deque[_Slot[T, R]] = deque()
    source = iter(items)
    finished = False
    with DaemonPool(workers, "tenios") as pool:
        try:
            while _launch(slots, source, pool, read, limit):
                slots, expanded = expand_splits(slots)
                emitted = False
                while slots and (head := slots[0].future) is not None and head.done():
                    result = head.result()
                    if isinstance(result, Split):
                        break  # finished since ``expand_splits`` looked: its parts come next
                    slots.popleft()
                    emitted = True
                    yield result
                if not (expanded or emitted):
                    _wait_for_head(slots)
            finished = True
        finally:
            if not finished:
                stop.set()
            for slot in slots:
                if slot.future is not None:
                    slot.future.cancel()


def _launch(
    slots: deque[_Slot[T, R]],
    source: Iterator[T],
    pool: DaemonPool,
    read: Callable[[T], R | Split[T]],
    limit: int,
) -> bool:
    """Start reads, earliest first, up to ``limit``; False when nothing is left."""
    launched = sum(1 for slot in slots if slot.future is not None)
    for slot in slots:
        if launched >= limit:
            break
        if slot.future is None:
            slot.future = pool.submit(read, slot.item)
            launched += 1
    while launched < limit:
        item = next(source, _END)
        if item is _END:
            break
        slot = _Slot[T, R](item)
        slot.future = pool.submit(read, slot.item)
        slots.append(slot)
        launched += 1
    return bool(slots)


_END: Any = object()


def expand_splits(slots: deque[_Slot[T, R]]) -> tuple[deque[_Slot[T, R]], bool]:
    """Replace every finished read that split by its parts (not yet started); and
    whether any did.

    A read that failed raises here, as soon as it is seen, whatever its place.
    """
    out: deque[_Slot[T, R]] = deque()
    expanded = False
    for slot in slots:
        future = slot.future
        if future is not None and future.done():
            result = future.result()
            if isinstance(result, Split):
                out.extend(_Slot[T, R](part) for part in result.parts)
                expanded = True
                continue
        out.append(slot)
    return out, expanded


def _wait_for_head(slots: deque[_Slot[T, R]]) -> None:
    """Sleep until a running read finishes, unless the first one already has.

    Reads that finished behind a running first one change nothing until it does:
    waiting for "any future done" would return at once for them, and the loop would
    spin, taking the interpreter lock from the threads doing the work.
    """
    head = slots[0].future if slots else None
    if head is None or head.done():
        return
    running = [slot.future for slot in slots if slot.future is not None and not slot.future.done()]
    wait(running, return_when=FIRST_COMPLETED)
