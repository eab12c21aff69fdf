"""tap-tenios: settings, discovery, and how a run ends, its output whole.

An expected failure (a rejected key, an unreachable API, a refused request, a
window that fails its checks, unusable settings or state) ends the command with one
line that says what to do and a non-zero exit code; the traceback is shown only at
debug level (``TAP_TENIOS_LOGLEVEL=DEBUG``). Anything else is a bug and keeps its
traceback.

The Singer output (``SingerWriter``, the tap's ``message_writer_class``) lives here
because how a run ends is mostly how its output ends. The SDK's writers flush stdout
after each message, a system call per record. Here RECORD lines collect in memory
until the next STATE (or SCHEMA) message, or until ``BLOCK`` bytes have collected,
and go out in one write: a STATE is the only moment a target can act on them anyway,
since state is what it commits. If the process dies before that write, the lost
records were not covered by any emitted state either, so the next run reads them
again. Fewer writes matter beyond the system calls: every write releases the
interpreter lock, and the thread writing records then waits behind the threads
decoding pages to get it back.

Stopping (SIGTERM, SIGINT): a block goes out whole or not at all, and never twice.
A signal that arrives while a block is being written lets that write finish (to a
slow reader, that is when the reader has taken it) and stops the run right after;
any other moment, at once. Nothing is written after it: the last STATE on stdout
was written after every record it covers, so the next run, resuming from it, loses
nothing.
"""

from __future__ import annotations

import atexit
import logging
import re
import signal
import sys
import threading
import warnings
from collections.abc import Mapping
from types import FrameType
from typing import Any

import jsonschema  # type: ignore[import-untyped]
import msgspec
from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.contrib.msgspec import MsgSpecWriter
from singer_sdk.exceptions import ConfigValidationError
from singer_sdk.singerlib.encoding.simple import Message, RecordMessage
from typing_extensions import override

from tap_tenios.errors import Interrupted, RunReport, TapRunError, redact
from tap_tenios.settings import Settings, SettingsError
from tap_tenios.streams import CdrCountsStream, CdrsStream

# The SDK warns on every run under Python 3.10 that the version is past its end of
# life: a multi-line warning in every hourly run's log that nobody can act on there.
# Python 3.10 is supported by this tap (and tested); the warning is for developers.
warnings.filterwarnings("ignore", message=r"Python 3\.10 reached its end of life")

#: How the SDK says where a JSON Schema error is: "... in config['page_size']".
_WHERE = re.compile(r"(?P<problem>.+) in config(?P<path>(?:\['[^']*'\])+)", re.DOTALL)
_REQUIRED = re.compile(r"'(?P<name>[^']+)' is a required property")


#: Bytes of RECORD lines held before they are written without waiting for a STATE.
BLOCK = 1 << 20


#: Records as JSON: decimals as exact JSON numbers, as the SDK's msgspec writer does;
#: ``time_extracted`` in RFC 3339, as msgspec spells every datetime.
_ENCODER = msgspec.json.Encoder(decimal_format="number")


class SingerWriter(MsgSpecWriter):
    """The SDK's msgspec writer (exact decimals as JSON numbers), written in blocks."""

    def __init__(self) -> None:
        super().__init__()
        self._block = bytearray()
        self._writing = False
        #: The signal that stopped the run, if one did: nothing is written after it.
        self.stopped_by: int | None = None
        atexit.register(self._drain_at_exit)

    def stop(self, signum: int) -> None:
        """Stop the run for a signal (called by the handler, on the main thread):
        at once, or, in the middle of a block, as soon as the block is written.
        """
        self.stopped_by = signum
        if not self._writing:
            raise Interrupted(signum)

    @override
    def write_message(self, message: Message) -> None:
        if self.stopped_by is not None:
            return
        block = self._block
        if type(message) is RecordMessage:
            # As ``format_message`` would, but encoded straight into the block: the
            # one message written per record, so it takes the shortest way.
            _ENCODER.encode_into(message.to_dict(), block, -1)
            block += b"\n"
            if len(block) >= BLOCK:
                self._write()
            return
        block += self.format_message(message)
        if not isinstance(message, RecordMessage):
            self.drain()
        elif len(block) >= BLOCK:
            self._write()

    def drain(self) -> None:
        """Write and flush what is held (nothing, once a signal stopped the run)."""
        if self.stopped_by is not None:
            return
        if self._block:
            self._write()
        sys.stdout.flush()

    def _write(self) -> None:
        """Write the whole block and flush it, then stop if a signal came meanwhile.

        An unbuffered stdout (``PYTHONUNBUFFERED``, set in many container images) is
        the raw file, whose one write may take only part of a block (a signal during a
        write to a full pipe): the rest is written after.
        """
        out = sys.stdout.buffer
        self._writing = True
        try:
            with memoryview(self._block) as block:
                done = 0
                while done < len(block):
                    done += out.write(block[done:]) or 0
            out.flush()
        finally:
            self._block.clear()
            self._writing = False
        if self.stopped_by is not None:
            raise Interrupted(self.stopped_by)

    def _drain_at_exit(self) -> None:
        """Records emitted by a run that ended without a STATE still reach the target."""
        if self._block:
            self.drain()


def named(error: str) -> str:
    """An SDK config error led by the setting's name, as the tap's own problems are:
    ``page_size: 0 is less than the minimum of 1``.
    """
    if missing := _REQUIRED.fullmatch(error):
        return f"{missing['name']}: required"
    found = _WHERE.fullmatch(error)
    if found is None:
        return error
    path = ".".join(re.findall(r"\['([^']*)'\]", found["path"]))
    return f"{path}: {found['problem']}"


class TapTenios(Tap):
    """Singer tap for Tenios call detail records."""

    name = "tap-tenios"
    message_writer_class = SingerWriter

    config_jsonschema = th.PropertiesList(
        th.Property(
            "access_key",
            th.StringType,
            required=True,
            secret=True,
            description="The account's API access key (customer portal: Account Data, API). "
            "Sent in each request body; never logged, echoed or written to state.",
        ),
        th.Property(
            "start_date",
            th.StringType,
            required=True,
            description="Earliest call start to extract: a date (YYYY-MM-DD) or an ISO-8601 "
            "date-time; without a zone it means UTC.",
        ),
        th.Property(
            "end_date",
            th.StringType,
            description="Exclusive end of the extraction, same format as start_date. "
            "Default: now. Later values are capped at now.",
        ),
        th.Property(
            "api_url",
            th.StringType,
            default="https://api.tenios.com",
            description="Base URL of the API. Must be https://, except for a local emulator "
            "on localhost, 127.0.0.1 or ::1. The access key is sent to this host only: a "
            "redirect elsewhere is an error.",
        ),
        th.Property(
            "page_size",
            th.IntegerType(minimum=1),
            default=1000,
            description="CDRs requested per page of /cdrs/retrieve.",
        ),
        th.Property(
            "timezone",
            th.StringType,
            default="UTC",
            description="IANA time zone whose calendar days the cdr_counts stream counts "
            "(e.g. Europe/Berlin). Timestamps in records are always UTC.",
        ),
        th.Property(
            "api_timezone",
            th.StringType,
            default="UTC",
            description="IANA time zone in which the API writes timestamps that carry no "
            "zone (e.g. '2024-03-01 12:00:00'); stamps with Z or an offset are read as "
            "given. Set it if the API writes local time (e.g. Europe/Berlin): the run stops "
            "when legs come back stamped outside the range asked for or in the future.",
        ),
        th.Property(
            "lookback_minutes",
            th.IntegerType(minimum=0),
            default=1440,
            description="How far before the saved bookmark each incremental run starts "
            "re-reading, so CDRs that appear late (long calls, late billing) are not missed. "
            "Re-read legs are emitted again; targets deduplicate them on uuid.",
        ),
        th.Property(
            "lookback_mode",
            th.StringType,
            default="always",
            allowed_values=["always", "on_count_change"],
            description="'always' re-reads the whole lookback every run. 'on_count_change' "
            "asks /cdrs/count for each part of the lookback that an earlier run read (kept "
            "in state: one part per run, at most four a UTC day) and reads a part again "
            "only when its count differs from the legs emitted from it; everything else is "
            "read as always. It rests on one assumption: a CDR does not change once the API "
            "serves it. A CDR changed in place (late billing filling in cost, say) without "
            "its part's count changing is missed; keep 'always' if that can happen.",
        ),
        th.Property(
            "window_size_hours",
            th.IntegerType(minimum=1),
            default=8784,
            description="The widest window of calls one /cdrs/retrieve request may span "
            "(default 8784 h, a leap year). Windows are sized by the API's counts: one "
            "request for a quiet range, a busy one cut into parts that fit a page.",
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType(minimum=1),
            default=4,
            description="Requests in flight at once (cdrs windows and pages, cdr_counts "
            "days). Records are still emitted in order; a 429 pauses every fetch.",
        ),
        th.Property(
            "on_count_mismatch",
            th.StringType,
            default="fail",
            allowed_values=["fail", "warn"],
            description="When a cdrs window still disagrees with the API's counts after it "
            "was read again (and cut, where it can be): 'fail' stops before state passes "
            "the window, 'warn' logs the window and the difference and goes on. Windows "
            "within the lookback of the run's end only warn: the next run reads them again.",
        ),
        th.Property(
            "count_check",
            th.BooleanType,
            default=True,
            description="Also ask /cdrs/count for every cdrs window read in several pages "
            "(pages are separate queries that can shift) and require the same number of "
            "legs. A window read in one page is checked by its own total_items, always.",
        ),
        th.Property(
            "request_timeout_seconds",
            th.IntegerType(minimum=1),
            default=120,
            description="Seconds to wait for one API answer before retrying.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType(minimum=0),
            default=6,
            description="Retries of a request after a 408, a 429, a 5xx, a dropped "
            "connection, a timeout or a malformed body, with exponential back-off honouring "
            "Retry-After; then the run fails naming the endpoint and window. A host name "
            "that does not resolve is retried twice only.",
        ),
        th.Property(
            "use_singer_decimal",
            th.BooleanType,
            default=False,
            description="Emit cdrs.cost as a string in the x-singer.decimal format "
            "(precision 15, scale 6), which SQL loaders built on the Meltano SDK create as "
            "DECIMAL(15, 6): exact in Snowflake too, and through target-postgres's COPY. "
            "Off: an exact JSON number (FLOAT in Snowflake, DOUBLE in DuckDB). On, a cost "
            "with more than 6 decimals or 9 integer digits stops the run instead of being "
            "rounded on its way into the warehouse.",
        ),
    ).to_dict()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        #: What failed in this run, by stream (see ``RunReport``); before the SDK's
        #: own set-up, which may already build the streams.
        self.report = RunReport()
        super().__init__(*args, **kwargs)
        if threading.current_thread() is threading.main_thread():
            # In place of the SDK's handlers, which write the tap's state from inside
            # the handler (after records still held, or in the middle of a block being
            # written) and exit 0, as if the run had finished.
            for stopping in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stopping, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: stop where the output is whole (see ``SingerWriter``)."""
        if isinstance(self.message_writer, SingerWriter):
            self.message_writer.stop(signum)  # at once, or once the block in hand is out
            return
        raise Interrupted(signum)

    @classmethod
    def settings_for(cls, config: Mapping[str, Any]) -> Settings:
        """Settings for ``config`` outside a run (the probe): the JSON schema's defaults
        filled in, as the SDK fills them in for a run, then parsed; ``SettingsError``
        names every problem. A run's config is also checked against the schema first.
        """
        schema = cls.config_jsonschema
        defaults = {
            name: p["default"] for name, p in schema["properties"].items() if "default" in p
        }
        merged = {**defaults, **config}
        secret = merged.get("access_key")
        validator = jsonschema.validators.validator_for(schema)(schema)
        refused = [
            cls._hide_key(f"{'.'.join(map(str, e.absolute_path)) or 'config'}: {e.message}", secret)
            for e in validator.iter_errors(merged)
        ]
        if refused:
            raise SettingsError(refused)
        try:
            return Settings.from_config(merged)
        except SettingsError as exc:
            raise SettingsError([cls._hide_key(p, secret) for p in exc.problems]) from None

    @override
    def discover_streams(self) -> list[Stream]:
        return [CdrsStream(self, self.report), CdrCountsStream(self, self.report)]

    @override  # type: ignore[misc]  # marked final in the SDK: see the docstring
    def sync_all(self) -> None:
        """Sync every selected stream, then raise what failed, naming each stream.

        The SDK marks ``sync_all`` final (for type checkers only); it is still the one
        place where the tap that ran is in hand once every stream has synced, which
        the command needs to end with the run's failures. It calls the SDK's own
        ``sync_all`` unchanged, and a test fails if that stops being the method the
        command runs.

        A stream that fails for a reason of its own does not stop the other (they
        are independent: cdr_counts only reconciles); the run then fails naming each
        failure (``RunReport``). A failure every request would meet (a rejected key,
        an unreachable API) stops the run at once. Records still held for the output
        are written however the sync ends.
        """
        try:
            super().sync_all()
        finally:
            if isinstance(self.message_writer, SingerWriter):
                self.message_writer.drain()
        self.report.raise_failures()

    @classmethod
    @override
    def invoke(cls, **kwargs: Any) -> None:
        """The command: an expected failure becomes one line and exit code 1; a stop by
        SIGTERM or SIGINT a warning and 143 or 130.
        """
        try:
            super().invoke(**kwargs)
        except (TapRunError, ConfigValidationError) as exc:
            debug = cls.logger.isEnabledFor(logging.DEBUG)
            cls.logger.error("%s", exc, exc_info=exc if debug else None)
            sys.exit(1)
        except Interrupted as stop:
            cls.logger.warning(
                "The run was %s: the last STATE written covers every record before it; "
                "the next run resumes from there.",
                stop,
            )
            sys.exit(stop.exit_code)

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Validate against the JSON schema (types, limits, allowed values; the SDK
        fills in the defaults), then parse (``Settings``): every problem at once, each
        led by its setting's name, never echoing the key.

        The SDK's own messages quote the offending value, which for ``access_key``
        would be the secret itself; they are redacted here.
        """
        secret = self.config.get("access_key")
        errors: list[str] = []
        try:
            errors = super()._validate_config(raise_errors=True)
        except ConfigValidationError as exc:
            errors = list(exc.errors)
        errors = [self._hide_key(named(error), secret) for error in errors]
        if raise_errors:
            try:
                Settings.from_config(self.config)
            except SettingsError as exc:
                # What the schema refused already is not named twice.
                named_already = {error.split(":")[0] for error in errors}
                parsing = [
                    self._hide_key(p, secret)
                    for p in exc.problems
                    if p.split(":")[0] not in named_already
                ]
                errors = parsing + errors
        if errors and raise_errors:
            # The problems go into the message itself: wrappers such as
            # `meltano config test` show only the error's text (or the last line).
            raise ConfigValidationError(
                "Invalid settings, fix them in the tap's config: " + "; ".join(errors),
                errors=errors,
            )
        return errors

    @staticmethod
    def _hide_key(error: str, secret: Any) -> str:
        if error.startswith("access_key") or (
            "access_key" in error and secret is not None and str(secret) in error
        ):
            return "access_key: must be a non-empty string (value not shown)"
        # Another setting holding the key (pasted into the wrong variable) is named,
        # its value not shown.
        return redact(error, str(secret) if secret is not None else None)


if __name__ == "__main__":
    TapTenios.cli()
