"""The planner's decisions, without HTTP: when a read is done, how a window is cut, and
the time windows, local days and counts they rest on."""

from __future__ import annotations

import itertools
import math
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tap_tenios.planner import (
    EDGE_PADDING,
    FILL,
    MAX_PARTS,
    MIN_PART,
    PARTS_PER_DAY,
    Ledger,
    LocalDay,
    Page,
    PageSize,
    PartRead,
    Window,
    bookmark_problem,
    can_split,
    count_bounds,
    fits,
    iter_windows,
    local_date,
    local_days,
    parts_read_from_state,
    plausible_recount,
    spans_to_read,
    split,
    top_windows,
    utc_day,
    worth_checking,
)
from tap_tenios.records import (
    CLOCK_SKEW,
    format_request,
    format_utc,
    parse_timestamp,
)
from tap_tenios.settings import Settings
from tap_tenios.tap import TapTenios

UTC = timezone.utc
DAY = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))


def test_a_full_page_confirms_the_size_asked_for() -> None:
    size = PageSize(100)
    size.observe(Page(listed=100, total=500))
    size.observe(Page(listed=30, total=200))  # short, but no cap: legs it counts and hides
    assert size.capacity == 100 and not size.capped


def test_a_short_page_that_counts_more_reveals_a_silent_cap() -> None:
    size = PageSize(1000)
    size.observe(Page(listed=250, total=4000))
    assert size.capacity == 250 and size.capped
    size.observe(Page(listed=40, total=40))  # the last page of something small: no news
    assert size.capacity == 250
    size.observe(Page(listed=300, total=900))  # a longer short page: the cap is higher
    assert size.capacity == 300
    size.observe(Page(listed=1000, total=5000))  # a full page: there is no cap after all
    assert size.capacity == 1000 and not size.capped


def test_an_empty_answer_teaches_nothing() -> None:
    size = PageSize(50)
    size.observe(Page(listed=0, total=0))
    size.observe(Page(listed=0, total=7))
    assert size.capacity == 50


def test_a_short_page_that_lists_all_it_counts_teaches_nothing() -> None:
    size = PageSize(50)
    size.observe(Page(listed=7, total=7))  # a quiet window, read whole
    assert size.capacity == 50 and not size.capped


def test_a_page_of_one_leg_that_counts_more_is_a_cap_of_one() -> None:
    size = PageSize(50)
    size.observe(Page(listed=1, total=30))
    assert size.capacity == 1 and size.capped


@pytest.mark.parametrize(
    ("page", "capacity", "expected"),
    [
        (Page(5, 5), 10, True),  # everything on page 1
        (Page(0, 0), 10, True),  # nothing at all
        (Page(9, 10), 10, True),  # should fit, one leg missing: a disagreement, not a split
        (Page(10, 25), 10, False),  # more than a page holds
        (Page(12, 12), 10, True),  # the API served more than asked: still the whole read
    ],
)
def test_fits(page: Page, capacity: int, expected: bool) -> None:
    assert fits(page, capacity) is expected


def test_a_busy_day_is_cut_into_parts_that_fit_a_page_with_room_to_spare() -> None:
    parts = split(DAY, total=1000, capacity=100)
    assert len(parts) == math.ceil(1000 / (100 * FILL))
    widths = {part.end - part.start for part in parts}
    assert max(widths) - min(widths) <= timedelta(seconds=1), "equal parts"


def test_a_very_busy_window_is_cut_into_at_most_max_parts_at_once() -> None:
    assert len(split(DAY, total=10**7, capacity=100)) == MAX_PARTS


def test_parts_are_cut_on_whole_seconds_and_cover_the_window_exactly() -> None:
    odd = Window(DAY.start + timedelta(milliseconds=250), DAY.end - timedelta(microseconds=7))
    parts = split(odd, total=333, capacity=10)
    assert parts[0].start == odd.start and parts[-1].end == odd.end
    for before, after in itertools.pairwise(parts):
        assert before.end == after.start
        assert after.start.microsecond == 0


def test_a_window_of_a_few_seconds_is_cut_into_seconds_at_most() -> None:
    start = DAY.start + timedelta(hours=9)
    parts = split(Window(start, start + timedelta(seconds=3)), total=10_000, capacity=10)
    assert [(p.start - start).seconds for p in parts] == [0, 1, 2]


@pytest.mark.parametrize(
    ("width", "expected"),
    [
        (timedelta(seconds=1), False),
        (timedelta(milliseconds=1999), False),
        (timedelta(seconds=2), True),
        (timedelta(hours=1), True),
    ],
)
def test_only_windows_of_two_seconds_or_more_can_be_cut(width: timedelta, expected: bool) -> None:
    assert can_split(Window(DAY.start, DAY.start + width)) is expected


def test_a_window_off_the_second_needs_a_whole_second_inside_each_part() -> None:
    start = DAY.start + timedelta(milliseconds=500)
    assert not can_split(Window(start, start + timedelta(milliseconds=1700)))
    with pytest.raises(ValueError, match="too narrow"):
        split(Window(start, start + timedelta(milliseconds=1700)), 50, 10)


@given(
    start_ms=st.integers(min_value=0, max_value=10**9),
    width_ms=st.integers(min_value=2000, max_value=400 * 86_400_000),
    total=st.integers(min_value=0, max_value=10**6),
    capacity=st.integers(min_value=1, max_value=5000),
)
@settings(deadline=None)
def test_any_split_covers_its_window_in_order_with_parts_of_a_second_or_more(
    start_ms: int, width_ms: int, total: int, capacity: int
) -> None:
    start = DAY.start + timedelta(milliseconds=start_ms)
    window = Window(start, start + timedelta(milliseconds=width_ms))
    if not can_split(window):
        assert width_ms < 3000, "only a window under three seconds may be too narrow to cut"
        return
    parts = split(window, total, capacity)
    assert len(parts) >= 2
    assert len(parts) <= min(MAX_PARTS, max(2, math.ceil(total / max(1.0, capacity * FILL))))
    assert parts[0].start == window.start and parts[-1].end == window.end
    for before, after in itertools.pairwise(parts):
        assert before.end == after.start
    assert all(part.end - part.start >= MIN_PART for part in parts)


def test_honest_counts_of_one_second_parts_are_never_refused() -> None:
    """An API with inclusive bounds and whole-second stamps counts every leg in four
    parts' padded requests (a part's second, the one before, the one after, and the
    instant a second further): the parts together count almost four times their
    window, and the recount guard must let that through."""
    start = datetime(2024, 3, 1, 12, tzinfo=timezone.utc)
    window = Window(start, start + timedelta(seconds=60))
    stamps = [start + timedelta(seconds=s) for s in range(-5, 66) for _ in range(10)]

    def count(w: Window) -> int:
        padded = w.padded()
        return sum(padded.start <= t <= padded.end for t in stamps)  # inclusive

    first = count(window)
    parts = split(window, first, capacity=10)
    assert max(p.end - p.start for p in parts) < 2 * MIN_PART  # one-second parts
    recount = sum(count(p) for p in parts)
    assert recount > 3.5 * first
    assert plausible_recount(first, recount)


NOW = datetime(2024, 3, 1, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    ("bookmark", "refused"),
    [
        (format_utc(NOW), False),  # the last leg started as the run began
        (format_utc(NOW + CLOCK_SKEW), False),  # the most the API's clock may be ahead
        (format_utc(NOW + CLOCK_SKEW + timedelta(microseconds=1)), True),
        ("2024-03-02", False),  # today somewhere east of UTC: the whole day's slack
        ("2024-03-02T12:00:00.000001Z", True),
    ],
)
def test_a_bookmark_is_in_the_future_only_beyond_the_clock_skew(bookmark, refused) -> None:
    """A bookmark exactly at now (or at the skew's edge) is a normal state to resume
    from; refusing it would fail a run that just caught up with the API."""
    problem = bookmark_problem("cdrs", bookmark, NOW)
    assert (problem is not None) == refused, problem
    if refused:
        assert "later than now (2024-03-01T12:00:00.000Z)" in str(problem)


# The lookback checked by count (``lookback_mode`` on_count_change).

MARCH_2 = datetime(2024, 3, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def part_read(start: datetime, end: datetime, legs: int = 5) -> PartRead:
    return PartRead(Window(start, end), legs)


def lookback_settings(**config: object) -> Settings:
    """Settings as the tap has them: its defaults, then ``config``."""
    return TapTenios.settings_for({"access_key": "k", "start_date": "2024-01-01", **config})


def test_a_utc_day_is_the_calendar_day_of_the_instant_in_utc() -> None:
    berlin_midnight = datetime(2024, 3, 2, tzinfo=ZoneInfo("Europe/Berlin"))
    assert utc_day(berlin_midnight) == DAY
    assert utc_day(MARCH_2) == Window(MARCH_2, MARCH_2 + timedelta(days=1))


def test_a_day_read_goes_through_state_unchanged() -> None:
    entry = part_read(MARCH_2 + HOUR, MARCH_2 + 5 * HOUR, legs=42)
    state = entry.to_state()
    assert state == {
        "from": "2024-03-02T01:00:00.000000Z",
        "to": "2024-03-02T05:00:00.000000Z",
        "legs": 42,
    }
    assert PartRead.from_state(state) == entry


@pytest.mark.parametrize(
    "value",
    [
        None,
        "2024-03-02",
        {"from": "2024-03-02T01:00:00Z", "to": "2024-03-02T05:00:00Z"},
        {"from": "2024-03-02T01:00:00Z", "to": "2024-03-02T05:00:00Z", "legs": -1},
        {"from": "2024-03-02T01:00:00Z", "to": "2024-03-02T05:00:00Z", "legs": True},
        {"from": "2024-03-02T01:00:00Z", "to": "2024-03-02T05:00:00Z", "legs": "3"},
        {"from": "not a date", "to": "2024-03-02T05:00:00Z", "legs": 3},
        {"from": "2024-03-02T05:00:00Z", "to": "2024-03-02T05:00:00Z", "legs": 3},
        {"from": "2024-03-02T23:00:00Z", "to": "2024-03-03T01:00:00Z", "legs": 3},
    ],
)
def test_a_saved_day_the_tap_did_not_write_is_ignored_so_the_day_is_read(value: object) -> None:
    assert PartRead.from_state(value) is None
    assert parts_read_from_state([value]) == []


def test_saved_parts_that_overlap_keep_the_first() -> None:
    first = part_read(MARCH_2, MARCH_2 + 2 * HOUR)
    after = part_read(MARCH_2 + 2 * HOUR, MARCH_2 + 3 * HOUR)
    overlapping = part_read(MARCH_2 + HOUR, MARCH_2 + 4 * HOUR)
    saved = [after.to_state(), overlapping.to_state(), first.to_state()]
    assert parts_read_from_state(saved) == [first, after]
    assert parts_read_from_state({"not": "a list"}) == []


def test_a_saved_part_is_checked_where_it_reaches_into_the_range() -> None:
    begin, end = MARCH_2 + 10 * HOUR, MARCH_2 + timedelta(days=1, hours=10)
    whole_day = part_read(MARCH_2, MARCH_2 + 24 * HOUR)
    today = part_read(MARCH_2 + 24 * HOUR, MARCH_2 + 33 * HOUR)
    later_in_the_day = part_read(MARCH_2 + 12 * HOUR, MARCH_2 + 24 * HOUR)
    ended_at_begin = part_read(MARCH_2, MARCH_2 + 10 * HOUR)
    after_end = part_read(end, end + HOUR)
    saved = [ended_at_begin, whole_day, later_in_the_day, today, after_end]
    assert worth_checking(saved, begin, end) == [whole_day, later_in_the_day, today]


def test_what_is_read_is_the_range_less_the_parts_confirmed() -> None:
    begin, end = MARCH_2 + 10 * HOUR, MARCH_2 + timedelta(days=1, hours=10)
    yesterday = part_read(MARCH_2, MARCH_2 + 24 * HOUR)
    today = part_read(MARCH_2 + 24 * HOUR, MARCH_2 + 33 * HOUR)
    assert spans_to_read(begin, end, []) == [Window(begin, end)]
    assert spans_to_read(begin, end, [yesterday]) == [Window(MARCH_2 + 24 * HOUR, end)]
    assert spans_to_read(begin, end, [yesterday, today]) == [Window(MARCH_2 + 33 * HOUR, end)]
    assert spans_to_read(begin, end, [today]) == [
        Window(begin, MARCH_2 + 24 * HOUR),
        Window(MARCH_2 + 33 * HOUR, end),
    ]


@given(
    begin=st.integers(0, 72),
    length=st.integers(1, 72),
    parts=st.lists(st.tuples(st.integers(0, 95), st.integers(1, 24)), max_size=5),
)
def test_the_spans_read_and_the_parts_confirmed_cover_the_range_once(
    begin: int, length: int, parts: list[tuple[int, int]]
) -> None:
    start, end = MARCH_2 + begin * HOUR, MARCH_2 + (begin + length) * HOUR
    confirmed = [part_read(MARCH_2 + a * HOUR, MARCH_2 + (a + n) * HOUR) for a, n in parts]
    spans = spans_to_read(start, end, confirmed)
    hours = set()
    for span in spans:
        assert start <= span.start < span.end <= end
        hours |= {
            int((span.start - MARCH_2) / HOUR) + i
            for i in range(int((span.end - span.start) / HOUR))
        }
    skipped = {h for a, n in parts for h in range(a, a + n) if begin <= h < begin + length}
    assert not hours & skipped
    assert hours | skipped == set(range(begin, begin + length))
    assert spans == sorted(spans, key=lambda s: s.start)


def test_the_ledger_adds_a_part_per_run_and_counts_legs_per_utc_day() -> None:
    confirmed = part_read(MARCH_2, MARCH_2 + 5 * HOUR, legs=7)
    ledger = Ledger([confirmed])
    stamps = [format_utc(MARCH_2 + h * HOUR) for h in (5, 6, 23, 24)]
    # Two windows of this run: the second continues the first's part.
    ledger.add(Window(MARCH_2 + 5 * HOUR, MARCH_2 + 20 * HOUR), stamps[:2])
    ledger.add(Window(MARCH_2 + 20 * HOUR, MARCH_2 + 26 * HOUR), stamps[2:])
    settings = lookback_settings(lookback_minutes=2880)
    assert ledger.entries(settings, None) == [
        confirmed,
        part_read(MARCH_2 + 5 * HOUR, MARCH_2 + 24 * HOUR, legs=3),
        part_read(MARCH_2 + 24 * HOUR, MARCH_2 + 26 * HOUR, legs=1),
    ]


def test_after_a_skipped_part_the_next_read_starts_a_part_of_its_own() -> None:
    ledger = Ledger([part_read(MARCH_2 + 2 * HOUR, MARCH_2 + 3 * HOUR, legs=7)])
    ledger.add(Window(MARCH_2, MARCH_2 + 2 * HOUR), [])
    ledger.add(Window(MARCH_2 + 3 * HOUR, MARCH_2 + 4 * HOUR), [])
    assert ledger.entries(lookback_settings(), None) == [
        part_read(MARCH_2, MARCH_2 + 2 * HOUR, legs=0),
        part_read(MARCH_2 + 2 * HOUR, MARCH_2 + 3 * HOUR, legs=7),
        part_read(MARCH_2 + 3 * HOUR, MARCH_2 + 4 * HOUR, legs=0),
    ]


def test_a_day_keeps_its_latest_parts_apart_and_the_earliest_merged() -> None:
    hourly = [part_read(MARCH_2 + h * HOUR, MARCH_2 + (h + 1) * HOUR, legs=h) for h in range(9)]
    kept = Ledger(hourly).entries(lookback_settings(), None)
    assert len(kept) == PARTS_PER_DAY
    assert kept[0] == part_read(MARCH_2, MARCH_2 + 6 * HOUR, legs=sum(range(6)))
    assert kept[1:] == hourly[-3:]


def test_the_ledger_keeps_only_the_days_of_the_lookback() -> None:
    ledger = Ledger()
    ledger.add(Window(MARCH_2 - timedelta(days=10), MARCH_2 + 12 * HOUR), [])
    settings = lookback_settings(lookback_minutes=1440)
    kept = ledger.entries(settings, format_utc(MARCH_2 + 6 * HOUR))
    assert [e.window.start for e in kept] == [MARCH_2 - timedelta(days=1), MARCH_2]
    # Without a bookmark (nothing emitted yet), the lookback's days and two at most.
    ledger = Ledger()
    ledger.add(Window(MARCH_2 - timedelta(days=10), MARCH_2 + 12 * HOUR), [])
    assert len(ledger.entries(settings, None)) == 3


def test_top_windows_cover_the_spans_and_never_straddle_the_settling_range() -> None:
    settings = lookback_settings(lookback_minutes=600, window_size_hours=8784)
    begin, end = MARCH_2, MARCH_2 + 24 * HOUR
    assert list(top_windows(settings, begin, end)) == [
        Window(begin, end - 10 * HOUR),
        Window(end - 10 * HOUR, end),
    ]
    spans = [Window(begin + HOUR, begin + 2 * HOUR), Window(begin + 12 * HOUR, end)]
    assert list(top_windows(settings, begin, end, spans)) == [
        spans[0],
        Window(begin + 12 * HOUR, begin + 14 * HOUR),
        Window(begin + 14 * HOUR, end),
    ]


# Time windows, local days and what /cdrs/count can count.
NOON = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def test_windows_tile_the_range_without_gaps_or_overlap() -> None:
    start, end = NOON, NOON + timedelta(days=2, hours=5)
    windows = list(iter_windows(start, end, timedelta(days=1)))
    assert [w.start for w in windows] == [
        start,
        start + timedelta(days=1),
        start + timedelta(days=2),
    ]
    assert windows[-1].end == end
    assert all(a.end == b.start for a, b in itertools.pairwise(windows))
    assert list(iter_windows(end, end, timedelta(days=1))) == []
    with pytest.raises(ValueError, match="positive"):
        list(iter_windows(start, end, timedelta(0)))


def test_anchored_windows_share_one_grid_whatever_the_start() -> None:
    day = timedelta(days=1)
    anchor = datetime(2024, 3, 1, tzinfo=UTC)
    resume = anchor + timedelta(days=2, hours=7, seconds=13)
    windows = list(iter_windows(resume, anchor + timedelta(days=5), day, anchor=anchor))
    assert windows[0] == Window(resume, anchor + timedelta(days=3))
    assert [w.start for w in windows[1:]] == [anchor + timedelta(days=n) for n in (3, 4)]
    early = list(iter_windows(anchor - timedelta(hours=2), anchor + day, day, anchor=anchor))
    assert early[0].end == anchor


def test_padding_covers_both_edges() -> None:
    window = Window(NOON, NOON + timedelta(hours=1))
    padded = window.padded()
    assert padded.start == NOON - EDGE_PADDING and padded.end == window.end + EDGE_PADDING
    assert window.describe() == "[2024-03-01T12:00:00.000Z, 2024-03-01T13:00:00.000Z)"


def test_local_days_follow_the_zone_including_dst() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    days = list(local_days(date(2024, 3, 30), date(2024, 4, 1), berlin))
    assert [d.day for d in days] == [date(2024, 3, 30), date(2024, 3, 31), date(2024, 4, 1)]
    lengths = [d.window.end - d.window.start for d in days]
    assert lengths == [timedelta(hours=24), timedelta(hours=23), timedelta(hours=24)]
    assert days[0].window.start == datetime(2024, 3, 29, 23, tzinfo=UTC)
    assert all(a.window.end == b.window.start for a, b in itertools.pairwise(days))


def test_count_requests_respect_the_one_day_limit_on_a_25_hour_day() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    (autumn,) = local_days(date(2024, 10, 27), date(2024, 10, 27), berlin)
    assert autumn.window.end - autumn.window.start == timedelta(hours=25)
    pieces = autumn.window.count_requests()
    assert len(pieces) == 2
    assert all(upper - lower <= timedelta(days=1) for lower, upper in pieces)
    # The pieces meet exactly and, shifted by 1 ms, still cover the whole day.
    assert pieces[0][1] == pieces[1][0]
    shift = timedelta(milliseconds=1)
    assert pieces[0][0] + shift == autumn.window.start
    assert pieces[-1][1] + shift == autumn.window.end


def test_an_ordinary_day_is_one_request() -> None:
    day = LocalDay(date(2024, 3, 1), Window(NOON, NOON + timedelta(days=1)))
    assert len(day.window.count_requests()) == 1


def test_local_date() -> None:
    late = datetime(2024, 3, 1, 23, 30, tzinfo=UTC)
    assert local_date(late, ZoneInfo("Europe/Berlin")) == date(2024, 3, 2)
    assert local_date(late, ZoneInfo("UTC")) == date(2024, 3, 1)


def counted(stamps: list[datetime], lower: datetime, upper: datetime, bounds: str) -> int:
    """What an API with ``bounds`` counts between the instants it reads from a request."""
    low, high = (parse_timestamp(format_request(m)) for m in (lower, upper))
    above = (lambda s: s >= low) if bounds in ("half_open", "inclusive") else (lambda s: s > low)
    below = (lambda s: s <= high) if bounds in ("inclusive", "left_open") else (lambda s: s < high)
    return sum(1 for s in stamps if above(s) and below(s))


@given(
    offsets_us=st.lists(
        st.one_of(
            st.integers(min_value=-3_000_000, max_value=5_000_000),  # microseconds
            st.integers(min_value=-3_000, max_value=5_000).map(lambda ms: ms * 1000),
            st.sampled_from([-1000, 0, 999_000, 1_000_000, 1_999_000, 2_000_000]),
        ),
        max_size=40,
    ),
    width_s=st.integers(min_value=1, max_value=3),
)
@settings(max_examples=200)
def test_count_bounds_hold_any_count_an_api_may_give(offsets_us: list[int], width_s: int) -> None:
    window = Window(NOON, NOON + timedelta(seconds=width_s))
    stamps = [NOON + timedelta(microseconds=us) for us in offsets_us]
    fewest, most = count_bounds([format_utc(s) for s in stamps], window.count_requests())
    for bounds in ("half_open", "inclusive", "exclusive", "left_open"):
        total = sum(counted(stamps, lo, hi, bounds) for lo, hi in window.count_requests())
        assert fewest <= total <= most, bounds
    if all(s.microsecond == 0 for s in stamps):
        assert fewest == most == sum(window.start <= s < window.end for s in stamps)


def test_a_leg_a_millisecond_before_an_edge_may_be_counted_or_not() -> None:
    window = Window(NOON, NOON + timedelta(seconds=1))
    stamps = [format_utc(NOON + timedelta(milliseconds=ms)) for ms in (-1, 0, 500, 999)]
    # -1 ms: outside the window but on the count's lower bound; 999 ms: inside, on its
    # upper bound. Either may be counted, whatever else the API does.
    assert count_bounds(stamps, window.count_requests()) == (2, 4)
