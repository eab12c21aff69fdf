"""The two streams: ``cdrs`` (every call leg) and ``cdr_counts`` (the API's daily count).

How ``cdrs`` stays exact whatever the API does (``planner`` and ``windows`` hold
the pure part):

* The range is walked in ascending half-open windows whose size the API's own
  counts decide (``planner``): a window whose legs fit one page is read by one
  request; a busier one is cut into parts that do. Each window is read whole before
  any of it is emitted, deduplicated by ``uuid``, filtered to the legs that started
  inside it, and emitted sorted by (``start_stamp``, ``uuid``). So the API's order
  and its bound inclusiveness never matter, and every leg is emitted by exactly one
  window.
* Because emission is sorted, the bookmark (the last emitted ``start_stamp``) never
  passes a leg that is still unread, and a STATE message follows every window: a run
  killed at any moment resumes from its last STATE and redoes at most one window
  (plus the lookback, on purpose). A window holds at most a page of legs (or
  ``MAX_WINDOW_LEGS`` for one that cannot be cut).
* Windows are read ahead by a few worker threads (``scheduler``); records and state
  stay on the main thread, in order.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable, Generator, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from singer_sdk import Tap
from singer_sdk import typing as th
from singer_sdk.helpers.types import Context, Record
from singer_sdk.singerlib import SchemaMessage
from typing_extensions import override

from tap_tenios.client import TeniosStream
from tap_tenios.planner import (
    MAX_WINDOW_LEGS,
    Page,
    PageSize,
    can_split,
    fits,
    plausible_recount,
    split,
)
from tap_tenios.records import RecordError, decimal_string, misplaced_stamps, to_record
from tap_tenios.scheduler import DaemonPool, Split, ordered_map, ordered_plan
from tap_tenios.settings import utc_now
from tap_tenios.windows import (
    LocalDay,
    Window,
    count_bounds,
    format_request,
    format_utc,
    iter_windows,
    local_date,
    local_days,
    parse_setting,
)

#: How often a window whose one page lists fewer legs than it counts is read again.
MISMATCH_REREADS = 2
#: How often the pages of a window that cannot be cut are read, at most, until
#: every leg it counts has been seen.
PAGED_ROUNDS = 10
#: Threads reading parts beyond ``max_concurrency``: while one turns its page into
#: records, another's request takes the free slot (``post`` caps requests in flight
#: at ``max_concurrency`` however many threads ask). 50k CDRs / 60 days at 100 ms:
#: 15% less wall time. None at ``max_concurrency`` 1, which reads windows strictly
#: one after another, in order.
SPARE_THREADS = 2

NULLABLE_STRING = th.StringType(nullable=True)

#: ``cost`` with ``use_singer_decimal``: the SDK's SQL loaders make this DECIMAL(15, 6).
#: Fifteen digits are the most that every decimal keeps through a binary float (which
#: target-postgres's COPY path converts each numeric value to), so the loaders that
#: take this shortcut still land the API's exact digits; a longer cost stops the run.
COST_PRECISION, COST_SCALE = 15, 6
DECIMAL_COST = {
    "type": ["string", "null"],
    "format": "x-singer.decimal",
    "precision": COST_PRECISION,
    "scale": COST_SCALE,
    "description": "Cost in EUR, the API's exact digits as a decimal string.",
}


@lru_cache(maxsize=16)
def canonical(timestamp: str) -> str:
    """A saved bookmark in the tap's one spelling (state may come from elsewhere)."""
    return format_utc(parse_setting(timestamp))


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


class CdrsStream(TeniosStream):
    """Every call leg (one row per leg, not per call), incremental on ``start_stamp``."""

    name = "cdrs"
    path = "/cdrs/retrieve"
    primary_keys = ("uuid",)
    replication_key = "start_stamp"
    _page_pool: DaemonPool
    _served: PageSize
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

    def __init__(self, tap: Tap) -> None:
        self.decimal_cost = bool(tap.config.get("use_singer_decimal"))
        if self.decimal_cost:
            properties = {**self.schema["properties"], "cost": DECIMAL_COST}
            self.schema = {**self.schema, "properties": properties}
        super().__init__(tap)

    @override
    def _generate_schema_messages(self) -> Generator[SchemaMessage, None, None]:
        """The SDK's SCHEMA messages, with ``cost``'s precision and scale put back.

        The SDK rebuilds stream schemas from the catalog through an object that keeps
        only standard JSON Schema keys, so ``precision`` and ``scale`` are lost; without
        them a loader creates ``DECIMAL`` with its own defaults (``NUMBER(38, 0)`` in
        Snowflake: no decimals at all).
        """
        for message in super()._generate_schema_messages():
            cost = message.schema.get("properties", {}).get("cost")
            if self.decimal_cost and cost and cost.get("format") == DECIMAL_COST["format"]:
                cost.update(precision=COST_PRECISION, scale=COST_SCALE)
            yield message

    @override
    def post_process(self, row: Record, context: Context | None = None) -> Record | None:
        """With ``use_singer_decimal``, ``cost`` as the string its schema declares."""
        if self.decimal_cost:
            try:
                row["cost"] = decimal_string(row["cost"], COST_PRECISION, COST_SCALE)
            except TypeError as exc:
                raise self.fail(str(RecordError(row["uuid"], "cost", str(exc)))) from None
        return row

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
        self.stopping.clear()  # a tap object may sync more than once
        settings = self.settings
        begin, end = self.extraction_range(context)
        self.logger.info(
            "cdrs: reading %s to %s in windows of at most %g h, cut to fit pages of %d",
            format_request(begin),
            format_request(end),
            settings.window / timedelta(hours=1),
            settings.page_size,
        )
        # Windows from here on are re-read by the next run (see ``settle``).
        self._settling_from = end - settings.lookback
        self._served = PageSize(settings.page_size)
        # Top windows never straddle the start of the settling range, so a window
        # either is re-read by the next run or is not.
        settling = min(max(begin, self._settling_from), end)
        tops = (
            Part(w)
            for lower, upper in ((begin, settling), (settling, end))
            for w in iter_windows(lower, upper, settings.window, settings.start)
        )
        workers = settings.max_concurrency
        progress = Progress(begin, end)
        # Part threads fetch page 1; more pages (of parts that cannot be cut) and
        # count requests go to this pool. Both share the limit on requests in flight
        # that ``post`` enforces.
        spare = SPARE_THREADS if workers > 1 else 0
        with DaemonPool(workers, "tenios-page") as self._page_pool:
            for read in ordered_plan(
                self.read_part, tops, workers + spare, self.stopping, ahead=2 * workers + spare
            ):
                yield from read.records
                if not self.config.get("batch_config"):
                    # The window is complete: make it resumable. (In BATCH mode the SDK
                    # writes state itself once each batch file exists.)
                    self._write_state_message()
                progress.done(read)
                if progress.due() or read.window.end >= end:
                    self.log_progress(progress)

    def log_progress(self, progress: Progress) -> None:
        """A line every few seconds (and at the end), so a long backfill never looks hung."""
        self.logger.info(
            "cdrs: read up to %s: %d legs in %d window(s), %d request(s); "
            "%.0f%% of the range after %s, about %s left",
            format_request(progress.upto),
            progress.legs,
            progress.windows,
            progress.requests,
            progress.share * 100,
            timedelta(seconds=round(progress.elapsed)),
            timedelta(seconds=round(progress.left)),
        )

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
            body = self._page(window, 1)
            page = Page(len(body["items"]), body["total_items"])
            if attempt == 1 and part.family is not None and not part.family.add(page.total):
                family = part.family
                raise self.fail(
                    f"{where}: the API counts {page.total} legs in it, but "
                    f"{family.total} in the window {family.parent.describe()} around it: "
                    "its counts do not follow the requested dates"
                )
            self._served.observe(page)
            capacity = self._served.capacity
            if not fits(page, capacity):
                if can_split(window):
                    family = Family(window, page.total)
                    return Split([Part(w, family) for w in split(window, page.total, capacity)])
                return self.read_paged(window, body, started)
            legs = self._collect({}, body, window, 1)
            records = self._records(window, legs)
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

    def read_paged(self, window: Window, first: dict[str, Any], started: float) -> WindowRead:
        """Read a window that cannot be cut, page by page, until its legs are all seen.

        Pages are separate queries: where the API orders by a key with ties, pages
        can repeat one leg and skip another. So every leg seen is kept across reads,
        and the pages are read again until the distinct legs reach the count (at most
        ``PAGED_ROUNDS`` rounds). With ``count_check``, ``/cdrs/count`` for the window
        is asked at the same time, and must agree with the legs read.
        """
        where = f"cdrs window {window.describe()}"
        total = first["total_items"]
        self._check_paged_total(where, total, total)
        counted: Future[int] | None = None
        if self.settings.count_check:
            counted = self._page_pool.submit(self.count, window, f"{where} (completeness check)")
        legs = self._collect({}, first, window, 1)
        requests = 1
        for round_ in range(PAGED_ROUNDS):
            capacity = max(self._served.capacity, len(first["items"]), 1)
            numbers = range(2 if round_ == 0 else 1, math.ceil(total / capacity) + 1)
            bodies = self._page_pool.map(lambda n: self._page(window, n), numbers)
            requests += len(numbers)
            for number, body in zip(numbers, bodies, strict=True):
                self._collect(legs, body, window, number)
                total = body["total_items"]
                self._check_paged_total(where, first["total_items"], total)
            if len(legs) == total:
                break
        everything = self._convert(window, legs)
        records = self._own(window, everything)
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

    def _check_paged_total(self, where: str, first: int, total: int) -> None:
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
        if window.start >= self._settling_from:
            self.logger.warning(
                "%s; the window is within the lookback, so the next run reads it again",
                problem,
            )
        elif self.settings.on_count_mismatch == "fail":
            raise self.fail(problem + " (on_count_mismatch=fail)")
        else:
            self.logger.warning("%s; continuing (on_count_mismatch=warn)", problem)

    def _records(self, window: Window, legs: dict[str, Any]) -> list[Record]:
        """The window's own legs as records, sorted (the padding's legs are dropped)."""
        return self._own(window, self._convert(window, legs))

    def _convert(self, window: Window, legs: dict[str, Any]) -> list[Record]:
        """Every leg read for ``window`` as a record, the padding's too."""
        zone = self.settings.api_timezone
        try:
            read = [to_record(item, zone) for item in legs.values()]
        except RecordError as exc:
            raise self.fail(f"cdrs window {window.describe()}: {exc}") from None
        if problem := misplaced_stamps(read, window.padded(), utc_now(), str(zone)):
            raise self.fail(f"cdrs window {window.describe()}: {problem}")
        return read

    @staticmethod
    def _own(window: Window, records: list[Record]) -> list[Record]:
        """The records that started inside ``window``, sorted as they are emitted."""
        lower, upper = format_utc(window.start), format_utc(window.end)
        own = [r for r in records if lower <= r["start_stamp"] < upper]
        own.sort(key=lambda r: (r["start_stamp"], r["uuid"]))
        return own

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
    ) -> dict[str, Any]:
        """Add a page's items to ``legs`` by uuid (a later copy of a leg wins)."""
        for item in body["items"]:
            key = item.get("uuid") if isinstance(item, dict) else None
            if not isinstance(key, str):
                raise self.fail(
                    f"cdrs window {window.describe()}, page {page}: an item has no string 'uuid'"
                )
            legs[key] = item
        return legs


class Progress:
    """How far a ``cdrs`` run has got, for its progress lines."""

    #: Seconds between progress lines.
    EVERY = 5.0

    def __init__(self, begin: datetime, end: datetime) -> None:
        self.begin, self.end, self.upto = begin, end, begin
        self.started = self._last = time.monotonic()
        self.legs = self.windows = self.requests = 0

    def done(self, read: WindowRead) -> None:
        self.upto = read.window.end
        self.legs += len(read.records)
        self.windows += 1
        self.requests += read.pages

    def due(self) -> bool:
        now = time.monotonic()
        if now - self._last < self.EVERY:
            return False
        self._last = now
        return True

    @property
    def share(self) -> float:
        span = self.end - self.begin
        return (self.upto - self.begin) / span if span > timedelta(0) else 1.0

    @property
    def elapsed(self) -> float:
        return time.monotonic() - self.started

    @property
    def left(self) -> float:
        share = self.share
        return self.elapsed / share - self.elapsed if share > 0 else 0.0


class CountProgress:
    """``cdr_counts`` progress: a line every ``EVERY_DAYS`` days or ``EVERY_SECONDS``
    seconds, whichever comes first, and one for the last day, so a long count (a year
    of days) never looks hung.
    """

    EVERY_DAYS = 30
    EVERY_SECONDS = 10.0

    def __init__(
        self, days: int, logger: logging.Logger, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.days, self.logger, self.clock = days, logger, clock
        self.done = 0
        self.started = self.last = clock()
        self.last_done = 0

    def day_done(self, day: str) -> None:
        self.done += 1
        now = self.clock()
        due = self.done - self.last_done >= self.EVERY_DAYS or now - self.last >= self.EVERY_SECONDS
        if not due and self.done < self.days:
            return
        self.last, self.last_done = now, self.done
        elapsed = now - self.started
        share = self.done / self.days
        self.logger.info(
            "cdr_counts: %d of %d day(s) counted, up to %s; %.0f%% after %s, about %s left",
            self.done,
            self.days,
            day,
            share * 100,
            timedelta(seconds=round(elapsed)),
            timedelta(seconds=round(elapsed / share - elapsed)),
        )


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
        self.stopping.clear()  # a tap object may sync more than once
        self.logger.info("cdr_counts: counting %d day(s) in %s", len(days), zone.key)
        totals = ordered_map(self.count_day, days, settings.max_concurrency, self.stopping)
        progress = CountProgress(len(days), self.logger, self.clock)
        for day, total in zip(days, totals, strict=True):
            progress.day_done(day.day.isoformat())
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
