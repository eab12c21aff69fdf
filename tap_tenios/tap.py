"""tap-tenios: settings, discovery, and how a run ends.

An expected failure (a rejected key, an unreachable API, a refused request, a
window that fails its checks, unusable settings or state) ends the command with one
line that says what to do and a non-zero exit code; the traceback is shown only at
debug level (``TAP_TENIOS_LOGLEVEL=DEBUG``). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import warnings
from contextvars import ContextVar
from types import FrameType
from typing import Any

from singer_sdk import Stream, Tap
from singer_sdk import typing as th
from singer_sdk.exceptions import ConfigValidationError
from typing_extensions import override

from tap_tenios.errors import Interrupted, RunReport, TapRunError, redact
from tap_tenios.settings import Settings, SettingsError
from tap_tenios.streams import CdrCountsStream, CdrsStream
from tap_tenios.writer import SingerWriter

# The SDK warns on every run under Python 3.10 that the version is past its end of
# life: a multi-line warning in every hourly run's log that nobody can act on there.
# Python 3.10 is supported by this tap (and tested); the warning is for developers.
warnings.filterwarnings("ignore", message=r"Python 3\.10 reached its end of life")

#: The taps built while ``TapTenios.invoke`` runs: the SDK builds the command's tap
#: inside ``invoke`` and keeps no reference to it, and its failures are read after.
_INVOKED: ContextVar[list[TapTenios] | None] = ContextVar("tap_tenios_invoked", default=None)


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
            th.IntegerType,
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
            th.IntegerType,
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
            th.IntegerType,
            default=8784,
            description="The widest window of calls one /cdrs/retrieve request may span "
            "(default 8784 h, a leap year). Windows are sized by the API's counts: one "
            "request for a quiet range, a busy one cut into parts that fit a page.",
        ),
        th.Property(
            "max_concurrency",
            th.IntegerType,
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
            th.IntegerType,
            default=120,
            description="Seconds to wait for one API answer before retrying.",
        ),
        th.Property(
            "max_retries",
            th.IntegerType,
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
        if (invoked := _INVOKED.get()) is not None:
            invoked.append(self)
        if threading.current_thread() is threading.main_thread():
            # In place of the SDK's handlers, which write the tap's state from inside
            # the handler (after records still held, or in the middle of a block being
            # written) and exit 0, as if the run had finished.
            for stopping in (signal.SIGTERM, signal.SIGINT):
                signal.signal(stopping, self._stop)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        """SIGTERM or SIGINT: stop where the output is whole (see ``writer``)."""
        if isinstance(self.message_writer, SingerWriter):
            self.message_writer.stop(signum)  # at once, or once the block in hand is out
            return
        raise Interrupted(signum)

    @override
    def discover_streams(self) -> list[Stream]:
        return [CdrsStream(self, self.report), CdrCountsStream(self, self.report)]

    @classmethod
    @override
    def invoke(cls, **kwargs: Any) -> None:
        """The command: an expected failure becomes one line and exit code 1.

        A stream that fails for a reason of its own does not stop the other (they
        are independent: cdr_counts only reconciles); the run then fails naming each
        failure (``RunReport``). A failure every request would meet (a rejected key,
        an unreachable API) stops the run at once.
        """
        invoked: list[TapTenios] = []
        token = _INVOKED.set(invoked)
        try:
            super().invoke(**kwargs)
            for tap in invoked:
                tap.report.raise_failures()
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
        finally:
            _INVOKED.reset(token)
            for tap in invoked:
                if isinstance(tap.message_writer, SingerWriter):
                    tap.message_writer.drain()

    @override
    def _validate_config(self, *, raise_errors: bool = True) -> list[str]:
        """Validate types and meaning, naming each setting and never echoing the key.

        The SDK's own messages quote the offending value, which for ``access_key``
        would be the secret itself; they are redacted here.
        """
        secret = self.config.get("access_key")
        errors: list[str] = []
        try:
            errors = super()._validate_config(raise_errors=True)
        except ConfigValidationError as exc:
            errors = list(exc.errors)
        errors = [self._hide_key(error, secret) for error in errors]
        if not errors and raise_errors:
            try:
                Settings.from_config(self.config)
            except SettingsError as exc:
                errors = exc.problems
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
        if "access_key" in error or (secret is not None and str(secret) in error):
            return "access_key: must be a non-empty string (value not shown)"
        return redact(error, secret if isinstance(secret, str) else None)


if __name__ == "__main__":
    TapTenios.cli()
