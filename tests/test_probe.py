"""tap-tenios-probe against the emulator in every variant it can play: each finding is
reported right, only read endpoints are called, the budget and the pace hold, a
failing API ends the probe with one line and the findings so far, and no report shows
the key, a phone number or a name.

The probe's clock is a test's: ``--watch`` and its pacing pass in no time, and the
emulator's clock follows the probe's.
"""

from __future__ import annotations

import http.server
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tap_tenios.emulator import Behaviour, Emulator, RunningEmulator, generate, make_call
from tap_tenios.emulator.server import ApiError
from tap_tenios.probe.cli import DEFAULT_MAX_REQUESTS, DEFAULT_PACE, main

from .helpers import KEY, ROOT, UTC, free_port, http_server, write_json

#: The probe's "now": a Sunday in March, Berlin at UTC+01:00.
NOW = datetime(2024, 3, 10, 12, 0, tzinfo=UTC)
READ_ENDPOINTS = {"/cdrs/count", "/cdrs/retrieve"}
READ_FIELDS = {"start_date_from", "start_date_to", "page", "page_size"}


class ApiClock:
    """Wall time that passes only when the probe waits; the emulator's clock follows."""

    def __init__(self, emulator: Emulator, start: datetime = NOW) -> None:
        self.emulator = emulator
        self.moment = start
        self.waits: list[float] = []
        emulator.behaviour.now = start
        emulator.behaviour.rate_clock = self.seconds

    def now(self) -> datetime:
        return self.moment

    def seconds(self) -> float:
        return self.moment.timestamp()

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.moment += timedelta(seconds=seconds)
        self.emulator.behaviour.now = self.moment


def recent_legs() -> list:
    """Three days of calls up to now (and an hour of calls not ended yet), and fifteen
    calls that start in the same second twenty minutes ago (ties)."""
    legs = generate(NOW - timedelta(days=3), NOW + timedelta(hours=1), 300, seed=5)
    crowd = NOW - timedelta(minutes=20)
    return legs + [leg for seed in range(15) for leg in make_call(random.Random(seed), crowd)]


@dataclass
class ProbeRun:
    code: int
    out: str
    err: str
    api: RunningEmulator
    clock: ApiClock

    @property
    def report(self) -> dict[str, Any]:
        return json.loads(self.out)

    def finding(self, key: str) -> dict[str, Any]:
        return self.report["findings"][key]

    def value(self, key: str) -> Any:
        return self.finding(key)["value"]

    def implied(self, setting: str) -> Any:
        return self.report["implied_settings"][setting]["value"]


@pytest.fixture
def probe(serve, tmp_path, capsys):
    """Run the probe against an emulator: ``probe(*args, legs=..., config=..., **behaviour)``."""

    def run(*args: str, legs: list | None = None, config: dict | None = None, **behaviour):
        api = serve(recent_legs() if legs is None else legs, now=NOW, **behaviour)
        clock = ApiClock(api.emulator)
        settings = {"access_key": KEY, "api_url": api.url, **(config or {})}
        path = write_json(tmp_path, "config.json", settings)
        capsys.readouterr()
        code = main(["--config", str(path), "--json", *args], clock=clock)
        captured = capsys.readouterr()
        return ProbeRun(code, captured.out, captured.err, api, clock)

    return run


def assert_read_only(api: RunningEmulator) -> None:
    stats = api.emulator.stats
    assert set(stats.requests) <= READ_ENDPOINTS
    assert all(set(body) <= READ_FIELDS for body in stats.bodies)


def test_the_default_emulator_is_reported_fact_by_fact(probe) -> None:
    run = probe()
    assert run.code == 0, run.err
    assert run.finding("auth")["value"] is True
    assert run.value("order") == "asc"
    assert run.value("stability")["same_order"] is True
    assert run.value("stability")["pages_repeated"] == 0
    assert run.value("stamps")["zone"] == "none"
    assert run.value("stamps")["offset_minutes"] == 0
    assert run.value("stamps")["shapes"]["YYYY-MM-DD hh:mm:ss"] > 0
    assert run.value("bounds") == "half_open"
    assert run.value("page_cap")["at_least"] > 100
    assert run.value("counts") is True
    assert run.value("count_over_a_day") == "refused"
    assert run.value("latency")["ends_in_the_future"] == 0
    assert run.finding("watch")["status"] == "undetermined"
    assert run.value("rate_limits") == {"headers": {}, "throttled": 0}
    assert run.implied("api_timezone") == "UTC"
    assert run.implied("page_size") == 1000
    assert run.implied("lookback_minutes") == 1440
    assert run.implied("lookback_mode") == "always (unknown)"
    assert run.report["stopped"] is None
    used = sum(run.api.emulator.stats.requests.values())
    assert run.report["requests"] == {"used": used, "allowed": 60}
    assert_read_only(run.api)
    # Paced: at least a second between two requests.
    assert sum(run.clock.waits) >= used - 1


@pytest.mark.parametrize(
    ("order", "expected"), [("sorted", "asc"), ("reverse", "desc"), ("unsorted", "none")]
)
def test_the_order_of_items(probe, order, expected) -> None:
    run = probe(order=order)
    assert run.value("order") == expected
    assert run.value("stability")["same_order"] is True
    assert_read_only(run.api)


def test_ties_in_another_order_each_time_and_pages_that_repeat_and_skip(probe) -> None:
    run = probe(order="ties_shuffled")
    assert run.value("order") == "asc"
    stability = run.value("stability")
    assert stability["same_order"] is False and stability["ties_only"] is True
    assert stability["pages_repeated"] + stability["pages_skipped"] > 0


@pytest.mark.parametrize("bounds", ["half_open", "inclusive", "exclusive", "left_open"])
def test_the_inclusiveness_of_both_bounds(probe, bounds) -> None:
    run = probe(bounds=bounds)
    assert run.value("bounds") == bounds
    assert run.value("counts") is True


@pytest.mark.parametrize(
    ("style", "zone", "config", "offset", "setting"),
    [
        ("space", None, {}, 0, "UTC"),
        ("naive_t", None, {}, 0, "UTC"),
        ("space", "Europe/Berlin", {}, 60, "Europe/Berlin"),
        ("naive_t", "Asia/Tokyo", {"api_timezone": "Asia/Tokyo"}, 540, "Asia/Tokyo"),
        ("space", "Asia/Tokyo", {}, 540, "an IANA zone at UTC+09:00"),
    ],
)
def test_zone_less_stamps_tell_utc_from_local_time(probe, style, zone, config, offset, setting):
    run = probe(timestamp_style=style, stamp_zone=zone, config=config)
    stamps = run.value("stamps")
    assert stamps["zone"] == "none"
    assert stamps["offset_minutes"] == offset
    assert run.implied("api_timezone") == setting
    # With the zone known, windows sit exactly on a leg and latency is measured.
    assert run.value("bounds") == "half_open"
    assert run.value("latency")["ends_in_the_future"] == 0


@pytest.mark.parametrize(
    ("style", "shape"),
    [
        ("iso_z", "YYYY-MM-DDThh:mm:ssZ"),
        ("millis_z", "YYYY-MM-DDThh:mm:ss.fffZ"),
        ("offset", "YYYY-MM-DDThh:mm:ss+01:00"),
    ],
)
def test_stamps_with_their_zone_need_no_api_timezone(probe, style, shape) -> None:
    run = probe(timestamp_style=style)
    stamps = run.value("stamps")
    assert stamps["zone"] == "explicit"
    assert set(stamps["shapes"]) == {shape, "null"}
    assert run.report["implied_settings"]["api_timezone"]["why"].startswith("stamps carry")
    assert run.value("bounds") == "half_open"


def test_a_silent_page_cap(probe) -> None:
    run = probe(page_cap=50)
    assert run.value("page_cap") == {"largest_honoured": 50, "says_so": False}
    assert run.implied("page_size") == 50
    assert run.value("counts") is True  # pages of 50 still carry the window's total


def test_legs_counted_but_never_listed_are_not_a_page_cap(probe) -> None:
    legs = recent_legs()
    hidden = frozenset(leg.uuid for leg in legs[-400:-390])
    run = probe(legs=legs, hidden_legs=hidden)
    cap = run.value("page_cap")
    assert cap["largest_honoured"] is None and 0 < cap["unlisted"] <= 10
    assert any("no page lists" in line for line in run.finding("counts")["evidence"])


def test_pages_that_start_one_leg_early_repeat_legs(probe) -> None:
    run = probe(repeat_leg_across_pages=True)
    stability = run.value("stability")
    assert stability["same_order"] is True
    assert stability["pages_repeated"] > 0


def test_legs_landing_while_pages_are_read_are_not_blamed_on_paging(probe) -> None:
    run = probe(insert_during_paging=3)
    stability = run.finding("stability")
    assert "pages not judged" in stability["answer"]
    assert "pages_repeated" not in stability["value"]


def test_a_page_size_refused_with_400(probe) -> None:
    run = probe(max_page_size=500)
    cap = run.value("page_cap")
    assert cap["says_so"] is True and cap["largest_honoured"] == 500
    assert 500 < cap["refused_from"] <= 550
    assert run.implied("page_size") == 500
    assert "Invalid page_size" in " ".join(run.finding("page_cap")["evidence"])


def test_a_count_over_more_than_a_day_that_counts_it_whole(probe) -> None:
    run = probe(count_max_period=None)
    assert run.value("count_over_a_day") == "whole"


def test_counts_that_disagree_with_total_items(probe) -> None:
    run = probe(count_offset=1)
    assert run.value("counts") is False


def test_watch_sees_late_legs_and_legs_changed_in_place(probe) -> None:
    run = probe("--watch", "30", appear_delay_seconds=600, settle_seconds=900)
    watch = run.value("watch")
    assert watch["minutes"] >= 30
    assert watch["appeared_after_ending_before_first_read"] > 0
    assert 0 < watch["late_by_seconds"] <= 600
    assert watch["changed"] > 0
    assert set(watch["changed_fields"]) == {"cost", "billing_status"}
    assert watch["count_after"] > watch["count_before"]
    assert run.implied("lookback_mode") == "always"
    # The watch was one wait on the test's clock, not half an hour.
    assert 30 * 60 in run.clock.waits
    assert_read_only(run.api)


def test_watch_without_changes_calls_a_count_guided_lookback_safe_so_far(probe) -> None:
    run = probe("--watch", "5")
    watch = run.value("watch")
    assert watch["changed"] == 0 and watch["vanished"] == 0
    assert run.implied("lookback_mode") == "on_count_change (safe as far as seen)"


@pytest.mark.parametrize(("pace", "limit", "period"), [("0", 3, 10), ("1", 1, 1)])
def test_rate_limit_headers_are_reported_and_obeyed(probe, pace, limit, period) -> None:
    """Three requests per ten seconds without pacing, or one a second at the default
    pace: the probe waits for the window to reset when the headers say none is left,
    so it is never throttled."""
    run = probe("--pace", pace, rate_limit=limit, rate_period_seconds=period)
    limits = run.value("rate_limits")
    assert limits["throttled"] == 0
    assert set(limits["headers"]) == {
        "X-RateLimit-Limit",
        "X-RateLimit-Remaining",
        "X-RateLimit-Reset",
    }
    assert run.report["stopped"] is None
    assert any(wait >= 1 for wait in run.clock.waits)


def test_429s_are_retried_and_retry_after_forms_are_named(probe) -> None:
    run = probe(
        "--pace",
        "0",
        fault_queue=[{"kind": "429"}, {"kind": "429", "path": "/cdrs/retrieve"}],
        retry_after_style="http_date",
    )
    limits = run.value("rate_limits")
    assert limits["throttled"] == 2
    assert limits["retry_after_forms"] == {"HTTP date": 2}
    assert run.code == 0 and run.report["stopped"] is None  # retried, and slower after


def test_the_request_budget_is_never_exceeded(probe) -> None:
    run = probe("--max-requests", "5")
    assert sum(run.api.emulator.stats.requests.values()) == 5
    assert run.report["requests"]["used"] == 5
    assert "request budget is used up (--max-requests 5)" in run.report["stopped"]
    assert run.code == 0
    assert run.finding("auth")["status"] == "determined"
    assert run.finding("bounds")["status"] == "not reached"


def test_a_quiet_line_is_found_days_back_and_read_there(probe) -> None:
    legs = generate(NOW - timedelta(days=10), NOW - timedelta(days=2, hours=1), 100, seed=2)
    run = probe(legs=legs)
    assert run.value("range")["days_back"] == 2
    assert run.value("order") == "asc" and run.value("bounds") == "half_open"
    assert run.value("latency")["newest_start_seconds_ago"] > 2 * 86_400
    assert run.api.emulator.stats.requests["/cdrs/count"] >= 3


def test_no_legs_in_the_days_looked_at(probe) -> None:
    run = probe(
        "--days", "3", legs=generate(NOW - timedelta(days=30), NOW - timedelta(days=20), 50)
    )
    assert run.finding("range")["status"] == "undetermined"
    assert run.api.emulator.stats.requests == {"/cdrs/count": 3}
    assert run.finding("order")["answer"] == "no legs in the last 3 days to look at"


def test_a_rejected_key_ends_in_one_line_as_the_tap_says_it(probe) -> None:
    run = probe(config={"access_key": "not-the-key"})
    assert run.code == 1
    assert run.finding("auth")["value"] is False
    lines = run.err.strip().splitlines()
    assert lines[-1].startswith("tap-tenios-probe: stopped: The Tenios API rejected the access key")
    assert "check the access_key setting" in lines[-1]
    assert "Traceback" not in run.err
    assert "not-the-key" not in run.out + run.err
    assert run.api.emulator.stats.requests == {"/cdrs/count": 1}


def test_an_api_failing_with_5xx_ends_in_one_line_keeping_what_was_found(probe) -> None:
    faults = [{"kind": "500", "path": "/cdrs/retrieve"}] * 3
    run = probe(fault_queue=faults)
    assert run.code == 1
    last = run.err.strip().splitlines()[-1]
    assert last.startswith("tap-tenios-probe: stopped: Giving up on /cdrs/retrieve")
    assert "HTTP 500" in last
    assert "Traceback" not in run.err
    assert run.finding("range")["status"] == "determined"
    assert run.finding("order")["status"] == "not reached"
    assert "HTTP 500" in run.report["stopped"]


def test_garbage_answers_end_in_one_line(probe) -> None:
    run = probe(retrieve_body=b"<html>Service Unavailable</html>")
    assert run.code == 1
    assert "malformed 200 response" in run.err.strip().splitlines()[-1]
    assert run.finding("range")["status"] == "determined"


def test_items_without_readable_stamps_are_counted_not_fatal(probe) -> None:
    body = {
        "items": [{"uuid": "a", "start_stamp": "yesterday"}, "nonsense", {"start_stamp": None}],
        "total_items": 3,
        "page": 1,
        "page_size": 100,
    }
    run = probe(retrieve_body=json.dumps(body).encode())
    assert run.code == 0, run.err
    assert "3 item(s) without a uuid or a readable start_stamp" in run.finding("stamps")["evidence"]
    assert run.finding("stamps")["status"] == "undetermined"


def test_markdown_report_to_stdout_and_a_file(serve, tmp_path, capsys) -> None:
    api = serve(recent_legs(), now=NOW)
    path = write_json(tmp_path, "config.json", {"access_key": KEY, "api_url": api.url})
    out = tmp_path / "report.md"
    code = main(["--config", str(path), "--output", str(out)], clock=ApiClock(api.emulator))
    printed = capsys.readouterr().out
    assert code == 0
    assert printed == out.read_text()
    assert printed.startswith("## tap-tenios probe report")
    assert "| Inclusiveness of the bounds | [from, to): start_date_from inclusive" in printed
    assert "| `api_timezone` | `UTC` |" in printed


def test_settings_come_from_tap_tenios_variables(serve, capsys, monkeypatch) -> None:
    api = serve(recent_legs(), now=NOW)
    monkeypatch.setenv("TAP_TENIOS_ACCESS_KEY", KEY)
    monkeypatch.setenv("TAP_TENIOS_API_URL", api.url)
    monkeypatch.setenv("TAP_TENIOS_PAGE_SIZE", "50")
    code = main(["--json", "--max-requests", "3"], clock=ApiClock(api.emulator))
    assert code == 0
    report = json.loads(capsys.readouterr().out)
    assert report["findings"]["auth"]["value"] is True


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"page_size": 0}, "page_size:"),
        ({"lookback_mode": "sometimes"}, "lookback_mode:"),
        ({"start_date": KEY}, "start_date:"),  # the key pasted into the wrong setting
    ],
)
def test_settings_the_schema_refuses_end_in_one_line_without_the_key(
    tmp_path, capsys, change, named
) -> None:
    config = {"access_key": KEY, "start_date": "2024-01-01", **change}
    path = write_json(tmp_path, "c.json", config)
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"tap-tenios-probe: invalid settings: {named}")
    assert len(err.splitlines()) == 1 and KEY not in err


def test_bad_settings_end_in_one_line_naming_them(tmp_path, capsys) -> None:
    path = write_json(tmp_path, "c.json", {"access_key": KEY, "api_url": "http://example.com"})
    assert main(["--config", str(path)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tap-tenios-probe: invalid settings: api_url:")
    assert len(err.splitlines()) == 1 and KEY not in err


@pytest.mark.parametrize("faults", [[], [{"kind": "400"}]], ids=["mid-run", "first request"])
def test_the_key_echoed_in_error_bodies_never_shows(probe, tmp_path, faults) -> None:
    out = tmp_path / "report.md"
    run = probe("--output", str(out), echo_body_in_errors=True, fault_queue=list(faults))
    everything = run.out + run.err + out.read_text()
    assert run.code == (1 if faults else 0)
    assert KEY not in everything
    assert "[redacted]" in everything


class HostileErrors(http.server.BaseHTTPRequestHandler):
    """The emulator's answers, but its errors quote a caller's number, name and e-mail,
    and the key."""

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        raw = self.rfile.read(int(self.headers["Content-Length"]))
        try:
            status, body = self.server.emulator.handle(self.path, raw)  # type: ignore[attr-defined]
        except ApiError as exc:
            status = exc.status
            body = json.dumps({"error": f"{exc.message}: {CALLER}, {KEY}"}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


CALLER = "caller +49 151 23456789 (Erika Musterfrau, erika@example.com)"


def test_numbers_and_names_in_error_bodies_show_only_their_shape(tmp_path, capsys) -> None:
    emulator = Emulator(recent_legs(), Behaviour(access_key=KEY, now=NOW))
    with http_server(HostileErrors, emulator=emulator) as (url, _):
        path = write_json(tmp_path, "config.json", {"access_key": KEY, "api_url": url})
        out = tmp_path / "report.json"
        code = main(
            ["--config", str(path), "--json", "--output", str(out)], clock=ApiClock(emulator)
        )
    captured = capsys.readouterr()
    assert code == 0
    everything = captured.out + captured.err + out.read_text()
    for secret in (KEY, "23456789", "Erika", "Musterfrau", "erika@"):
        assert secret not in everything
    evidence = " ".join(json.loads(captured.out)["findings"]["count_over_a_day"]["evidence"])
    assert "The interval can be max. 1 day" in evidence
    assert "+49…(16 chars)" in evidence and "[name] [name]" in evidence


def test_the_console_script_runs_as_installed(serve, tmp_path) -> None:
    """The real clock and no pacing: a few requests, the Markdown report on stdout."""
    now = datetime.now(UTC)
    api = serve(generate(now - timedelta(days=2), now, 200), now=None)
    path = write_json(tmp_path, "config.json", {"access_key": KEY, "api_url": api.url})
    script = Path(sys.executable).parent / "tap-tenios-probe"
    done = subprocess.run(
        [str(script), "--config", str(path), "--pace", "0", "--max-requests", "8", "--days", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("## tap-tenios probe report")
    assert "8 of 8 requests" in done.stdout
    assert "| Authentication | the access key is accepted | determined |" in done.stdout
    assert done.stderr.startswith("tap-tenios-probe: Counting legs per day")
    assert_read_only(api)


def test_the_documented_budget_and_pace_are_the_defaults() -> None:
    probe_doc = (ROOT / "docs" / "probe.md").read_text()
    readme = (ROOT / "README.md").read_text()
    assert f"at most {DEFAULT_MAX_REQUESTS} requests (`--max-requests N`)" in probe_doc
    assert f"at most {DEFAULT_MAX_REQUESTS} requests" in readme
    assert DEFAULT_PACE == 1.0 and "at least a second apart (`--pace SECONDS`)" in probe_doc


class StillClock:
    """Time that passes only in the probe's waits, with no emulator behind it."""

    def __init__(self) -> None:
        self.moment = NOW
        self.waits: list[float] = []

    def now(self) -> datetime:
        return self.moment

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.moment += timedelta(seconds=seconds)


def test_an_unreachable_api_ends_in_one_line(tmp_path, capsys) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    path = write_json(tmp_path, "config.json", {"access_key": KEY, "api_url": url})
    clock = StillClock()
    assert main(["--config", str(path)], clock=clock) == 1
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert "unreachable: the connection was refused" in last
    assert "Traceback" not in captured.err
    assert captured.out.startswith("## tap-tenios probe report")
    assert "0 of 60 requests" not in captured.out  # the tries are counted
    assert len(clock.waits) == 2  # two retries, waited on the probe's clock
