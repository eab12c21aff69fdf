"""The emulator's switches for what the API leaves open really behave as described, and
its HTTP layer: answers a client can parse, kept-alive connections, a stop that leaves
nothing listening.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone

import pytest

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate, make_call
from tap_tenios.emulator.server import ApiError

from .helpers import KEY, START, dataset


def crowd(calls: int = 15) -> list:
    """``calls`` calls that start in the same second (and forwarded legs a second later)."""
    moment = START + timedelta(hours=10)
    return [leg for seed in range(calls) for leg in make_call(random.Random(seed), moment)]


def page(api: Emulator, number: int, size: int) -> dict:
    body = {
        "access_key": KEY,
        "start_date_from": "2024-03-01T09:00:00.000Z",
        "start_date_to": "2024-03-01T11:00:00.000Z",
        "page": number,
        "page_size": size,
    }
    return json.loads(api.handle("/cdrs/retrieve", json.dumps(body).encode())[1])


def test_ties_reshuffled_per_query_make_pages_repeat_and_skip_legs() -> None:
    legs = crowd()
    api = Emulator(legs, Behaviour(access_key=KEY, order="ties_shuffled"))
    pages = [page(api, n, 5) for n in range(1, 1 + -(-len(legs) // 5))]
    seen = [item["uuid"] for p in pages for item in p["items"]]
    assert len(seen) == len(legs) == pages[0]["total_items"]
    assert len(set(seen)) < len(legs), "some leg was served twice and another never"
    # Still ordered by start second: only ties move.
    stamps = [item["start_stamp"] for item in page(api, 1, len(legs))["items"]]
    assert stamps == sorted(stamps)
    # And the same query twice gives the ties in another order.
    first, again = page(api, 1, len(legs)), page(api, 1, len(legs))
    assert [i["uuid"] for i in first["items"]] != [i["uuid"] for i in again["items"]]


def test_a_silent_page_cap_serves_less_and_echoes_the_size_asked_for() -> None:
    legs = crowd()
    api = Emulator(legs, Behaviour(access_key=KEY, page_cap=4))
    first, second = page(api, 1, 10), page(api, 2, 10)
    assert len(first["items"]) == 4 and first["page_size"] == 10
    assert first["total_items"] == len(legs)
    # Pages are cut at the cap: page 2 starts where page 1 ended.
    assert {i["uuid"] for i in first["items"]}.isdisjoint(i["uuid"] for i in second["items"])


def test_cached_pages_are_served_as_first_rendered() -> None:
    legs = crowd()
    api = Emulator(legs, Behaviour(access_key=KEY, order="unsorted", cache_pages=True))
    assert page(api, 2, 4) == page(api, 2, 4)
    shuffled = Emulator(legs, Behaviour(access_key=KEY, order="ties_shuffled", cache_pages=True))
    assert page(shuffled, 1, 30) != page(shuffled, 1, 30), "never cached: ties must move"


HTTP_BODY = {
    "access_key": KEY,
    "start_date_from": "2024-03-01T00:00:00.000Z",
    "start_date_to": "2024-03-02T00:00:00.000Z",
    "page": 1,
    "page_size": 5,
}


def post(
    connection: http.client.HTTPConnection, body: dict[str, object]
) -> tuple[int, dict[str, str], bytes]:
    connection.request(
        "POST", "/cdrs/retrieve", json.dumps(body), {"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    return response.status, dict(response.getheaders()), response.read()


def test_one_kept_alive_connection_carries_many_whole_answers(serve) -> None:
    api = serve(dataset(calls_per_day=20))
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    bodies = []
    for page in (1, 2, 3):
        status, headers, raw = post(connection, {**HTTP_BODY, "page": page})
        assert status == 200
        assert headers["Content-Type"] == "application/json"
        assert int(headers["Content-Length"]) == len(raw)
        bodies.append(json.loads(raw))
    connection.close()
    assert [len(b["items"]) for b in bodies] == [5, 5, 5]
    assert api.emulator.stats.requests == {"/cdrs/retrieve": 3}


def test_a_fault_answer_carries_its_status_line_and_headers(serve) -> None:
    api = serve(dataset(calls_per_day=5), fault_queue=[{"kind": "429"}], retry_after_seconds=7)
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    status, headers, raw = post(connection, HTTP_BODY)
    assert status == 429
    assert connection.sock is not None  # kept alive after an error answer
    assert headers["Retry-After"] == "7"
    assert json.loads(raw) == {"error": "Too many requests"}
    status, _, _ = post(connection, HTTP_BODY)
    assert status == 200
    connection.close()


def test_after_stop_nothing_listens_and_the_serving_thread_is_gone() -> None:
    api = RunningEmulator(Emulator(dataset(calls_per_day=1), Behaviour(access_key=KEY))).start()
    host, port = api.url.removeprefix("http://").split(":")
    api.stop()
    assert not api._thread.is_alive()
    with pytest.raises(ConnectionRefusedError), socket.create_connection((host, int(port)), 2):
        pass


def test_the_banner_counts_the_legs_its_range_holds() -> None:
    """Legs forwarded from a call just before the end start at or after it: the range
    announced does not hold them."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tap_tenios.emulator", "--port", "0"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
    finally:
        process.terminate()
        process.wait(timeout=30)
    start, end = (
        datetime(2024, 1, 1, tzinfo=timezone.utc),
        datetime(2024, 1, 22, tzinfo=timezone.utc),
    )
    legs = generate(start, end, 400, seed=1)
    assert any(leg.start >= end for leg in legs)  # the case in question is in the default data
    held = sum(start <= leg.start < end for leg in legs)
    assert f": {held} legs from 2024-01-01 to 2024-01-22 (exclusive)" in banner, banner


def test_a_busy_port_is_one_line_naming_it_not_a_traceback() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "tap_tenios.emulator", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    assert done.returncode == 1
    assert done.stderr == (
        f"tap-tenios-emulator: cannot listen on 127.0.0.1:{port}: the port is in use "
        "(an emulator still running?). Stop what listens there, or choose another port "
        "with --port.\n"
    )


def day_page(api: Emulator) -> list[dict]:
    body = {**HTTP_BODY, "page_size": 1000}
    return json.loads(api.handle("/cdrs/retrieve", json.dumps(body).encode())[1])["items"]


def test_legs_settle_in_place_after_they_appear() -> None:
    """``settle_seconds``: a leg is first served unbilled, later with its real cost."""
    legs = crowd(3)
    ended = max(leg.visible_at for leg in legs)
    api = Emulator(legs, Behaviour(access_key=KEY, settle_seconds=600, now=ended))
    early = {item["uuid"]: item for item in day_page(api)}
    assert len(early) == len(legs)
    assert {item["billing_status"] for item in early.values()} == {"PENDING"}
    assert {item["cost"] for item in early.values()} == {0}
    api.behaviour.now = ended + timedelta(seconds=601)
    late = {item["uuid"]: item for item in day_page(api)}
    assert late.keys() == early.keys()
    real = {leg.uuid: leg.fields for leg in legs}
    assert all(late[u]["billing_status"] == real[u]["billing_status"] for u in late)
    assert any(late[u]["cost"] != 0 for u in late)


def test_legs_appear_only_a_delay_after_they_end() -> None:
    legs = crowd(3)
    ended = max(leg.visible_at for leg in legs)
    api = Emulator(legs, Behaviour(access_key=KEY, appear_delay_seconds=120, now=ended))
    assert {i["uuid"] for i in day_page(api)} < {leg.uuid for leg in legs}
    api.behaviour.now = ended + timedelta(seconds=120)
    assert len(day_page(api)) == len(legs)


def test_a_rate_limit_answers_with_headers_and_429s_with_retry_after(serve) -> None:
    clock = [100.25]
    api = serve(dataset(calls_per_day=5), rate_limit=2, rate_clock=lambda: clock[0])
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    answers = [post(connection, HTTP_BODY) for _ in range(3)]
    assert [status for status, _, _ in answers] == [200, 200, 429]
    assert [h["X-RateLimit-Remaining"] for _, h, _ in answers] == ["1", "0", "0"]
    assert answers[0][1]["X-RateLimit-Limit"] == "2"
    assert answers[2][1]["Retry-After"] == "1" and "Retry-After" not in answers[1][1]
    clock[0] = 101.0  # the next window
    status, headers, _ = post(connection, HTTP_BODY)
    assert status == 200 and headers["X-RateLimit-Remaining"] == "1"
    connection.close()


def test_retry_after_can_be_an_http_date(serve) -> None:
    now = datetime(2024, 3, 10, 12, 0, tzinfo=timezone.utc)
    api = serve(
        dataset(calls_per_day=5),
        fault_queue=[{"kind": "429"}],
        retry_after_seconds=30,
        retry_after_style="http_date",
        now=now,
    )
    host, port = api.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=5)
    status, headers, _ = post(connection, HTTP_BODY)
    connection.close()
    assert status == 429
    assert headers["Retry-After"] == "Sun, 10 Mar 2024 12:00:30 GMT"


def test_counts_over_a_day_are_refused_unless_the_limit_is_lifted() -> None:
    legs = crowd(3)
    body = {
        "access_key": KEY,
        "start_date_from": "2024-02-29T00:00:00.000Z",
        "start_date_to": "2024-03-02T00:00:00.000Z",
    }
    raw = json.dumps(body).encode()
    with pytest.raises(ApiError, match=r"max\. 1 day"):
        Emulator(legs, Behaviour(access_key=KEY)).handle("/cdrs/count", raw)
    lifted = Emulator(legs, Behaviour(access_key=KEY, count_max_period=None))
    assert json.loads(lifted.handle("/cdrs/count", raw)[1]) == {"total_items": len(legs)}


def test_the_command_line_switches_on_rate_limits_and_late_billing() -> None:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tap_tenios.emulator",
            "--port",
            "0",
            "--rate-limit",
            "5",
            "--settle-seconds",
            "1000000000",
            "--appear-delay-seconds",
            "0",
            "--retry-after-style",
            "http_date",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        banner = process.stderr.readline()
        host, port = banner.split("http://")[1].split(":")[0:2]
        connection = http.client.HTTPConnection(host, int(port.split()[0]), timeout=5)
        body = {**HTTP_BODY, "access_key": Behaviour.access_key, "page_size": 50}
        body["start_date_from"], body["start_date_to"] = (
            "2024-01-02T00:00:00.000Z",
            "2024-01-03T00:00:00.000Z",
        )
        status, headers, raw = post(connection, body)
        connection.close()
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert status == 200
    assert headers["X-RateLimit-Limit"] == "5"
    items = json.loads(raw)["items"]
    assert items and {item["billing_status"] for item in items} == {"PENDING"}
