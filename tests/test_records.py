"""One API item -> one record: exact values, or an error naming field and leg."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tap_tenios.records import FIELDS, RecordError, to_record

from .helpers import item


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
