"""What the probe's report may show of a value or of the API's words: shapes and codes,
never the key, a phone number, a name or an e-mail address."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from tap_tenios.probe.report import Finding, Implied, Report, number_shape, safe_text, value_shape

from .helpers import KEY


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "null"),
        (True, "true"),
        (42, "42"),
        (Decimal("0.012300"), "0.012300"),
        ("NORMAL_CLEARING", "NORMAL_CLEARING"),
        ("+4915123456789", "+49…(14 chars)"),
        ("+49 151 2345 678", "+49…(16 chars)"),
        ("Erika Musterfrau", "text(16 chars)"),
        ("anonymous", "text(9 chars)"),
        ([1, 2], "list"),
    ],
)
def test_a_value_is_shown_as_a_code_a_number_or_its_shape(value, shown) -> None:
    assert value_shape(value) == shown


def test_a_number_shows_its_country_code_and_length_only() -> None:
    assert number_shape(" 004930123456 ") == "…(12 chars)"
    assert number_shape("+4930123456") == "+49…(11 chars)"


def test_the_api_s_words_lose_key_numbers_names_and_addresses() -> None:
    line = (
        "The Tenios API refused /cdrs/count for [2024-03-09T11:00:00.000Z, "
        "2024-03-10T12:00:00.000Z]: HTTP 400: Invalid period for Erika Musterfrau "
        f"(+49 151 23456789, erika@example.com, {KEY}, {json.dumps(KEY)})"
    )
    shown = safe_text(line, KEY)
    for secret in (KEY, "Erika", "Musterfrau", "23456789", "erika@"):
        assert secret not in shown
    # Our own words and the instants stay as they are; the API's code words too.
    assert shown.startswith("The Tenios API refused /cdrs/count for [2024-03-09T11:00:00.000Z")
    assert "HTTP 400: Invalid period for [name] [name] (+49…(16 chars), [e-mail]" in shown


def test_our_own_lines_keep_their_capitals_and_long_quotes_are_cut() -> None:
    assert safe_text("Counting legs per day", None) == "Counting legs per day"
    assert len(safe_text("HTTP 500: " + "x" * 1000, None)) == 301


def test_both_renderings_redact_the_key_once_more() -> None:
    finding = Finding("auth", "Authentication")
    finding.found(f"leaked {KEY}", KEY, f"evidence {KEY}")
    report = Report("api.example", "t0", [finding], 60, implied=[Implied("x", KEY, KEY)])
    for text in (report.to_markdown(KEY), report.to_json(KEY)):
        assert KEY not in text and "[redacted]" in text


@pytest.mark.parametrize(
    ("line", "number"),
    [
        ("HTTP 400: caller +4915123456789.", "+4915123456789"),
        ("HTTP 400: caller 0151-2345678 is blocked", "0151-2345678"),
        ("HTTP 400: caller +49.151.2345678", "+49.151.2345678"),
        ("HTTP 400: call (030) 1234567; retry", "1234567"),
    ],
)
def test_a_number_however_spelt_or_punctuated_is_shown_by_its_shape(line, number) -> None:
    shown = safe_text(line, None)
    assert number not in shown
    assert "chars)" in shown


def test_dates_and_stamps_the_report_quotes_stay_as_they_are() -> None:
    line = "window 2024-01-08 10:00:00 to 2024-01-08T10:00:01.123456Z, 1000.5 EUR"
    assert safe_text(line, None) == line
