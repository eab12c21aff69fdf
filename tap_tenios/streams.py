"""The two streams, ``cdrs`` and ``cdr_counts``, and what they share with the SDK.

Why the streams hold so little logic: what ``cdrs`` reads and how it cuts a range is
decided in ``planner`` (pure), the reads are made and checked in ``reader``, and a page
becomes records in ``records``; here is only what the SDK needs to see (schemas,
bookmarks, STATE, BATCH files) and the order in which it sees it.

How ``cdrs`` stays exact whatever the API does:

* The range is walked in ascending half-open windows whose size the API's own
  counts decide: a window whose legs fit one page is read by one request; a busier
  one is cut into parts that do. Each window is read whole before any of it is
  emitted, deduplicated by ``uuid``, filtered to the legs that started inside it,
  and emitted sorted by (``start_stamp``, ``uuid``). So the API's order and its
  bound inclusiveness never matter, and every leg is emitted by exactly one window.
* Because emission is sorted, the bookmark (the last emitted ``start_stamp``) never
  passes a leg that is still unread, and a STATE message follows every window: a run
  killed at any moment resumes from its last STATE and redoes at most one window
  (plus the lookback, on purpose).
* Windows are read ahead by a few worker threads (``reader``); records and state
  stay on the main thread, in order.
* With ``lookback_mode`` ``on_count_change``, the parts of the lookback that earlier
  runs read (kept in state) are counted first, and only those whose count differs
  from the legs emitted from them are read again (``planner.Ledger``).

What both streams share (``TeniosStream``): the bookmark's rules (never backwards;
moved only at safe points), BATCH files, and how a failure of the tap's own ends a
stream: it is caught where the records are made (``get_records``) and kept in the
run's ``RunReport``. The stream then ends cleanly (its state is what it had safely
reached), the other stream still runs unless every request would fail the same way,
and the command ends with one line (``tap``).
"""

from __future__ import annotations

import bisect
import operator
import threading
from collections.abc import Callable, Generator, Iterable, Iterator
from contextlib import closing
from datetime import datetime, timedelta
from functools import cached_property, lru_cache
from importlib.metadata import version
from typing import Any, Protocol, runtime_checkable

from singer_sdk import Stream, Tap, metrics
from singer_sdk import typing as th
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context, Record
from singer_sdk.mapper import SameRecordTransform
from singer_sdk.singerlib import SchemaMessage
from typing_extensions import override

from tap_tenios.batch import BatchSettings, RunFolder, sweep, write_batches
from tap_tenios.errors import RunReport, TapRunError, api_error, redact
from tap_tenios.planner import (
    CountedDay,
    Ledger,
    PartRead,
    Window,
    bookmark_problem,
    cdrs_range,
    count_days,
    parts_read_from_state,
    spans_to_read,
    top_windows,
    worth_checking,
)
from tap_tenios.progress import Progress, RequestMetrics, SparseCounter
from tap_tenios.reader import WindowRead, count_window, ordered_map, read_windows
from tap_tenios.records import (
    RecordError,
    decimal_string,
    format_request,
    format_utc,
    parse_setting,
)
from tap_tenios.settings import Settings, utc_now
from tap_tenios.transport import Transport


@runtime_checkable
class HeldOutput(Protocol):
    """A message writer that holds records until a STATE (the tap's ``SingerWriter``)."""

    def drain(self) -> None:
        """Write what is held."""


#: How the tap introduces itself to the API.
USER_AGENT = f"tap-tenios/{version('tap-tenios')}"


class TeniosStream(Stream):
    """Base for both endpoints: settings, the transport, state rules, failure handling.

    Records are built field by field with the declared types (``records``), so the
    SDK's per-record type conformance (a third of its CPU) has nothing to do.
    """

    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    # Emission is sorted, but each run first re-reads a lookback that lies below the
    # saved bookmark on purpose; see ``_increment_stream_state``.
    is_sorted = True
    check_sorted = False

    def __init__(self, tap: Tap, report: RunReport | None = None) -> None:
        super().__init__(tap)
        self.report = report or RunReport()
        #: Where the tap writes its messages (a ``SingerWriter``, unless replaced).
        self.output = tap.message_writer
        #: Set when this stream stops early (a read failed for good, the run ends):
        #: requests still out give up instead of retrying.
        self.stopping = threading.Event()

    @cached_property
    def every_field_selected(self) -> bool:
        """Whether the catalog keeps every field (the usual case)."""
        mask = self.mask
        return all(mask.get(("properties", name), True) for name in self.schema["properties"])

    @cached_property
    def settings(self) -> Settings:
        """The config, typed; already validated by the tap before any request."""
        return Settings.from_config(self.config)

    @cached_property
    def transport(self) -> Transport:
        """The stream's HTTP client, built on first use (from the main thread)."""
        settings = self.settings
        return Transport(
            settings.api_url,
            str(self.config["access_key"]),
            timeout=settings.request_timeout,
            tries=settings.max_retries + 1,
            concurrency=settings.max_concurrency,
            user_agent=USER_AGENT,
            logger=self.logger,
            stop=self.stopping,
            observe=self.request_metrics.observe,
        )

    @cached_property
    def request_metrics(self) -> RequestMetrics:
        """The SDK's request metrics for this stream, logged as its REST streams do."""
        return RequestMetrics(self.name, self.metrics_logger)

    @override
    def get_records(self, context: Context | None) -> Iterable[Record]:
        """The stream's records; a failure of the tap's own ends the stream cleanly.

        The failure goes to the run's report, not up through the SDK: the stream's
        state stays what it had safely reached, and the command ends with one line
        naming it. Records still held for the output are written either way, so a
        stream ending without a new STATE does not leave them behind.
        """
        if not self.report.begin(self.name):
            return
        self.stopping.clear()  # a tap object may sync more than once
        self.request_metrics.open()
        try:
            self.check_bookmark()
            _ = self.transport  # built here, on the main thread, before any worker
            yield from self.read_records(context)
        except TapRunError as failure:
            self.report.add(self.name, failure)
            self.logger.warning(
                "Stream %s stopped; the run reports why at its end%s",
                self.name,
                "" if failure.stops_run else ", after the other streams",
            )
        finally:
            self.stopping.set()  # whatever is still out gives up
            self.request_metrics.close()
            if isinstance(self.output, HeldOutput):
                self.output.drain()

    def read_records(self, context: Context | None) -> Iterator[Record]:
        """The records themselves (each stream's own)."""
        raise NotImplementedError

    def fail(self, message: str) -> TapRunError:
        """An error safe to raise: the key is removed whatever ``message`` holds."""
        return api_error(message, self.config.get("access_key"))

    @override
    def compare_start_date(self, value: str, start_date_value: str) -> str:
        """The later of the saved bookmark and ``start_date``, read as the tap reads both.

        The SDK calls this with the saved state before ``get_records``; its own version
        parses the bookmark and ends in a traceback on one it cannot read (state as
        Meltano stores it, with ``replication_key``). Such a bookmark is passed on as it
        is, for ``check_bookmark`` to refuse with one line; redacted, since the SDK logs
        it (a key pasted into the state by mistake must not reach the log).
        """
        if bookmark_problem(self.name, value, utc_now()):
            secret = self.config.get("access_key")
            return redact(value, secret) if isinstance(value, str) else value
        if not self.is_timestamp_replication_key:
            return value
        return max(value, start_date_value, key=parse_setting)

    def check_bookmark(self) -> None:
        """Refuse a saved bookmark that does not parse or lies in the future."""
        value = self.stream_state.get("replication_key_value")
        if problem := bookmark_problem(self.name, value, utc_now()):
            raise self.fail(problem)

    def bookmark_key(self, bookmark: str) -> str:
        """A saved bookmark in the spelling records use, for comparing the two."""
        return bookmark

    @cached_property
    def saved_bookmark(self) -> str:
        """The bookmark this run started from ("" if none), in the records' spelling."""
        bookmark = self.stream_state.get("replication_key_value")
        return self.bookmark_key(bookmark) if bookmark else ""

    #: Whether the bookmark moves only where the stream says (``advance_bookmark``):
    #: in BATCH mode once each file's BATCH message is out; for ``cdrs`` once per
    #: window. Otherwise the SDK moves it with every record.
    bookmark_deferred = False

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        """The SDK's bookmark update after each record: applied, unless deferred.
        (Private in the SDK, with no public equivalent: guarded by a test.)
        """
        if not self.bookmark_deferred:
            self.advance_bookmark(latest_record, context)

    def advance_bookmark(self, record: Record, context: Context | None = None) -> None:
        """Advance the bookmark to ``record``, but never move it back.

        Rows re-read from the lookback are older than the saved bookmark; letting them
        rewind it would make a run killed during the lookback redo more than needed.
        Everything below the saved bookmark was read by an earlier run, so keeping it
        is safe. The state is then due: the next ``_write_state_message`` writes it.
        """
        if record[str(self.replication_key)] < self.saved_bookmark:
            return
        super()._increment_stream_state(record, context=context)
        self.state_manager.is_flushed = False

    @override
    def get_batches(
        self, batch_config: BatchConfig, context: Context | None = None
    ) -> Iterable[tuple[BaseBatchFileEncoding, list[str]]]:
        """The stream's records as BATCH files (``batch``); the bookmark moves only once
        each file's BATCH message is out.

        The SDK writes a BATCH message for each file yielded here, then a STATE (the
        bookmark not moved yet); this resumes after both, moves the bookmark to the
        file's last record and writes the STATE that covers it. So no STATE ever
        covers a record that no BATCH message has announced, whenever the run stops.
        """
        settings = BatchSettings.from_config(batch_config.asdict())
        # Earlier runs' files hold caller numbers and their loaders are done with them
        # (a job's next run starts after its last loader ended): removed now.
        sweep(settings.root)
        try:
            #: Locked until the process ends, however it ends (see ``batch.RunFolder``).
            self.run_folder = RunFolder.create(settings.root)
        except TapRunError as failure:
            self.report.add(self.name, failure)
            return
        deferred, self.bookmark_deferred = self.bookmark_deferred, True
        try:
            records = self._sync_records(context, write_messages=False)
            batches = write_batches(
                records, self.run_folder.path, self.name, settings, self.batch_transform()
            )
            with closing(records), closing(batches):
                for url, last in batches:
                    yield batch_config.encoding, [url]
                    self.advance_bookmark(last, context)
                    self._write_state_message()
        except TapRunError as failure:
            # The files could not be written (``batch.BatchWriteError``), or a stream
            # map cannot go into files: the stream ends here, like a failed read (its
            # state covers the files announced), and the run ends with one line.
            self.report.add(self.name, failure)
        finally:
            self.bookmark_deferred = deferred
            self.run_folder.remove_if_empty()

    def batch_transform(self) -> Callable[[Record], Record | None] | None:
        """What RECORD messages would do to each record (stream maps, deselected fields),
        for the files, where the SDK's own batching writes records unmapped; ``None``
        when that is nothing (the usual case).
        """
        maps = self.stream_maps
        if len(maps) != 1 or maps[0].stream_alias != self.name:
            raise self.fail(
                f"Stream {self.name!r}: a stream map that renames, copies or splits the "
                "stream cannot be written as BATCH files; remove batch_config or the map"
            )
        (mapper,) = maps
        identity = type(mapper) is SameRecordTransform and not mapper.flattening_enabled
        if identity and self.every_field_selected:
            return None
        keep = [n for n in self.schema["properties"] if self.mask.get(("properties", n), True)]

        def shape(record: Record) -> Record | None:
            return mapper.transform({name: record[name] for name in keep if name in record})

        return shape

    @override
    def get_record_counter(
        self, *, endpoint: str | None = None, log_interval: float = metrics.DEFAULT_LOG_INTERVAL
    ) -> metrics.Counter:
        """The SDK's record counter (the same metric and tags), reading the clock once
        every thousand records instead of at every record.
        """
        tags: dict[str, Any] = {metrics.Tag.STREAM: self.name}
        if endpoint:
            tags[metrics.Tag.ENDPOINT] = endpoint
        return SparseCounter(metrics.Metric.RECORD_COUNT, tags, log_interval=log_interval)

    @override
    def generate_child_contexts(
        self, record: dict[str, Any], context: Context | None
    ) -> Iterable[Context | None]:
        """Neither stream has child streams, so there is no per-record context to build."""
        return ()


NULLABLE_STRING = th.StringType(nullable=True)
START_STAMP = operator.itemgetter("start_stamp")

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


class CdrsStream(TeniosStream):
    """Every call leg (one row per leg, not per call), incremental on ``start_stamp``."""

    name = "cdrs"
    primary_keys = ("uuid",)
    replication_key = "start_stamp"
    # The bookmark moves once per complete window (``read_records``), not per record.
    bookmark_deferred = True

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

    def __init__(self, tap: Tap, report: RunReport | None = None) -> None:
        self.decimal_cost = bool(tap.config.get("use_singer_decimal"))
        if self.decimal_cost:
            properties = {**self.schema["properties"], "cost": DECIMAL_COST}
            self.schema = {**self.schema, "properties": properties}
        super().__init__(tap, report)

    @override
    def _generate_schema_messages(self) -> Generator[SchemaMessage, None, None]:
        """The SDK's SCHEMA messages, with ``cost``'s precision and scale put back.

        The SDK rebuilds stream schemas from the catalog through an object that keeps
        only standard JSON Schema keys, so ``precision`` and ``scale`` are lost; without
        them a loader creates ``DECIMAL`` with its own defaults (``NUMBER(38, 0)`` in
        Snowflake: no decimals at all). (Private in the SDK: guarded by a test.)
        """
        for message in super()._generate_schema_messages():
            cost = message.schema.get("properties", {}).get("cost")
            if self.decimal_cost and cost and cost.get("format") == DECIMAL_COST["format"]:
                cost.update(precision=COST_PRECISION, scale=COST_SCALE)
            yield message

    @override
    def bookmark_key(self, bookmark: str) -> str:
        return canonical(bookmark)

    #: Where ``lookback_mode`` ``on_count_change`` keeps the parts of days read
    #: (``PartRead``) in the stream's state, beside the bookmark.
    PARTS_READ = "parts_read"
    #: The parts of days read whole so far this run (``on_count_change`` only).
    ledger: Ledger | None = None

    @override
    def read_records(self, context: Context | None) -> Iterator[Record]:
        settings = self.settings
        bookmark = self.stream_state.get("replication_key_value")
        begin, end = cdrs_range(settings, bookmark, utc_now())
        self.logger.info(
            "cdrs: reading %s to %s in windows of at most %g h, cut to fit pages of %d",
            format_request(begin),
            format_request(end),
            settings.window / timedelta(hours=1),
            settings.page_size,
        )
        self.ledger = None
        spans = None
        if settings.lookback_mode == "on_count_change":
            self.ledger, spans = self.check_lookback(begin, end)
        else:
            self.stream_state.pop(self.PARTS_READ, None)
        progress = Progress((end - begin).total_seconds(), every_seconds=5.0)
        # Legs, of them beyond the saved bookmark (new), windows, requests.
        totals = [0, 0, 0, 0]
        tops = top_windows(settings, begin, end, spans)
        batch = bool(self.config.get("batch_config"))
        saved = self.saved_bookmark
        for read in read_windows(self.transport, settings, tops, end, self.logger):
            if self.decimal_cost:
                for record in read.records:
                    yield self.finish(record)
            else:
                yield from read.records  # as they are: no Python frame per record
            stamps = list(map(START_STAMP, read.records))
            if self.ledger is not None:
                self.ledger.add(read.window, stamps)
                self.save_parts_read()
            if read.records and not batch:
                # The window is complete: make it resumable. (In BATCH mode the bookmark
                # moves once a file's BATCH message is out: ``get_batches``.)
                self.advance_bookmark(read.records[-1], context)
                self._write_state_message()
            new = len(stamps) - bisect.bisect_right(stamps, saved) if saved else len(stamps)
            totals = [
                totals[0] + len(stamps),
                totals[1] + new,
                totals[2] + 1,
                totals[3] + read.pages,
            ]
            if progress.advance((read.window.end - begin).total_seconds()):
                self.log_progress(read, progress, totals)
        if totals[2] == 0:
            self.logger.info("cdrs: nothing to read: 0 legs (0 beyond the saved bookmark)")

    def check_lookback(self, begin: datetime, end: datetime) -> tuple[Ledger, list[Window]]:
        """``lookback_mode`` ``on_count_change``: recount the parts of ``[begin, end)``
        earlier runs read whole; what is left to read, and the ledger to keep.

        A part is skipped only where its count, over exactly the period read, equals
        the legs emitted from it; anything else is read as always.
        """
        saved = parts_read_from_state(self.stream_state.get(self.PARTS_READ))
        checks = worth_checking(saved, begin, end)
        counts = ordered_map(
            self.count_part_read, checks, self.settings.max_concurrency, self.stopping
        )
        confirmed = [p for p, n in zip(checks, counts, strict=True) if n == p.legs]
        spans = spans_to_read(begin, end, confirmed)
        self.logger.info(
            "cdrs: lookback_mode=on_count_change: %d of %d part(s) read before are "
            "unchanged by /cdrs/count, not read again; reading %s",
            len(confirmed),
            len(checks),
            ", ".join(s.describe() for s in spans) or "nothing",
        )
        return Ledger(confirmed), spans

    def count_part_read(self, part: PartRead) -> int:
        """The API's count now over a part of a day an earlier run read."""
        where = f"cdrs lookback check {part.window.describe()}"
        return count_window(self.transport, part.window, where)

    def save_parts_read(self) -> None:
        """Put the parts read so far into the stream's state (``on_count_change``).

        Called once a window's records are all yielded, so no STATE says a part was
        read whose legs a target has not been sent. In BATCH mode too: STATE is
        written only when a file is announced, which holds every record yielded so
        far (this generator is then suspended inside a window, the ledger not past it).
        """
        if self.ledger is None:
            return
        bookmark = self.stream_state.get("replication_key_value")
        entries = self.ledger.entries(self.settings, bookmark)
        self.stream_state[self.PARTS_READ] = [e.to_state() for e in entries]
        self.state_manager.is_flushed = False

    def log_progress(self, read: WindowRead, progress: Progress, totals: list[int]) -> None:
        """A line every few seconds (and at the end), so a long backfill never looks hung.

        It says how many of the legs emitted are new (start after the saved bookmark):
        the rest were re-read from the lookback, and an hourly run's cost is mostly theirs.
        """
        self.logger.info(
            "cdrs: read up to %s: %d legs (%d beyond the saved bookmark) in %d window(s), "
            "%d request(s); %s",
            format_request(read.window.end),
            *totals,
            progress.timing(" of the range"),
        )

    def finish(self, record: Record) -> Record:
        """The record as emitted: with ``use_singer_decimal``, ``cost`` as its string."""
        if self.decimal_cost:
            try:
                record["cost"] = decimal_string(record["cost"], COST_PRECISION, COST_SCALE)
            except TypeError as exc:
                raise self.fail(str(RecordError(record["uuid"], "cost", str(exc)))) from None
        return record


class CdrCountsStream(TeniosStream):
    """The API's own CDR count per calendar day in ``timezone``: a reconciliation aid."""

    name = "cdr_counts"
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
            description="The first instant counted, UTC (inclusive): the day's start, or "
            "start_date where the extraction begins within the day.",
        ),
        th.Property(
            "start_date_to",
            th.DateTimeType,
            description="The end of the counted period, UTC (exclusive): the next day's "
            "start, or the run's end (end_date or now) where the extraction ends within "
            "the day.",
        ),
        th.Property(
            "whole_day",
            th.BooleanType,
            description="Whether the whole local day was counted: false for the days the "
            "extraction begins or ends within (start_date, end_date, today), whose count "
            "covers only [start_date_from, start_date_to), as the loaded legs do.",
        ),
        th.Property(
            "total_items",
            th.IntegerType,
            description="CDRs (legs) that started in the counted period, as the API counts "
            "them; today's is partial and recounted next run.",
        ),
    ).to_dict()

    @override
    def get_batch_config(self, config: Any) -> BatchConfig | None:
        """Never BATCH files: a run counts a few dozen days, a few RECORD messages."""
        return None

    #: Progress lines at least every this many days, or seconds.
    EVERY_DAYS = 30
    EVERY_SECONDS = 10.0

    @override
    def read_records(self, context: Context | None) -> Iterator[Record]:
        settings = self.settings
        zone = settings.timezone
        bookmark = self.stream_state.get("replication_key_value")
        days = count_days(settings, bookmark, utc_now())
        self.logger.info("cdr_counts: counting %d day(s) in %s", len(days), zone.key)
        totals = ordered_map(self.count_day, days, settings.max_concurrency, self.stopping)
        progress = Progress(
            len(days), every_seconds=self.EVERY_SECONDS, every_steps=self.EVERY_DAYS
        )
        for done, (day, total) in enumerate(zip(days, totals, strict=True), start=1):
            if progress.advance(done):
                self.log_progress(day, progress)
            yield {
                "date": day.date,
                "timezone": zone.key,
                "start_date_from": format_utc(day.counted.start),
                "start_date_to": format_utc(day.counted.end),
                "whole_day": day.whole,
                "total_items": total,
            }

    def log_progress(self, day: CountedDay, progress: Progress) -> None:
        """A line every ``EVERY_DAYS`` days or ``EVERY_SECONDS`` seconds, and at the end,
        so a long count (a year of days) never looks hung.
        """
        self.logger.info(
            "cdr_counts: %d of %d day(s) counted, up to %s; %s",
            progress.done,
            progress.total,
            day.date,
            progress.timing(),
        )

    def count_day(self, day: CountedDay) -> int:
        """The day's count, over the part of it counted (two requests on a 25-hour day)."""
        where = f"day {day.date} {day.counted.describe()}"
        return count_window(self.transport, day.counted, where)
