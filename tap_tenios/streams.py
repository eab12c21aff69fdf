"""The two streams: ``cdrs`` (every call leg) and ``cdr_counts`` (the API's daily count).

How ``cdrs`` stays exact whatever the API does (see ``windows`` for the pure part):

* The range is walked in ascending half-open windows. Each window is read whole
  (every page) before any of it is emitted, deduplicated by ``uuid``, filtered to
  the legs that started inside it, and emitted sorted by (``start_stamp``, ``uuid``).
  So the API's order and its bound inclusiveness never matter, and every leg is
  emitted by exactly one window.
* Because emission is sorted, the bookmark (the last emitted ``start_stamp``) never
  passes a leg that is still unread, and a STATE message follows every window: a run
  killed at any moment resumes from its last STATE and redoes at most one window
  (plus the lookback, on purpose).
* Windows are fetched ahead by a small thread pool; records and state stay on the
  main thread, in order.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any, TypeVar

from singer_sdk import typing as th
from singer_sdk.helpers.types import Context, Record
from typing_extensions import override

from tap_tenios.client import TeniosStream
from tap_tenios.records import RecordError, to_record
from tap_tenios.settings import utc_now
from tap_tenios.windows import (
    LocalDay,
    Window,
    format_request,
    format_utc,
    iter_windows,
    local_date,
    local_days,
    parse_setting,
)

T = TypeVar("T")
R = TypeVar("R")

#: How often a window whose legs disagree with the API's count is read again.
MISMATCH_REREADS = 2

NULLABLE_STRING = th.StringType(nullable=True)


@lru_cache(maxsize=16)
def canonical(timestamp: str) -> str:
    """A saved bookmark in the tap's one spelling (state may come from elsewhere)."""
    return format_utc(parse_setting(timestamp))


def ordered_map(
    fn: Callable[[T], R], items: Iterable[T], workers: int, stop: threading.Event
) -> Iterator[R]:
    """``map`` with ``workers`` threads, results in input order.

    Up to ``2 * workers`` calls are queued or running, so a slow item never leaves
    the other threads idle, and memory stays bounded however long the range. When
    the consumer stops or a call fails, pending calls are cancelled and ``stop`` is
    set before the pool waits for the running ones, so they give up instead of
    finishing their retries.
    """
    pending: deque[Future[R]] = deque()
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenios") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= 2 * workers:
                    yield pending.popleft().result()
            while pending:
                yield pending.popleft().result()
        finally:
            stop.set()
            for future in pending:
                future.cancel()


@dataclass
class WindowRead:
    """What one window gave: its records, sorted, and how it went."""

    window: Window
    records: list[Record]
    pages: int
    seconds: float


class CdrsStream(TeniosStream):
    """Every call leg (one row per leg, not per call), incremental on ``start_stamp``."""

    name = "cdrs"
    path = "/cdrs/retrieve"
    primary_keys = ("uuid",)
    replication_key = "start_stamp"
    _page_pool: ThreadPoolExecutor
    _settling_from: datetime

    schema = th.PropertiesList(
        th.Property(
            "uuid", th.StringType, required=True, description="The leg's unique id (primary key)."
        ),
        th.Property(
            "main_leg_uuid",
            NULLABLE_STRING,
            description="The inbound leg this leg belongs to; null on inbound legs.",
        ),
        th.Property(
            "bleg_uuid", NULLABLE_STRING, description="The leg this one was connected to, if any."
        ),
        th.Property(
            "call_type",
            th.StringType,
            description="INBOUND, WEBRTCINBOUND, FORWARD, SIPFORWARD_USER, "
            "SIPFORWARD_PRFL or FAXOUT.",
        ),
        th.Property(
            "start_stamp",
            th.DateTimeType,
            required=True,
            description="When the leg started, UTC (replication key).",
        ),
        th.Property(
            "answer_stamp",
            th.DateTimeType(nullable=True),
            description="When the leg was answered, UTC; null if never answered.",
        ),
        th.Property("end_stamp", th.DateTimeType, description="When the leg ended, UTC."),
        th.Property(
            "duration",
            th.IntegerType,
            description="Total seconds, including call set-up and ring time.",
        ),
        th.Property("billusec", th.IntegerType, description="Billable microseconds."),
        th.Property(
            "cost",
            th.NumberType,
            description="Cost in EUR, exact as the API sent it (never via float).",
        ),
        th.Property(
            "prepaid", th.BooleanType, description="Whether the call belongs to a prepaid account."
        ),
        th.Property(
            "hangup_cause",
            th.StringType,
            description="Q.850-style cause, e.g. NORMAL_CLEARING or NO_ANSWER.",
        ),
        th.Property(
            "callerid_number",
            th.StringType,
            description="The caller's number (may be 'anonymous').",
        ),
        th.Property(
            "callerid_name",
            NULLABLE_STRING,
            description="The caller id name; only for legs forwarded via SIP.",
        ),
        th.Property(
            "destination_number",
            th.StringType,
            description="The dialled number; for inbound legs usually the service number.",
        ),
        th.Property(
            "source_type",
            th.StringType,
            description="FIXED_LINE or MOBILE: the network the call came from.",
        ),
        th.Property(
            "routing_status",
            NULLABLE_STRING,
            description="Null on success, else the routing error.",
        ),
        th.Property(
            "billing_status",
            NULLABLE_STRING,
            description="Null on success, else the billing error.",
        ),
    ).to_dict()

    @override
    def bookmark_key(self, bookmark: str) -> str:
        return canonical(bookmark)

    def extraction_range(self, context: Context | None) -> tuple[datetime, datetime]:
        """From (bookmark - lookback), never before ``start_date``, to ``end_date``/now."""
        settings = self.settings
        begin = settings.start
        bookmark = self.stream_state.get("replication_key_value")
        if bookmark:
            begin = max(begin, parse_setting(bookmark) - settings.lookback)
        return begin, settings.run_end(utc_now())

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        begin, end = self.extraction_range(context)
        size = self.settings.window
        windows = list(iter_windows(begin, end, size, anchor=self.settings.start))
        self.logger.info(
            "cdrs: reading %s to %s in %d window(s) of %g h",
            format_request(begin),
            format_request(end),
            len(windows),
            size / timedelta(hours=1),
        )
        started = time.monotonic()
        # Windows from here on are re-read by the next run (see ``read_window``).
        self._settling_from = end - self.settings.lookback
        workers = self.settings.max_concurrency
        # Window threads fetch page 1; pages after it go to this pool. Both share the
        # limit on requests in flight that ``post`` enforces.
        with ThreadPoolExecutor(workers, thread_name_prefix="tenios-page") as self._page_pool:
            reads = ordered_map(self.read_window, windows, workers, self.stopping)
            yield from self._emit(reads, begin, end, started)

    def _emit(
        self, reads: Iterator[WindowRead], begin: datetime, end: datetime, started: float
    ) -> Iterator[Record]:
        for read in reads:
            yield from read.records
            if not self.config.get("batch_config"):
                # The window is complete: make it resumable. (In BATCH mode the SDK
                # writes state itself once each batch file exists.)
                self._write_state_message()
            self.log_progress(read, begin, end, started)

    def log_progress(
        self, read: WindowRead, begin: datetime, end: datetime, started: float
    ) -> None:
        """One line per window, so a long backfill never looks hung."""
        share = (read.window.end - begin) / (end - begin) if end > begin else 1.0
        elapsed = time.monotonic() - started
        left = elapsed / share - elapsed if share > 0 else 0.0
        self.logger.info(
            "cdrs: window %s done: %d legs, %d page(s), %.2f s; %.0f%% of the range after %s, "
            "about %s left",
            read.window.describe(),
            len(read.records),
            read.pages,
            read.seconds,
            share * 100,
            timedelta(seconds=round(elapsed)),
            timedelta(seconds=round(left)),
        )

    def read_window(self, window: Window) -> WindowRead:
        """Read a whole window, checked against the API's own counts.

        Two checks: the distinct legs read must equal ``total_items`` (every page must
        report the same), and, with ``count_check``, the legs kept for the window must
        equal ``/cdrs/count`` for it. A window that disagrees is read again, up to
        ``MISMATCH_REREADS`` times. If it still disagrees: a window inside the
        lookback of this run's end is still settling (calls ending, CDRs landing) and
        the next run reads it again, so that is a warning; an older window is handled
        per ``on_count_mismatch``, failing before state passes it by default.
        """
        started = time.monotonic()
        for attempt in range(1, MISMATCH_REREADS + 2):
            legs, totals, pages = self._read_pages(window)
            records = self._records(window, legs)
            problem = self._disagreement(window, legs, totals, records)
            if problem is None:
                break
            if attempt <= MISMATCH_REREADS:
                self.logger.warning("%s; reading the window again", problem)
                continue
            problem += f" after {attempt} reads"
            if window.start >= self._settling_from:
                self.logger.warning(
                    "%s; the window is within the lookback, so the next run reads it again",
                    problem,
                )
            elif self.settings.on_count_mismatch == "fail":
                raise self.fail(problem + " (on_count_mismatch=fail)")
            else:
                self.logger.warning("%s; continuing (on_count_mismatch=warn)", problem)
        return WindowRead(window, records, pages, time.monotonic() - started)

    def _records(self, window: Window, legs: dict[str, Any]) -> list[Record]:
        """The window's own legs as records, sorted (the padding's legs are dropped)."""
        lower, upper = format_utc(window.start), format_utc(window.end)
        try:
            records = [
                r for r in map(to_record, legs.values()) if lower <= r["start_stamp"] < upper
            ]
        except RecordError as exc:
            raise self.fail(f"cdrs window {window.describe()}: {exc}") from None
        records.sort(key=lambda r: (r["start_stamp"], r["uuid"]))
        return records

    def _disagreement(
        self, window: Window, legs: dict[str, Any], totals: set[int], records: list[Record]
    ) -> str | None:
        """What is wrong with a read, if anything, in words for the log."""
        where = f"cdrs window {window.describe()}"
        if totals != {len(legs)}:
            counted = " then ".join(str(t) for t in sorted(totals))
            return f"{where}: read {len(legs)} distinct legs but the API counted {counted}"
        if self.settings.count_check:
            counted_total = self.count(window, f"{where} (completeness check)")
            if counted_total != len(records):
                return (
                    f"{where}: kept {len(records)} legs but /cdrs/count counts "
                    f"{counted_total} (difference {counted_total - len(records):+d})"
                )
        return None

    def _read_pages(self, window: Window) -> tuple[dict[str, Any], set[int], int]:
        """All pages of one padded request: legs by uuid, every total seen, page count.

        Page 1 tells how many legs there are and how many fit on a page; the pages that
        implies are then fetched ``max_concurrency`` at a time. Reading stops when the
        distinct legs reach the count, or when a batch brings nothing new: an API whose
        count is wrong must not make the tap page forever.
        """
        legs: dict[str, Any] = {}
        totals: set[int] = set()
        first = self._page(window, 1)
        totals.add(first["total_items"])
        self._collect(legs, first, window, 1)
        per_page = max(len(first["items"]), 1)
        page = 1
        while len(legs) < max(totals):
            implied = math.ceil(max(totals) / per_page) - page
            numbers = range(
                page + 1, page + 1 + min(max(implied, 1), self.settings.max_concurrency)
            )
            before = len(legs)
            bodies = self._page_pool.map(lambda n: self._page(window, n), numbers)
            for number, body in zip(numbers, bodies, strict=True):
                totals.add(body["total_items"])
                self._collect(legs, body, window, number)
            page = numbers[-1]
            if len(legs) == before:
                break
        return legs, totals, page

    def _page(self, window: Window, page: int) -> dict[str, Any]:
        padded = window.padded()
        return self.post(
            self.path,
            {
                "start_date_from": format_request(padded.start),
                "start_date_to": format_request(padded.end),
                "page": page,
                "page_size": self.settings.page_size,
            },
            f"window {window.describe()}, page {page}",
            required=("items", "total_items"),
        )

    def _collect(
        self, legs: dict[str, Any], body: dict[str, Any], window: Window, page: int
    ) -> None:
        for item in body["items"]:
            key = item.get("uuid") if isinstance(item, dict) else None
            if not isinstance(key, str):
                raise self.fail(
                    f"cdrs window {window.describe()}, page {page}: an item has no string 'uuid'"
                )
            legs[key] = item


class CdrCountsStream(TeniosStream):
    """The API's own CDR count per calendar day in ``timezone``: a reconciliation aid."""

    name = "cdr_counts"
    path = "/cdrs/count"
    primary_keys = ("date",)
    replication_key = "date"

    schema = th.PropertiesList(
        th.Property(
            "date",
            th.DateType,
            required=True,
            description="The calendar day in `timezone` (primary and replication key).",
        ),
        th.Property(
            "timezone", th.StringType, description="The IANA time zone the day is reckoned in."
        ),
        th.Property(
            "start_date_from",
            th.DateTimeType,
            description="The day's first instant, UTC (inclusive).",
        ),
        th.Property(
            "start_date_to",
            th.DateTimeType,
            description="The next day's first instant, UTC (exclusive).",
        ),
        th.Property(
            "total_items",
            th.IntegerType,
            description="CDRs (legs) that started that day, as the API counts them; "
            "today's is partial and recounted next run.",
        ),
    ).to_dict()

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        settings = self.settings
        zone = settings.timezone
        first = local_date(settings.start, zone)
        bookmark = self.stream_state.get("replication_key_value")
        if bookmark:
            recount = math.ceil(settings.lookback / timedelta(days=1))
            first = max(first, parse_setting(bookmark).date() - timedelta(days=recount))
        end = settings.run_end(utc_now())
        last = local_date(end - timedelta(microseconds=1), zone)
        days = list(local_days(first, last, zone))
        self.logger.info("cdr_counts: counting %d day(s) in %s", len(days), zone.key)
        totals = ordered_map(self.count_day, days, settings.max_concurrency, self.stopping)
        for day, total in zip(days, totals, strict=True):
            yield {
                "date": day.day.isoformat(),
                "timezone": zone.key,
                "start_date_from": format_utc(day.window.start),
                "start_date_to": format_utc(day.window.end),
                "total_items": total,
            }

    def count_day(self, day: LocalDay) -> int:
        """The whole local day's count (two requests on a 25-hour day)."""
        return self.count(day.window, f"day {day.day.isoformat()} {day.window.describe()}")
