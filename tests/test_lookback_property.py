"""``lookback_mode`` on_count_change: whatever late legs arrive between hourly runs, and
wherever a run is killed, every leg is emitted at least once across runs.

Runs follow one another a few hours apart against one emulator whose clock moves with
them. Between runs, legs that started within the lookback land late (long calls,
late CDRs). A run may be killed after any record: the target then has what came
before the last STATE, and the next run starts from that STATE, as in
``test_resume_property``. A last run after everything has landed ends the series.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_tenios.emulator import BOUNDS, ORDERS, Behaviour, Emulator, Leg, RunningEmulator, make_call

from .helpers import END, KEY, START, dataset, in_range, make_config, run_tap

pytestmark = pytest.mark.slow

LEGS = dataset(calls_per_day=30, seed=8)
FIRST_RUN = START + timedelta(hours=26)

#: One run: hours since the previous one, late calls landing before the next (minutes
#: before this run's end that each started, minutes after it that each lands), and
#: where the run is killed (a share of its records), if it is.
RUNS = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=8),
        st.lists(st.tuples(st.integers(1, 12 * 60), st.integers(1, 60)), max_size=3),
        st.none() | st.floats(min_value=0, max_value=1),
    ),
    min_size=1,
    max_size=5,
)


def late_calls(seed: int, run_end: datetime, landing: list[tuple[int, int]]) -> list[Leg]:
    rng = random.Random(seed)
    legs = []
    for started, lands in landing:
        for leg in make_call(rng, run_end - timedelta(minutes=started)):
            leg.visible_at = run_end + timedelta(minutes=lands)
            legs.append(leg)
    return legs


def delivered(messages: list[dict], kill_after: int | None) -> tuple[list[dict], dict | None]:
    """What a target keeps of a run killed after ``kill_after`` records, and the last
    STATE it saw."""
    kept: list[dict] = []
    pending: list[dict] = []
    state = None
    seen = 0
    for message in messages:
        if message["type"] == "RECORD":
            if seen == kill_after:
                break
            seen += 1
            pending.append(message["record"])
        elif message["type"] == "STATE":
            kept, pending = kept + pending, []
            state = message["value"]
    if kill_after is None:
        kept += pending
    return kept, state


@given(
    runs=RUNS,
    order=st.sampled_from(ORDERS),
    bounds=st.sampled_from(BOUNDS),
    hours=st.sampled_from([5, 24, 8784]),
    page_size=st.sampled_from([7, 50, 1000]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_on_count_change_emits_every_leg_at_least_once_whatever_lands_late(
    runs, order, bounds, hours, page_size
):
    behaviour = Behaviour(access_key=KEY, now=FIRST_RUN, order=order, bounds=bounds)
    emulator = Emulator(LEGS, behaviour)
    every_leg = list(LEGS)
    with RunningEmulator(emulator) as api:
        config = make_config(
            api.url,
            lookback_minutes=24 * 60,
            lookback_mode="on_count_change",
            window_size_hours=hours,
            page_size=page_size,
        )
        state: dict | None = None
        emitted: set[str] = set()
        run_end = FIRST_RUN
        for number, (step, landing, kill) in enumerate(runs):
            run_end += timedelta(hours=step if number else 0)
            behaviour.now = run_end
            run = run_tap({**config, "end_date": run_end.isoformat()}, state=state)
            assert run.error is None, run.error
            records = run.records()
            kill_after = None if kill is None else int(kill * len(records))
            kept, last_state = delivered(run.messages, kill_after)
            emitted |= {r["uuid"] for r in kept}
            state = last_state or state
            for leg in late_calls(number, run_end, landing):
                emulator.store.add(leg)
                every_leg.append(leg)
        behaviour.now = END + timedelta(days=2)
        last = run_tap({**config, "end_date": END.isoformat()}, state=state)
        assert last.error is None, last.error
        emitted |= {r["uuid"] for r in last.records()}
    assert emitted == in_range(every_leg)
