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
import random
import threading
import time
from collections.abc import Callable, Generator, Iterable
from datetime import datetime, timezone
from decimal import Decimal
from functools import cached_property
from http import HTTPStatus
from typing import Any

import msgspec
import requests
from singer_sdk.exceptions import FatalAPIError
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.helpers.types import Context
from singer_sdk.singerlib import RecordMessage
from singer_sdk.streams import RESTStream
from typing_extensions import override

from tap_tenios.settings import Settings
from tap_tenios.windows import Window, format_request

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


class TeniosAPIError(FatalAPIError):
    """The API refused a request or kept failing: the run stops, the key never shown."""


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


def retry_after(response: requests.Response) -> float | None:
    """Seconds from a ``Retry-After`` header (delta form), if present and sane."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


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

    http_method = "POST"
    # Emission is sorted, but each run first re-reads a lookback that lies below the
    # saved bookmark on purpose; see ``_increment_stream_state``.
    is_sorted = True
    check_sorted = False
    # Records are built field by field with exactly the schema's types (``records``),
    # so the SDK's per-record type conformance (a third of its CPU) has nothing to do.
    TYPE_CONFORMANCE_LEVEL = TypeConformanceLevel.NONE

    #: How waits between tries are spent; ``None``: on ``stopping``, so that a stream
    #: that stops (one window failed for good) does not wait out its other retries.
    #: Tests set a recorder here to assert waits without sleeping.
    sleep: Callable[[float], Any] | None = None
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stopping = threading.Event()
        self._sessions = threading.local()
        # Late-bound on purpose, so a clock or sleep swapped on the class is used.
        self._throttle = Throttle(lambda: self.clock(), self._wait)  # noqa: PLW0108

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

    @cached_property
    def _in_flight(self) -> threading.BoundedSemaphore:
        """At most ``max_concurrency`` requests at once, from however many threads."""
        return threading.BoundedSemaphore(self.settings.max_concurrency)

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

    def fail(self, message: str) -> TeniosAPIError:
        """An error safe to raise: the key is removed whatever ``message`` holds."""
        return TeniosAPIError(redact(message, self.config.get("access_key")))

    def post(
        self, path: str, fields: dict[str, Any], where: str, required: tuple[str, ...]
    ) -> dict[str, Any]:
        """POST ``fields`` (plus the key) to ``path``; retry what is transient.

        ``where`` names the request in messages (endpoint and window), since the body
        itself must never be shown.
        """
        secret = self.config["access_key"]
        payload = json.dumps({"access_key": secret, **fields}).encode()
        url = self.url_base + path
        for attempt in range(1, self.max_tries + 1):
            if self.stopping.is_set():
                raise self.fail(f"{path} for {where}: abandoned, the stream is stopping")
            self._throttle.wait()
            asked_wait: float | None = None
            try:
                with self._in_flight:
                    response = self._session().post(url, data=payload, timeout=self.timeout)
            except TRANSIENT_ERRORS as exc:
                problem = f"{type(exc).__name__} (no usable answer)"
            else:
                status = response.status_code
                if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
                    raise self.fail(
                        f"The Tenios API rejected the access key (HTTP {status}) at "
                        f"{path} for {where}: check the access_key setting."
                    )
                if status == HTTPStatus.OK:
                    try:
                        return decode(response.content, required)
                    except MalformedResponseError as exc:
                        problem = f"malformed 200 response: {exc}"
                elif status == HTTPStatus.TOO_MANY_REQUESTS or status >= 500:  # noqa: PLR2004
                    problem = f"HTTP {status}: {api_message(response)}"
                    asked_wait = retry_after(response)
                else:
                    raise self.fail(
                        f"The Tenios API refused {path} for {where}: HTTP {status}: "
                        f"{api_message(response)}"
                    )
            problem = redact(problem, secret)
            if attempt == self.max_tries:
                raise self.fail(
                    f"Giving up on {path} for {where} after {attempt} attempts; "
                    f"last problem: {problem}"
                )
            wait = self.retry_wait(attempt, asked_wait)
            if asked_wait is not None or "HTTP 429" in problem:
                self._throttle.pause(wait)
            self.logger.warning(
                "%s for %s: %s; retry %d of %d in %.1f s",
                path,
                where,
                problem,
                attempt,
                self.max_tries - 1,
                wait,
            )
            self._wait(wait)
        raise AssertionError("unreachable")  # pragma: no cover

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
