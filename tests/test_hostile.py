"""Hostile API answers: a correct record or a clear error, never a silently wrong value.

Property tests mutate one documented field at a time (wrong types, nulls, odd and
invalid timestamps) and check every outcome; HTTP tests serve broken bodies.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tap_tenios.records import FIELDS, RecordError, format_utc, to_record

from .helpers import item, make_config

UTC = timezone.utc

ANY_VALUE = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=2),
)

INSTANTS = st.datetimes(
    min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
OFFSETS = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: timedelta(minutes=m))


@st.composite
def spelled_instants(draw: st.DrawFn) -> tuple[str, datetime]:
    """A valid ISO-8601 spelling of an instant, and the instant it means."""
    moment = draw(INSTANTS).replace(microsecond=draw(st.sampled_from([0, 123000, 500000, 7])))
    offset = draw(OFFSETS)
    local = (moment + offset).replace(tzinfo=None)
    sep = draw(st.sampled_from(["T", " ", "t"]))
    base = local.strftime(f"%Y-%m-%d{sep}%H:%M:%S")
    if moment.microsecond:
        digits = f"{moment.microsecond:06d}"
        base += draw(st.sampled_from([".", ","])) + digits
    if offset == timedelta(0):
        zone = draw(st.sampled_from(["", "Z", "z", "+00:00", "+0000", "-00:00"]))
    else:
        minutes = int(offset.total_seconds() // 60)
        sign = "+" if minutes >= 0 else "-"
        hh, mm = divmod(abs(minutes), 60)
        zone = f"{sign}{hh:02d}:{mm:02d}"
    return base + zone, moment


@given(field=st.sampled_from(sorted(FIELDS)), value=ANY_VALUE)
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_any_value_in_any_field_is_converted_exactly_or_named(field: str, value: Any) -> None:
    try:
        record = to_record(item(**{field: value}))
    except RecordError as exc:
        assert exc.field == field
        assert str(exc).startswith("CDR leg-1: field ") or field == "uuid"
        return
    converted = record[field]
    if value is None:
        assert FIELDS[field][1], "null accepted for a field the API documents as always set"
        assert converted is None
    elif field == "cost":
        assert isinstance(converted, Decimal)
        assert not isinstance(value, float), "a float cost has already lost its exact value"
        assert converted == Decimal(str(value).strip())
    elif field in ("duration", "billusec"):
        assert type(converted) is int
        assert Decimal(str(value).strip()) == converted
    elif field == "prepaid":
        assert type(converted) is bool
    elif field.endswith("_stamp"):
        assert isinstance(value, str)
        assert converted.endswith("Z") and len(converted) == len("2024-01-01T00:00:00.000000Z")
    else:
        assert type(converted) is str
        assert converted == (value if isinstance(value, str) else str(value))


@given(spelled=spelled_instants())
@settings(max_examples=300)
def test_every_valid_spelling_lands_on_the_right_utc_instant(spelled: tuple[str, datetime]) -> None:
    text, moment = spelled
    assert to_record(item(start_stamp=text))["start_stamp"] == format_utc(moment)


@given(garbage=st.text(max_size=30))
@settings(max_examples=300)
def test_invalid_timestamps_are_errors_naming_the_field(garbage: str) -> None:
    try:
        record = to_record(item(answer_stamp=garbage))
    except RecordError as exc:
        assert exc.field == "answer_stamp"
        return
    # Accepted: then it really was a date-time, and it is emitted in the one spelling.
    assert record["answer_stamp"].endswith("Z")
    datetime.fromisoformat(record["answer_stamp"][:-1])


def body(**overrides: Any) -> bytes:
    base = {"items": [], "total_items": 0, "page": 1, "page_size": 50}
    base.update(overrides)
    return json.dumps(base).encode()


@pytest.mark.parametrize(
    ("raw", "said"),
    [
        (body(total_items=-1), "'total_items' is -1"),
        (body(total_items="12"), "'total_items' is '12'"),
        (body(total_items=True), "'total_items' is True"),
        (body(total_items=None), "'total_items' is None"),
        (body(items={"uuid": "x"}), "'items' is not a list"),
        (b'{"items": [], "total_items": 0' + b"\xff\xfe", "not valid JSON"),
        (b'{"items": ["\xff"], "total_items": 1}', "not valid JSON"),
        (b"[1, 2, 3]", "a JSON list, expected an object"),
        (b"\x00" * 10, "not valid JSON"),
    ],
)
def test_malformed_bodies_are_retried_then_named(serve, run_tap, legs, raw, said):
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(emulator.url, max_retries=2, end_date="2024-03-02")  # one window
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert "Giving up on /cdrs/retrieve for window [2024-03-01T00:00:00.000Z" in message
    assert said in message
    assert len(run.waits) == 2


def test_a_huge_total_is_a_clear_error_not_an_endless_loop(serve, run_tap, legs):
    item_text = json.dumps({**item(uuid="leg-9"), "cost": 1})
    raw = b'{"items": [' + item_text.encode() + b'], "total_items": 1000000000000}'
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(emulator.url, max_concurrency=2, end_date="2024-03-02")  # one window
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert "cdrs window [2024-03-01T" in message
    assert "the API counts 1000000000000 legs" in message
    # The first parts already count as many as the whole: a few requests, then a stop.
    assert emulator.emulator.stats.requests["/cdrs/retrieve"] <= 10


def test_a_page_larger_than_page_size_is_fine(serve, run_tap, legs):
    items = [json.dumps({**item(uuid=f"leg-{n}"), "cost": n}) for n in range(5)]
    raw = ('{"items": [' + ",".join(items) + '], "total_items": 5}').encode()
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(
        emulator.url, page_size=2, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    records = run_tap(config).records()
    assert sorted(r["uuid"] for r in records) == [f"leg-{n}" for n in range(5)]


@pytest.mark.parametrize(
    ("field", "value", "said"),
    [
        ("cost", "ten euros", "field 'cost' is 'ten euros', expected a number"),
        ("start_stamp", "yesterday", "field 'start_stamp'"),
        ("end_stamp", None, "field 'end_stamp' is null"),
        ("duration", "long", "field 'duration'"),
    ],
)
def test_a_bad_field_in_a_response_names_window_leg_and_field(
    serve, run_tap, legs, field, value, said
):
    leg = {**item(uuid="leg-bad"), "cost": 1, field: value}
    raw = ('{"items": [' + json.dumps(leg) + '], "total_items": 1}').encode()
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(
        emulator.url, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert "cdrs window [2024-03-01T00:00:00.000Z, 2024-03-02T00:00:00.000Z)" in message
    assert "CDR leg-bad" in message and said in message


def test_unknown_fields_in_a_response_are_dropped(serve, run_tap, legs):
    leg = {**item(uuid="leg-x"), "cost": 1, "new_field": {"nested": [1, 2]}, "another": None}
    raw = ('{"items": [' + json.dumps(leg) + '], "total_items": 1, "extra": true}').encode()
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(
        emulator.url, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    (record,) = run_tap(config).records()
    assert "new_field" not in record and record["uuid"] == "leg-x"


def test_a_body_that_says_typed_is_still_read_by_its_items(serve, run_tap, legs):
    """What the decoder found is kept beside the API's data, never in it: a body that
    carries ``"typed": true`` itself, with loosely typed items (a duration as text, no
    answer_stamp at all), is converted item by item, not trusted."""
    leg = {**item(uuid="leg-loose"), "cost": "0.0544", "duration": "275"}
    del leg["answer_stamp"]
    raw = ('{"items": [' + json.dumps(leg) + '], "total_items": 1, "typed": true}').encode()
    emulator = serve(legs, retrieve_body=raw)
    config = make_config(
        emulator.url, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    (record,) = run_tap(config).records()
    assert record["uuid"] == "leg-loose" and record["duration"] == 275
    assert record["answer_stamp"] is None and str(record["cost"]) == "0.0544"


@pytest.mark.parametrize("uuid", [42, [1], None, {"id": "leg-1"}, True, "missing"])
def test_an_item_without_a_string_uuid_is_an_error_naming_window_and_page(
    serve, run_tap, legs, uuid
):
    """Legs are told apart by their uuid: a number would load as text ("42"), a list
    cannot be a key at all. Neither is guessed at: the run stops, naming the page."""
    leg = {**item(uuid="leg-ok"), "cost": 1}
    odd = {**item(), "cost": 2}
    if uuid == "missing":
        del odd["uuid"]
    else:
        odd["uuid"] = uuid
    raw = '{"items": [' + json.dumps(leg) + "," + json.dumps(odd) + '], "total_items": 2}'
    emulator = serve(legs, retrieve_body=raw.encode())
    config = make_config(
        emulator.url, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    run = run_tap(config, fails=True)
    assert str(run.error) == (
        "cdrs window [2024-03-01T00:00:00.000Z, 2024-03-02T00:00:00.000Z), page 1: "
        "an item has no string 'uuid'"
    )
    assert run.records() == []


@pytest.mark.parametrize("odd", ["leg-2", 7, None, ["leg-2"]])
def test_an_item_that_is_not_an_object_is_an_error_naming_window_and_page(
    serve, run_tap, legs, odd
):
    raw = '{"items": [' + json.dumps({**item(), "cost": 1}) + "," + json.dumps(odd) + "]"
    emulator = serve(legs, retrieve_body=(raw + ', "total_items": 2}').encode())
    config = make_config(
        emulator.url, start_date="2024-03-01", end_date="2024-03-02", count_check=False
    )
    run = run_tap(config, fails=True)
    assert "page 1: an item has no string 'uuid'" in str(run.error)
    assert run.records() == []
