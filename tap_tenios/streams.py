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
import time
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


def ordered_map(fn: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """``map`` with up to ``workers`` calls in flight, results in input order.

    Only ``workers`` results are held at once, so memory stays bounded however long
    the range. Pending calls are cancelled if the consumer stops early.
    """
    pending: list[Future[R]] = []
    source = iter(items)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tenios") as pool:
        try:
            for item in source:
                pending.append(pool.submit(fn, item))
                if len(pending) >= workers:
                    yield pending.pop(0).result()
            while pending:
                yield pending.pop(0).result()
        finally:
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
        for read in ordered_map(self.read_window, windows, self.settings.max_concurrency):
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
            "cdrs: window %s done: %d legs, %d page(s), %.2f s; %.0f%% of the range, about %s left",
            read.window.describe(),
            len(read.records),
            read.pages,
            read.seconds,
            share * 100,
            timedelta(seconds=round(left)),
        )

    def read_window(self, window: Window) -> WindowRead:
        """Read a whole window; re-read it while the legs disagree with the API's count."""
        started = time.monotonic()
        for attempt in range(MISMATCH_REREADS + 1):
            legs, totals, pages = self._read_pages(window)
            if totals == {len(legs)}:
                break
            problem = (
                f"cdrs window {window.describe()}: read {len(legs)} distinct legs but the "
                f"API counted {' then '.join(str(t) for t in sorted(totals))}"
            )
            if attempt < MISMATCH_REREADS:
                self.logger.warning("%s; reading the window again", problem)
            elif self.settings.on_count_mismatch == "fail":
                raise self.fail(problem + f" after {attempt + 1} reads (on_count_mismatch=fail)")
            else:
                self.logger.warning(
                    "%s after %d reads; continuing (on_count_mismatch=warn)", problem, attempt + 1
                )
        lower, upper = format_utc(window.start), format_utc(window.end)
        try:
            records = [
                r for r in map(to_record, legs.values()) if lower <= r["start_stamp"] < upper
            ]
        except RecordError as exc:
            raise self.fail(f"cdrs window {window.describe()}: {exc}") from None
        records.sort(key=lambda r: (r["start_stamp"], r["uuid"]))
        return WindowRead(window, records, pages, time.monotonic() - started)

    def _read_pages(self, window: Window) -> tuple[dict[str, Any], set[int], int]:
        """All pages of one padded request: legs by uuid, every total seen, page count."""
        padded = window.padded()
        where = f"window {window.describe()}"
        legs: dict[str, Any] = {}
        totals: set[int] = set()
        page = 0
        while True:
            page += 1
            body = self.post(
                self.path,
                {
                    "start_date_from": format_request(padded.start),
                    "start_date_to": format_request(padded.end),
                    "page": page,
                    "page_size": self.settings.page_size,
                },
                f"{where}, page {page}",
                required=("items", "total_items"),
            )
            totals.add(body["total_items"])
            before = len(legs)
            for item in body["items"]:
                key = item.get("uuid") if isinstance(item, dict) else None
                if not isinstance(key, str):
                    raise self.fail(f"cdrs {where}, page {page}: an item has no string 'uuid'")
                legs[key] = item
            # Stop when the count is reached, or a page brings nothing new (an empty
            # page, or one that only repeats legs: going on could loop forever).
            if len(legs) >= body["total_items"] or len(legs) == before:
                return legs, totals, page


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
        for day, total in zip(
            days, ordered_map(self.count_day, days, settings.max_concurrency), strict=True
        ):
            yield {
                "date": day.day.isoformat(),
                "timezone": zone.key,
                "start_date_from": format_utc(day.window.start),
                "start_date_to": format_utc(day.window.end),
                "total_items": total,
            }

    def count_day(self, day: LocalDay) -> int:
        """The whole local day's count, from one or (on a 25-hour day) two requests."""
        total = 0
        for lower, upper in day.count_requests():
            body = self.post(
                self.path,
                {"start_date_from": format_request(lower), "start_date_to": format_request(upper)},
                f"day {day.day.isoformat()} {day.window.describe()}",
                required=("total_items",),
            )
            total += body["total_items"]
        return total
