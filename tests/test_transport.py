"""Errors, retries and secrets: every path through ``Transport.post``."""

from __future__ import annotations

import http.server
import json
import logging
import re
import socket
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from tap_tenios.emulator import TRANSIENT_FAULTS
from tap_tenios.errors import TeniosAPIError
from tap_tenios.records import decode_count
from tap_tenios.settings import utc_now
from tap_tenios.transport import (
    MAX_RETRY_WAIT_SECONDS,
    Retry,
    Throttle,
    Transport,
    retry_after,
    retry_waits,
)

from .helpers import KEY, http_server, in_range, make_config


def retrieve_faults(*kinds: str) -> list[dict[str, str]]:
    return [{"kind": kind, "path": "/cdrs/retrieve"} for kind in kinds]


@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_transient_faults_are_retried_and_nothing_is_lost(serve, run_tap, legs, kind):
    # Only a stall needs a short timeout; a short one for every request would time out
    # healthy requests on a busy machine too, and retry them.
    emulator = serve(legs, fault_queue=retrieve_faults(kind, kind), stall_seconds=3)
    run = run_tap(make_config(emulator.url, request_timeout_seconds=2 if kind == "stall" else 5))
    uuids = [r["uuid"] for r in run.records()]
    assert sorted(uuids) == sorted(in_range(legs))
    assert len(run.waits) == 2
    assert emulator.emulator.stats.faults == {kind: 2}


def test_retry_after_is_honoured_exactly(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("429"), retry_after_seconds=7)
    run = run_tap(make_config(emulator.url, max_concurrency=1))
    assert run.waits == [7.0]


def test_retry_after_as_an_http_date_is_honoured(serve, run_tap, legs):
    """``Retry-After`` may be a date (``Wed, 21 Oct 2015 07:28:00 GMT``): the wait is
    the time until it, less the part of a second the date cannot say."""
    emulator = serve(
        legs,
        fault_queue=retrieve_faults("429"),
        retry_after_seconds=7,
        retry_after_style="http_date",
        now=None,  # the date is the emulator's clock's: the real one, as the tap's
    )
    run = run_tap(make_config(emulator.url, max_concurrency=1))
    assert emulator.emulator.stats.faults == {"429": 1}
    assert len(run.waits) == 1 and 5.0 <= run.waits[0] <= 7.0


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("120", 120.0),
        ("0", 0.0),
        ("1.5", 1.5),
        ("Thu, 01 Jan 2026 00:01:00 GMT", 60.0),
        ("Thu, 01 Jan 2026 00:00:00 -0000", 0.0),
        ("Wed, 31 Dec 2025 23:00:00 GMT", 0.0),  # already past: at once
        ("-5", None),
        ("soon", None),
        ("", None),
        ("inf", None),
    ],
)
def test_retry_after_is_read_in_both_forms(header: str, seconds: float | None) -> None:
    import requests

    response = requests.Response()
    response.headers["Retry-After"] = header
    now = datetime(2026, 1, 1, tzinfo=timezone.utc).timestamp()
    assert retry_after(response, now) == seconds


def test_retry_waits_are_backoffs_exponential_series_with_equal_jitter() -> None:
    """Without Retry-After: 1, 2, 4, ... s up to the cap, each at least half of that; an
    asked-for wait is taken as asked (capped), and does not advance the series."""
    waits = retry_waits()
    next(waits)
    plain, asked = Retry("HTTP 500"), Retry("HTTP 429", asked_wait=3.0)
    series = [waits.send(plain) for _ in range(3)]
    assert waits.send(asked) == 3.0
    series += [waits.send(plain) for _ in range(6)]
    for n, wait in enumerate(series):
        ceiling = min(2.0**n, MAX_RETRY_WAIT_SECONDS)
        assert ceiling / 2 <= wait <= ceiling
    assert waits.send(Retry("HTTP 429", asked_wait=10_000.0)) == MAX_RETRY_WAIT_SECONDS


def test_retry_after_zero_means_at_once(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("429"), retry_after_seconds=0)
    assert run_tap(make_config(emulator.url, max_concurrency=1)).waits == [0.0]


def test_a_negative_retry_after_is_ignored(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("429"), retry_after_seconds=-1)
    waits = run_tap(make_config(emulator.url, max_concurrency=1)).waits
    assert len(waits) == 1 and 0.5 <= waits[0] <= 1.0  # the first exponential wait


def test_retry_after_is_capped(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("429"), retry_after_seconds=86_400)
    assert run_tap(make_config(emulator.url, max_concurrency=1)).waits == [MAX_RETRY_WAIT_SECONDS]


def test_waits_without_retry_after_grow_exponentially(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("500", "500", "500", "500"))
    waits = run_tap(make_config(emulator.url, max_concurrency=1)).waits
    assert len(waits) == 4
    for attempt, wait in enumerate(waits, start=1):
        assert 2 ** (attempt - 1) * 0.5 <= wait <= 2 ** (attempt - 1)


def test_persistent_failure_gives_up_naming_endpoint_and_window(serve, run_tap, legs):
    # Day 1 succeeds; every request after it fails.
    emulator = serve(legs, max_page_size=10_000)
    config = make_config(emulator.url, max_concurrency=1, page_size=1000, max_retries=3)
    emulator.emulator.behaviour.fault_queue = [{"kind": "500", "path": "/cdrs/count"}]
    first_day = run_tap(config, streams=("cdrs",))
    emulator.emulator.behaviour.fault_rate = 1.0
    emulator.emulator.behaviour.fault_kinds = ("503-html",)
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert "Giving up on /cdrs/retrieve for window [2024-03-01T00:00:00.000Z" in message
    assert "after 4 attempts" in message and "HTTP 503" in message
    # Three waits for the request that gives up; a second window in flight abandons its
    # own retries once the run fails, so it adds at most three more.
    assert 3 <= len(run.waits) <= 6
    assert first_day.records()


def test_state_never_passes_the_last_complete_window_when_a_run_fails(serve, run_tap, legs):
    emulator = serve(legs)
    answer = emulator.emulator.retrieve

    def retrieve(body):
        # Only the first day's window is answered, whatever order the reading threads
        # ask in; the connection drops for every other (a retriable failure).
        if body["start_date_from"] >= "2024-03-01T12":
            raise ConnectionResetError
        return answer(body)

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    config = make_config(
        emulator.url, max_concurrency=1, max_retries=1, page_size=1000, window_size_hours=24
    )
    run = run_tap(config, fails=True)
    emitted = run.records()
    assert emitted, "the first window was complete and must have been emitted"
    bookmark = run.states[-1]["bookmarks"]["cdrs"]["replication_key_value"]
    assert bookmark == max(r["start_stamp"] for r in emitted)
    assert bookmark < "2024-03-02"
    # Windows after the first are read side by side (threads beyond max_concurrency
    # wait for the request slot), so either of the next two may fail first.
    assert re.search(r"Giving up on /cdrs/retrieve for window \[2024-03-0[23]", str(run.error))


def test_a_failed_window_does_not_wait_out_the_other_windows_retries(serve, run_tap, legs):
    """With real waits: window 1 is refused for good while window 2 backs off for a minute."""
    import time

    from tap_tenios.emulator.server import ApiError

    emulator = serve(legs)
    answer = emulator.emulator.retrieve

    def retrieve(body):
        if body["start_date_from"].startswith("2024-02-29"):
            time.sleep(0.3)  # window 2 is already backing off when window 1 is refused
            raise ApiError(400, "Bad request")
        if body["start_date_from"].startswith("2024-03-01"):
            raise ApiError(503, "Busy")
        return answer(body)

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    began = time.monotonic()
    run = run_tap(
        make_config(emulator.url, max_retries=6, max_concurrency=2), fails=True, real_waits=True
    )
    assert "HTTP 400" in str(run.error)
    # Window 2's back-off alone would take about a minute (1 + 2 + 4 + ... s).
    assert time.monotonic() - began < 15


@pytest.mark.parametrize("kind", ["403"])
def test_a_rejected_key_stops_at_once_without_retries(serve, run_tap, legs, kind):
    """403 (and 401) are final: retrying a wrong key only risks locking the account."""
    emulator = serve(legs, fault_queue=retrieve_faults(kind))
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    assert "rejected the access key (HTTP 403)" in str(run.error)
    assert "check the access_key setting" in str(run.error)
    assert run.waits == []
    bodies = [json.dumps(b, sort_keys=True) for b in emulator.emulator.stats.bodies]
    assert len(bodies) == len(set(bodies)), "a request was retried after the 403"


def test_a_wrong_key_is_reported_as_rejected(serve, run_tap, legs):
    emulator = serve(legs, access_key="another-key")
    run = run_tap(make_config(emulator.url), fails=True)
    assert "rejected the access key" in str(run.error)


def test_other_client_errors_quote_the_api_and_name_the_window(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("400"))
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    message = str(run.error)
    assert message.startswith("The Tenios API refused /cdrs/retrieve for window [2024-03-01")
    assert "HTTP 400: Bad request" in message
    assert run.waits == []


def test_an_unknown_endpoint_is_a_clear_error(serve, run_tap, legs):
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url + "/v9"), fails=True)
    assert "HTTP 404" in str(run.error) and "/cdrs/retrieve" in str(run.error)


def test_a_throttle_pauses_every_thread_once():
    now = [100.0]
    slept: list[float] = []
    throttle = Throttle(lambda: now[0], slept.append)
    throttle.wait()
    assert slept == []
    throttle.pause(5)
    throttle.pause(2)  # a shorter pause does not shorten the longer one
    throttle.wait()
    assert slept == [5]
    now[0] += 5
    throttle.wait()
    assert slept == [5]


def test_one_429_pauses_every_thread_not_just_its_own():
    import threading

    slept: list[tuple[str, float]] = []
    throttle = Throttle(lambda: 0.0, lambda s: slept.append((threading.current_thread().name, s)))
    throttle.pause(7)  # one thread got a 429 with Retry-After: 7
    threads = [threading.Thread(target=throttle.wait, name=f"fetch-{n}") for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(slept) == [(f"fetch-{n}", 7.0) for n in range(4)]


def test_count_errors_name_the_day_and_its_instants(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=[{"kind": "400", "path": "/cdrs/count"}])
    run = run_tap(
        make_config(emulator.url, timezone="Europe/Berlin", max_concurrency=1),
        streams=("cdr_counts",),
        fails=True,
    )
    # The extraction begins within Berlin's 2024-03-01, at start_date: counted from there.
    assert "refused /cdrs/count for day 2024-03-01 [2024-03-01T00:00:00.000Z" in str(run.error)


def transport_for(url: str, **options: Any) -> Transport:
    """A transport to ``url`` with the tap's default tries and concurrency."""
    defaults: dict[str, Any] = {
        "timeout": 5,
        "tries": 7,
        "concurrency": 4,
        "user_agent": "tap-tenios/test",
        "logger": logging.getLogger("tap-tenios.test"),
    }
    return Transport(url, KEY, **{**defaults, **options})


def count_body(day: int) -> dict[str, str]:
    return {
        "start_date_from": f"2024-03-0{day}T00:00:00.000Z",
        "start_date_to": f"2024-03-0{day + 1}T00:00:00.000Z",
    }


@pytest.mark.parametrize("kind", ["429", "429-bare", "500", "reset", "not-json"])
def test_a_429_through_post_pauses_the_requests_of_other_threads(serve, legs, kind):
    """While one thread waits out a 429, another thread's request waits too."""
    emulator = serve(legs, retry_after_seconds=7)
    now = [0.0]
    waits: list[tuple[str, float, int]] = []

    def call(day: int) -> None:
        transport.post("/cdrs/count", count_body(day), f"day {day}", decode_count)

    def sleep(seconds: float) -> None:
        seen = sum(emulator.emulator.stats.requests.values())
        waits.append((threading.current_thread().name, seconds, seen))
        if threading.current_thread().name == "first":
            # The other thread asks while this one still waits.
            other = threading.Thread(target=call, args=(2,), name="second")
            other.start()
            other.join()
        now[0] += seconds

    transport = transport_for(emulator.url, sleep=sleep, clock=lambda: now[0])
    emulator.emulator.behaviour.fault_queue = [{"kind": kind}]
    first = threading.Thread(target=call, args=(1,), name="first")
    first.start()
    first.join()
    own = [(seconds, seen) for name, seconds, seen in waits if name == "first"]
    other = [(seconds, seen) for name, seconds, seen in waits if name == "second"]
    assert len(own) == 1 and own[0][1] == 1, "the thread that was told waits once"
    if kind == "429":
        assert own == [(7.0, 1)]
    if kind in ("500", "reset", "not-json"):
        assert other == [], f"a {kind} concerns one request, not the account"
    else:
        # The other thread waited out the same pause before its request was sent.
        assert other == [(own[0][0], 1)]
    assert sum(emulator.emulator.stats.requests.values()) == 3


def test_a_real_retry_waits_as_long_as_asked_before_trying_again(serve, legs):
    """With real waits: the gap between a 429 and its retry is at least Retry-After."""
    emulator = serve(legs, retry_after_seconds=1)
    transport = transport_for(emulator.url)
    seen: list[float] = []
    count = emulator.emulator.count

    def timed(body):
        seen.append(time.monotonic())
        return count(body)

    emulator.emulator.count = timed  # type: ignore[method-assign]
    emulator.emulator.behaviour.fault_queue = [{"kind": "429"}]
    began = time.monotonic()
    transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    assert len(seen) == 1, "the 429 was answered before count(), then one retry"
    assert seen[0] - began >= 1.0


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retriable_statuses_are_retried_by_code_not_by_message(serve, run_tap, legs, status):
    from tap_tenios.emulator.server import ApiError

    emulator = serve(legs)
    answer = emulator.emulator.retrieve
    failed: list[int] = []

    def retrieve(body):
        if not failed:
            failed.append(status)
            raise ApiError(status, "try later")
        return answer(body)

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    run = run_tap(make_config(emulator.url, max_concurrency=1))
    assert sorted(r["uuid"] for r in run.records()) == sorted(in_range(legs))
    assert len(run.waits) == 1


def test_a_message_that_mentions_429_does_not_make_a_400_retriable(serve, run_tap, legs):
    from tap_tenios.emulator.server import ApiError

    emulator = serve(legs)

    def retrieve(body):
        raise ApiError(400, "HTTP 429 is what you will get next time")

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    assert "HTTP 400" in str(run.error)
    assert run.waits == []


def test_the_retry_warning_never_quotes_the_key_the_api_echoes(serve, run_tap, legs, caplog):
    emulator = serve(legs, echo_body_in_errors=True, fault_queue=retrieve_faults("500"))
    with caplog.at_level(logging.WARNING):
        run_tap(make_config(emulator.url, max_concurrency=1))
    warnings = [r.getMessage() for r in caplog.records if "retry 1 of" in r.getMessage()]
    assert len(warnings) == 1
    assert "HTTP 500: Internal error (request: {" in warnings[0]
    assert '"access_key": "[redacted]"' in warnings[0]
    assert KEY not in caplog.text


class _Redirector(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a redirect to ``target`` (set per server).

    HTTP/1.1, so connections stay open as the emulator's do: an HTTP/1.0 server closes
    each one after its answer, and a request racing that close would be retried.
    """

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.paths.add(self.path)  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Location", self.server.target + self.path)  # type: ignore[attr-defined]
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_an_error_and_the_key_never_follows_it(serve, run_tap, legs, status):
    elsewhere = serve(legs)  # another host, as far as the tap can tell: another port
    stand_in = http_server(_Redirector, status=status, target=elsewhere.url, paths=set())
    with stand_in as (url, server):
        run = run_tap(make_config(url), streams=("cdrs", "cdr_counts"), fails=True)
    assert elsewhere.emulator.stats.requests == {}, "the key went to the redirect target"
    message = str(run.error)
    assert f"with a redirect (HTTP {status}) to '{elsewhere.url}/cdrs/" in message
    assert "Set api_url to the address the API answers at." in message
    assert run.waits == []
    # Every request would meet it: the run stops at once, cdrs never starts.
    assert server.paths == {"/cdrs/count"}  # type: ignore[attr-defined]


class _Bodiless(http.server.BaseHTTPRequestHandler):
    """Answers every POST with HTTP 400 and no body at all."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(400)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_an_error_without_a_body_is_named_by_its_status_and_reason(run_tap):
    with http_server(_Bodiless) as (url, _):
        run = run_tap(make_config(url, max_concurrency=1), fails=True)
    assert str(run.error).endswith("HTTP 400: Bad Request")
    assert run.waits == []


class _NotHttp(http.server.BaseHTTPRequestHandler):
    """Answers every POST with a line that is not HTTP, then closes; counts the POSTs."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.posts += 1  # type: ignore[attr-defined]
        self.wfile.write(b"NOT HTTP AT ALL\r\n\r\n")
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def test_an_answer_that_is_not_http_is_retried_max_retries_times_then_named(run_tap):
    with http_server(_NotHttp, posts=0) as (url, server):
        run = run_tap(make_config(url, max_concurrency=1, max_retries=4), fails=True)
    assert "after 5 attempts" in str(run.error)
    assert "ConnectionError (no usable answer)" in str(run.error)
    assert server.posts == 5  # type: ignore[attr-defined]
    assert len(run.waits) == 4


@pytest.mark.parametrize("kind", ["stall", "reset"])
def test_timeouts_are_retried_as_often_as_max_retries_allows(serve, run_tap, legs, kind):
    """Only a host name that does not resolve cuts the retries short."""
    emulator = serve(legs, fault_queue=retrieve_faults(kind, kind, kind), stall_seconds=3)
    timeout = 2 if kind == "stall" else 5  # short only where a stall needs it
    run = run_tap(make_config(emulator.url, request_timeout_seconds=timeout, max_retries=4))
    assert sorted(r["uuid"] for r in run.records()) == sorted(in_range(legs))
    assert emulator.emulator.stats.faults == {kind: 3}
    assert len(run.waits) == 3


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Keeps each POST's headers, and refuses it (HTTP ``status``, the JSON ``answer``)."""

    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.headers.append(dict(self.headers))  # type: ignore[attr-defined]
        answer = self.server.answer  # type: ignore[attr-defined]
        self.send_response(self.server.status)  # type: ignore[attr-defined]
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


def refused_by(
    status: int, run_tap, answer: bytes = b'{"error": "no"}'
) -> tuple[Any, list[dict[str, str]]]:
    """A run against a server that answers every request with ``status`` and
    ``answer``: the run, and each request's headers.
    """
    with http_server(_Recorder, headers=[], status=status, answer=answer) as (url, server):
        run = run_tap(make_config(url, max_concurrency=1), fails=True)
    return run, server.headers  # type: ignore[attr-defined]


def test_requests_say_they_carry_json_and_who_sends_them(run_tap):
    _, sent = refused_by(400, run_tap)
    assert sent
    for headers in sent:
        assert headers["Content-Type"] == "application/json"
        assert headers["User-Agent"].startswith("tap-tenios/")  # not the HTTP library's


def test_a_status_below_500_outside_the_retriable_ones_is_final(run_tap):
    """499 (a proxy's "client closed request") is not a server failure."""
    run, sent = refused_by(499, run_tap)
    assert "HTTP 499: no" in str(run.error)
    assert len(sent) == 1 and run.waits == []


@pytest.mark.parametrize("key", ["error", "message", "errorMessage", "detail"])
def test_a_refusal_quotes_the_api_s_own_words_under_each_usual_key(run_tap, key):
    """Not the JSON around them: the words a person needs to fix the request."""
    answer = json.dumps({"status": 400, key: "start_date_from is not a date"}).encode()
    run, _ = refused_by(400, run_tap, answer)
    assert str(run.error).endswith("HTTP 400: start_date_from is not a date")


def test_a_stopping_stream_sends_no_new_request(serve, legs):
    emulator = serve(legs)
    transport = transport_for(emulator.url)
    transport.stop.set()
    with pytest.raises(TeniosAPIError, match="abandoned, the stream is stopping"):
        transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    assert emulator.emulator.stats.requests == {}


def test_a_request_that_fails_after_its_stream_stopped_is_not_retried(serve, legs, caplog):
    """No wait and no retry warning: the stream is stopping (another read failed for good)."""
    from tap_tenios.emulator.server import ApiError

    emulator = serve(legs)
    waits: list[float] = []
    transport = transport_for(emulator.url, sleep=waits.append)

    def count(body):
        transport.stop.set()  # while this request is out
        raise ApiError(500, "Internal error")

    emulator.emulator.count = count  # type: ignore[method-assign]
    with (
        caplog.at_level(logging.WARNING),
        pytest.raises(TeniosAPIError, match="abandoned, the stream is stopping"),
    ):
        transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    assert waits == []
    assert "retry" not in caplog.text
    assert emulator.emulator.stats.requests == {"/cdrs/count": 1}


ONE_DAY = "2024-03-02T00:00:00Z"  # a single window: one request, retried


def test_a_refused_connection_names_host_and_cause(run_tap):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(f"http://127.0.0.1:{port}", max_retries=3, end_date=ONE_DAY)
    run = run_tap(config, fails=True)
    assert str(run.error).endswith(
        f"after 4 attempts: the Tenios API at 127.0.0.1:{port} is unreachable: the connection "
        "was refused (nothing listens there). Check api_url and the network."
    )
    assert len(run.waits) == 3  # all of max_retries: only a name that does not resolve cuts them


def test_an_unreachable_api_stops_the_run_before_the_other_stream(run_tap):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = make_config(f"http://127.0.0.1:{port}", max_retries=1, end_date=ONE_DAY)
    run = run_tap(config, streams=("cdrs", "cdr_counts"), fails=True)
    assert str(run.error).startswith("Giving up on /cdrs/count"), "cdr_counts runs first"
    assert len(run.waits) == 1, "one stream's retries: the other never started"


def test_a_host_name_that_does_not_resolve_fails_within_seconds(run_tap):
    config = make_config("https://no-such-host.invalid", max_retries=6, end_date=ONE_DAY)
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert "the Tenios API at no-such-host.invalid is unreachable: the host name does not" in (
        message
    )
    assert "Check api_url" in message
    assert len(run.waits) == 2, "two brief retries, not six growing ones"
    assert sum(run.waits) <= 3.0


def test_an_api_that_never_answers_is_named_with_the_timeout(serve, run_tap, legs):
    emulator = serve(legs, fault_rate=1.0, fault_kinds=("stall",), stall_seconds=1.5)
    config = make_config(emulator.url, max_retries=1, request_timeout_seconds=1, end_date=ONE_DAY)
    run = run_tap(config, fails=True)
    assert str(run.error).endswith(
        f"after 2 attempts: the Tenios API at {emulator.url.removeprefix('http://')} is "
        "unreachable: no answer within request_timeout_seconds. Check api_url and the network."
    )


@pytest.mark.parametrize(
    ("stream", "bookmark", "problem"),
    [
        ("cdrs", "2030-01-01T00:00:00.000000Z", "later than now"),
        ("cdrs", "last tuesday", "which is not a date-time"),
        ("cdrs", 17, "which is not a date-time"),
        ("cdr_counts", "2030-01-01", "later than now"),
        ("cdr_counts", "2024-02-31", "which is not a date-time"),
    ],
)
def test_a_saved_bookmark_in_the_future_or_unreadable_is_an_error_naming_the_state(
    run_tap, serve, legs, stream, bookmark, problem
) -> None:
    emulator = serve(legs)
    state = {"bookmarks": {stream: {"replication_key_value": bookmark}}}
    run = run_tap(make_config(emulator.url), state=state, streams=(stream,), fails=True)
    message = str(run.error)
    assert message.startswith(
        f"The saved state of stream {stream!r} holds bookmark {bookmark!r}, {problem}"
    )
    assert "clear the saved state" in message
    assert run.records(stream) == []
    assert emulator.emulator.stats.requests == {}


def test_a_bookmark_of_today_in_a_zone_ahead_of_utc_is_fine(run_tap, serve, legs) -> None:
    tomorrow = (utc_now() + timedelta(hours=20)).date().isoformat()
    emulator = serve(legs)
    state = {"bookmarks": {"cdr_counts": {"replication_key_value": tomorrow}}}
    config = make_config(emulator.url, end_date=None, timezone="Pacific/Kiritimati")
    run_tap(config, state=state, streams=("cdr_counts",))


def test_a_date_bookmark_two_days_ahead_is_in_the_future_in_every_zone(run_tap, serve, legs):
    """No zone is a whole day ahead of UTC: the day after tomorrow has not begun anywhere."""
    later = (utc_now() + timedelta(days=2)).date().isoformat()
    emulator = serve(legs)
    state = {"bookmarks": {"cdr_counts": {"replication_key_value": later}}}
    config = make_config(emulator.url, end_date=None, timezone="Pacific/Kiritimati")
    run = run_tap(config, state=state, streams=("cdr_counts",), fails=True)
    assert "later than now" in str(run.error)
    assert emulator.emulator.stats.requests == {}


def test_a_stream_that_fails_on_its_own_does_not_stop_the_other(run_tap, serve, legs) -> None:
    # The first /cdrs/count request (cdr_counts runs first) is refused.
    emulator = serve(legs, fault_queue=[{"kind": "400", "path": "/cdrs/count"}])
    run = run_tap(make_config(emulator.url), streams=("cdrs", "cdr_counts"), fails=True)
    assert str(run.error).startswith("The Tenios API refused /cdrs/count for day 2024-03-0")
    assert sorted(r["uuid"] for r in run.records("cdrs")) == sorted(in_range(legs))
    assert "cdrs" in run.final_state["bookmarks"]


def test_a_rejected_key_stops_the_run_at_once(run_tap, serve, legs) -> None:
    emulator = serve(legs, access_key="another-key")
    run = run_tap(make_config(emulator.url), streams=("cdrs", "cdr_counts"), fails=True)
    assert "rejected the access key" in str(run.error)
    assert set(emulator.emulator.stats.requests) == {"/cdrs/count"}, "cdrs never started"


@pytest.mark.parametrize("status", [400, 404, 410, 422, 451])
def test_other_client_errors_are_final_whatever_their_number(serve, run_tap, legs, status):
    from tap_tenios.emulator.server import ApiError

    emulator = serve(legs)

    def retrieve(body):
        raise ApiError(status, "no")

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    assert f"HTTP {status}: no" in str(run.error)
    assert run.waits == []


@pytest.mark.parametrize("workers", [1, 3])
def test_max_concurrency_caps_the_requests_in_flight(serve, run_tap, legs, workers):
    """However many threads read, no more than ``max_concurrency`` requests are out."""
    emulator = serve(legs)
    answer = emulator.emulator.retrieve
    lock = threading.Lock()
    out = [0]
    most = [0]

    def retrieve(body):
        with lock:
            out[0] += 1
            most[0] = max(most[0], out[0])
        try:
            time.sleep(0.02)  # long enough for other threads' requests to overlap
            return answer(body)
        finally:
            with lock:
                out[0] -= 1

    emulator.emulator.retrieve = retrieve  # type: ignore[method-assign]
    run = run_tap(make_config(emulator.url, page_size=10, max_concurrency=workers))
    assert sorted(r["uuid"] for r in run.records()) == sorted(in_range(legs))
    assert most[0] <= workers


def test_a_wait_ends_as_soon_as_the_transport_stops(serve, legs):
    """With real waits: a two-minute Retry-After is cut short when the run stops, and
    the request is abandoned instead of retried."""
    emulator = serve(legs, retry_after_seconds=120)
    emulator.emulator.behaviour.fault_queue = [{"kind": "429"}]
    transport = transport_for(emulator.url)
    threading.Timer(0.3, transport.stop.set).start()
    began = time.monotonic()
    with pytest.raises(TeniosAPIError, match="abandoned, the stream is stopping"):
        transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    assert time.monotonic() - began < 10
    assert emulator.emulator.stats.requests == {"/cdrs/count": 1}


def test_backoff_cannot_be_given_the_waits_so_the_transport_spends_them():
    """Why the retry loop is the transport's own and only the waits are ``backoff``'s
    (see ``transport``'s docstring): its decorators take no sleep to call, so a wait
    could be neither recorded in tests nor cut short by ``stop``. If this fails,
    backoff learnt to: let its loop try and give up, with the transport's wait."""
    import inspect

    import backoff

    for decorator in (backoff.on_exception, backoff.on_predicate):
        assert "sleep" not in inspect.signature(decorator).parameters


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """Every ``time.sleep`` of more than nothing, anywhere in this process, recorded
    instead of slept (the emulator here never sleeps)."""
    calls: list[float] = []
    monkeypatch.setattr(time, "sleep", lambda seconds: calls.append(seconds) if seconds else None)
    return calls


def test_every_retry_wait_is_the_injected_one_and_nothing_else_sleeps(serve, legs, slept):
    """Retries are tested without sleeping because every wait goes through the
    transport's ``sleep``: nothing (``backoff`` included) sleeps on its own as well."""
    emulator = serve(legs, retry_after_seconds=3)
    emulator.emulator.behaviour.fault_queue = [{"kind": "500"}, {"kind": "429"}, {"kind": "503"}]
    waits: list[float] = []
    transport = transport_for(emulator.url, sleep=waits.append, clock=lambda: 0.0)
    transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    assert len(waits) == 3 and waits[1] == 3
    assert slept == []


class _StopOnRetry(logging.Handler):
    """Stops the transport as soon as it announces a retry (an orchestrator's SIGTERM
    arriving just then)."""

    def __init__(self, stop: threading.Event) -> None:
        super().__init__()
        self.stop = stop

    def emit(self, record: logging.LogRecord) -> None:
        if "retry 1 of" in record.getMessage():
            self.stop.set()


def test_a_wait_is_cut_short_by_a_stop_without_sleeping_it_out(serve, legs, slept):
    """With the real waits: a stop during a two-minute Retry-After ends the wait at
    once, and the request is abandoned instead of retried; nothing sleeps meanwhile."""
    emulator = serve(legs, retry_after_seconds=120)
    emulator.emulator.behaviour.fault_queue = [{"kind": "429"}]
    transport = transport_for(emulator.url)
    handler = _StopOnRetry(transport.stop)
    transport.logger.addHandler(handler)
    try:
        with pytest.raises(TeniosAPIError, match="abandoned, the stream is stopping"):
            transport.post("/cdrs/count", count_body(1), "day 1", decode_count)
    finally:
        transport.logger.removeHandler(handler)
    assert slept == []
    assert emulator.emulator.stats.requests == {"/cdrs/count": 1}


def test_observe_is_told_of_every_try_with_its_answer_or_none(serve, legs):
    emulator = serve(legs, fault_queue=[{"kind": "reset"}, {"kind": "429"}])
    seen: list[tuple[str, int | None]] = []
    transport = Transport(
        emulator.url,
        KEY,
        timeout=5,
        tries=3,
        concurrency=1,
        user_agent="test",
        logger=logging.getLogger("test"),
        sleep=lambda _: None,
        observe=lambda path, answer: seen.append(
            (path, answer if answer is None else answer.status_code)
        ),
    )
    fields = {
        "start_date_from": "2024-03-01T00:00:00.000Z",
        "start_date_to": "2024-03-01T01:00:00.000Z",
    }
    transport.post("/cdrs/count", fields, "test", decode_count)
    assert seen == [("/cdrs/count", None), ("/cdrs/count", 429), ("/cdrs/count", 200)]
