"""Each cdrs window is checked against the API's own counts, and re-read on doubt."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from .helpers import END, in_range, make_config


def emitted(run) -> list[str]:
    return [r["uuid"] for r in run.records()]


def test_a_leg_landing_mid_pagination_is_caught_and_the_window_read_again(
    serve, run_tap, legs, caplog
):
    emulator = serve(legs, insert_during_paging=1, order="sorted")
    run = run_tap(make_config(emulator.url, page_size=10, max_concurrency=1))
    uuids = emitted(run)
    assert len(uuids) == len(set(uuids))
    inserted = {u for u in uuids if u.startswith("00000000-")}
    assert len(inserted) == 1, "the leg that landed while paging must be emitted, once"
    assert set(uuids) == in_range(legs) | inserted
    assert "reading the window again" in caplog.text
    assert "cdrs window [2024-03-01T00:00:00.000Z, 2024-03-02T00:00:00.000Z)" in caplog.text


def test_shifted_pages_that_repeat_a_leg_lose_nothing(serve, run_tap, legs):
    emulator = serve(legs, repeat_leg_across_pages=True, order="unsorted")
    run = run_tap(make_config(emulator.url, page_size=7))
    assert sorted(emitted(run)) == sorted(in_range(legs))


def hide_one(legs, day: int):
    victim = next(leg for leg in legs if leg.start.day == day)
    return victim, frozenset({victim.uuid})


def test_a_leg_that_is_counted_but_never_listed_fails_the_run_before_state_passes(
    serve, run_tap, legs
):
    _, hidden = hide_one(legs, day=2)
    emulator = serve(legs, hidden_legs=hidden)
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    message = str(run.error)
    assert "cdrs window [2024-03-02T00:00:00.000Z, 2024-03-03T00:00:00.000Z)" in message
    assert "but the API counted" in message and "after 3 reads" in message
    assert "on_count_mismatch=fail" in message
    bookmark = run.states[-1]["bookmarks"]["cdrs"]["replication_key_value"]
    assert bookmark < "2024-03-02", "state must stay before the window that disagreed"


def test_warn_logs_the_window_and_the_difference_and_goes_on(serve, run_tap, legs, caplog):
    caplog.set_level(logging.WARNING)
    victim, hidden = hide_one(legs, day=2)
    emulator = serve(legs, hidden_legs=hidden)
    run = run_tap(make_config(emulator.url, on_count_mismatch="warn"))
    assert set(emitted(run)) == in_range(legs) - {victim.uuid}
    warning = next(r.getMessage() for r in caplog.records if "continuing" in r.getMessage())
    assert "[2024-03-02T00:00:00.000Z, 2024-03-03T00:00:00.000Z)" in warning
    assert "on_count_mismatch=warn" in warning


def test_the_count_endpoint_is_a_second_opinion(serve, run_tap, legs):
    emulator = serve(legs, count_offset=1)
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    assert "/cdrs/count counts" in str(run.error) and "(difference +1)" in str(run.error)
    first_window = [
        b
        for b in emulator.emulator.stats.bodies
        if "page" not in b and b["start_date_from"].startswith("2024-02-29")
    ]
    assert len(first_window) == 3  # the first window, read three times


def test_the_count_check_can_be_turned_off(serve, run_tap, legs):
    emulator = serve(legs, count_offset=1)
    run = run_tap(make_config(emulator.url, count_check=False))
    assert sorted(emitted(run)) == sorted(in_range(legs))
    assert "/cdrs/count" not in emulator.emulator.stats.requests


def test_windows_longer_than_a_day_are_counted_in_pieces(serve, run_tap, legs):
    emulator = serve(legs, bounds="inclusive")
    run = run_tap(make_config(emulator.url, window_size_hours=72))
    assert sorted(emitted(run)) == sorted(in_range(legs))
    counts = [b for b in emulator.emulator.stats.bodies if "page" not in b]
    assert len(counts) == 3


def test_a_settling_window_only_warns_because_the_next_run_reads_it_again(
    serve, run_tap, legs, caplog
):
    caplog.set_level(logging.WARNING)
    victim, hidden = hide_one(legs, day=3)
    emulator = serve(legs, hidden_legs=hidden)
    run = run_tap(make_config(emulator.url, lookback_minutes=24 * 60))
    assert set(emitted(run)) == in_range(legs) - {victim.uuid}
    assert "the next run reads it again" in caplog.text
    # ... and it does: the next run starts a lookback before the bookmark.
    emulator.emulator.behaviour.hidden_legs = frozenset()
    again = run_tap(make_config(emulator.url, lookback_minutes=24 * 60), state=run.final_state)
    assert victim.uuid in emitted(again)


@pytest.mark.parametrize("hours", [6, 24])
def test_every_window_gets_one_count_request_when_all_agree(serve, run_tap, legs, hours):
    emulator = serve(legs)
    run_tap(make_config(emulator.url, window_size_hours=hours))
    windows = int((END - END.replace(day=1)) / timedelta(hours=hours))
    assert emulator.emulator.stats.requests["/cdrs/count"] == windows
