"""The fault campaign: transient faults cost nothing; lasting ones fail clearly, in time."""

from __future__ import annotations

import pytest

from tap_tenios.emulator import TRANSIENT_FAULTS
from tap_tenios.transport import MAX_RETRY_WAIT_SECONDS

from .helpers import KEY, load_script, make_config

fault_campaign = load_script("fault_campaign")


def test_a_full_run_through_every_transient_fault_loses_nothing():
    figures = fault_campaign.campaign()
    assert figures.error is None
    assert figures.lost == 0 and figures.duplicated == 0
    assert figures.emitted == figures.legs > 500
    # Every kind was really injected, and a good share of all requests failed.
    assert set(figures.faults) == set(TRANSIENT_FAULTS)
    assert sum(figures.faults.values()) > 0.1 * sum(figures.requests.values())
    assert KEY not in figures.table()


@pytest.mark.parametrize("kind", TRANSIENT_FAULTS)
def test_a_lasting_fault_fails_clearly_within_bounded_time(serve, run_tap, legs, kind):
    emulator = serve(
        legs, fault_rate=1.0, fault_kinds=(kind,), stall_seconds=1.2, retry_after_seconds=30
    )
    config = make_config(emulator.url, max_retries=2, max_concurrency=1, request_timeout_seconds=1)
    run = run_tap(config, fails=True)
    message = str(run.error)
    assert message.startswith("Giving up on /cdrs/retrieve for window [2024-03-01T00:00:00.000Z")
    assert "after 3 attempts" in message
    assert KEY not in message
    # Bounded: max_retries waits per request, none longer than the cap (simulated time).
    assert 0 < len(run.waits) <= 2 * 2
    assert max(run.waits) <= MAX_RETRY_WAIT_SECONDS
    if kind == "429":
        assert set(run.waits) == {30.0}  # what Retry-After said
    assert not run.records(), "nothing may be emitted from a window that was not read whole"
