"""The pure time logic: spellings in, one spelling out, windows and local days."""

from __future__ import annotations

import itertools
import time
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tap_tenios.windows import (
    EDGE_PADDING,
    LocalDay,
    TimestampError,
    Window,
    canonical_timestamp,
    count_bounds,
    format_request,
    format_utc,
    iter_windows,
    local_date,
    local_days,
    parse_setting,
    parse_timestamp,
)

UTC = timezone.utc
NOON = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-03-01 12:00:00",  # FreeSWITCH style, no zone: UTC
        "2024-03-01T12:00:00",
        "2024-03-01T12:00:00Z",
        "2024-03-01t12:00:00z",
        "2024-03-01T12:00:00.000Z",
        "2024-03-01T12:00:00,000Z",
        "2024-03-01T12:00:00:000Z",  # the vendor doc's typo
        "2024-03-01T12:00Z",
        "2024-03-01T13:00:00+01:00",
        "2024-03-01T13:00:00+0100",
        "2024-03-01T13:00:00+01",
        "2024-03-01T07:30:00-04:30",
        "2024-03-02T11:00:00+23:00",  # the widest offsets there are
        "2024-02-29T12:01:00-23:59",
        "2024-03-01T12:59:00+00:59",
        "2024-03-01 12:00:00 Z",
        " 2024-03-01T12:00:00.000000000Z ",
    ],
)
def test_every_iso_spelling_means_the_same_instant(spelling: str) -> None:
    assert parse_timestamp(spelling) == NOON
    assert parse_timestamp(spelling).tzinfo is UTC


def test_fractions_are_kept_to_the_microsecond() -> None:
    assert parse_timestamp("2024-03-01T12:00:00.5Z").microsecond == 500_000
    assert parse_timestamp("2024-03-01T12:00:00.123456789Z").microsecond == 123_456


@pytest.mark.parametrize(
    "spelling",
    [
        "",
        "yesterday",
        "2024-03-01",
        "2024-13-01T00:00:00Z",
        "2024-02-30 10:00:00",
        "2024-03-01T25:00:00",
        "2024-03-01T12:00:00+25:00",
        "2024-03-01T12:00:00+24:00",
        "2024-03-01T12:00:00+01:60",
        "12:00:00",
        "2024-03-01T12:00:00 UTC",
        "2024-03-01T12:00:00.Z",
    ],
)
def test_invalid_spellings_are_refused(spelling: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp(spelling)


def test_non_strings_are_refused() -> None:
    with pytest.raises(TimestampError, match="expected an ISO-8601 string"):
        parse_timestamp(1709294400)  # type: ignore[arg-type]


def test_settings_accept_dates_and_date_times() -> None:
    assert parse_setting("2024-03-01") == datetime(2024, 3, 1, tzinfo=UTC)
    assert parse_setting("2024-03-01T12:00:00") == NOON
    # A date that does not exist says so (not that it is no ISO-8601 spelling).
    with pytest.raises(TimestampError, match="invalid date '2024-02-30': day is out of range"):
        parse_setting("2024-02-30")


def test_one_canonical_output_spelling() -> None:
    berlin = NOON.astimezone(ZoneInfo("Europe/Berlin"))
    assert format_utc(berlin) == "2024-03-01T12:00:00.000000Z"
    assert format_utc(NOON + timedelta(microseconds=7)) == "2024-03-01T12:00:00.000007Z"
    assert format_request(berlin + timedelta(microseconds=1500)) == "2024-03-01T12:00:00.001Z"


def test_the_output_spelling_does_not_depend_on_the_machine_s_time_zone(monkeypatch) -> None:
    """Taps run on machines set to any zone; what they emit is UTC all the same."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        berlin = NOON.astimezone(ZoneInfo("Europe/Berlin"))
        assert format_utc(berlin) == "2024-03-01T12:00:00.000000Z"
        assert format_request(berlin) == "2024-03-01T12:00:00.000Z"
    finally:
        monkeypatch.undo()
        time.tzset()


@given(
    st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_canonical_strings_sort_like_instants(moment: datetime) -> None:
    later = moment + timedelta(microseconds=1)
    assert format_utc(moment) < format_utc(later)
    assert parse_timestamp(format_utc(moment)) == moment


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


@pytest.mark.parametrize(
    "spelling",
    [
        "2024-03-01T12:00:00.²²²Z",  # superscript digits: str.isdigit() says yes
        "2024-03-01T12:00:00.\u0661\u0662\u0663Z",  # Arabic-Indic digits: int() reads them
        "2024-03-01T12:00:00.\u0661\u0662\u0663",
        "\u0662\u0660\u0662\u0664-03-01T12:00:00Z",
        "2024-03-01 1\u0662:00:00",
        "2024-W09-1T12:00:00",  # an ISO week date, which fromisoformat accepts
        "2024-W09-1 12:00:00Z",
    ],
)
def test_non_ascii_digits_and_week_dates_are_refused_on_every_path(spelling: str) -> None:
    with pytest.raises(TimestampError):
        canonical_timestamp(spelling)
    with pytest.raises(TimestampError):
        parse_timestamp(spelling)


def test_what_the_fast_path_emits_parses_again_as_a_bookmark() -> None:
    emitted = canonical_timestamp("2024-03-01T12:00:00.123Z")
    assert emitted == "2024-03-01T12:00:00.123000Z"
    assert parse_setting(emitted) == NOON + timedelta(milliseconds=123)


#: Digits of several scripts: only the ASCII ones belong in a timestamp.
DIGITS = "0123456789²\u0661\u0662\u0663\uff10\uff15"
SUFFIXES = st.one_of(
    st.sampled_from(["", "Z", "z", ".123", ".123Z", ".12Z", ".1234", "+01:00", " ", ".123z"]),
    st.builds(
        lambda digits, zone: f".{digits}{zone}",
        st.text(DIGITS, min_size=1, max_size=4),
        st.sampled_from(["", "Z", "z"]),
    ),
)
VALID_STAMPS = st.builds(
    lambda moment, sep, suffix: moment.strftime(f"%Y-%m-%d{sep}%H:%M:%S") + suffix,
    st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30)),
    st.sampled_from(["T", " ", "t", "X", "W"]),
    SUFFIXES,
)
#: Characters that matter to a timestamp parser, ASCII and not.
STAMP_CHARS = st.sampled_from(list(DIGITS + "-:.TZ +Wtz, \u2003\n"))


@st.composite
def near_stamps(draw: st.DrawFn) -> str:
    """A valid stamp with a few characters replaced, inserted or removed."""
    text = list(draw(VALID_STAMPS))
    for _ in range(draw(st.integers(0, 3))):
        at = draw(st.integers(0, len(text)))
        action = draw(st.sampled_from(["replace", "insert", "delete"]))
        if action == "insert" or at == len(text):
            text.insert(at, draw(STAMP_CHARS))
        elif action == "replace":
            text[at] = draw(STAMP_CHARS)
        else:
            del text[at]
    return "".join(text)


ZONES = st.sampled_from([UTC, ZoneInfo("UTC"), ZoneInfo("Europe/Berlin"), ZoneInfo("Asia/Kolkata")])


@given(
    text=st.one_of(VALID_STAMPS, near_stamps(), st.text(STAMP_CHARS, max_size=30), st.text()),
    zone=ZONES,
)
@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(text="2024-03-01T12:00:00.1234", zone=UTC)  # a fraction past the fast path's
@example(text="2024-03-01T12:00:00.12345", zone=UTC)
@example(text="2024-03-01T12:00:00.1234Z", zone=UTC)
@example(text="2024-03-01T12:00:00.12Z", zone=UTC)
@example(text="2024-03-01T12:00:00.123z", zone=ZoneInfo("Europe/Berlin"))
def test_the_fast_and_careful_timestamp_paths_agree_on_every_input(text: str, zone) -> None:
    try:
        careful: str | None = format_utc(parse_timestamp(text, zone))
    except TimestampError:
        careful = None
    try:
        fast: str | None = canonical_timestamp(text, zone)
    except TimestampError:
        fast = None
    assert fast == careful


@pytest.mark.parametrize(
    ("spelling", "zone", "instant"),
    [
        ("2024-03-01 13:00:00", "Europe/Berlin", "2024-03-01T12:00:00.000000Z"),
        ("2024-07-01T14:00:00", "Europe/Berlin", "2024-07-01T12:00:00.000000Z"),
        ("2024-03-01T12:00:00.250", "Europe/Berlin", "2024-03-01T11:00:00.250000Z"),
        ("2024-03-01T13:00:00Z", "Europe/Berlin", "2024-03-01T13:00:00.000000Z"),
        ("2024-03-01T13:00:00+01:00", "America/New_York", "2024-03-01T12:00:00.000000Z"),
        ("2024-03-01 07:00:00", "America/New_York", "2024-03-01T12:00:00.000000Z"),
        # 02:30 happens twice on 27 October in Berlin: the first one (summer time) is meant.
        ("2024-10-27 02:30:00", "Europe/Berlin", "2024-10-27T00:30:00.000000Z"),
    ],
)
def test_stamps_without_a_zone_are_read_in_the_api_zone(spelling, zone, instant) -> None:
    assert canonical_timestamp(spelling, ZoneInfo(zone)) == instant
    assert format_utc(parse_timestamp(spelling, ZoneInfo(zone))) == instant


@pytest.mark.parametrize(
    ("spelling", "zone"),
    [
        ("2024-03-01 12:00:00", UTC),
        ("2024-03-01T12:00:00", UTC),
        ("2024-03-01T12:00:00Z", UTC),
        ("2024-03-01T12:00:00.000Z", UTC),
        ("2024-03-01 12:00:00.000", UTC),
        # With api_timezone set, stamps that name UTC still take it.
        ("2024-03-01T12:00:00Z", ZoneInfo("Europe/Berlin")),
        ("2024-03-01T12:00:00.000z", ZoneInfo("Europe/Berlin")),
    ],
)
def test_the_common_spellings_take_the_fast_path(monkeypatch, spelling: str, zone) -> None:
    """The speed the README states depends on it; the careful parser is not called."""
    import tap_tenios.windows

    def careful(*args: object) -> None:
        raise AssertionError("the careful path was taken")

    monkeypatch.setattr(tap_tenios.windows, "parse_timestamp", careful)
    assert canonical_timestamp(spelling, zone) == "2024-03-01T12:00:00.000000Z"


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
