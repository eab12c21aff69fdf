"""Errors, retries and secrets: every path through ``TeniosStream.post``."""

from __future__ import annotations

import json

import pytest

from tap_tenios.client import MAX_RETRY_WAIT_SECONDS, Throttle, redact
from tap_tenios.emulator import TRANSIENT_FAULTS

from .helpers import KEY, in_range, make_config


def retrieve_faults(*kinds: str) -> list[dict[str, str]]:
    return [{"kind": kind, "path": "/cdrs/retrieve"} for kind in kinds]


@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_transient_faults_are_retried_and_nothing_is_lost(serve, run_tap, legs, kind):
    emulator = serve(legs, fault_queue=retrieve_faults(kind, kind), stall_seconds=1.5)
    run = run_tap(make_config(emulator.url, request_timeout_seconds=1))
    uuids = [r["uuid"] for r in run.records()]
    assert sorted(uuids) == sorted(in_range(legs))
    assert len(run.waits) == 2
    assert emulator.emulator.stats.faults == {kind: 2}


def test_retry_after_is_honoured_exactly(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=retrieve_faults("429"), retry_after_seconds=7)
    run = run_tap(make_config(emulator.url, max_concurrency=1))
    assert run.waits == [7.0]


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
    answer_first_request_only = emulator.emulator.retrieve
    served = []

    def retrieve(body):
        if served:
            raise ConnectionResetError  # the connection drops: a retriable failure
        served.append(body)
        return answer_first_request_only(body)

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
    assert "Giving up on /cdrs/retrieve for window [2024-03-02" in str(run.error)


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


def test_redact_hides_every_spelling():
    assert redact(f'key={KEY} json="{KEY}"', KEY) == 'key=[redacted] json="[redacted]"'
    assert redact("nothing here", KEY) == "nothing here"
    assert redact("x", None) == "x"


def test_count_errors_name_the_day_and_its_instants(serve, run_tap, legs):
    emulator = serve(legs, fault_queue=[{"kind": "400", "path": "/cdrs/count"}])
    run = run_tap(
        make_config(emulator.url, timezone="Europe/Berlin", max_concurrency=1),
        streams=("cdr_counts",),
        fails=True,
    )
    assert "refused /cdrs/count for day 2024-03-01 [2024-02-29T23:00:00.000Z" in str(run.error)
