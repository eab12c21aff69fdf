"""The base stream: what both streams share with the SDK.

Settings and the HTTP transport, the bookmark's rules (never backwards; moved only at
safe points), BATCH files, and how a failure of the tap's own ends a stream: it is
caught where the records are made (``get_records``) and kept in the run's
``RunReport``. The stream then ends cleanly (its state is what it had safely
reached), the other stream still runs unless every request would fail the same way,
and the command ends with one line (``tap``).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import closing
from functools import cached_property
from importlib.metadata import version
from typing import Any

from singer_sdk import Tap, metrics
from singer_sdk.helpers._batch import BaseBatchFileEncoding, BatchConfig
from singer_sdk.helpers.types import Context, Record
from singer_sdk.mapper import SameRecordTransform
from typing_extensions import override

from tap_tenios.batch import BatchSettings, RunFolder, sweep, write_batches
from tap_tenios.errors import RunReport, TapRunError, api_error, redact
from tap_tenios.planner import bookmark_problem
from tap_tenios.progress import SparseCounter
from tap_tenios.settings import Settings, utc_now
from tap_tenios.transport import Transport
from tap_tenios.windows import parse_setting
from tap_tenios.writer import RecordOutput, SingerWriter

#: How the tap introduces itself to the API.
USER_AGENT = f"tap-tenios/{version('tap-tenios')}"


class TeniosStream(RecordOutput):
    """Base for both endpoints: settings, the transport, state rules, failure handling."""

    # Emission is sorted, but each run first re-reads a lookback that lies below the
    # saved bookmark on purpose; see ``_increment_stream_state``.
    is_sorted = True
    check_sorted = False

    def __init__(self, tap: Tap, report: RunReport | None = None) -> None:
        super().__init__(tap)
        self.report = report or RunReport()
        #: Set when this stream stops early (a read failed for good, the run ends):
        #: requests still out give up instead of retrying.
        self.stopping = threading.Event()

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
        )

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
            if isinstance(self.output, SingerWriter):
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
