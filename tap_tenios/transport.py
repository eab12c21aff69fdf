"""The HTTP client: one POST whose JSON body carries the key, retried, decoded, never leaking it.

The access key travels in the request body, so the usual safeguards (auth headers
kept out of logs) do not apply: an echoed body, a logged argument or an exception's
text could carry it. Every error and log line here is built from known-safe parts
(endpoint, window, status, the API's own words) and redacted once more.

No SDK imports: a ``Transport`` is built with what it needs (URL, key, timeout,
tries, concurrency, a stop flag, and the clock and sleep that tests replace), so the
retry policy is tested without a tap.

The waits between tries come from ``backoff``'s wait generators: ``backoff.expo``
for the exponential series, ``backoff.full_jitter`` for the random part, unless the
API's ``Retry-After`` (seconds or an HTTP date) says how long. The loop that tries,
waits and gives up is this module's, not ``backoff.on_exception``: that one spends
its waits in ``time.sleep``, which neither a stopping run (a SIGTERM, or another
read failing for good, must not sit out a two-minute ``Retry-After``) nor a test
(retries are tested without sleeping) can cut short or replace. Here a wait is spent
on the transport's ``stop`` event, or on the ``sleep`` a test passes. The policy:
``max_retries`` retries, a 429 pausing every thread (the rate limit is the
account's), a 200 with a broken body retried like a 5xx, a host name that does not
resolve given up on after two quick retries.
"""

from __future__ import annotations

import email.utils
import itertools
import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from datetime import timezone
from http import HTTPStatus
from typing import Any, TypeVar
from urllib.parse import urlsplit

import backoff
import requests

from tap_tenios.errors import MalformedResponseError, TeniosAPIError, api_error, redact

T = TypeVar("T")

#: HTTP statuses worth another try besides 5xx: a timeout, a rate limit.
RETRIABLE_STATUSES = frozenset({HTTPStatus.REQUEST_TIMEOUT, HTTPStatus.TOO_MANY_REQUESTS})
#: Retries when the API's host name does not resolve: a typo will not start resolving
#: in a minute, a resolver hiccup passes in a second or two.
NAME_RESOLUTION_RETRIES = 2

#: Network-level failures worth another try.
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


def retry_after(response: requests.Response, now: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for, if it is there and sane: its delta
    form (``120``) or its HTTP-date form (``Wed, 21 Oct 2015 07:28:00 GMT``), which
    counts from ``now`` (seconds since the epoch; the system clock by default).
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if moment.tzinfo is None:  # "-0000": UTC, as HTTP dates always are
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = max(0.0, moment.timestamp() - (time.time() if now is None else now))
    return seconds if seconds >= 0 and math.isfinite(seconds) else None


def equal_jitter(value: float) -> float:
    """Half of ``value`` for sure, the other half at random (``backoff.full_jitter``):
    spread out, yet never a retry at once after a failure.
    """
    return value / 2 + backoff.full_jitter(value / 2)


def retry_waits() -> Generator[float, Retry, None]:
    """The waits between the tries of one request: what ``Retry-After`` asked for
    (capped), else ``backoff.expo`` (1 s, 2 s, 4 s, ... up to the cap) with
    ``equal_jitter``. Prime it with ``next``, then send it each failure's ``Retry``.
    """
    exponential = backoff.expo(
        base=2, factor=BASE_RETRY_WAIT_SECONDS, max_value=MAX_RETRY_WAIT_SECONDS
    )
    next(exponential)  # backoff's generators start with a bare yield
    retry = yield 0.0
    while True:
        if retry.asked_wait is not None:
            wait = min(retry.asked_wait, MAX_RETRY_WAIT_SECONDS)
        else:
            wait = equal_jitter(next(exponential))
        retry = yield wait


@dataclass(frozen=True)
class Retry:
    """Why a request is tried again, and how long to wait first."""

    problem: str
    asked_wait: float | None = None
    #: Pause every thread, not only this one (a rate limit).
    throttle_all: bool = False
    #: Set when there was no answer at all: the network cause, in words.
    unreachable: str | None = None
    #: The API's host name did not resolve: a typo will not start resolving soon.
    unresolved: bool = False


class _TryAgainError(Exception):
    """One failed try that may be tried again."""

    def __init__(self, retry: Retry) -> None:
        super().__init__(retry.problem)
        self.retry = retry


class Throttle:
    """A back-off shared by every thread of a transport: one 429 pauses them all."""

    def __init__(self, clock: Callable[[], float], sleep: Callable[[float], object]) -> None:
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


def read_body(response: requests.Response) -> bytes:
    """A streamed answer's whole body, read while its request still counts as in flight.

    A 200 (a page of up to thousands of legs) is read in one go: requests' own
    ``content`` reads 10 KiB at a time, each a trip through urllib3, which cost about
    as much CPU as the rest of the request. Any other answer is read as usual, so its
    ``text`` stays at hand for the error message. A body cut short raises the same
    errors either way (``TRANSIENT_ERRORS``).
    """
    if response.status_code == HTTPStatus.OK:
        return b"".join(response.iter_content(None))
    return response.content


class Transport:
    """POSTs to the Tenios API from any number of threads, at most ``concurrency`` at once.

    ``stop``: once set, no new request is sent, a wait ends at once and a failed
    request is not retried (another read failed for good, or the run is ending).
    ``sleep``: how a wait is spent; by default on ``stop``, so that it ends when the
    run stops. Tests pass a recorder (and a matching ``clock``) to assert waits
    without sleeping.
    ``observe``: told of every try, with its answer (``None`` when none came), from the
    thread that made it: the stream's request metrics, the probe's budget and headers.
    """

    def __init__(
        self,
        url: str,
        key: str,
        *,
        timeout: float,
        tries: int,
        concurrency: int,
        user_agent: str,
        logger: logging.Logger,
        stop: threading.Event | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], object] | None = None,
        observe: Callable[[str, requests.Response | None], object] | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.host = urlsplit(self.url).netloc
        self._key = key
        self.timeout = timeout
        self.tries = tries
        self.user_agent = user_agent
        self.logger = logger
        self.stop = stop or threading.Event()
        self.clock = clock
        self._sleep = sleep
        self.observe = observe
        self.throttle = Throttle(clock, self.wait)
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self._sessions = threading.local()

    def post(
        self, path: str, fields: dict[str, Any], where: str, decode: Callable[[bytes], T]
    ) -> T:
        """POST ``fields`` (plus the key) to ``path``; retry what is transient.

        ``decode`` turns a 200's body into what the caller wants, or raises
        ``MalformedResponseError``: such a body is retried like a 5xx.

        ``where`` names the request in messages (endpoint and window), since the body
        itself must never be shown. Redirects are not followed: the key is in the body
        and goes to ``url``'s host only.
        """
        payload = json.dumps({"access_key": self._key, **fields}).encode()
        what = f"{path} for {where}"
        allowed = self.tries  # fewer once the host name does not resolve
        waits = retry_waits()
        next(waits)
        for made in itertools.count(1):
            if self.stop.is_set():
                raise self.fail(f"{what}: abandoned, the stream is stopping")
            self.throttle.wait()
            try:
                return self._attempt(path, payload, what, decode)
            except _TryAgainError as exc:
                retry = exc.retry
            if retry.unresolved:
                allowed = min(allowed, NAME_RESOLUTION_RETRIES + 1)
            if made >= allowed or self.stop.is_set():
                raise self._final(retry, what, made, allowed) from None
            wait = waits.send(retry)
            if retry.throttle_all:
                self.throttle.pause(wait)
            self.logger.warning(
                "%s: %s; retry %d of %d in %.1f s",
                what,
                redact(retry.problem, self._key),
                made,
                allowed - 1,
                wait,
            )
            self.wait(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _attempt(self, path: str, payload: bytes, what: str, decode: Callable[[bytes], T]) -> T:
        """One try: what ``decode`` made of a 200, or ``_TryAgainError``, or a final error."""
        try:
            with self._in_flight:
                response = self._session().post(
                    self.url + path,
                    data=payload,
                    timeout=self.timeout,
                    allow_redirects=False,
                    stream=True,
                )
                body = read_body(response)
        except TRANSIENT_ERRORS as exc:
            if self.observe is not None:
                self.observe(path, None)
            cause, unresolved = network_cause(exc)
            retry = Retry(
                f"could not reach {self.host}: {cause}", unreachable=cause, unresolved=unresolved
            )
            raise _TryAgainError(retry) from None
        if self.observe is not None:
            self.observe(path, response)
        outcome = self._outcome(response, body, what, decode)
        if isinstance(outcome, Retry):
            raise _TryAgainError(outcome)
        return outcome

    def _final(self, retry: Retry, what: str, made: int, allowed: int) -> TeniosAPIError:
        """The error a request ends with once it is not tried again."""
        if made >= allowed and retry.unreachable:
            return self.fail(
                f"Giving up on {what} after {made} attempts: the Tenios API at {self.host} is "
                f"unreachable: {retry.unreachable}. Check api_url and the network.",
                stops_run=True,
            )
        if made >= allowed:
            return self.fail(
                f"Giving up on {what} after {made} attempts; last problem: {retry.problem}"
            )
        # The stream stopped while this request was out (another read failed for
        # good, or the run is ending): no warning, no wait, no retry.
        return self.fail(f"{what}: abandoned, the stream is stopping")

    def _outcome(
        self, response: requests.Response, body: bytes, what: str, decode: Callable[[bytes], T]
    ) -> T | Retry:
        """A decoded 200 (``body``), a reason to retry, or a final error (raised)."""
        status = response.status_code
        if status in (HTTPStatus.UNAUTHORIZED, HTTPStatus.FORBIDDEN):
            raise self.fail(
                f"The Tenios API rejected the access key (HTTP {status}) at {what}: "
                f"check the access_key setting.",
                stops_run=True,
            )
        if response.is_redirect:
            raise self.fail(
                f"The API at {self.host} answered {what} with a redirect (HTTP {status}) to "
                f"{response.headers.get('Location', 'nowhere')!r}, which is not followed: the "
                f"access key goes to api_url's host only. Set api_url to the address the API "
                f"answers at.",
                stops_run=True,
            )
        if status == HTTPStatus.OK:
            try:
                return decode(body)
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

    def fail(self, message: str, *, stops_run: bool = False) -> TeniosAPIError:
        """An error safe to raise: the key is removed whatever ``message`` holds."""
        return api_error(message, self._key, stops_run=stops_run)

    def wait(self, seconds: float) -> None:
        """Spend a wait: with the injected ``sleep``, else until ``stop`` is set."""
        if self._sleep is not None:
            self._sleep(seconds)
        else:
            self.stop.wait(seconds)

    def _session(self) -> requests.Session:
        """One session per thread: ``requests.Session`` is not thread-safe."""
        session: requests.Session | None = getattr(self._sessions, "session", None)
        if session is None:
            session = self._sessions.session = requests.Session()
            session.headers.update(
                {"Content-Type": "application/json", "User-Agent": self.user_agent}
            )
        return session
