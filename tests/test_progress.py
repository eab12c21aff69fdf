"""Progress lines: when they are due, and the share and time left they tell."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest

from tap_tenios.progress import Progress

from .helpers import START, make_config, run_cli


def test_a_line_is_due_every_n_steps_or_seconds_and_at_the_end():
    now = [0.0]
    progress = Progress(65, every_seconds=10.0, every_steps=30, clock=lambda: now[0])
    due = []
    for day in range(1, 66):
        now[0] += 0.1 if day != 40 else 10.0  # day 40 is slow: a line after 10 s
        if progress.advance(day):
            due.append((day, progress.timing()))
    assert [day for day, _ in due] == [30, 40, 65]
    assert due[0][1] == "46% after 0:00:03, about 0:00:04 left"
    assert due[-1][1] == "100% after 0:00:16, about 0:00:00 left"


def test_the_share_done_and_the_time_left_follow_the_pace_so_far():
    now = [100.0]
    progress = Progress(4 * 86400, every_seconds=5.0, clock=lambda: now[0])
    assert (progress.share, progress.left) == (0.0, 0.0)
    now[0] += 4.9
    assert not progress.advance(0)
    now[0] += 0.2
    assert progress.advance(0) and not progress.advance(0), "due once per 5 seconds"
    assert not progress.advance(1.5 * 86400)
    assert progress.share == 1.5 / 4
    now[0] += 4.9
    assert progress.elapsed == pytest.approx(10.0)
    assert progress.left == pytest.approx(10.0 / 0.375 - 10.0)
    assert progress.timing(" of the range").startswith("38% of the range after 0:00:10")
    assert Progress(0, every_seconds=5.0).share == 1.0  # an empty range is all read


def test_both_streams_end_with_a_progress_line(serve, run_tap, legs, caplog):
    emulator = serve(legs)
    with caplog.at_level(logging.INFO):
        run_tap(make_config(emulator.url), streams=("cdrs", "cdr_counts"))
    lines = [r.getMessage() for r in caplog.records]
    end = (START + timedelta(days=3)).strftime("%Y-%m-%d")
    assert any(
        line.startswith(f"cdrs: read up to {end}T00:00:00.000Z: ")
        and line.endswith("left")
        and "; 100% of the range after " in line
        for line in lines
    ), lines
    assert any(
        line.startswith("cdr_counts: 3 of 3 day(s) counted, up to 2024-03-03; 100% after ")
        for line in lines
    ), lines


def test_the_sdks_request_metrics_are_logged_per_request_and_per_endpoint(
    tmp_path, serve, legs
) -> None:
    """``http_request_duration`` for every answer and ``http_request_count`` per
    endpoint, as the SDK's REST streams log them; the counts are the requests made."""
    emulator = serve(legs, fault_queue=[{"kind": "500", "path": "/cdrs/count"}])
    result = run_cli(tmp_path, make_config(emulator.url, max_concurrency=1))
    assert result.returncode == 0, result.stderr[-2000:]
    points = [
        json.loads(line.split("METRIC: ", 1)[1])
        for line in result.stderr.splitlines()
        if "METRIC: " in line
    ]
    durations = [p for p in points if p["metric"] == "http_request_duration"]
    counts = {
        (p["tags"]["stream"], p["tags"]["endpoint"]): p["value"]
        for p in points
        if p["metric"] == "http_request_count"
    }
    served = emulator.emulator.stats.requests
    assert counts == {
        ("cdrs", "/cdrs/retrieve"): served["/cdrs/retrieve"],
        ("cdr_counts", "/cdrs/count"): served["/cdrs/count"],
    }
    assert len(durations) == sum(served.values())
    statuses = {(p["tags"]["http_status_code"], p["tags"]["status"]) for p in durations}
    assert statuses == {(200, "succeeded"), (500, "failed")}
    assert all(p["type"] == "timer" and p["value"] >= 0 for p in durations)
