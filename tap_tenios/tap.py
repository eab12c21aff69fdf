"""tap-tenios: settings, discovery, and how a run ends.

An expected failure (a rejected key, an unreachable API, a refused request, a
window that fails its checks, unusable settings or state) ends the command with one
line that says what to do and a non-zero exit code; the traceback is shown only at
debug level (``TAP_TENIOS_LOGLEVEL=DEBUG``). Anything else is a bug and keeps its
traceback.
"""

from __future__ import annotations

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

#: How the SDK says where a JSON Schema error is: "... in config['page_size']".
_WHERE = re.compile(r"(?P<problem>.+) in config(?P<path>(?:\['[^']*'\])+)", re.DOTALL)
_REQUIRED = re.compile(r"'(?P<name>[^']+)' is a required property")


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
        """SIGTERM or SIGINT: stop where the output is whole (see ``writer``)."""
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
