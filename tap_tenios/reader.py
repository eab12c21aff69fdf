"""How a ``cdrs`` window is read whole, and how reads run ahead on worker threads.

``planner`` decides (pure); this module does the reads through the transport and
checks them against the API's own counts before anything from them is emitted:

* Page 1 of a window tells how many legs the window holds. If they are all on it,
  that one request is the read: one query cannot disagree with itself.
* More legs than a page holds: the window is cut into parts (``Split``) that are
  read in its place (``ordered_plan``).
* A window too narrow to cut is read page by page (``read_paged``): every leg seen
  is kept across rounds of reads until the distinct legs reach the count, and
  ``/cdrs/count`` must agree.
* A window that still disagrees after every try is settled (``settle``): inside the
  lookback it only warns (the next run reads it again), older it fails by default.

Whatever a read returns holds only the legs that started inside its window,
deduplicated and sorted, so the API's order and bound inclusiveness never matter.

Reads run ahead on worker threads and come back in order, memory bounded
(``ordered_plan``, ``ordered_map``). Records and state stay on the main thread (the
SDK's side effects are not thread-safe); only requests and decoding run on workers.
The workers are daemon threads that nobody waits for (``DaemonPool``): a run told to
stop (SIGTERM, or a read that failed for good) exits at once instead of waiting for a
request that hangs, and whatever such a request brings back is thrown away, never
emitted.
"""

from __future__ import annotations

import bisect
import logging
import math
import operator
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from tap_tenios.errors import TeniosAPIError
from tap_tenios.planner import (
    MAX_WINDOW_LEGS,
    Page,
    PageSize,
    Window,
    can_split,
    count_bounds,
    fits,
    plausible_recount,
    split,
)
from tap_tenios.records import (
    CdrPage,
    RecordError,
    decode_count,
    decode_page,
    format_request,
    format_utc,
    misplaced_stamps,
    page_records,
)
from tap_tenios.settings import Settings, utc_now
from tap_tenios.transport import Transport

#: Threads reading parts beyond ``max_concurrency``: while one turns its page into
#: records, another's request takes the free slot (``Transport.post`` caps requests
#: in flight at ``max_concurrency`` however many threads ask). 50k CDRs / 60 days at
#: 100 ms: 15% less wall time. None at ``max_concurrency`` 1, which reads windows
#: strictly one after another, in order.
SPARE_THREADS = 2

#: How often a window whose one page lists fewer legs than it counts is read again.
MISMATCH_REREADS = 2
#: How often the pages of a window that cannot be cut are read, at most, until
#: every leg it counts has been seen.
PAGED_ROUNDS = 10

Record = dict[str, Any]

#: The order legs are emitted in, and the keys it is read from.
_EMISSION_ORDER = operator.itemgetter("start_stamp", "uuid")
_START = operator.itemgetter("start_stamp")
_UUID = operator.itemgetter("uuid")


@dataclass
class WindowRead:
    """What one window gave: its records, sorted, and how it went."""

    window: Window
    records: list[Record]
    pages: int
    seconds: float


@dataclass(frozen=True)
class Part:
    """A window to read, and the split it came from (``None`` for a top window)."""

    window: Window
    family: Family | None = None


class Family:
    """The parts one window was split into, and what they counted between them.

    Each part's request lies inside its parent's (widened by the padding), so
    between them they cannot count many times more legs than the parent did. An API
    whose counts ignore the dates (or are made up) would otherwise make the planner
    cut and cut: it is stopped after a few parts (``plausible_recount``).
    """

    def __init__(self, parent: Window, total: int) -> None:
        self.parent = parent
        self.total = total
        self._counted = 0
        self._lock = threading.Lock()

    def add(self, total: int) -> bool:
        """Record one part's count; False once the parts count implausibly many."""
        with self._lock:
            self._counted += total
            return plausible_recount(self.total, self._counted)


def count_window(transport: Transport, window: Window, where: str) -> int:
    """``/cdrs/count`` for a whole window, in the <= 1-day pieces the API accepts."""
    return sum(
        transport.post(
            "/cdrs/count",
            {"start_date_from": format_request(lower), "start_date_to": format_request(upper)},
            where,
            decode_count,
        )
        for lower, upper in window.count_requests()
    )


def read_windows(
    transport: Transport,
    settings: Settings,
    windows: Iterable[Window],
    end: datetime,
    logger: logging.Logger,
) -> Iterator[WindowRead]:
    """Every one of ``windows`` read whole, in order, several read ahead at once.

    Threads read parts (page 1 each); further pages of parts that cannot be cut, and
    count requests, go to a pool of their own. Both share the transport's limit on
    requests in flight. Windows from the lookback of ``end`` on are re-read by the
    next run: there, a disagreement only warns (``CdrsReader.settle``). A read that
    fails for good sets the transport's ``stop``: the others give up.
    """
    workers = settings.max_concurrency
    spare = SPARE_THREADS if workers > 1 else 0
    with DaemonPool(workers, "tenios-page") as pages:
        reader = CdrsReader(transport, settings, pages, end - settings.lookback, logger)
        parts = (Part(window) for window in windows)
        yield from ordered_plan(
            reader.read_part, parts, workers + spare, transport.stop, ahead=2 * workers + spare
        )


class Legs:
    """A window's legs by uuid, from one page or several; ``typed`` while every page
    came with the documented types (``CdrPage.typed``).
    """

    def __init__(self) -> None:
        self.by_uuid: dict[str, Any] = {}
        self.typed = True

    def __len__(self) -> int:
        return len(self.by_uuid)


class CdrsReader:
    """Reads ``cdrs`` windows for one run; shared by the threads that read them.

    ``settling_from``: windows from here on are re-read by the next run (the
    lookback of this run's end), so a disagreement there only warns. ``pages``:
    where further pages and count requests of a paged read go, beside the threads
    reading windows (``Transport.post`` caps the requests in flight either way).
    """

    def __init__(
        self,
        transport: Transport,
        settings: Settings,
        pages: DaemonPool,
        settling_from: datetime,
        logger: logging.Logger,
    ) -> None:
        self.transport = transport
        self.settings = settings
        self.pages = pages
        self.settling_from = settling_from
        self.logger = logger
        self.served = PageSize(settings.page_size)

    def read_part(self, part: Part) -> WindowRead | Split[Part]:
        """Read one window, or say which parts to read instead (see ``planner``).

        Page 1 decides. All legs on it: the read is done, checked by its own
        ``total_items`` (one query cannot disagree with itself). More legs than a
        page holds: the window is cut into parts that should each fit a page. A
        window too narrow to cut is read page by page (``read_paged``). A page that
        lists fewer legs than it counts, though they would fit, was cut short (by a
        cap the API applies to some answers only, say) or misses a leg the API counts
        but never lists; the two look alike, so the window is cut into parts that fit
        what the page did list. A short page then costs a few requests; a hidden leg
        is narrowed down to a window that cannot be cut, which is read again, up to
        ``MISMATCH_REREADS`` times, and then settled (``settle``).
        """
        window = part.window
        started = time.monotonic()
        where = f"cdrs window {window.describe()}"
        problem = ""
        for attempt in range(1, MISMATCH_REREADS + 2):
            body = self.page(window, 1)
            page = Page(len(body.items), body.total)
            if attempt == 1 and part.family is not None and not part.family.add(page.total):
                family = part.family
                raise self.fail(
                    f"{where}: the API counts {page.total} legs in it, but "
                    f"{family.total} in the window {family.parent.describe()} around it: "
                    "its counts do not follow the requested dates"
                )
            self.served.observe(page)
            capacity = self.served.capacity
            if not fits(page, capacity):
                if can_split(window):
                    family = Family(window, page.total)
                    return Split([Part(w, family) for w in split(window, page.total, capacity)])
                return self.read_paged(window, body, started)
            legs = self.collect(Legs(), body, window, 1)
            records = self.own(window, self.convert(window, legs))
            if len(legs) == page.total:
                return WindowRead(window, records, attempt, time.monotonic() - started)
            if len(legs) < page.total and can_split(window):
                family = Family(window, page.total)
                parts = split(window, page.total, max(1, len(legs)))
                return Split([Part(w, family) for w in parts])
            problem = f"{where}: read {len(legs)} distinct legs but the API counted {page.total}"
            if attempt <= MISMATCH_REREADS:
                self.logger.warning("%s; reading the window again", problem)
        self.settle(window, f"{problem} after {MISMATCH_REREADS + 1} reads")
        return WindowRead(window, records, MISMATCH_REREADS + 1, time.monotonic() - started)

    def read_paged(self, window: Window, first: CdrPage, started: float) -> WindowRead:
        """Read a window that cannot be cut, page by page, until its legs are all seen.

        Pages are separate queries: where the API orders by a key with ties, pages
        can repeat one leg and skip another. So every leg seen is kept across reads,
        and the pages are read again until the distinct legs reach the count (at most
        ``PAGED_ROUNDS`` rounds). With ``count_check``, ``/cdrs/count`` for the window
        is asked at the same time, and must agree with the legs read.
        """
        where = f"cdrs window {window.describe()}"
        total = first.total
        self.check_paged_total(where, total, total)
        counted: Future[int] | None = None
        if self.settings.count_check:
            counted = self.pages.submit(
                count_window, self.transport, window, f"{where} (completeness check)"
            )
        legs = self.collect(Legs(), first, window, 1)
        requests = 1
        for round_ in range(PAGED_ROUNDS):
            capacity = max(self.served.capacity, len(first.items), 1)
            numbers = range(2 if round_ == 0 else 1, math.ceil(total / capacity) + 1)
            bodies = self.pages.map(lambda n: self.page(window, n), numbers)
            requests += len(numbers)
            for number, body in zip(numbers, bodies, strict=True):
                self.collect(legs, body, window, number)
                total = body.total
                self.check_paged_total(where, first.total, total)
            if len(legs) == total:
                break
        everything = self.convert(window, legs)
        records = self.own(window, everything)
        problem = None
        if len(legs) != total:
            problem = (
                f"{where}: read {len(legs)} distinct legs but the API counted {total} "
                f"after {requests} page reads"
            )
        elif counted is not None:
            expected = counted.result()
            requests += 1
            # Compared with the legs read that lie in the counted period, not with the
            # window's: the two differ by legs within a millisecond of an edge.
            stamps = [r["start_stamp"] for r in everything]
            fewest, most = count_bounds(stamps, window.count_requests())
            if not fewest <= expected <= most:
                nearest = most if expected > most else fewest
                problem = (
                    f"{where}: kept {len(records)} legs but /cdrs/count counts {expected} "
                    f"where the legs read make {nearest} (difference {expected - nearest:+d})"
                )
        if problem:
            self.settle(window, problem)
        return WindowRead(window, records, requests, time.monotonic() - started)

    def check_paged_total(self, where: str, first: int, total: int) -> None:
        """Stop a paged read whose pages count more than it may hold or page through.

        Every page's ``total_items`` decides how many pages the next round reads: a
        count that jumps (an API whose counts are inconsistent) would otherwise
        cost thousands of requests for pages that hold nothing.
        """
        if total > MAX_WINDOW_LEGS:
            raise self.fail(
                f"{where}: the API counts {total} legs starting within a second or two of "
                f"it, more than one window may hold ({MAX_WINDOW_LEGS}); the window cannot "
                "be cut further"
            )
        if not plausible_recount(first, total):
            raise self.fail(
                f"{where}: page 1 counts {first} legs and a later page {total}: "
                "the API's counts are inconsistent"
            )

    def settle(self, window: Window, problem: str) -> None:
        """A window that still disagrees with the API's counts after every try.

        Inside the lookback of this run's end it is still settling (calls ending,
        CDRs landing) and the next run reads it again: a warning. Older, it is
        handled per ``on_count_mismatch``: failing before state passes it by default.
        """
        if window.start >= self.settling_from:
            self.logger.warning(
                "%s; the window is within the lookback, so the next run reads it again",
                problem,
            )
        elif self.settings.on_count_mismatch == "fail":
            raise self.fail(problem + " (on_count_mismatch=fail)")
        else:
            self.logger.warning("%s; continuing (on_count_mismatch=warn)", problem)

    def convert(self, window: Window, legs: Legs) -> list[Record]:
        """Every leg read for ``window`` as a record, the padding's too."""
        zone = self.settings.api_timezone
        try:
            read = page_records(list(legs.by_uuid.values()), legs.typed, zone)
        except RecordError as exc:
            raise self.fail(f"cdrs window {window.describe()}: {exc}") from None
        if problem := misplaced_stamps(read, window.padded(), utc_now(), str(zone)):
            raise self.fail(f"cdrs window {window.describe()}: {problem}")
        return read

    @staticmethod
    def own(window: Window, records: list[Record]) -> list[Record]:
        """The records that started inside ``window``, sorted as they are emitted.

        Sorted first, then cut where the window's edges fall: both steps run in C,
        where a filter would visit every record in Python.
        """
        records.sort(key=_EMISSION_ORDER)
        stamps = list(map(_START, records))
        lower, upper = format_utc(window.start), format_utc(window.end)
        return records[bisect.bisect_left(stamps, lower) : bisect.bisect_left(stamps, upper)]

    def page(self, window: Window, page: int) -> CdrPage:
        """One page of ``/cdrs/retrieve`` for ``window``, padded (see ``Window.padded``)."""
        padded = window.padded()
        return self.transport.post(
            "/cdrs/retrieve",
            {
                "start_date_from": format_request(padded.start),
                "start_date_to": format_request(padded.end),
                "page": page,
                "page_size": self.settings.page_size,
            },
            f"window {window.describe()}, page {page}",
            decode_page,
        )

    def collect(self, legs: Legs, body: CdrPage, window: Window, page: int) -> Legs:
        """Add a page's items to ``legs`` by uuid (a later copy of a leg wins)."""
        legs.typed = legs.typed and body.typed
        if body.typed:
            # Decoded with the documented types: every item is an object with a string
            # ``uuid``, so the legs are keyed in C.
            legs.by_uuid.update(zip(map(_UUID, body.items), body.items, strict=True))
            return legs
        for item in body.items:
            key = item.get("uuid") if isinstance(item, dict) else None
            if not isinstance(key, str):
                raise self.fail(
                    f"cdrs window {window.describe()}, page {page}: an item has no string 'uuid'"
                )
            legs.by_uuid[key] = item
        return legs

    def fail(self, message: str) -> TeniosAPIError:
        """An error safe to raise (the transport removes the key from any message)."""
        return self.transport.fail(message)


# Reading ahead on worker threads, results in order, memory bounded.

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
