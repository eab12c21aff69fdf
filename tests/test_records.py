"""The API's answers -> records: exact values, or an error naming field and leg; every
timestamp spelling in, one spelling out."""

from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import msgspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tap_tenios.emulator import generate
from tap_tenios.emulator.server import encode_leg
from tap_tenios.errors import MalformedResponseError
from tap_tenios.planner import Window
from tap_tenios.records import (
    FIELDS,
    RecordError,
    TimestampError,
    canonical_timestamp,
    decimal_string,
    decode_count,
    decode_page,
    format_request,
    format_utc,
    misplaced_stamps,
    page_records,
    parse_setting,
    parse_timestamp,
    to_record,
)

from .helpers import item

UTC = timezone.utc


def test_a_documented_item_becomes_a_canonical_record() -> None:
    record = to_record(item())
    assert set(record) == set(FIELDS)
    assert record["start_stamp"] == "2024-03-01T12:00:00.000000Z"
    assert record["end_stamp"] == "2024-03-01T12:00:30.000000Z"
    assert record["answer_stamp"] is None
    assert record["cost"] == Decimal("0.000100")
    assert str(record["cost"]) == "0.000100"


def test_unknown_fields_are_dropped() -> None:
    assert "surprise" not in to_record(item(surprise={"nested": True}))


@pytest.mark.parametrize(
    ("field", "given", "expected"),
    [
        ("duration", "275", 275),
        ("duration", Decimal("275.0"), 275),
        ("cost", "0.0544", Decimal("0.0544")),
        ("cost", 3, Decimal(3)),
        ("prepaid", "true", True),
        ("prepaid", 0, False),
        ("callerid_number", 4930123456, "4930123456"),
        ("start_stamp", "2024-03-01T13:00:00+01:00", "2024-03-01T12:00:00.000000Z"),
    ],
)
def test_exact_conversions_are_made(field: str, given: Any, expected: Any) -> None:
    converted = to_record(item(**{field: given}))[field]
    assert converted == expected
    assert type(converted) is type(expected)


@pytest.mark.parametrize(
    ("field", "given", "problem"),
    [
        ("cost", 0.1, "expected an exact number"),
        ("cost", "abc", "expected a number"),
        ("cost", "NaN", "finite"),
        ("duration", True, "boolean"),
        ("duration", "1.5", "expected an integer"),
        ("prepaid", "yes", "true or false"),
        ("start_stamp", "yesterday", "not an ISO-8601"),
        ("start_stamp", None, "is null"),
        ("hangup_cause", ["x"], "expected a string"),
    ],
)
def test_unreadable_values_name_the_field_and_the_leg(field: str, given: Any, problem: str) -> None:
    with pytest.raises(RecordError, match=problem) as caught:
        to_record(item(**{field: given}))
    assert caught.value.field == field
    assert "CDR leg-1" in str(caught.value)


def test_a_missing_documented_field_is_an_error() -> None:
    broken = item()
    del broken["end_stamp"]
    with pytest.raises(RecordError, match="'end_stamp' is missing"):
        to_record(broken)


def test_a_non_object_item_is_an_error() -> None:
    with pytest.raises(RecordError, match="expected an object"):
        to_record(["not", "a", "cdr"])


@pytest.mark.parametrize("given", ["--5", "²", "\u0661\u0662", "1_000", "+-5", "5-", "", " "])
def test_integers_are_ascii_digits_only(given: str) -> None:
    """``int()`` reads some of these and chokes on others; all are errors naming field and leg."""
    with pytest.raises(RecordError, match=r"CDR leg-1: field 'duration' is .*expected an integer"):
        to_record(item(duration=given))


@pytest.mark.parametrize("given", [" 275 ", "-3", "0"])
def test_integer_text_is_read_exactly(given: str) -> None:
    assert to_record(item(billusec=given))["billusec"] == int(given)


#: Fields the vendor documents as always set: a null there is an error, not a value.
ALWAYS_SET = (
    "uuid",
    "call_type",
    "start_stamp",
    "end_stamp",
    "duration",
    "billusec",
    "cost",
    "prepaid",
    "hangup_cause",
    "callerid_number",
    "destination_number",
    "source_type",
)


@pytest.mark.parametrize("field", ALWAYS_SET)
def test_a_null_in_a_field_documented_as_set_is_an_error_naming_field_and_leg(field: str) -> None:
    with pytest.raises(RecordError) as caught:
        to_record(item(**{field: None}))
    leg = "<no uuid>" if field == "uuid" else "leg-1"
    assert str(caught.value) == (
        f"CDR {leg}: field {field!r} is null, but the API documents a value"
    )


@pytest.mark.parametrize(
    "field", ["main_leg_uuid", "bleg_uuid", "answer_stamp", "callerid_name", "routing_status"]
)
def test_documented_nulls_stay_null(field: str) -> None:
    assert to_record(item(**{field: None}))[field] is None


@pytest.mark.parametrize("cost", ["NaN", "-NaN", "sNaN", "Infinity", "-Infinity"])
def test_a_cost_that_is_not_a_finite_number_is_an_error(cost: str) -> None:
    """A page decoded with its types holds Decimals, NaN among them: the typed path
    checks the cost too."""
    exactly_typed = item(cost=Decimal(cost))
    finite = r"^CDR leg-1: field 'cost' is .* expected a finite number$"
    with pytest.raises(RecordError, match=finite):
        to_record(exactly_typed)
    with pytest.raises(RecordError, match=finite):  # a page decoded with its types
        page_records([exactly_typed], typed=True)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("99999999.999999", "99999999.999999"),  # the most DECIMAL(14, 6) holds
        ("-99999999.999999", "-99999999.999999"),
        ("0.000001", "0.000001"),
        ("12.50", "12.50"),
        ("1E+2", "100"),
    ],
)
def test_a_cost_the_decimal_column_holds_is_written_with_its_exact_digits(value, text) -> None:
    assert decimal_string(Decimal(value), 14, 6) == text


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("100000000", "more than 8 integer digits"),  # one digit too many: rejected
        ("-100000000.5", "more than 8 integer digits"),
        ("0.0000001", "more than 6 decimals"),  # the column would round it away
        ("1.0000005", "more than 6 decimals"),
    ],
)
def test_a_cost_the_decimal_column_would_change_is_refused(value, problem) -> None:
    with pytest.raises(TypeError, match=problem):
        decimal_string(Decimal(value), 14, 6)


ANY_FIELD_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text("0123456789²\u0661-_ .eE+NaIfinty", max_size=8),
    st.text(max_size=8),
    st.sampled_from(["2024-03-01 12:00:00", "2024-03-01T12:00:00.²²²Z", "2024-W09-1T12:00:00"]),
)


@given(
    changes=st.dictionaries(st.sampled_from(sorted(item())), ANY_FIELD_VALUE, max_size=3),
    zone=st.sampled_from([UTC, ZoneInfo("Europe/Berlin")]),
)
@example(changes={"answer_stamp": None, "cost": "INf"}, zone=UTC)
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_the_typed_and_careful_record_paths_agree_on_every_item(changes, zone) -> None:
    """Whatever page decodes with the documented types gives, through the typed path,
    exactly what the careful path gives for the same item (or the same error)."""
    # JSON has no NaN or Infinity: such a cost is sent as text (which decodes as a Decimal).
    spelled = {
        k: str(v) if isinstance(v, Decimal) and not v.is_finite() else v for k, v in changes.items()
    }
    body = _ENCODER.encode({"items": [item(**spelled)], "total_items": 1})
    try:
        page = decode_page(body)
    except MalformedResponseError:  # e.g. NaN, which is not JSON
        return
    loose = json.loads(body, parse_float=Decimal)["items"]

    def outcome(items: list[Any], typed: bool) -> Any:
        try:
            return page_records(items, typed, zone)
        except RecordError as exc:
            return str(exc)

    assert outcome(page.items, page.typed) == outcome(loose, False)


_ENCODER = msgspec.json.Encoder(decimal_format="number")


@pytest.mark.parametrize("style", ["space", "naive_t", "iso_z", "millis_z", "offset"])
@pytest.mark.parametrize("zone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_a_page_decoded_with_its_types_gives_the_careful_paths_records(style, zone) -> None:
    """The typed decoding (the usual page) and the careful one (any other page) are
    the same records: only speed picks between them."""
    legs = generate(datetime(2024, 3, 30), datetime(2024, 4, 1), 200)
    api_zone = None if zone == "UTC" else zone
    body = (
        b'{"total_items":%d,"items":[' % len(legs)
        + b",".join(encode_leg(leg, style, api_zone) for leg in legs)
        + b"]}"
    )
    careful = [to_record(i, ZoneInfo(zone)) for i in json.loads(body, parse_float=Decimal)["items"]]
    page = decode_page(body)
    assert page.typed
    assert page_records(page.items, page.typed, ZoneInfo(zone)) == careful


def test_stamps_without_a_zone_are_read_in_the_given_zone() -> None:
    record = to_record(
        item(start_stamp="2024-03-01 13:00:00", end_stamp="2024-03-01T12:00:30Z"),
        ZoneInfo("Europe/Berlin"),
    )
    assert record["start_stamp"] == "2024-03-01T12:00:00.000000Z"
    assert record["end_stamp"] == "2024-03-01T12:00:30.000000Z"


ASKED = Window(datetime(2024, 3, 1, tzinfo=UTC), datetime(2024, 3, 2, tzinfo=UTC))
NOW = datetime(2024, 3, 1, 18, tzinfo=UTC)


def stamped(*stamps: str) -> list[dict[str, Any]]:
    return [{"uuid": f"leg-{n}", "start_stamp": s} for n, s in enumerate(stamps)]


def test_legs_inside_the_range_asked_for_and_not_in_the_future_pass() -> None:
    legs = stamped("2024-03-01T00:00:00.000000Z", "2024-03-01T18:04:00.000000Z")
    assert misplaced_stamps(legs, ASKED, NOW, "UTC") is None
    assert misplaced_stamps([], ASKED, NOW, "UTC") is None


def test_legs_outside_the_range_asked_for_point_at_the_zone_setting() -> None:
    legs = stamped(
        "2024-03-01T10:00:00.000000Z", "2024-03-02T00:30:00.000000Z", "2024-03-02T01:00:00.000000Z"
    )
    message = misplaced_stamps(legs, ASKED, datetime(2024, 3, 9, tzinfo=UTC), "UTC")
    assert message == (
        "2 leg(s) start outside the range asked for "
        "[2024-03-01T00:00:00.000Z, 2024-03-02T00:00:00.000Z], e.g. leg-1 at "
        "2024-03-02T00:30:00.000000Z, reading stamps without a zone as UTC: the API's "
        "stamps look like another time zone's local time. Set api_timezone to the zone the "
        "API writes its timestamps in."
    )


def test_legs_later_than_now_point_at_the_zone_setting() -> None:
    legs = stamped(
        "2024-03-01T17:00:00.000000Z", "2024-03-01T19:00:00.000000Z", "2024-03-01T18:30:00.000000Z"
    )
    message = misplaced_stamps(legs, ASKED, NOW, "Europe/Berlin")
    assert message is not None
    assert message.startswith(  # the latest is the clearest example
        "2 leg(s) start later than now (2024-03-01T18:00:00.000Z), e.g. leg-1 at "
        "2024-03-01T19:00:00.000000Z, reading stamps without a zone as Europe/Berlin"
    )
    assert "api_timezone" in message


def test_the_edges_of_the_range_asked_for_belong_to_it() -> None:
    """APIs may treat both bounds as inclusive: legs on either edge are in range."""
    legs = stamped("2024-03-01T00:00:00.000000Z", "2024-03-02T00:00:00.000000Z")
    assert misplaced_stamps(legs, ASKED, datetime(2024, 3, 9, tzinfo=UTC), "UTC") is None
    before = stamped("2024-02-29T23:59:59.999999Z")
    assert misplaced_stamps(before, ASKED, datetime(2024, 3, 9, tzinfo=UTC), "UTC")


@pytest.mark.parametrize(
    ("after_now", "misplaced"),
    [
        (timedelta(minutes=4, seconds=30), False),
        (timedelta(minutes=5), False),  # clocks may disagree by up to five minutes
        (timedelta(minutes=5, microseconds=1), True),
        (timedelta(minutes=5, seconds=30), True),
    ],
)
def test_a_leg_is_in_the_future_only_beyond_five_minutes_of_clock_skew(
    after_now: timedelta, misplaced: bool
) -> None:
    legs = stamped(format_utc(NOW + after_now))
    assert (misplaced_stamps(legs, ASKED, NOW, "UTC") is not None) is misplaced


@pytest.mark.parametrize(("given", "expected"), [(1, True), (0, False), ("TRUE", True)])
def test_booleans_are_read_exactly(given: Any, expected: bool) -> None:
    assert to_record(item(prepaid=given))["prepaid"] is expected


@pytest.mark.parametrize("given", [2, -1, "1", "yes"])
def test_other_values_are_not_booleans(given: Any) -> None:
    with pytest.raises(RecordError, match=r"CDR leg-1: field 'prepaid' is .* expected true or"):
        to_record(item(prepaid=given))


def test_a_timestamp_that_is_not_text_says_what_it_is() -> None:
    with pytest.raises(RecordError) as caught:
        to_record(item(end_stamp=1709294400))
    assert str(caught.value) == "CDR leg-1: field 'end_stamp' is a int, expected an ISO-8601 string"


def test_a_page_with_the_documented_types_is_decoded_typed() -> None:
    """The speed the README states depends on it: the usual page skips the careful
    conversion, and one odd item sends the whole page there."""
    usual = item(answer_stamp="2024-03-01 12:00:05", callerid_name="x")
    odd = item(uuid="leg-2", duration="30")
    assert decode_page(_ENCODER.encode({"items": [usual], "total_items": 1})).typed
    page = decode_page(_ENCODER.encode({"items": [usual, odd], "total_items": 2}))
    assert not page.typed and page.total == 2
    assert [r["duration"] for r in page_records(page.items, page.typed)] == [30, 30]


def test_a_body_that_carries_typed_itself_is_not_taken_at_its_word() -> None:
    leg = item(duration="30")
    del leg["answer_stamp"]
    page = decode_page(_ENCODER.encode({"items": [leg], "total_items": 1, "typed": True}))
    assert not page.typed
    assert page_records(page.items, page.typed)[0]["answer_stamp"] is None


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (b'{"items": []}', "lacks 'total_items'"),
        (b'{"total_items": 3}', "lacks 'items'"),
        (b'{"items": {}, "total_items": 0}', "'items' is not a list"),
        (b'{"items": [], "total_items": -1}', "'total_items' is -1"),
        (b'{"items": [], "total_items": true}', "'total_items' is True"),
    ],
)
def test_a_body_that_is_not_a_page_is_malformed(raw: bytes, said: str) -> None:
    with pytest.raises(MalformedResponseError, match=said):
        decode_page(raw)


def test_a_count_is_the_bodys_total_items() -> None:
    assert decode_count(b'{"total_items": 7, "other": 1}') == 7
    with pytest.raises(MalformedResponseError, match="'total_items' is '7'"):
        decode_count(b'{"total_items": "7"}')


@pytest.mark.parametrize(
    ("stamp", "zone"),
    [
        ("9999-12-31T23:30:00", "America/New_York"),  # 10000-01-01 in UTC
        ("9999-12-31T23:30:00-05:00", "UTC"),
        ("0001-01-01T00:30:00", "Europe/Berlin"),  # year 0 in UTC
    ],
)
def test_a_stamp_beyond_the_calendar_in_utc_is_the_named_error(stamp: str, zone: str) -> None:
    """Read in its zone the stamp is a valid date-time; in UTC it leaves the years 1 to
    9999 that Python holds. Both paths name the field and the leg, as for any unreadable
    value, instead of a bare OverflowError."""
    with pytest.raises(RecordError, match="outside the years 1 to 9999 in UTC") as careful:
        to_record(item(start_stamp=stamp), ZoneInfo(zone))
    assert careful.value.field == "start_stamp"
    assert str(careful.value).startswith("CDR leg-1: field 'start_stamp' ")
    with pytest.raises(RecordError, match="outside the years 1 to 9999 in UTC") as typed:
        page_records([item(start_stamp=stamp)], True, ZoneInfo(zone))
    assert str(typed.value) == str(careful.value)


# Timestamps: every spelling in, one spelling out.
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
    import tap_tenios.records

    def careful(*args: object) -> None:
        raise AssertionError("the careful path was taken")

    monkeypatch.setattr(tap_tenios.records, "parse_timestamp", careful)
    assert canonical_timestamp(spelling, zone) == "2024-03-01T12:00:00.000000Z"
