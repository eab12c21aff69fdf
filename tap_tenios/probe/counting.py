"""The API's two counts: ``total_items`` against ``/cdrs/count`` for the same windows,
and what ``/cdrs/count`` answers for a period over a day.
"""

from __future__ import annotations

from datetime import timedelta

from tap_tenios.errors import TeniosAPIError
from tap_tenios.planner import Window
from tap_tenios.probe.report import safe_text
from tap_tenios.probe.state import ProbeState, human
from tap_tenios.records import format_request


def check_counts(state: ProbeState) -> None:
    """Compare ``total_items`` with ``/cdrs/count`` for every window both read and
    counted: two counts that disagree make a window's check depend on which is asked.
    """
    assert state.sample is not None
    if state.sample not in state.counts:
        state.counts[state.sample] = state.client.count(state.sample.start, state.sample.end)
    pairs = [(w, t, state.counts[w]) for w, t in state.totals.items() if w in state.counts]
    differ = [(w, t, c) for w, t, c in pairs if t != c]
    evidence = [
        f"{human((w.end - w.start).total_seconds())} from {format_request(w.start)}: "
        f"total_items {t}, /cdrs/count {c}"
        for w, t, c in pairs
    ]
    counts = state.finding("counts")
    if state.unlisted:
        evidence.append(f"both count {state.unlisted} leg(s) of the newest day that no page lists")
    if not pairs:
        counts.unknown("no window was both read and counted")
    elif not differ:
        counts.found(f"equal in all {len(pairs)} windows compared", True, *evidence)
    else:
        counts.found(f"they differ in {len(differ)} of {len(pairs)} windows", False, *evidence)


def check_count_over_a_day(state: ProbeState) -> None:
    """Count 25 hours at once: refused as documented, or counted whole or in part."""
    assert state.day is not None
    over = Window(state.day.start - timedelta(hours=1), state.day.end)
    finding = state.finding("count_over_a_day")
    try:
        count = state.client.count(over.start, over.end)
    except TeniosAPIError as exc:
        if state.client.last_status != 400:  # noqa: PLR2004
            raise
        finding.found(
            "refused with HTTP 400, as documented (a period of at most one day)",
            "refused",
            f"25 h asked: {safe_text(str(exc), state.key)}",
        )
        return
    extra = state.client.count(over.start, state.day.start)
    if count == state.day_count + extra:
        answer, value = "the whole period is counted", "whole"
    elif count == state.day_count:
        answer, value = "only the last day of the period is counted", "last_day"
    else:
        answer, value = "a number that is neither the whole period nor its last day", "other"
    finding.found(
        answer,
        value,
        f"25 h: {count}; its last 24 h: {state.day_count}; the hour before: {extra}",
    )
