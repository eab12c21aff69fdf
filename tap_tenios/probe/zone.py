"""The stamps: how they are spelled, the zone they are written in (which decides
``api_timezone``), and, with the zone known, whether each bound of a window includes a
leg that starts exactly on it.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from tap_tenios.planner import Window
from tap_tenios.probe.served import Page, shapes
from tap_tenios.probe.state import SAMPLE_PAGE, SECOND, ProbeState, offset_text
from tap_tenios.records import UTC

#: Offsets tried at most to tell the zone of zone-less stamps.
ZONE_TESTS = 4
#: Zones tried first, besides the configured ones: where Tenios runs.
LIKELY_ZONES = ("Europe/Berlin",)
BOUND_VARIANTS = {
    (True, False): ("half_open", "[from, to): start_date_from inclusive, start_date_to exclusive"),
    (True, True): ("inclusive", "[from, to]: both bounds inclusive"),
    (False, False): ("exclusive", "(from, to): both bounds exclusive"),
    (False, True): ("left_open", "(from, to]: start_date_from exclusive, start_date_to inclusive"),
}


def check_stamps(state: ProbeState) -> None:
    """How the stamps are spelled, and in which zone: explicit, or tried for zone-less ones."""
    assert state.sample is not None
    stamps = state.finding("stamps")
    spelled = shapes(state.legs)
    stamps.evidence.insert(
        0, "stamps by spelling: " + ", ".join(f"'{s}' {n}" for s, n in spelled.most_common())
    )
    zoned = {leg.zoned for leg in state.legs}
    window = Window(state.sample.start - SECOND, state.sample.end + SECOND)
    if not state.legs:
        stamps.unknown("no legs served to look at")
    elif zoned == {True}:
        outside = sum(not window.start <= leg.start() <= window.end for leg in state.legs)
        state.zone, state.zone_name = UTC, None
        stamps.found(
            "the stamps carry their zone (Z or an offset); api_timezone is not used",
            {"zone": "explicit", "shapes": dict(spelled)},
            f"{outside} of {len(state.legs)} legs outside the window asked for",
        )
    elif zoned == {False}:
        zone_of_zoneless(state, window, spelled)
    else:
        stamps.unknown("some stamps carry a zone and some do not")


def zone_of_zoneless(state: ProbeState, window: Window, spelled: Counter[str]) -> None:
    """Try offsets for zone-less stamps: the one at which a 2-second window around
    a leg's start serves that leg is the API's.
    """
    stamps = state.finding("stamps")
    as_utc = [leg.start() for leg in state.legs]
    outside = sum(not window.start <= s <= window.end for s in as_utc)
    stamps.evidence.append(
        f"read as UTC, {outside} of {len(as_utc)} legs lie outside the window asked for"
    )
    low = max(s - window.end for s in as_utc)
    high = min(s - window.start for s in as_utc)
    leg = state.legs[len(state.legs) // 2]
    wall = leg.start().replace(tzinfo=None)
    preferred = [timedelta(0)]
    for name in zone_names(state):
        offset = ZoneInfo(name).utcoffset(wall)
        if offset is not None and offset not in preferred:
            preferred.append(offset)
    quarter = timedelta(minutes=15)
    steps = range(math.ceil(low / quarter), math.floor(high / quarter) + 1) if low <= high else ()
    others = sorted((k * quarter for k in steps), key=abs)
    # Legs that fit no offset at all (an API that serves outside the window):
    # the likely offsets are tried anyway.
    fits = [o for o in preferred if low > high or low - SECOND <= o <= high + SECOND]
    fits += [o for o in others if o not in preferred]
    found: timedelta | None = None
    tried = []
    for offset in fits[:ZONE_TESTS]:
        moment = leg.start() - offset
        page = Page.read(state.client.retrieve(moment - SECOND, moment + SECOND, 1, SAMPLE_PAGE))
        tried.append(offset_text(offset))
        if leg.uuid in {served.uuid for served in page.legs}:
            found = offset
            break
    stamps.evidence.append(
        f"offsets consistent with the window: {offset_text(low)} to {offset_text(high)}; "
        f"tried {', '.join(tried) or 'none'}"
    )
    if found is None:
        stamps.unknown(
            "zone-less stamps, in a zone not found",
        )
        return
    state.anchor = leg
    zone_name = next(
        (
            n
            for n in ("UTC", *zone_names(state))
            if ZoneInfo(n).utcoffset(wall) == found
            and all(window.start <= other.start(ZoneInfo(n)) <= window.end for other in state.legs)
        ),
        None,
    )
    state.zone = ZoneInfo(zone_name) if zone_name else timezone(found)
    state.zone_name = zone_name
    local = "UTC" if found == timedelta(0) else f"local time at {offset_text(found)}"
    setting = zone_name or f"your zone at {offset_text(found)}"
    stamps.found(
        f"zone-less stamps in {local}; api_timezone: {setting}",
        {
            "zone": "none",
            "offset_minutes": found.total_seconds() / 60,
            "api_timezone": zone_name,
            "shapes": dict(spelled),
        },
        f"a window of 2 s around a leg's start read at {offset_text(found)} serves that leg",
    )


def zone_names(state: ProbeState) -> list[str]:
    """The named zones worth trying: the configured ones, then ``LIKELY_ZONES``."""
    names = [str(state.settings.api_timezone), str(state.settings.timezone), *LIKELY_ZONES]
    return [n for n in dict.fromkeys(names) if n not in ("UTC", "")]


def check_bounds(state: ProbeState) -> None:
    """Windows of a second that begin, and that end, exactly on a served leg's start:
    whether each serves the leg tells whether that bound is inclusive.
    """
    bounds = state.finding("bounds")
    if state.zone is None:
        bounds.unknown("the stamps' zone is not known, so no window can sit on a leg")
        return
    leg = state.anchor or state.legs[len(state.legs) // 2]
    start = leg.start(state.zone)
    if start.microsecond % 1000:
        bounds.unknown("stamps finer than a millisecond: no request can sit on one")
        return

    def serves(lower: datetime, upper: datetime) -> bool:
        page = Page.read(state.client.retrieve(lower, upper, 1, SAMPLE_PAGE))
        state.totals[Window(lower, upper)] = page.total_items
        return leg.uuid in {served.uuid for served in page.legs}

    state.log.info("Asking for windows that begin and end on a leg's start")
    if leg is not state.anchor and not serves(start - SECOND, start + SECOND):
        bounds.unknown("a leg is not served in a window of 2 s around its own start")
        return
    lower = serves(start, start + SECOND)
    upper = serves(start - SECOND, start)
    for window in (Window(start, start + SECOND), Window(start - SECOND, start)):
        state.counts[window] = state.client.count(window.start, window.end)
    name, text = BOUND_VARIANTS[(lower, upper)]
    bounds.found(
        text,
        name,
        f"one leg: served by a window that starts on its start_stamp: "
        f"{'yes' if lower else 'no'}; by one that ends on it: {'yes' if upper else 'no'}",
    )
