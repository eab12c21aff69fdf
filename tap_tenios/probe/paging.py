"""How items come in pages: their order, whether the same query gives it twice,
whether pages of one window repeat or skip legs, and the largest page served.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

from tap_tenios.errors import TeniosAPIError
from tap_tenios.planner import Window
from tap_tenios.probe.report import safe_text, value_shape
from tap_tenios.probe.served import Page
from tap_tenios.probe.state import SAMPLE_PAGE, SECOND, ProbeState

#: The largest page asked for, to find the cap.
PAGE_TRY = 10_000
#: Page sizes tried first when the largest is refused, largest first.
ROUND_PAGE_SIZES = (5000, 2000, 1000, 500, 200)
#: Requests at most to narrow down a refused page size after the round ones.
PAGE_SEARCH_STEPS = 4


def check_order(state: ProbeState) -> None:
    """The order of the sample's first page by ``start_stamp``; then its stability."""
    assert state.sample is not None
    legs = state.first_page
    starts = [leg.start() for leg in legs]
    pairs = list(itertools.pairwise(starts))
    up = sum(a < b for a, b in pairs)
    down = sum(a > b for a, b in pairs)
    ties = len(pairs) - up - down
    seen = (
        f"{len(legs)} legs on one page: {up} neighbours ascending, {down} descending, "
        f"{ties} on the same start_stamp"
    )
    order = state.finding("order")
    if up + down < 2:  # noqa: PLR2004
        order.unknown("too few legs with different start_stamps to tell", seen)
    elif down == 0:
        order.found("ascending by start_stamp", "asc", seen)
    elif up == 0:
        order.found("descending by start_stamp", "desc", seen)
    else:
        order.found("none: neither ascending nor descending", "none", seen)
    check_stability(state)


def check_stability(state: ProbeState) -> None:
    """The same page asked twice, compared by uuid; then the sample in smaller pages,
    to see whether pages of one window repeat or skip legs.
    """
    assert state.sample is not None
    state.log.info("Asking for the same page again, then in smaller pages")
    again = Page.read(state.client.retrieve(state.sample.start, state.sample.end, 1, SAMPLE_PAGE))
    first = [leg.uuid for leg in state.first_page]
    second = [leg.uuid for leg in again.legs]
    common = set(first) & set(second)
    a = [u for u in first if u in common]
    b = [u for u in second if u in common]
    stamp = {leg.uuid: leg.start_raw for leg in state.first_page}
    tied = len(state.first_page) - len(set(stamp.values()))
    value: dict[str, Any] = {"same_order": a == b}
    evidence = [
        f"page 1 asked twice: {len(common)} legs in both, {len(first)} and {len(second)} served"
    ]
    if a == b:
        answer = "the same query twice gives the same order"
        if not tied:
            evidence.append(
                "no two legs share a start_stamp: ties put in another order each time "
                "could not show"
            )
    elif [stamp[u] for u in a] == [stamp[u] for u in b]:
        answer = "legs with the same start_stamp come back in another order each time"
        value["ties_only"] = True
    else:
        answer = "the same query twice gives another order"
        value["ties_only"] = False
    if a != b:
        evidence.append(
            f"{sum(x != y for x, y in zip(a, b, strict=True))} positions differ; "
            f"{tied} legs share a start_stamp"
        )
    total = state.totals.get(state.sample, 0)
    all_uuids = {leg.uuid for leg in state.legs}
    if total >= 4 and len(all_uuids) == total:  # noqa: PLR2004
        size = max(2, math.ceil(total / 3))
        pages = state.read_window(state.sample, size)
        read = [leg.uuid for page in pages for leg in page.legs]
        repeated = len(read) - len(set(read))
        skipped = len(all_uuids - set(read))
        evidence.append(
            f"read again in pages of {size}: {repeated} leg(s) served twice, {skipped} not served"
        )
        if pages[0].total_items != total:
            # New legs shift pages too: that says nothing about the API's paging.
            evidence.append(f"legs arrived meanwhile ({total} then {pages[0].total_items})")
            answer += "; pages not judged (legs arrived while they were read)"
        elif repeated or skipped:
            value.update(pages_repeated=repeated, pages_skipped=skipped)
            answer += "; pages of one window repeat and skip legs"
        else:
            value.update(pages_repeated=0, pages_skipped=0)
            answer += "; pages neither repeat nor skip legs"
    state.finding("stability").found(answer, value, *evidence)


def check_page_cap(state: ProbeState) -> None:
    """Ask the newest day in one page of ``PAGE_TRY`` legs: served whole, cut short
    silently (page 2 serves the rest), or refused (narrowed down by ``refused_page``).
    """
    assert state.day is not None
    cap = state.finding("page_cap")
    asked = max(PAGE_TRY, state.settings.page_size)
    state.log.info("Asking for a page of %d legs", asked)
    try:
        page = Page.read(state.client.retrieve(state.day.start, state.day.end, 1, asked))
    except TeniosAPIError as exc:
        if state.client.last_status != 400:  # noqa: PLR2004
            raise
        refused_page(state, asked, safe_text(str(exc), state.key))
        return
    state.totals[state.day] = page.total_items
    state.note_durations(page.legs)
    expected = min(asked, page.total_items)
    echo = f"page_size echoed: {value_shape(page.page_size_echoed)}"
    if page.items < expected:
        # A cap serves the rest on page 2; legs counted but never listed do not.
        rest = Page.read(state.client.retrieve(state.day.start, state.day.end, 2, asked))
        if rest.items == 0:
            state.unlisted = page.total_items - page.items
            cap.found(
                f"no cap seen; {state.unlisted} leg(s) counted in total_items are never listed",
                {
                    "largest_honoured": None,
                    "at_least": page.items,
                    "says_so": None,
                    "unlisted": state.unlisted,
                },
                f"asked {asked}: page 1 lists {page.items} of {page.total_items}, page 2 none",
                echo,
            )
            return
        cap.found(
            f"at most {page.items} legs a page, served silently (no error)",
            {"largest_honoured": page.items, "says_so": False},
            f"asked {asked}, served {page.items} of {page.total_items}; page 2: {rest.items} more",
            echo,
        )
    elif page.total_items < asked:
        cap.found(
            f"at least {page.items}: every leg asked for was served in one page",
            {"largest_honoured": None, "at_least": page.items, "says_so": None},
            f"asked {asked}; the day held {page.total_items} legs, all served",
            echo,
        )
    else:
        cap.found(
            f"{asked} legs a page served in full",
            {"largest_honoured": None, "at_least": asked, "says_so": None},
            echo,
        )


def refused_page(state: ProbeState, asked: int, message: str) -> None:
    """The API refused a page size: narrow down the largest it takes."""
    assert state.day is not None
    tiny = Window(state.day.start, state.day.start + SECOND)
    good, bad = SAMPLE_PAGE, asked

    def accepted(size: int) -> bool:
        try:
            state.client.retrieve(tiny.start, tiny.end, 1, size)
        except TeniosAPIError:
            if state.client.last_status != 400:  # noqa: PLR2004
                raise
            return False
        return True

    # Round sizes first (an API's limit usually is one), then halve the gap.
    for size in (size for size in ROUND_PAGE_SIZES if good < size < bad):
        if accepted(size):
            good = size
            break
        bad = size
    for _ in range(PAGE_SEARCH_STEPS):
        if bad - good <= max(1, good // 10):
            break
        middle = (good + bad) // 2
        good, bad = (middle, bad) if accepted(middle) else (good, middle)
    state.finding("page_cap").found(
        f"page_size up to {good} accepted; {bad} and above refused with HTTP 400",
        {"largest_honoured": good, "refused_from": bad, "says_so": True},
        f"asked {asked}: {message}",
    )
