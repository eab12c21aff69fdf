"""The tap's own failures: redaction, and the report that lets one stream fail alone."""

from __future__ import annotations

import json

import pytest

from tap_tenios.errors import (
    RunReport,
    RunWideAPIError,
    TapRunError,
    TeniosAPIError,
    api_error,
    redact,
)

from .helpers import KEY


def test_redact_hides_every_spelling():
    assert redact(f'key={KEY} json="{KEY}"', KEY) == 'key=[redacted] json="[redacted]"'
    # A key that JSON escapes: an echoed request body spells it differently.
    odd = 'k"e\\y-\u00fc'
    assert redact(json.dumps({"access_key": odd}), odd) == '{"access_key": "[redacted]"}'
    assert redact(f"key={odd}", odd) == "key=[redacted]"
    assert redact("nothing here", KEY) == "nothing here"
    assert redact("x", None) == "x"


def test_an_api_error_never_carries_the_key():
    error = api_error(f"the API said: bad key {KEY}", KEY)
    assert KEY not in str(error) and "[redacted]" in str(error)
    assert type(error) is TeniosAPIError and not error.stops_run
    assert isinstance(api_error("x", KEY, stops_run=True), RunWideAPIError)


def test_the_report_names_one_failure_as_it_is_and_several_together():
    report = RunReport()
    report.raise_failures()  # nothing failed: nothing raised
    first = TeniosAPIError("refused")
    report.add("cdr_counts", first)
    with pytest.raises(TeniosAPIError) as raised:
        report.raise_failures()
    assert raised.value is first
    report.add("cdrs", TapRunError("bad window"))
    with pytest.raises(TapRunError, match=r"^2 streams failed: cdr_counts: refused \| cdrs: bad"):
        report.raise_failures()


def test_a_run_wide_failure_stops_the_streams_that_have_not_started():
    report = RunReport()
    assert report.begin("cdr_counts")
    report.add("cdr_counts", RunWideAPIError("rejected key"))
    assert not report.begin("cdrs")


def test_a_stream_starting_again_means_a_new_sync_that_forgets_the_last():
    report = RunReport()
    report.begin("cdrs")
    report.add("cdrs", RunWideAPIError("rejected key"))
    assert report.begin("cdrs"), "a new sync starts afresh"
    report.raise_failures()
