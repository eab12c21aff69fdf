"""Kill anywhere, resume from the last STATE: nothing is lost, about a window is redone.

A kill after record N is simulated by cutting a run's output there: a target has only
what came before the last STATE it saw (RECORD lines are flushed with each STATE), and
the next run starts from that STATE. A few real SIGKILL/SIGTERM runs check the same
through the console script.
"""

from __future__ import annotations

import bisect
import signal
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_tenios.emulator import BOUNDS, ORDERS, Behaviour, Emulator, RunningEmulator

from .helpers import END, KEY, dataset, in_range, make_config, run_cli, run_tap, run_until

pytestmark = pytest.mark.slow

LEGS = dataset(calls_per_day=30, seed=8)
EXPECTED = in_range(LEGS)


def most_legs_within(seconds: int) -> int:
    """The most legs of LEGS that start within ``seconds`` of each other."""
    starts = sorted(leg.start for leg in LEGS)
    width = timedelta(seconds=seconds)
    return max(bisect.bisect_right(starts, s + width) - i for i, s in enumerate(starts))


#: A window the planner cut holds at most a page; one it could not cut (under two
#: seconds wide) holds at most what its padded request (a second more on each side) does.
CROWDED = most_legs_within(4)


@given(
    kill_after=st.integers(min_value=0, max_value=len(EXPECTED)),
    order=st.sampled_from(ORDERS),
    bounds=st.sampled_from(BOUNDS),
    hours=st.sampled_from([2, 5, 12, 24, 48]),
    page_size=st.sampled_from([4, 17, 500]),
    lookback=st.sampled_from([0, 45, 24 * 60]),
    cap=st.sampled_from([None, 3, 11]),
)
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_killed_after_any_record_and_resumed_loses_nothing(
    kill_after, order, bounds, hours, page_size, lookback, cap
):
    behaviour = Behaviour(
        access_key=KEY, now=END + timedelta(days=1), order=order, bounds=bounds, page_cap=cap
    )
    with RunningEmulator(Emulator(LEGS, behaviour)) as api:
        config = make_config(
            api.url, window_size_hours=hours, page_size=page_size, lookback_minutes=lookback
        )
        full = run_tap(config)
        assert full.error is None
        # Cut after `kill_after` records; the target keeps what precedes the last STATE.
        seen = 0
        delivered: list[dict] = []
        pending: list[dict] = []
        state = None
        for message in full.messages:
            if message["type"] == "RECORD":
                if seen == kill_after:
                    break
                seen += 1
                pending.append(message["record"])
            elif message["type"] == "STATE":
                delivered += pending
                pending = []
                state = message["value"]
        resumed = run_tap(config, state=state)
        assert resumed.error is None
    again = [r["uuid"] for r in resumed.records()]
    assert len(again) == len(set(again)), "a resumed run emitted a leg twice"
    assert {r["uuid"] for r in delivered} | set(again) == EXPECTED
    # What the kill threw away (records after the last STATE) is at most one window.
    assert len(pending) <= max(min(page_size, cap or page_size), CROWDED)
    # The resumed run starts at the bookmark minus the lookback, not earlier.
    if state and "cdrs" in state["bookmarks"]:
        bookmark = state["bookmarks"]["cdrs"]["replication_key_value"]
        floor = datetime.fromisoformat(bookmark.replace("Z", "+00:00")) - timedelta(
            minutes=lookback
        )
        assert all(
            datetime.fromisoformat(r["start_stamp"].replace("Z", "+00:00")) >= floor
            for r in resumed.records()
        )


@given(
    kill_after=st.integers(min_value=1, max_value=len(EXPECTED) - 1),
    sig=st.sampled_from([signal.SIGKILL, signal.SIGTERM]),
    order=st.sampled_from(ORDERS),
    page_size=st.sampled_from([10, 40]),
)
@settings(max_examples=5, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_real_signals_at_random_points(tmp_path_factory, kill_after, sig, order, page_size):
    tmp_path = tmp_path_factory.mktemp("kill")
    behaviour = Behaviour(access_key=KEY, now=END + timedelta(days=1), order=order, latency_ms=3)
    with RunningEmulator(Emulator(LEGS, behaviour)) as api:
        config = make_config(api.url, window_size_hours=8, page_size=page_size, max_concurrency=2)
        first = run_until(tmp_path, config, None, kill_after, sig)
        states = [m["value"] for m in first if m["type"] == "STATE"]
        result = run_cli(tmp_path, config, state=states[-1] if states else None)
    assert result.returncode == 0, result.stderr[-2000:]
    before = {m["record"]["uuid"] for m in first if m["type"] == "RECORD" and m["stream"] == "cdrs"}
    after = [
        m["record"]["uuid"]
        for m in result.messages
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    ]
    assert len(after) == len(set(after))
    assert before | set(after) == EXPECTED
