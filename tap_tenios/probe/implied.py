"""The tap settings the findings imply: ``api_timezone``, ``page_size``,
``lookback_minutes``, and ``lookback_mode``: whether re-reading only the lookback
parts whose count changed (``on_count_change``) is safe.
"""

from __future__ import annotations

import math
from datetime import timedelta

from tap_tenios.probe.report import Implied
from tap_tenios.probe.state import ProbeState, human, offset_text

#: The tap's default ``lookback_minutes``.
DEFAULT_LOOKBACK_MINUTES = 1440
#: How much more lookback than the evidence the advice asks for.
LOOKBACK_MARGIN = 1.5


def imply(state: ProbeState) -> None:
    """The settings the findings imply."""
    implied = state.report.implied
    if state.zone is not None:
        stamps = state.finding("stamps")
        if stamps.value and stamps.value.get("zone") == "explicit":
            implied.append(
                Implied("api_timezone", "UTC", "stamps carry their zone: the setting is not used")
            )
        else:
            name = (
                state.zone_name
                or f"an IANA zone at {offset_text(state.zone.utcoffset(None) or timedelta(0))}"
            )
            implied.append(Implied("api_timezone", name, stamps.answer))
    cap = state.finding("page_cap").value
    if isinstance(cap, dict):
        largest = cap.get("largest_honoured")
        if largest is not None and largest < state.settings.page_size:
            implied.append(
                Implied("page_size", largest, f"the API serves at most {largest} a page")
            )
        else:
            implied.append(
                Implied("page_size", state.settings.page_size, "served whole at this size")
            )
    if state.legs:
        needed = max(state.longest, state.age_needed)
        minutes = max(
            DEFAULT_LOOKBACK_MINUTES,
            math.ceil(needed.total_seconds() * LOOKBACK_MARGIN / 60),
        )
        why = f"the longest leg seen lasted {human(state.longest.total_seconds())}"
        if state.age_needed:
            why += (
                f"; legs appeared or changed more than "
                f"{human(state.age_needed.total_seconds())} after they started"
            )
        implied.append(Implied("lookback_minutes", minutes, why))
    if state.changed is True:
        implied.append(
            Implied(
                "lookback_mode",
                "always",
                "legs changed in place after they were served: a count does not see that, so "
                "on_count_change would miss the change",
            )
        )
    elif state.changed is False:
        implied.append(
            Implied(
                "lookback_mode",
                "on_count_change (safe as far as seen)",
                f"no leg changed in {state.watch_minutes:g} min; watch longer to be surer",
            )
        )
    else:
        implied.append(
            Implied(
                "lookback_mode",
                "always (unknown)",
                "whether legs change in place is unknown: run with --watch MINUTES to find out",
            )
        )
