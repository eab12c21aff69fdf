"""The base stream: request body, error mapping, retries and secret hygiene.

The access key travels in the JSON body, so the usual safeguards (auth headers kept
out of logs) do not apply: any echoed body, logged argument or exception text could
carry it. Every request therefore goes through ``TeniosStream.post``, whose errors
and log lines are built here from known-safe parts and redacted once more.

Why not the SDK's ``request_decorator``: its backoff handler logs the call's
arguments, it ignores ``Retry-After``, it does not retry a 200 with a broken body,
and its waits cannot be shared between the threads that fetch windows concurrently.
The policy below keeps the SDK's defaults otherwise (exponential waits, the same
retriable errors, a bounded number of tries).
"""

from __future__ import annotations

import json
import logging
import random
import socket
import sys
import threading
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import cached_property
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import msgspec
import requests
from singer_sdk.exceptions import FatalAPIError, FatalSyncError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_tenios.records import CLOCK_SKEW
from tap_tenios.settings import Settings, utc_now
from tap_tenios.windows import TimestampError, Window, format_request, parse_setting

#: HTTP statuses worth another try: a timeout, a rate limit, a server-side failure.
RETRIABLE_STATUSES = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
#: Retries when the API's host name does not resolve: a typo will not start resolving
#: in a minute, a resolver hiccup passes in a second or two.
NAME_RESOLUTION_RETRIES = 2

#: Network-level failures worth another try (the SDK's retriable set).
TRANSIENT_ERRORS = (
    ConnectionResetError,
    requests.exceptions.Timeout,
    requests.exceptions.ConnectionError,
    requests.exceptions.ChunkedEncodingError,
    requests.exceptions.ContentDecodingError,
)

#: Longest single wait, whatever ``Retry-After`` asks for.
MAX_RETRY_WAIT_SECONDS = 120.0
#: First exponential wait; doubles per try up to ``MAX_RETRY_WAIT_SECONDS``.
BASE_RETRY_WAIT_SECONDS = 1.0
#: Longest API message quoted in an error.
MAX_QUOTED = 300
#: How the SDK's ``Stream.sync`` starts the line it logs for any exception.
SDK_UNHANDLED = "An unhandled error occurred"


class TapRunError(FatalSyncError):
    """An expected failure: its message says what went wrong and what to do.

    The command line shows it as one line (a traceback only at debug level).
    ``stops_run`` marks failures that every other request would meet too (a
    rejected key, an unreachable API): the run stops instead of trying the other
    stream.
    """

    stops_run = False


class TeniosAPIError(TapRunError, FatalAPIError):
    """The API refused a request or kept failing: the run stops, the key never shown."""


class RunWideAPIError(TeniosAPIError):
    """A failure every request would meet: no point in running the other stream."""

    stops_run = True


class MalformedResponseError(ValueError):
    """A 200 whose body is not the JSON the endpoint documents."""


def redact(text: str, secret: str | None) -> str:
    """``text`` with every spelling of ``secret`` (raw, JSON-escaped) replaced."""
    if not secret:
        return text
    for spelling in {secret, json.dumps(secret)[1:-1], secret.strip()}:
        if spelling:
            text = text.replace(spelling, "[redacted]")
    return text


def api_message(response: requests.Response) -> str:
    """The API's own words about an error: its JSON ``error``/``message``, else the text."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        for key in ("error", "message", "errorMessage", "detail"):
            if isinstance(body.get(key), str):
                return str(body[key])[:MAX_QUOTED]
    text = " ".join(response.text.split())
    return text[:MAX_QUOTED] or response.reason or "no message"


#: Numbers with a fraction or exponent become ``Decimal`` from their exact text.
_DECODER = msgspec.json.Decoder(float_hook=Decimal)


def decode(content: bytes, required: tuple[str, ...]) -> dict[str, Any]:
    """Decode a 200 body with exact decimals and check the documented keys."""
    try:
        body = _DECODER.decode(content)
    except (ValueError, RecursionError) as exc:  # msgspec.DecodeError, UnicodeDecodeError
        raise MalformedResponseError(f"body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise MalformedResponseError(f"body is a JSON {type(body).__name__}, expected an object")
    for key in required:
        if key not in body:
            raise MalformedResponseError(f"body lacks {key!r}")
    if "items" in required and not isinstance(body["items"], list):
        raise MalformedResponseError("'items' is not a list")
    total = body.get("total_items")
    if "total_items" in required and (
        isinstance(total, bool) or not isinstance(total, int) or total < 0
    ):
        raise MalformedResponseError(f"'total_items' is {total!r}, expected a count")
    return body


#: Causes told by the requests exception alone, most specific first.
_REQUESTS_CAUSES: tuple[tuple[type[Exception], str], ...] = (
    (requests.exceptions.ConnectTimeout, "no connection within request_timeout_seconds"),
    (requests.exceptions.Timeout, "no answer within request_timeout_seconds"),
    (requests.exceptions.ChunkedEncodingError, "the answer was cut off"),
    (requests.exceptions.ContentDecodingError, "the answer could not be decompressed"),
)


def network_cause(exc: BaseException) -> tuple[str, bool]:
    """What went wrong on the network, in words, and whether the host name failed to
    resolve (the cause sits deep in the chain that requests and urllib3 build).
    """
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, socket.gaierror):
            return f"the host name does not resolve ({seen.strerror or seen})", True
        if isinstance(seen, ConnectionRefusedError):
            return "the connection was refused (nothing listens there)", False
        if isinstance(seen, ConnectionResetError):
            return "the connection was closed without an answer", False
        seen = seen.__cause__ or seen.__context__
    for kind, cause in _REQUESTS_CAUSES:
        if isinstance(exc, kind):
            return cause, False
    return f"{type(exc).__name__} (no usable answer)", False


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta form), if present and sane."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class Retry:
    """Why a request is tried again, and how long to wait first."""

    problem: str
    asked_wait: float | None = None
    #: Pause every thread of the stream, not only this one (a rate limit).
    throttle_all: bool = False
    #: Set when there was no answer at all: the network cause, in words.
    unreachable: str | None = None


class Throttle:
    """A back-off shared by every thread of a stream: one 429 pauses them all."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], None]) -> None:
        self._clock = clock
        self._sleep = sleep
        self._lock = threading.Lock()
        self._not_before = 0.0

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._not_before = max(self._not_before, self._clock() + seconds)

    def wait(self) -> None:
        with self._lock:
            delay = self._not_before - self._clock()
        if delay > 0:
            self._sleep(delay)


class TeniosStream(RESTStream):
    """Base for both endpoints: every call is a POST whose JSON body holds the key."""

    # Emission is sorted, but each run first re-reads a lookback that lies below the
    # saved bookmark on purpose; see ``_increment_stream_state``.
    is_sorted = True
    check_sorted = False
    # Records are built field by field with exactly the schema's types (``records``),
    # so the SDK's per-record type conformance (a third of its CPU) has nothing to do.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        #: How waits between tries are spent; ``None``: on ``stopping``, so that a
        #: stream that stops (one window failed for good) does not wait out its other
        #: retries. A test harness sets a recorder here (and a matching ``clock``) on
        #: this stream alone, to assert waits without sleeping.
        self.sleep: Callable[[float], Any] | None = None
        self.clock: Callable[[], float] = time.monotonic
        self.stopping = threading.Event()
        #: Why this stream's last sync failed, if it did (see ``TapTenios.sync_all``).
        self.failure: TapRunError | None = None
        self._sessions = threading.local()
        self._lazy = threading.Lock()
        self._semaphore: threading.BoundedSemaphore | None = None
        # Late-bound on purpose, so a clock or sleep set after construction is used.
        self._throttle = Throttle(lambda: self.clock(), self._wait)  # noqa: PLW0108

    @override
    def log(self, message: str, *args: Any, level: int = logging.INFO, **kwargs: Any) -> None:
        """The SDK's log, without its "An unhandled error occurred" line for a failure
        of ours: that failure is handled, and reported once, as one line that says
        what to do (``sync``, ``TapTenios.invoke``).
        """
        if message.startswith(SDK_UNHANDLED) and isinstance(sys.exc_info()[1], TapRunError):
            return
        super().log(message, *args, level=level, **kwargs)

    @override  # type: ignore[misc]  # final in the SDK: extended, not replaced
    def sync(self, context: Context | None = None) -> None:
        """Sync, after checking the saved state; a failure of this stream alone is kept
        in ``failure`` so that the other stream still runs. The SDK marks this method
        final; it is extended, not replaced.
        """
        self.failure = None
        try:
            self.check_bookmark()
            super().sync(context)
        except TapRunError as exc:
            if exc.stops_run:
                raise
            self.logger.error("Stream %s failed: %s", self.name, exc)
            self.failure = exc

    def check_bookmark(self) -> None:
        """Refuse a saved bookmark that does not parse or lies in the future.

        A run from a future bookmark reads nothing and exits 0, every time, until the
        clock catches up: years of silently empty runs. A date-only bookmark names a
        local calendar day, which may begin up to a day ahead of UTC.
        """
        value = self.stream_state.get("replication_key_value")
        if value is None or value == "":
            return
        advice = (
            f"clear the saved state of stream {self.name!r} (e.g. `meltano state clear`) "
            "to start again from start_date."
        )
        try:
            moment = parse_setting(value)
        except (TimestampError, TypeError):
            raise self.fail(
                f"The saved state of stream {self.name!r} holds bookmark {value!r}, which "
                f"is not a date-time: {advice}"
            ) from None
        now = utc_now()
        slack = timedelta(days=1) if len(str(value).strip()) == 10 else CLOCK_SKEW  # noqa: PLR2004
        if moment > now + slack:
            raise self.fail(
                f"The saved state of stream {self.name!r} holds bookmark {value!r}, later "
                f"than now ({format_request(now)}): runs from it would read nothing. Fix the "
                f"clock, or {advice}"
            )

    @property
    @override
    def url_base(self) -> str:
        return str(self.config["api_url"]).rstrip("/")

    @property
    @override
    def timeout(self) -> int:
        return int(self.config["request_timeout_seconds"])

    @cached_property
    def settings(self) -> Settings:
        """The config, typed; already validated by the tap before any request."""
        return Settings.from_config(self.config)

    def bookmark_key(self, bookmark: str) -> str:
        """A saved bookmark in the spelling records use, for comparing the two."""
        return bookmark

    @override
    def _increment_stream_state(
        self, latest_record: dict[str, Any], *, context: Context | None = None
    ) -> None:
        """Advance the bookmark, but never move it back.

        Rows re-read from the lookback are older than the saved bookmark; letting them
        rewind it would make a run killed during the lookback redo more than needed.
        Everything below the saved bookmark was read by an earlier run, so keeping it
        is safe.
        """
        if latest_record[str(self.replication_key)] < self.saved_bookmark:
            return
        super()._increment_stream_state(latest_record, context=context)

    @override
    def generate_child_contexts(
        self, record: dict[str, Any], context: Context | None
    ) -> Iterable[Context | None]:
        """Neither stream has child streams, so there is no per-record context to build."""
        return ()

    @cached_property
    def every_field_selected(self) -> bool:
        """Whether the catalog keeps every field (the usual case)."""
        mask = self.mask
        return all(mask.get(("properties", name), True) for name in self.schema["properties"])

    @override
    def _generate_record_messages(
        self, record: dict[str, Any]
    ) -> Generator[RecordMessage, None, None]:
        """The SDK's RECORD generation, minus its walk over every field of every record
        to drop deselected ones when none is deselected: measured at 12 us of the
        ~60 us a record costs. Whenever fields are deselected (or conformance is on),
        the SDK's own code runs unchanged.
        """
        if not self.every_field_selected or (
            self.TYPE_CONFORMANCE_LEVEL is not TypeConformanceLevel.NONE
        ):
            yield from super()._generate_record_messages(record)
            return
        for stream_map in self.stream_maps:
            mapped = stream_map.transform(record)
            if mapped is not None:
                yield RecordMessage(
                    stream=stream_map.stream_alias,
                    record=mapped,
                    version=self._stream_version,
                    time_extracted=datetime.now(timezone.utc),
                )

    @cached_property
    def saved_bookmark(self) -> str:
        """The bookmark this run started from ("" if none), in the records' spelling."""
        bookmark = self.stream_state.get("replication_key_value")
        return self.bookmark_key(bookmark) if bookmark else ""

    @property
    def _in_flight(self) -> threading.BoundedSemaphore:
        """At most ``max_concurrency`` requests at once, from however many threads.

        Built on first use, under a lock: the first users are worker threads, and two
        semaphores would let twice the requests through.
        """
        with self._lazy:
            if self._semaphore is None:
                self._semaphore = threading.BoundedSemaphore(self.settings.max_concurrency)
            return self._semaphore

    @property
    def max_tries(self) -> int:
        return int(self.config["max_retries"]) + 1

    def _session(self) -> requests.Session:
        """One session per thread: ``requests.Session`` is not thread-safe."""
        session = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
            session.headers.update(
                {"Content-Type": "application/json", "User-Agent": self.user_agent}
            )
        return session

    def fail(self, message: str, *, stops_run: bool = False) -> TeniosAPIError:
        """An error safe to raise: the key is removed whatever ``message`` holds.

        ``stops_run``: every other request would fail the same way (see ``TapRunError``).
        """
        kind = RunWideAPIError if stops_run else TeniosAPIError
        return kind(redact(message, self.config.get("access_key")))

    def post(
        self, path: str, fields: dict[str, Any], where: str, required: tuple[str, ...]
    ) -> dict[str, Any]:
        """POST ``fields`` (plus the key) to ``path``; retry what is transient.

        ``where`` names the request in messages (endpoint and window), since the body
        itself must never be shown. Redirects are not followed: the key is in the body
        and goes to ``api_url``'s host only.
        """
        secret = self.config["access_key"]
        payload = json.dumps({"access_key": secret, **fields}).encode()
        url = self.url_base + path
        host = urlsplit(url).netloc
        tries = self.max_tries
        for attempt in range(1, self.max_tries + 1):
            if self.stopping.is_set():
                raise self.fail(f"{path} for {where}: abandoned, the stream is stopping")
            self._throttle.wait()
            try:
                with self._in_flight:
                    response = self._session().post(
                        url, data=payload, timeout=self.timeout, allow_redirects=False
                    )
            except TRANSIENT_ERRORS as exc:
                cause, unresolved = network_cause(exc)
                if unresolved:
                    tries = min(tries, NAME_RESOLUTION_RETRIES + 1)
                retry = Retry(f"could not reach {host}: {cause}", unreachable=cause)
            else:
                outcome = self._outcome(response, f"{path} for {where}", host, required)
                if not isinstance(outcome, Retry):
                    return outcome
                retry = outcome
            problem = redact(retry.problem, secret)
            if attempt >= tries and retry.unreachable:
                raise self.fail(
                    f"Giving up on {path} for {where} after {attempt} attempts: the Tenios "
                    f"API at {host} is unreachable: {retry.unreachable}. Check api_url and "
                    f"the network.",
                    stops_run=True,
                )
            if attempt >= tries:
                raise self.fail(
                    f"Giving up on {path} for {where} after {attempt} attempts; "
                    f"last problem: {problem}"
                )
            if self.stopping.is_set():
                # The stream stopped while this request was out (another read failed
                # for good, or the run is ending): no warning, no wait, no retry.
                raise self.fail(f"{path} for {where}: abandoned, the stream is stopping")
            wait = self.retry_wait(attempt, retry.asked_wait)
            if retry.throttle_all:
                self._throttle.pause(wait)
            self.logger.warning(
                "%s for %s: %s; retry %d of %d in %.1f s",
                path,
                where,
                problem,
                attempt,
                tries - 1,
                wait,
            )
            self._wait(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _outcome(
        self, response: requests.Response, what: str, host: str, required: tuple[str, ...]
    ) -> dict[str, Any] | Retry:
        """A decoded 200, a reason to retry, or a final error (raised)."""
        status = response.status_code
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise self.fail(
                f"The Tenios API rejected the access key (HTTP {status}) at {what}: "
                f"check the access_key setting.",
                stops_run=True,
            )
        if response.is_redirect:
            raise self.fail(
                f"The API at {host} answered {what} with a redirect (HTTP {status}) to "
                f"{response.headers.get('Location', 'nowhere')!r}, which is not followed: the "
                f"access key goes to api_url's host only. Set api_url to the address the API "
                f"answers at.",
                stops_run=True,
            )
        if status == HTTPStatus.OK:
            try:
                return decode(response.content, required)
            except MalformedResponseError as exc:
                return Retry(f"malformed 200 response: {exc}")
        if status in RETRIABLE_STATUSES or status >= 500:  # noqa: PLR2004
            asked = retry_after(response)
            return Retry(
                f"HTTP {status}: {api_message(response)}",
                asked_wait=asked,
                # A 429 (or any asked-for wait) concerns the whole account: every
                # thread pauses, not only the one that was told.
                throttle_all=status == HTTPStatus.TOO_MANY_REQUESTS or asked is not None,
            )
        raise self.fail(f"The Tenios API refused {what}: HTTP {status}: {api_message(response)}")

    def _wait(self, seconds: float) -> None:
        if self.sleep is not None:
            self.sleep(seconds)
        else:
            self.stopping.wait(seconds)

    def count(self, window: Window, where: str) -> int:
        """``/cdrs/count`` for a whole window, in the <= 1-day pieces the API accepts."""
        return sum(
            self.post(
                "/cdrs/count",
                {"start_date_from": format_request(lower), "start_date_to": format_request(upper)},
                where,
                required=("total_items",),
            )["total_items"]
            for lower, upper in window.count_requests()
        )

    @staticmethod
    def retry_wait(attempt: int, asked: float | None) -> float:
        """``Retry-After`` if the API gave one (capped), else exponential with jitter."""
        if asked is not None:
            return min(asked, MAX_RETRY_WAIT_SECONDS)
        ceiling = min(BASE_RETRY_WAIT_SECONDS * 2.0 ** (attempt - 1), MAX_RETRY_WAIT_SECONDS)
        return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto
