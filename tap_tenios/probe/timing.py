"""Time: how soon after a call ends its legs are served, and (``--watch``) the legs
that appear late or change in place when the sample is read again later.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal

from tap_tenios.probe.report import CODE_FIELDS, value_shape
from tap_tenios.probe.served import Served
from tap_tenios.probe.state import SECOND, ProbeState, human
from tap_tenios.records import format_request


def check_latency(state: ProbeState) -> None:
    """The newest leg's end against the moment it was read."""
    assert state.sample is not None
    latency = state.finding("latency")
    if state.zone is None:
        latency.unknown("the stamps' zone is not known")
        return
    ends = [end for leg in state.legs if (end := leg.end(state.zone)) is not None]
    if not ends:
        latency.unknown("no end_stamp readable")
        return
    lag = (state.read_at - max(ends)).total_seconds()
    ahead = sum(end > state.read_at + SECOND for end in ends)
    # The sample holds the newest legs of the newest day with legs (a half
    # without legs is never kept), so its newest end is the account's.
    quiet = (state.now - max(leg.start(state.zone) for leg in state.legs)).total_seconds()
    latency.found(
        f"the newest leg served had ended {human(lag)} before it was read",
        {
            "newest_end_lag_seconds": round(lag, 3),
            "newest_start_seconds_ago": round(quiet, 3),
            "ends_in_the_future": ahead,
        },
        f"{len(ends)} legs read at {format_request(state.read_at)}",
        f"the newest leg started {human(quiet)} before the probe began",
        f"{ahead} leg(s) end after the moment they were read",
        "on a busy line this is about how soon legs appear (on a quiet one, only an "
        "upper bound); --watch shows legs that appear later than that",
    )


def watch(state: ProbeState) -> None:
    """Wait ``--watch`` minutes (on the probe's clock), read the sample again and
    compare by uuid: legs that appeared, vanished or changed in place.
    """
    assert state.sample is not None
    finding = state.finding("watch")
    if state.watch_minutes <= 0:
        finding.unknown("not watched: run with --watch MINUTES")
        return
    if state.zone is None:
        finding.unknown("the stamps' zone is not known")
        return
    state.log.info("Watching: reading the sample again in %s minutes", state.watch_minutes)
    before = state.totals[state.sample]
    state.client.clock.sleep(state.watch_minutes * 60)
    read_again = state.client.clock.now()
    pages = state.read_window(state.sample)
    after_count = state.client.count(state.sample.start, state.sample.end)
    first = {leg.uuid: leg for leg in state.legs}
    second = {leg.uuid: leg for page in pages for leg in page.legs}
    appeared = [leg for uuid, leg in second.items() if uuid not in first]
    late_ends = [
        (leg, end)
        for leg in appeared
        if (end := leg.end(state.zone)) is not None and end <= state.read_at
    ]
    late = [leg for leg, _ in late_ends]
    late_by = max(((state.read_at - end).total_seconds() for _, end in late_ends), default=0.0)
    vanished = [uuid for uuid in first if uuid not in second]
    fields: Counter[str] = Counter()
    moves: dict[str, Counter[str]] = {}
    changed: list[Served] = []
    for uuid in first.keys() & second.keys():
        old, new = first[uuid].fields, second[uuid].fields
        names = sorted(n for n in old.keys() | new.keys() if old.get(n) != new.get(n))
        if names:
            changed.append(second[uuid])
        for name in names:
            fields[name] += 1
            move = f"{kind(name, old.get(name))} → {kind(name, new.get(name))}"
            moves.setdefault(name, Counter())[move] += 1
    state.changed = bool(changed)
    for leg in [*late, *changed]:
        state.age_needed = max(state.age_needed, state.read_at - leg.start(state.zone))
    minutes = (read_again - state.read_at).total_seconds() / 60
    parts = [
        f"{len(appeared)} leg(s) appeared ({len(late)} of them had ended before the first read)",
        f"{len(changed)} changed in place",
    ]
    if vanished:
        parts.append(f"{len(vanished)} vanished")
    evidence = [
        f"the sample read at {format_request(state.read_at)} and again {minutes:.0f} min later",
        f"/cdrs/count of the sample: {before} then {after_count}",
    ]
    if late:
        evidence.append(
            f"the latest-appearing leg had ended {human(late_by)} before the first read"
        )
    for name, count in fields.most_common():
        evidence.append(
            f"{name} changed on {count} leg(s): "
            + ", ".join(f"{m} ({n})" for m, n in moves[name].most_common(3))
        )
    finding.found(
        "; ".join(parts),
        {
            "minutes": round(minutes, 1),
            "appeared": len(appeared),
            "appeared_after_ending_before_first_read": len(late),
            "late_by_seconds": round(late_by, 3),
            "changed": len(changed),
            "changed_fields": dict(fields),
            "vanished": len(vanished),
            "count_before": before,
            "count_after": after_count,
        },
        *evidence,
    )


def kind(field: str, value: object) -> str:
    """A changed value, as the report shows it: zero or a number, a code where the
    field holds codes, else its shape.
    """
    if value is None:
        return "null"
    if (isinstance(value, (int, float)) and not isinstance(value, bool)) or isinstance(
        value, Decimal
    ):
        return "0" if value == 0 else "a number"
    if field in CODE_FIELDS:
        return value_shape(value)
    return f"{type(value).__name__}({len(str(value))} chars)"
