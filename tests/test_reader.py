"""How cdrs windows are read: one request where a page holds them, parts where it does not,
pages kept across reads where a window cannot be cut, and every window checked against
the API's own counts before state passes it; reads run ahead on worker threads, results
in order, memory bounded, prompt to stop."""

from __future__ import annotations

import logging
import math
import random
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_tenios import reader
from tap_tenios.emulator import (
    BOUNDS,
    ORDERS,
    Behaviour,
    Emulator,
    Leg,
    RunningEmulator,
    generate,
    make_call,
)
from tap_tenios.planner import EDGE_PADDING, FILL
from tap_tenios.reader import SPARE_THREADS, DaemonPool, Split, ordered_map, ordered_plan
from tap_tenios.records import format_utc
from tap_tenios.tap import TapTenios

from .helpers import (
    END,
    KEY,
    START,
    in_range,
    make_config,
    moved,
    parse_messages,
    tap_command,
    write_json,
)
from .helpers import run_tap as run_in_process


def emitted(run) -> list[str]:
    return [r["uuid"] for r in run.records()]


def named_window(message: str) -> tuple[datetime, datetime]:
    """The window an error or warning names: ``cdrs window [a, b)``."""
    found = re.search(r"cdrs window \[(\S+), (\S+)\)", message)
    assert found, message
    return tuple(datetime.fromisoformat(t.replace("Z", "+00:00")) for t in found.groups())  # type: ignore[return-value]


def test_a_leg_landing_while_the_range_is_read_is_emitted_once(serve, run_tap, legs):
    emulator = serve(legs, insert_during_paging=1, order="sorted")
    run = run_tap(make_config(emulator.url, page_size=10, max_concurrency=1))
    uuids = emitted(run)
    assert len(uuids) == len(set(uuids))
    inserted = {u for u in uuids if u.startswith("00000000-")}
    assert len(inserted) == 1, "the leg that landed while the tap read must be emitted, once"
    assert set(uuids) == in_range(legs) | inserted


def test_shifted_pages_that_repeat_a_leg_lose_nothing(serve, run_tap, legs):
    emulator = serve(legs, repeat_leg_across_pages=True, order="unsorted")
    run = run_tap(make_config(emulator.url, page_size=7))
    assert sorted(emitted(run)) == sorted(in_range(legs))


def hide_one(legs, day: int):
    victim = next(leg for leg in legs if leg.start.day == day and leg.start.hour == 12)
    return victim, frozenset({victim.uuid})


def test_a_leg_that_is_counted_but_never_listed_fails_the_run_before_state_passes(
    serve, run_tap, legs
):
    victim, hidden = hide_one(legs, day=2)
    emulator = serve(legs, hidden_legs=hidden)
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    message = str(run.error)
    lower, upper = named_window(message)
    # The leg is narrowed down to a window that cannot be cut, or to its neighbour,
    # whose request reaches a second past its edges and so counts the leg too.
    assert upper - lower < timedelta(seconds=2)
    assert lower - EDGE_PADDING <= victim.start <= upper + EDGE_PADDING
    assert "but the API counted" in message and "after 3 reads" in message
    assert "on_count_mismatch=fail" in message
    bookmark = run.states[-1]["bookmarks"]["cdrs"]["replication_key_value"]
    assert bookmark < format_utc(lower), "state stays before the window that disagrees"


def test_warn_logs_the_window_and_the_difference_and_goes_on(serve, run_tap, legs, caplog):
    caplog.set_level(logging.WARNING)
    victim, hidden = hide_one(legs, day=2)
    emulator = serve(legs, hidden_legs=hidden)
    run = run_tap(make_config(emulator.url, on_count_mismatch="warn"))
    assert set(emitted(run)) == in_range(legs) - {victim.uuid}
    warning = next(r.getMessage() for r in caplog.records if "continuing" in r.getMessage())
    lower, upper = named_window(warning)
    assert lower - EDGE_PADDING <= victim.start <= upper + EDGE_PADDING
    assert "on_count_mismatch=warn" in warning


def crowded_second(legs, calls: int = 12):
    """``calls`` calls starting in the same second: more legs than a small page holds."""
    moment = START + timedelta(hours=15, minutes=30)
    crowd = [leg for seed in range(calls) for leg in make_call(random.Random(seed), moment)]
    return moment, legs + crowd


def test_one_page_reads_ask_no_count_and_paged_ones_do(serve, run_tap, legs):
    moment, crowded = crowded_second(legs)
    emulator = serve(crowded, order="ties_shuffled")
    run = run_tap(make_config(emulator.url, page_size=10))
    assert sorted(emitted(run)) == sorted(in_range(crowded))
    counts = [b for b in emulator.emulator.stats.bodies if "page" not in b]
    # Only the windows around the crowded second are read in pages, so only they
    # are counted; every other window was one request, checked by its own total.
    assert counts, "the paged windows must be counted"
    for body in counts:
        lower = datetime.fromisoformat(body["start_date_from"].replace("Z", "+00:00"))
        upper = datetime.fromisoformat(body["start_date_to"].replace("Z", "+00:00"))
        assert upper - lower <= timedelta(seconds=2)
        assert abs(lower - moment) <= timedelta(seconds=3)
    retrieves = [b for b in emulator.emulator.stats.bodies if "page" in b]
    paged = [b for b in retrieves if b["page"] > 1]
    assert paged and all(
        abs(datetime.fromisoformat(b["start_date_from"].replace("Z", "+00:00")) - moment)
        <= timedelta(seconds=4)
        for b in paged
    )


def test_the_count_endpoint_is_a_second_opinion_on_paged_windows(serve, run_tap, legs):
    moment, crowded = crowded_second(legs)
    emulator = serve(crowded, count_offset=1)
    run = run_tap(make_config(emulator.url, page_size=10, max_concurrency=1), fails=True)
    message = str(run.error)
    assert "/cdrs/count counts" in message and "(difference +1)" in message
    lower, upper = named_window(message)
    assert upper - lower <= timedelta(seconds=2) and abs(lower - moment) <= timedelta(seconds=2)


def crowded_in_milliseconds(legs):
    """A crowded second whose legs carry milliseconds, two of them a millisecond from
    the whole seconds the planner cuts on: on the bounds of the shifted count periods."""
    moment, crowded = crowded_second(legs)
    rng = random.Random(17)
    crowd = [leg for leg in crowded if leg.start in (moment, moment + timedelta(seconds=1))]
    offsets = [999, -1] + [rng.randrange(1000) for _ in crowd[2:]]
    shifted = {
        leg.uuid: moved(leg, leg.start + timedelta(milliseconds=ms))
        for leg, ms in zip(crowd, offsets, strict=True)
    }
    return [shifted.get(leg.uuid, leg) for leg in crowded]


@pytest.mark.parametrize("bounds", BOUNDS)
def test_sub_second_stamps_on_the_count_bounds_do_not_fail_the_count_check(
    serve, run_tap, legs, bounds
):
    """``/cdrs/count`` periods are shifted a millisecond: a leg at ``.999`` lies on one.
    Whether the API counts it or not, the legs read agree with the count."""
    crowded = crowded_in_milliseconds(legs)
    emulator = serve(crowded, bounds=bounds, timestamp_style="millis_z")
    run = run_tap(make_config(emulator.url, page_size=10))
    assert sorted(emitted(run)) == sorted(in_range(crowded))
    assert emulator.emulator.stats.requests.get("/cdrs/count"), "no paged window was checked"


def test_the_count_check_still_catches_a_wrong_count_with_sub_second_stamps(serve, run_tap, legs):
    emulator = serve(crowded_in_milliseconds(legs), count_offset=1, timestamp_style="millis_z")
    run = run_tap(make_config(emulator.url, page_size=10, max_concurrency=1), fails=True)
    assert "/cdrs/count counts" in str(run.error) and "(difference +1)" in str(run.error)


def test_the_count_check_can_be_turned_off(serve, run_tap, legs):
    _, crowded = crowded_second(legs)
    emulator = serve(crowded, count_offset=1)
    run = run_tap(make_config(emulator.url, page_size=10, count_check=False))
    assert sorted(emitted(run)) == sorted(in_range(crowded))
    assert "/cdrs/count" not in emulator.emulator.stats.requests


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


def test_an_api_whose_counts_ignore_the_dates_is_stopped_not_followed(serve, run_tap, legs):
    """Counts that do not shrink with the window would make the planner cut forever."""
    emulator = serve(legs)
    real = emulator.emulator.retrieve

    def every_window_counts_a_million(body):
        return re.sub(rb'"total_items":\d+', b'"total_items":1000000', real(body))

    emulator.emulator.retrieve = every_window_counts_a_million
    run = run_tap(make_config(emulator.url, page_size=50), fails=True)
    message = str(run.error)
    named_window(message)
    assert "the API counts 1000000 legs" in message
    assert (
        "its counts do not follow the requested dates" in message
        or "the window cannot be cut further" in message
    )
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] < 30


@pytest.mark.parametrize(
    ("claimed", "said"),
    [
        (100, "but the API counted 100 after"),
        (20_000, "legs and a later page 20000"),
        (10**7, "more than one window may hold"),
    ],
)
def test_a_paged_read_whose_later_pages_count_more_stops_with_few_requests(
    serve, run_tap, legs, claimed, said
):
    """Each page's count decides how many pages the next round reads: a count that
    jumps must not turn into thousands of requests for empty pages."""
    moment, crowded = crowded_second(legs)
    emulator = serve(crowded)
    real = emulator.emulator.retrieve

    def later_pages_count_more(body):
        answer = real(body)
        if body["page"] > 1:
            answer = re.sub(rb'"total_items":\d+', b'"total_items":%d' % claimed, answer)
        return answer

    emulator.emulator.retrieve = later_pages_count_more
    run = run_tap(make_config(emulator.url, page_size=10), fails=True)
    message = str(run.error)
    assert said in message
    lower, _ = named_window(message)
    assert abs(lower - moment) <= timedelta(seconds=2)
    # At most PAGED_ROUNDS rounds of ten pages for each paged window near the moment,
    # plus what the other threads read before the run stopped: hundreds, not thousands.
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] < 300


def test_a_page_cut_short_after_full_ones_is_read_by_cutting_the_window(serve, run_tap, legs):
    """An API may cut some answers short (a cap by response size, or under load)
    after it has served full pages: the short page cannot be told from a hidden leg
    until the window is cut, and cutting it reads every leg."""
    emulator = serve(legs)
    api = emulator.emulator
    real = api.retrieve
    answers = 0

    def cut_short_after_the_first(body):
        nonlocal answers
        answers += 1
        api.behaviour.page_cap = None if answers == 1 else 15
        return real(body)

    api.retrieve = cut_short_after_the_first
    run = run_tap(make_config(emulator.url, page_size=20, max_concurrency=1))
    assert sorted(emitted(run)) == sorted(in_range(legs))


def test_a_window_that_fits_a_page_is_one_request_and_a_busier_one_is_cut(serve, run_tap, legs):
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, page_size=20))
    assert sorted(r["uuid"] for r in run.records()) == sorted(in_range(legs))
    bodies = [b for b in emulator.emulator.stats.bodies if "page" in b]
    assert {b["page"] for b in bodies} == {1}, "no window needed a second page"
    assert {b["page_size"] for b in bodies} == {20}
    # The whole range first (too many legs for a page), then parts sized by its count.
    assert bodies[0]["start_date_from"] == "2024-02-29T23:59:59.000Z"
    assert bodies[0]["start_date_to"] == "2024-03-04T00:00:01.000Z"
    expected_parts = math.ceil(len(in_range(legs)) / (20 * FILL))
    assert len(bodies) <= 1 + 2 * expected_parts


def test_requests_use_the_documented_date_spelling(serve, run_tap, legs):
    emulator = serve(legs)
    run_tap(make_config(emulator.url))
    bodies = emulator.emulator.stats.bodies
    spelled = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")
    assert all(spelled.fullmatch(b["start_date_from"]) for b in bodies)
    first = min(bodies, key=lambda b: b["start_date_from"])
    assert first["start_date_from"] == "2024-02-29T23:59:59.000Z"
    assert first["start_date_to"] == "2024-03-04T00:00:01.000Z"


def busy_day_with_crowded_seconds() -> list[Leg]:
    """One busy day, plus seconds in which more calls start than a small page holds."""
    day = generate(START, START + timedelta(days=1), 500, seed=21)
    rng = random.Random(4)
    for hour in (9, 11, 16):
        moment = START + timedelta(hours=hour, minutes=17)
        day += [leg for _ in range(8) for leg in make_call(rng, moment)]
    return day


@pytest.mark.parametrize("bounds", ["half_open", "inclusive"])
def test_a_busy_day_whose_pages_shift_gives_every_leg_exactly_once(serve, run_tap, bounds):
    legs = busy_day_with_crowded_seconds()
    emulator = serve(legs, order="ties_shuffled", bounds=bounds)
    run = run_tap(make_config(emulator.url, page_size=10, end_date="2024-03-02"))
    uuids = [r["uuid"] for r in run.records()]
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == in_range(legs, START, START + timedelta(days=1))
    paged = [b for b in emulator.emulator.stats.bodies if b.get("page", 1) > 1]
    assert paged, "the crowded seconds cannot fit a page: they must have been paged"


def test_a_silent_page_cap_is_learned_and_parts_are_planned_to_fit_it(serve, run_tap, legs):
    emulator = serve(legs, page_cap=15)
    run = run_tap(make_config(emulator.url, page_size=200))
    uuids = [r["uuid"] for r in run.records()]
    assert sorted(uuids) == sorted(in_range(legs))
    bodies = [b for b in emulator.emulator.stats.bodies if "page" in b]
    assert {b["page_size"] for b in bodies} == {200}
    # Parts are planned for pages of 15, not 200: a handful more requests than the
    # legs need, not one split after another.
    assert len(bodies) <= 2 * math.ceil(len(uuids) / (15 * FILL)) + 2


def test_empty_years_cost_a_request_each(serve, run_tap, legs):
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, start_date="2021-03-01", page_size=1000))
    assert sorted(r["uuid"] for r in run.records()) == sorted(in_range(legs))
    retrieves = emulator.emulator.stats.requests["/cdrs/retrieve"]
    assert retrieves <= 4, "three empty years and three busy days: a request per 366 days"
    assert "/cdrs/count" not in emulator.emulator.stats.requests


def test_the_widest_window_bounds_each_request(serve, run_tap, legs):
    emulator = serve(legs)
    run_tap(make_config(emulator.url, start_date="2024-01-01", window_size_hours=24 * 7))
    for body in emulator.emulator.stats.bodies:
        lower = datetime.fromisoformat(body["start_date_from"].replace("Z", "+00:00"))
        upper = datetime.fromisoformat(body["start_date_to"].replace("Z", "+00:00"))
        assert upper - lower <= timedelta(days=7, seconds=2)


def test_once_a_window_fails_for_good_the_others_stop_retrying(serve, run_tap, legs):
    """Two days read at once: one is refused (fatal), the other is in its retries."""
    faults = [{"kind": "500"}, {"kind": "400"}] + [{"kind": "500"}] * 10
    emulator = serve(legs, fault_queue=faults)
    config = make_config(
        emulator.url, end_date="2024-03-03", window_size_hours=24, max_concurrency=2
    )
    run = run_tap(config, fails=True, real_waits=True)
    assert "HTTP 400" in str(run.error)
    # The refused request and the first try of the other; no retry after the failure.
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] == 2


def test_reads_run_ahead_of_what_is_emitted_by_a_bounded_number(serve, legs):
    """Memory stays bounded: while the first window is being emitted, only a few
    windows beyond it have been requested, however many the range holds."""
    emulator = serve(legs)
    workers = 2
    config = make_config(emulator.url, page_size=10, max_concurrency=workers)
    tap = TapTenios(config=config, state={}, parse_env_config=False)
    records = tap.streams["cdrs"].get_records(None)
    next(iter(records))
    api = emulator.emulator

    def one_page_reads() -> int:
        """Requests whose legs fit a page: reads that are held until emitted."""
        held = 0
        for body in list(api.stats.bodies):
            lower, upper = (
                datetime.fromisoformat(body[k].replace("Z", "+00:00"))
                for k in ("start_date_from", "start_date_to")
            )
            held += len(api.store.select(lower, upper, "inclusive", api.now())) <= 10
        return held

    bound = 2 * workers + SPARE_THREADS
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline and one_page_reads() <= bound:
        time.sleep(0.01)  # give reads that should not exist the time to show up
    assert one_page_reads() <= bound
    rest = [r["uuid"] for r in records]
    assert len(rest) + 1 == len(in_range(legs))
    assert one_page_reads() > 10 * workers, "the range needed many more reads"


def test_parts_that_together_count_far_more_than_their_window_stop_the_run(serve, run_tap, legs):
    """Every request counts 200 legs, whatever its dates: the first window is cut into
    five parts, read at once, and the five count 1,000 between them, five times their
    window's 200.
    """
    emulator = serve(legs)
    real = emulator.emulator.retrieve

    def always_200(body):
        return re.sub(rb'"total_items":\d+', b'"total_items":200', real(body))

    emulator.emulator.retrieve = always_200
    run = run_tap(make_config(emulator.url, page_size=50, max_concurrency=5), fails=True)
    assert "its counts do not follow the requested dates" in str(run.error)
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] < 30


def test_windows_in_a_lookback_of_part_of_a_window_only_warn(serve, run_tap, legs, caplog):
    """Top windows are cut where the lookback begins, so a mismatch within it is the
    next run's to settle, even when the lookback is no whole number of windows (and a
    day fits one page, so nothing else cuts the last window).
    """
    caplog.set_level(logging.WARNING)
    victim = max((leg for leg in legs if leg.start < END), key=lambda leg: leg.start)
    assert victim.start >= END - timedelta(hours=6)
    emulator = serve(legs, hidden_legs=frozenset({victim.uuid}))
    config = make_config(emulator.url, lookback_minutes=6 * 60, window_size_hours=24, page_size=500)
    run = run_tap(config)
    assert "the next run reads it again" in caplog.text
    assert {r["uuid"] for r in run.records()} == in_range(legs) - {victim.uuid}


def test_a_window_that_starts_where_the_lookback_starts_is_within_it(serve, run_tap, legs, caplog):
    """A leg the API counts but never lists, a second after the lookback's start: the
    narrowest window that sees it (its request reaches a second past each edge) starts
    exactly where the lookback does, and is the next run's to settle."""
    caplog.set_level(logging.WARNING)
    settling = END - timedelta(hours=6)
    victim = moved(legs[0], settling + timedelta(seconds=1))
    emulator = serve([*legs[1:], victim], hidden_legs=frozenset({victim.uuid}))
    config = make_config(emulator.url, lookback_minutes=6 * 60, window_size_hours=24, page_size=500)
    run = run_tap(config)
    assert "the next run reads it again" in caplog.text
    assert {r["uuid"] for r in run.records()} == in_range(legs[1:])


def test_a_second_that_counts_more_legs_than_a_window_may_hold_stops_the_run(serve, run_tap, legs):
    """Counts that follow the dates, but one second counts 200,000 legs: the planner
    cuts down to that second, which it cannot cut, and refuses to page through it.
    """
    emulator = serve(legs)
    real = emulator.emulator.retrieve
    busy = "2024-03-02T10:00:00.000Z"

    def one_crowded_second(body):
        answer = real(body)
        if body["start_date_from"] <= busy < body["start_date_to"]:
            answer = re.sub(rb'"total_items":\d+', b'"total_items":200000', answer)
        return answer

    emulator.emulator.retrieve = one_crowded_second
    run = run_tap(make_config(emulator.url, page_size=50), fails=True)
    assert "the window cannot be cut further" in str(run.error)
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] < 1000


def crowds(spots: list[tuple[int, int, str]]) -> list[Leg]:
    """Calls crowding into single seconds, some on whole seconds (the planner's cut
    points), some with milliseconds or microseconds, a few legs each."""
    legs: list[Leg] = []
    for spot, (second, calls, precision) in enumerate(spots):
        rng = random.Random(f"{spot}-{second}")  # two spots may share a second, not uuids
        moment = START + timedelta(seconds=second)
        for _ in range(calls):
            fraction = {
                "whole": timedelta(0),
                "ms": timedelta(milliseconds=rng.choice([0, 1, 999, rng.randrange(1000)])),
                "us": timedelta(microseconds=rng.choice([1, 999_999, rng.randrange(10**6)])),
            }[precision]
            legs += [moved(leg, leg.start + fraction) for leg in make_call(rng, moment)]
    return legs


@given(
    spots=st.lists(
        st.tuples(
            st.integers(min_value=0, max_value=3 * 86_400 - 1),
            st.integers(min_value=1, max_value=12),
            st.sampled_from(["whole", "ms", "us"]),
        ),
        min_size=1,
        max_size=4,
    ),
    order=st.sampled_from(ORDERS),
    bounds=st.sampled_from(BOUNDS),
    page_size=st.sampled_from([5, 13, 1000]),
    cap=st.sampled_from([None, 4]),
)
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_crowded_sub_second_instants_are_emitted_once_in_order_with_a_state_per_window(
    spots, order, bounds, page_size, cap
):
    legs = generate(START, END, 15, seed=5) + crowds(spots)
    behaviour = Behaviour(
        access_key=KEY,
        now=END + timedelta(days=1),
        order=order,
        bounds=bounds,
        page_cap=cap,
        timestamp_style="offset",  # keeps microseconds
    )
    with RunningEmulator(Emulator(legs, behaviour)) as api:
        run = run_in_process(make_config(api.url, page_size=page_size))
    assert run.error is None, run.error
    keys = [(r["start_stamp"], r["uuid"]) for r in run.records()]
    assert keys == sorted(keys), "emission must be sorted by (start_stamp, uuid)"
    assert len({uuid for _, uuid in keys}) == len(keys) and {u for _, u in keys} == in_range(legs)
    latest = ""
    for message in run.messages:
        if message["type"] == "RECORD":
            latest = message["record"]["start_stamp"]
        elif message["type"] == "STATE" and latest:
            assert message["value"]["bookmarks"]["cdrs"]["replication_key_value"] == latest


def test_a_crowded_second_is_paged_through_one_leg_per_page(serve, run_tap):
    """Pages of one leg: a second that cannot be cut is read page by page, and every
    page up to its count is asked for (pages of one leg number as many as its legs).
    """
    rng = random.Random(11)
    moment = START + timedelta(hours=5)
    crowded = [leg for _ in range(3) for leg in make_call(rng, moment)]
    legs = crowded + make_call(rng, START + timedelta(hours=9))
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, page_size=1, end_date="2024-03-02"))
    uuids = [r["uuid"] for r in run.records()]
    assert sorted(uuids) == sorted(in_range(legs, START, START + timedelta(days=1)))
    assert len(crowded) >= 3
    pages = {b["page"] for b in emulator.emulator.stats.bodies if "page" in b}
    assert pages >= set(range(1, len(crowded) + 1))


def test_pages_are_read_again_from_page_1_until_every_leg_shows(serve, run_tap):
    """Pages are separate queries: here the legs of the last page show only on page 1,
    and only from its third query on (ties ordered differently each time). Every
    round after the first reads page 1 again, so they are found."""
    rng = random.Random(5)
    moment = START + timedelta(hours=5)
    crowded = [moved(leg, moment) for _ in range(3) for leg in make_call(rng, moment)]
    emulator = serve(crowded)
    real = emulator.emulator.retrieve
    last = math.ceil(len(crowded) / 2)
    page_1_queries: Counter[str] = Counter()

    def shifting(body):
        lower, upper = body["start_date_from"], body["start_date_to"]
        narrow = datetime.fromisoformat(upper[:-1]) - datetime.fromisoformat(lower[:-1])
        if narrow > timedelta(seconds=3):  # not yet the second that cannot be cut
            return real(body)
        page = body["page"]
        if page == 1:
            page_1_queries[lower] += 1
            if page_1_queries[lower] >= 3:
                page = last
        elif page == last:
            page = 1
        return real({**body, "page": page})

    emulator.emulator.retrieve = shifting  # type: ignore[method-assign]
    run = run_tap(make_config(emulator.url, page_size=2, end_date="2024-03-02"))
    assert sorted(r["uuid"] for r in run.records()) == sorted(leg.uuid for leg in crowded)
    assert last > 2 and max(page_1_queries.values()) >= 3


# Reading ahead on worker threads: results in order, memory bounded, prompt to stop.
class Drawn:
    """An iterator that counts how many items have been taken from it."""

    def __init__(self, items: range) -> None:
        self.taken = 0
        self.source = iter(items)

    def __iter__(self) -> Iterator[int]:
        for item in self.source:
            self.taken += 1
            yield item


@pytest.mark.parametrize("workers", [1, 3])
def test_ordered_map_keeps_twice_the_workers_in_hand_and_no_more(workers: int) -> None:
    items = Drawn(range(100))
    results = ordered_map(lambda n: n * n, items, workers, threading.Event())
    assert next(results) == 0
    assert items.taken == 2 * workers, "calls queued or running when the first is used"
    assert next(results) == 1
    assert items.taken == 2 * workers + 1
    assert list(results) == [n * n for n in range(2, 100)]


def test_ordered_map_sets_stop_when_a_call_fails_but_not_when_it_ends() -> None:
    stop = threading.Event()
    assert list(ordered_map(str, range(5), 2, stop)) == ["0", "1", "2", "3", "4"]
    assert not stop.is_set(), "a map that ended normally must leave stop alone"

    def boom(n: int) -> int:
        if n == 3:
            raise RuntimeError("window 3 failed")
        return n

    with pytest.raises(RuntimeError, match="window 3"):
        list(ordered_map(boom, range(50), 2, stop))
    assert stop.is_set()


def halves(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
    """A read of the numbers [a, b): ranges wider than 4 split in two."""
    a, b = item
    if b - a > 4:
        middle = (a + b) // 2
        return Split([(a, middle), (middle, b)])
    return list(range(a, b))


def test_ordered_plan_reads_the_parts_of_a_split_in_its_place() -> None:
    tops = [(0, 37), (37, 40), (40, 100)]
    chunks = list(ordered_plan(halves, tops, 3, threading.Event()))
    assert [n for chunk in chunks for n in chunk] == list(range(100))
    assert all(len(chunk) <= 4 for chunk in chunks)


def test_a_read_that_splits_just_after_the_loop_looked_is_read_as_its_parts(
    monkeypatch,
) -> None:
    """The race: the first read finishes, as a split, between the look for splits and
    the emitting of results. Its parts must be read, never the split emitted."""
    expand = reader.expand_splits
    looked, finish = threading.Event(), threading.Event()

    def look_then_let_it_finish(slots):  # type: ignore[no-untyped-def]
        out = expand(slots)
        if not looked.is_set():
            looked.set()
            finish.set()
            head = out[0][0].future
            assert head is not None
            head.result(10)  # it finishes now, after the look
        return out

    def read(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
        if item == (0, 8):
            finish.wait(10)
        return halves(item)

    monkeypatch.setattr(reader, "expand_splits", look_then_let_it_finish)
    chunks = list(ordered_plan(read, [(0, 8)], 1, threading.Event()))
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(("workers", "ahead"), [(2, None), (3, 5)])
def test_ordered_plan_holds_at_most_its_limit(workers: int, ahead: int | None) -> None:
    items = Drawn(range(200))
    reads = ordered_plan(lambda n: [n], items, workers, threading.Event(), ahead)
    assert next(reads) == [0]
    assert items.taken == (ahead or 2 * workers)
    assert [r[0] for r in reads] == list(range(1, 200))


def test_ordered_plan_sleeps_while_the_first_read_runs_behind_finished_ones() -> None:
    """Finished reads waiting behind a slow first one must not make the loop spin: the
    thread emitting results spends a second waiting, not a second of CPU."""
    release = threading.Event()

    def read(n: int) -> list[int]:
        if n == 0:
            release.wait(10)
        return [n]

    timer = threading.Timer(1.0, release.set)
    timer.start()
    began = time.thread_time()
    try:
        assert [r[0] for r in ordered_plan(read, range(6), 2, threading.Event())] == list(range(6))
    finally:
        timer.cancel()
    # Sleeping, a few milliseconds; a loop looking again and again, most of the second.
    assert time.thread_time() - began < 0.2


def test_ordered_plan_fails_at_the_first_failed_read_and_sets_stop() -> None:
    stop = threading.Event()

    def read(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
        if item == (10, 15):
            raise RuntimeError("part failed")
        return halves(item)

    with pytest.raises(RuntimeError, match="part failed"):
        list(ordered_plan(read, [(0, 6), (6, 24), (24, 99)], 2, stop))
    assert stop.is_set()


def test_ordered_plan_that_ends_normally_leaves_stop_alone() -> None:
    stop = threading.Event()
    assert len(list(ordered_plan(halves, [(0, 37), (37, 40)], 2, stop))) > 2
    assert not stop.is_set(), "a tap that read its range must be able to sync again"


def gated(gate: threading.Event, ran: list[int]) -> Callable[[int], list[int]]:
    """A read that records each item it starts; items other than 0 wait for ``gate``."""

    def read(n: int) -> list[int]:
        ran.append(n)
        if n:
            gate.wait(5)
        return [n]

    return read


@pytest.mark.parametrize("plan", [False, True])
def test_reads_still_queued_when_the_consumer_stops_never_start(plan: bool) -> None:
    # Two workers, four reads in hand: 0 returns, 1 and 2 hold both workers, 3 waits
    # in the queue when the consumer stops after the first result.
    gate, ran = threading.Event(), []
    read = gated(gate, ran)
    stop = threading.Event()
    results = (
        ordered_plan(read, range(10), 2, stop) if plan else ordered_map(read, range(10), 2, stop)
    )
    assert next(results) == [0]
    results.close()
    assert stop.is_set()
    gate.set()
    time.sleep(0.3)  # what a worker would need to start a read left in the queue
    assert 3 not in ran and set(ran) <= {0, 1, 2}


def test_a_pool_runs_as_many_calls_at_once_as_it_has_workers() -> None:
    together = threading.Barrier(3, timeout=5)
    with DaemonPool(3, "test") as pool:
        futures = [pool.submit(together.wait) for _ in range(3)]
        assert sorted(f.result(timeout=10) for f in futures) == [0, 1, 2]


def test_a_pool_of_one_runs_one_call_at_a_time() -> None:
    second_started = threading.Event()
    with DaemonPool(1, "test") as pool:
        first = pool.submit(second_started.wait, 0.3)
        pool.submit(second_started.set)
        assert first.result(timeout=10) is False, "the second call ran beside the first"


def test_pool_threads_never_hold_up_the_exit() -> None:
    release = threading.Event()
    with DaemonPool(2, "test") as pool:
        pool.submit(release.wait)
        threads = [t for t in threading.enumerate() if t.name.startswith("test-")]
    assert threads and all(t.daemon for t in threads)
    release.set()


def test_sigterm_ends_a_run_with_a_hanging_request_at_once_and_a_safe_state(
    tmp_path, serve, legs
) -> None:
    """A request that hangs (for as long as the timeout allows) does not delay SIGTERM,
    and the last STATE never passes a leg that was not emitted."""
    emulator = serve(legs, latency_ms=5)
    config = make_config(emulator.url, page_size=10, max_concurrency=2, request_timeout_seconds=120)
    command = tap_command(tmp_path, config)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    stats = emulator.emulator.stats
    behaviour = emulator.emulator.behaviour
    deadline = time.monotonic() + 60
    while stats.requests.get("/cdrs/retrieve", 0) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    # From now on every request hangs for a minute.
    behaviour.stall_seconds = 60
    behaviour.fault_kinds = ("stall",)
    behaviour.fault_rate = 1.0
    while not stats.faults.get("stall") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stats.faults.get("stall"), "no request hung: the test proves nothing"
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    took = time.monotonic() - signalled
    assert took < 10, f"SIGTERM took {took:.1f} s with a request hanging"
    messages = parse_messages(out)
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "cdrs"]
    emitted = {r["uuid"] for r in records}
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert states, "a STATE must be written on SIGTERM"
    bookmark = states[-1]["bookmarks"].get("cdrs", {}).get("replication_key_value")
    if bookmark:
        passed = {leg.uuid for leg in legs if format_utc(leg.start) < bookmark}
        assert passed & in_range(legs) <= emitted, "state passed a leg never emitted"
    # The next run, from that state, gets the rest: nothing is lost.
    behaviour.fault_rate = 0.0
    resumed = subprocess.run(
        [*command, "--state", str(write_json(tmp_path, "state.json", states[-1]))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    again = {
        m["record"]["uuid"]
        for m in parse_messages(resumed.stdout)
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    }
    assert emitted | again == in_range(legs)
