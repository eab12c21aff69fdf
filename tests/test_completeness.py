"""Every emitted cdrs window is checked against the API's own counts before state passes it."""

from __future__ import annotations

import logging
import random
import re
from datetime import datetime, timedelta

import pytest

from tap_tenios.emulator import BOUNDS, make_call
from tap_tenios.windows import EDGE_PADDING, format_utc

from .helpers import START, in_range, make_config, moved


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
