"""The HTTP client: one POST whose JSON body carries the key, retried, decoded, never leaking it.

The access key travels in the request body, so the usual safeguards (auth headers
kept out of logs) do not apply: an echoed body, a logged argument or an exception's
text could carry it. Every error and log line here is built from known-safe parts
(endpoint, window, status, the API's own words) and redacted once more.

No SDK imports: a ``Transport`` is built with what it needs (URL, key, timeout,
tries, concurrency, a stop flag, and the clock and sleep that tests replace), so the
retry policy is tested without a tap.

Retries run on ``backoff`` (``on_exception``): it counts the tries, decides when to
give up and calls the handlers. The waits are this module's, and ``backoff`` is told
to wait nothing itself, because its wait is a plain ``time.sleep``: it cannot be cut
short when the run stops (a SIGTERM, or another read failing for good, must not sit
out a two-minute ``Retry-After``), nor replaced by a recorder in tests (retries are
tested without sleeping). ``test_transport.py`` shows both. The policy itself:
exponential waits with jitter, ``Retry-After`` honoured (capped), one 429 pausing
every thread (the rate limit is the account's), a 200 with a broken body retried
like a 5xx, a host name that does not resolve given up on after two quick retries.
"""

from __future__ import annotations

import json
import logging
import random
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from http import HTTPStatus
from typing import Any
from urllib.parse import urlsplit

import backoff
import msgspec
import requests

from tap_tenios.errors import TeniosAPIError, api_error, redact
from tap_tenios.records import TYPED_PAGE

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


class MalformedResponseError(ValueError):
    """A 200 whose body is not the JSON the endpoint documents."""


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
    """Decode a 200 body with exact decimals and check the documented keys.

    A page of CDRs is first decoded with the documented types (``TYPED_PAGE``); it is
    then marked ``typed``. Any other page is decoded as it comes.
    """
    if "items" in required:
        try:
            typed: dict[str, Any] = dict(TYPED_PAGE.decode(content))
        except (ValueError, RecursionError):
            pass
        else:
            if typed["total_items"] >= 0:  # else the careful path names the problem
                typed["typed"] = True
                return typed
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


def retry_wait(attempt: int, asked: float | None) -> float:
    """``Retry-After`` if the API gave one (capped), else exponential with jitter."""
    if asked is not None:
        return min(asked, MAX_RETRY_WAIT_SECONDS)
    ceiling = min(BASE_RETRY_WAIT_SECONDS * 2.0 ** (attempt - 1), MAX_RETRY_WAIT_SECONDS)
    return ceiling * random.uniform(0.5, 1.0)  # noqa: S311 - jitter, not crypto


@dataclass(frozen=True)
class Retry:
    """Why a request is tried again, and how long to wait first."""

    problem: str
    asked_wait: float | None = None
    #: Pause every thread, not only this one (a rate limit).
    throttle_all: bool = False
    #: Set when there was no answer at all: the network cause, in words.
    unreachable: str | None = None


class _TryAgainError(Exception):
    """One failed try that may be tried again: what ``backoff`` retries on."""

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


class Transport:
    """POSTs to the Tenios API from any number of threads, at most ``concurrency`` at once.

    ``stop``: once set, no new request is sent, a wait ends at once and a failed
    request is not retried (another read failed for good, or the run is ending).
    ``sleep``: how a wait is spent; by default on ``stop``, so that it ends when the
    run stops. Tests pass a recorder (and a matching ``clock``) to assert waits
    without sleeping.
    ``observe``: told of every try, with its answer (``None`` when none came), so that
    a caller can count requests and read headers (the probe: rate limits, budgets).
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
        self._observe = observe
        self.throttle = Throttle(clock, self.wait)
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self._sessions = threading.local()

    def post(
        self, path: str, fields: dict[str, Any], where: str, required: tuple[str, ...]
    ) -> dict[str, Any]:
        """POST ``fields`` (plus the key) to ``path``; retry what is transient.

        ``where`` names the request in messages (endpoint and window), since the body
        itself must never be shown. Redirects are not followed: the key is in the body
        and goes to ``url``'s host only.
        """
        payload = json.dumps({"access_key": self._key, **fields}).encode()
        what = f"{path} for {where}"
        tries = [0, self.tries]  # made, allowed (fewer once the name does not resolve)

        def attempt() -> dict[str, Any]:
            tries[0] += 1
            if self.stop.is_set():
                raise self.fail(f"{what}: abandoned, the stream is stopping")
            self.throttle.wait()
            try:
                with self._in_flight:
                    response = self._session().post(
                        self.url + path, data=payload, timeout=self.timeout, allow_redirects=False
                    )
            except TRANSIENT_ERRORS as exc:
                if self._observe is not None:
                    self._observe(path, None)
                cause, unresolved = network_cause(exc)
                if unresolved:
                    tries[1] = min(tries[1], NAME_RESOLUTION_RETRIES + 1)
                retry = Retry(f"could not reach {self.host}: {cause}", unreachable=cause)
                raise _TryAgainError(retry) from None
            if self._observe is not None:
                self._observe(path, response)
            outcome = self._outcome(response, what, required)
            if isinstance(outcome, Retry):
                raise _TryAgainError(outcome)
            return outcome

        def pause(details: Any) -> None:
            retry: Retry = details["exception"].retry
            wait = retry_wait(tries[0], retry.asked_wait)
            if retry.throttle_all:
                self.throttle.pause(wait)
            problem = redact(retry.problem, self._key)
            self.logger.warning(
                "%s: %s; retry %d of %d in %.1f s", what, problem, tries[0], tries[1] - 1, wait
            )
            self.wait(wait)

        retrying = backoff.on_exception(
            backoff.constant,
            _TryAgainError,
            interval=0,  # the waits are ``pause``'s (see the module's docstring)
            jitter=None,
            giveup=lambda _: tries[0] >= tries[1] or self.stop.is_set(),
            on_backoff=pause,
            logger=None,
        )(attempt)
        try:
            return retrying()
        except _TryAgainError as exc:
            raise self._final(exc.retry, what, tries[0], tries[1]) from None

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
        self, response: requests.Response, what: str, required: tuple[str, ...]
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
                f"The API at {self.host} answered {what} with a redirect (HTTP {status}) to "
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
