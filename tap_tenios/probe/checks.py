"""The findings: the requests that answer each question about the API, and the
reading of their answers.

The order matters: the range found first is what every later check reads; the
stamps' zone must be known before a window can be put exactly on a leg's start (the
bounds) or a leg's end compared with the clock (latency). Each check writes its own
``Finding``; one that cannot answer says why, and the run goes on.
"""

from __future__ import annotations

import email.utils
import itertools
import logging
import math
from collections import Counter
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

from tap_tenios.errors import TeniosAPIError
from tap_tenios.probe.client import OutOfBudgetError, ProbeClient
from tap_tenios.probe.report import (
    CODE_FIELDS,
    Finding,
    Implied,
    Report,
    safe_text,
    value_shape,
)
from tap_tenios.probe.served import Page, Served, shapes
from tap_tenios.settings import Settings
from tap_tenios.windows import UTC, Window, format_request

#: The findings, in the order they are reported.
QUESTIONS = (
    ("auth", "Authentication"),
    ("range", "A recent range with legs"),
    ("order", "Order of items"),
    ("stability", "The same query twice, and pages"),
    ("stamps", "Stamp spelling and zone"),
    ("bounds", "Inclusiveness of the bounds"),
    ("page_cap", "Largest page honoured"),
    ("counts", "total_items against /cdrs/count"),
    ("count_over_a_day", "A count over more than a day"),
    ("latency", "How soon legs appear"),
    ("watch", "Late legs and changes in place"),
    ("rate_limits", "Rate-limit headers and Retry-After"),
)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
#: The sample window is narrowed (by counts) until it holds at most this many legs.
SAMPLE_MAX = 100
#: Halvings of the day at most, to find the sample (2**12: 21 s of a day).
MAX_HALVINGS = 12
#: The page size the probe reads with: what public clients use, below any likely cap.
SAMPLE_PAGE = 100
#: Pages of one window at most.
MAX_PAGES = 5
#: The largest page asked for, to find the cap.
PAGE_TRY = 10_000
#: Page sizes tried first when the largest is refused, largest first.
ROUND_PAGE_SIZES = (5000, 2000, 1000, 500, 200)
#: Requests at most to narrow down a refused page size after the round ones.
PAGE_SEARCH_STEPS = 4
#: Offsets tried at most to tell the zone of zone-less stamps.
ZONE_TESTS = 4
#: Zones tried first, besides the configured ones: where Tenios runs.
LIKELY_ZONES = ("Europe/Berlin",)
#: The tap's default ``lookback_minutes``.
DEFAULT_LOOKBACK_MINUTES = 1440
#: How much more lookback than the evidence the advice asks for.
LOOKBACK_MARGIN = 1.5

BOUND_VARIANTS = {
    (True, False): ("half_open", "[from, to): start_date_from inclusive, start_date_to exclusive"),
    (True, True): ("inclusive", "[from, to]: both bounds inclusive"),
    (False, False): ("exclusive", "(from, to): both bounds exclusive"),
    (False, True): ("left_open", "(from, to]: start_date_from exclusive, start_date_to inclusive"),
}


def host_of(url: str) -> str:
    """The API's host and port, without a path or any credentials in the URL."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def human(seconds: float) -> str:
    """A duration as people read it."""
    if abs(seconds) < 120:  # noqa: PLR2004
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:  # noqa: PLR2004
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class Probe:
    """One probe run: the checks, in order, writing into ``report``."""

    def __init__(
        self,
        client: ProbeClient,
        settings: Settings,
        key: str,
        *,
        days: int,
        watch_minutes: float,
        logger: logging.Logger,
    ) -> None:
        self.client = client
        self.settings = settings
        self.key = key
        self.days = days
        self.watch_minutes = watch_minutes
        self.log = logger
        self.now = client.clock.now().astimezone(UTC)
        self.now = self.now.replace(microsecond=self.now.microsecond // 1000 * 1000)
        self.report = Report(
            api_host=host_of(settings.api_url),
            started=format_request(self.now),
            findings=[Finding(key, question) for key, question in QUESTIONS],
            requests_allowed=client.budget.allowed,
        )
        self.day: Window | None = None
        self.day_count = 0
        self.sample: Window | None = None
        self.legs: list[Served] = []
        self.first_page: list[Served] = []
        self.read_at = self.now
        self.zone: tzinfo | None = None
        self.zone_name: str | None = None
        self.anchor: Served | None = None  # a leg already served in a window around its start
        self.totals: dict[Window, int] = {}
        self.counts: dict[Window, int] = {}
        self.longest = timedelta(0)
        self.changed: bool | None = None
        self.age_needed = timedelta(0)
        #: Legs the newest day's total_items counts but no page lists.
        self.unlisted = 0
        #: Whether the API stopped answering (rather than the budget running out).
        self.failed = False

    def f(self, key: str) -> Finding:
        return self.report.finding(key)

    def run(self) -> Report:
        """Every check that the budget and the API allow; the findings so far either way."""
        checks = (
            self.find_range,
            self.read_sample,
            self.check_order,
            self.check_stamps,
            self.check_bounds,
            self.check_page_cap,
            self.check_counts,
            self.check_count_over_a_day,
            self.check_latency,
            self.watch,
        )
        try:
            for check in checks:
                if check != self.find_range and self.sample is None:
                    break
                check()
        except OutOfBudgetError as exc:
            why = f": {safe_text(str(exc), self.key)}" if str(exc) else ""
            self.report.stopped = (
                f"the request budget is used up (--max-requests {self.client.budget.allowed})"
                f"{why}; the findings below are what it allowed"
            )
        except TeniosAPIError as exc:
            self.failed = True
            self.report.stopped = safe_text(str(exc), self.key)
        except KeyboardInterrupt:
            self.failed = True
            self.report.stopped = "interrupted (Ctrl-C)"
        finally:
            if self.sample is None and not self.report.stopped:
                for finding in self.report.findings[2:]:
                    finding.unknown(f"no legs in the last {self.days} days to look at")
            self.check_rate_limits()
            self.imply()
            self.report.requests_used = self.client.budget.used
            self.report.finished = format_request(self.client.clock.now())
        return self.report

    # -- the range -------------------------------------------------------------------

    def find_range(self) -> None:
        """Count day by day back from now; narrow the newest day with legs to a sample."""
        self.log.info("Counting legs per day, back from %s", format_request(self.now))
        per_day: list[int] = []
        for back in range(self.days):
            day = Window(self.now - (back + 1) * DAY, self.now - back * DAY)
            try:
                count = self.client.count(day.start, day.end)
            except TeniosAPIError as exc:
                if back == 0 and self.client.last_status in (401, 403):
                    self.f("auth").found("rejected", False, safe_text(str(exc), self.key))
                raise
            if back == 0:
                self.f("auth").found("the access key is accepted", True, "/cdrs/count: HTTP 200")
            self.counts[day] = count
            per_day.append(count)
            if count > 0:
                self.day, self.day_count = day, count
                break
        rng = self.f("range")
        counted = f"legs per day counted back from now: {', '.join(map(str, per_day))}"
        if self.day is None:
            rng.unknown(f"no legs in the last {len(per_day)} days", counted)
            return
        window, count = self.day, self.day_count
        for _ in range(MAX_HALVINGS):
            if count <= SAMPLE_MAX:
                break
            middle = window.start + (window.end - window.start) / 2
            middle = middle.replace(microsecond=middle.microsecond // 1000 * 1000)
            later = self.client.count(middle, window.end)
            self.counts[Window(middle, window.end)] = later
            window, count = (
                (Window(middle, window.end), later)
                if later
                else (Window(window.start, middle), count)
            )
        self.sample = window
        back = len(per_day) - 1
        when = "the last 24 hours" if back == 0 else f"the 24 hours ending {back} day(s) ago"
        rng.found(
            f"{self.day_count} legs in {when}; a sample of "
            f"{count} legs over {human((window.end - window.start).total_seconds())}",
            {"days_back": back, "day_count": self.day_count, "sample_count": count},
            counted,
            f"sample window {window.describe()}",
        )

    def read_window(self, window: Window, page_size: int = SAMPLE_PAGE) -> list[Page]:
        """The pages of ``window`` until ``total_items`` is read (``MAX_PAGES`` at most)."""
        pages: list[Page] = []
        for number in range(1, MAX_PAGES + 1):
            page = Page.read(self.client.retrieve(window.start, window.end, number, page_size))
            pages.append(page)
            if page.items == 0 or sum(p.items for p in pages) >= page.total_items:
                break
        self.totals[window] = pages[0].total_items
        return pages

    def read_sample(self) -> None:
        assert self.sample is not None
        self.log.info("Reading the sample window %s", self.sample.describe())
        self.read_at = self.client.clock.now()
        pages = self.read_window(self.sample)
        self.first_page = pages[0].legs
        self.legs = [leg for page in pages for leg in page.legs]
        self.note_durations(self.legs)
        unusable = sum(p.unusable for p in pages)
        if unusable:
            self.f("stamps").evidence.append(
                f"{unusable} item(s) without a uuid or a readable start_stamp"
            )

    def note_durations(self, legs: list[Served]) -> None:
        for leg in legs:
            if (lasted := leg.duration()) is not None:
                self.longest = max(self.longest, lasted)

    # -- order and stability ---------------------------------------------------------

    def check_order(self) -> None:
        assert self.sample is not None
        legs = self.first_page
        starts = [leg.start() for leg in legs]
        pairs = list(itertools.pairwise(starts))
        up = sum(a < b for a, b in pairs)
        down = sum(a > b for a, b in pairs)
        ties = len(pairs) - up - down
        seen = (
            f"{len(legs)} legs on one page: {up} neighbours ascending, {down} descending, "
            f"{ties} on the same start_stamp"
        )
        order = self.f("order")
        if up + down < 2:  # noqa: PLR2004
            order.unknown("too few legs with different start_stamps to tell", seen)
        elif down == 0:
            order.found("ascending by start_stamp", "asc", seen)
        elif up == 0:
            order.found("descending by start_stamp", "desc", seen)
        else:
            order.found("none: neither ascending nor descending", "none", seen)
        self.check_stability()

    def check_stability(self) -> None:
        assert self.sample is not None
        self.log.info("Asking for the same page again, then in smaller pages")
        again = Page.read(self.client.retrieve(self.sample.start, self.sample.end, 1, SAMPLE_PAGE))
        first = [leg.uuid for leg in self.first_page]
        second = [leg.uuid for leg in again.legs]
        common = set(first) & set(second)
        a = [u for u in first if u in common]
        b = [u for u in second if u in common]
        stamp = {leg.uuid: leg.start_raw for leg in self.first_page}
        tied = len(self.first_page) - len(set(stamp.values()))
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
        total = self.totals.get(self.sample, 0)
        all_uuids = {leg.uuid for leg in self.legs}
        if total >= 4 and len(all_uuids) == total:  # noqa: PLR2004
            size = max(2, math.ceil(total / 3))
            pages = self.read_window(self.sample, size)
            read = [leg.uuid for page in pages for leg in page.legs]
            repeated = len(read) - len(set(read))
            skipped = len(all_uuids - set(read))
            evidence.append(
                f"read again in pages of {size}: {repeated} leg(s) served twice, "
                f"{skipped} not served"
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
        self.f("stability").found(answer, value, *evidence)

    # -- stamps and zone -------------------------------------------------------------

    def check_stamps(self) -> None:
        assert self.sample is not None
        stamps = self.f("stamps")
        spelled = shapes(self.legs)
        stamps.evidence.insert(
            0, "stamps by spelling: " + ", ".join(f"'{s}' {n}" for s, n in spelled.most_common())
        )
        zoned = {leg.zoned for leg in self.legs}
        window = Window(self.sample.start - SECOND, self.sample.end + SECOND)
        if not self.legs:
            stamps.unknown("no legs served to look at")
        elif zoned == {True}:
            outside = sum(not window.start <= leg.start() <= window.end for leg in self.legs)
            self.zone, self.zone_name = UTC, None
            stamps.found(
                "the stamps carry their zone (Z or an offset); api_timezone is not used",
                {"zone": "explicit", "shapes": dict(spelled)},
                f"{outside} of {len(self.legs)} legs outside the window asked for",
            )
        elif zoned == {False}:
            self.zone_of_zoneless(window, spelled)
        else:
            stamps.unknown("some stamps carry a zone and some do not")

    def zone_of_zoneless(self, window: Window, spelled: Counter[str]) -> None:
        """Try offsets for zone-less stamps: the one at which a 2-second window around
        a leg's start serves that leg is the API's.
        """
        stamps = self.f("stamps")
        as_utc = [leg.start() for leg in self.legs]
        outside = sum(not window.start <= s <= window.end for s in as_utc)
        stamps.evidence.append(
            f"read as UTC, {outside} of {len(as_utc)} legs lie outside the window asked for"
        )
        low = max(s - window.end for s in as_utc)
        high = min(s - window.start for s in as_utc)
        leg = self.legs[len(self.legs) // 2]
        wall = leg.start().replace(tzinfo=None)
        preferred = [timedelta(0)]
        for name in self.zone_names():
            offset = ZoneInfo(name).utcoffset(wall)
            if offset is not None and offset not in preferred:
                preferred.append(offset)
        quarter = timedelta(minutes=15)
        steps = (
            range(math.ceil(low / quarter), math.floor(high / quarter) + 1) if low <= high else ()
        )
        others = sorted((k * quarter for k in steps), key=abs)
        # Legs that fit no offset at all (an API that serves outside the window):
        # the likely offsets are tried anyway.
        fits = [o for o in preferred if low > high or low - SECOND <= o <= high + SECOND]
        fits += [o for o in others if o not in preferred]
        found: timedelta | None = None
        tried = []
        for offset in fits[:ZONE_TESTS]:
            moment = leg.start() - offset
            page = Page.read(self.client.retrieve(moment - SECOND, moment + SECOND, 1, SAMPLE_PAGE))
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
        self.anchor = leg
        zone_name = next(
            (
                n
                for n in ("UTC", *self.zone_names())
                if ZoneInfo(n).utcoffset(wall) == found
                and all(
                    window.start <= other.start(ZoneInfo(n)) <= window.end for other in self.legs
                )
            ),
            None,
        )
        self.zone = ZoneInfo(zone_name) if zone_name else timezone(found)
        self.zone_name = zone_name
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

    def zone_names(self) -> list[str]:
        names = [str(self.settings.api_timezone), str(self.settings.timezone), *LIKELY_ZONES]
        return [n for n in dict.fromkeys(names) if n not in ("UTC", "")]

    # -- bounds ----------------------------------------------------------------------

    def check_bounds(self) -> None:
        bounds = self.f("bounds")
        if self.zone is None:
            bounds.unknown("the stamps' zone is not known, so no window can sit on a leg")
            return
        leg = self.anchor or self.legs[len(self.legs) // 2]
        start = leg.start(self.zone)
        if start.microsecond % 1000:
            bounds.unknown("stamps finer than a millisecond: no request can sit on one")
            return

        def serves(lower: datetime, upper: datetime) -> bool:
            page = Page.read(self.client.retrieve(lower, upper, 1, SAMPLE_PAGE))
            self.totals[Window(lower, upper)] = page.total_items
            return leg.uuid in {served.uuid for served in page.legs}

        self.log.info("Asking for windows that begin and end on a leg's start")
        if leg is not self.anchor and not serves(start - SECOND, start + SECOND):
            bounds.unknown("a leg is not served in a window of 2 s around its own start")
            return
        lower = serves(start, start + SECOND)
        upper = serves(start - SECOND, start)
        for window in (Window(start, start + SECOND), Window(start - SECOND, start)):
            self.counts[window] = self.client.count(window.start, window.end)
        name, text = BOUND_VARIANTS[(lower, upper)]
        bounds.found(
            text,
            name,
            f"one leg: served by a window that starts on its start_stamp: "
            f"{'yes' if lower else 'no'}; by one that ends on it: {'yes' if upper else 'no'}",
        )

    # -- page cap --------------------------------------------------------------------

    def check_page_cap(self) -> None:
        assert self.day is not None
        cap = self.f("page_cap")
        asked = max(PAGE_TRY, self.settings.page_size)
        self.log.info("Asking for a page of %d legs", asked)
        try:
            page = Page.read(self.client.retrieve(self.day.start, self.day.end, 1, asked))
        except TeniosAPIError as exc:
            if self.client.last_status != 400:  # noqa: PLR2004
                raise
            self.refused_page(asked, safe_text(str(exc), self.key))
            return
        self.totals[self.day] = page.total_items
        self.note_durations(page.legs)
        expected = min(asked, page.total_items)
        echo = f"page_size echoed: {value_shape(page.page_size_echoed)}"
        if page.items < expected:
            # A cap serves the rest on page 2; legs counted but never listed do not.
            rest = Page.read(self.client.retrieve(self.day.start, self.day.end, 2, asked))
            if rest.items == 0:
                self.unlisted = page.total_items - page.items
                cap.found(
                    f"no cap seen; {self.unlisted} leg(s) counted in total_items are never listed",
                    {
                        "largest_honoured": None,
                        "at_least": page.items,
                        "says_so": None,
                        "unlisted": self.unlisted,
                    },
                    f"asked {asked}: page 1 lists {page.items} of {page.total_items}, page 2 none",
                    echo,
                )
                return
            cap.found(
                f"at most {page.items} legs a page, served silently (no error)",
                {"largest_honoured": page.items, "says_so": False},
                f"asked {asked}, served {page.items} of {page.total_items}; page 2: "
                f"{rest.items} more",
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

    def refused_page(self, asked: int, message: str) -> None:
        """The API refused a page size: narrow down the largest it takes."""
        assert self.day is not None
        tiny = Window(self.day.start, self.day.start + SECOND)
        good, bad = SAMPLE_PAGE, asked

        def accepted(size: int) -> bool:
            try:
                self.client.retrieve(tiny.start, tiny.end, 1, size)
            except TeniosAPIError:
                if self.client.last_status != 400:  # noqa: PLR2004
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
        self.f("page_cap").found(
            f"page_size up to {good} accepted; {bad} and above refused with HTTP 400",
            {"largest_honoured": good, "refused_from": bad, "says_so": True},
            f"asked {asked}: {message}",
        )

    # -- counts ----------------------------------------------------------------------

    def check_counts(self) -> None:
        assert self.sample is not None
        if self.sample not in self.counts:
            self.counts[self.sample] = self.client.count(self.sample.start, self.sample.end)
        pairs = [(w, t, self.counts[w]) for w, t in self.totals.items() if w in self.counts]
        differ = [(w, t, c) for w, t, c in pairs if t != c]
        evidence = [
            f"{human((w.end - w.start).total_seconds())} from {format_request(w.start)}: "
            f"total_items {t}, /cdrs/count {c}"
            for w, t, c in pairs
        ]
        counts = self.f("counts")
        if self.unlisted:
            evidence.append(
                f"both count {self.unlisted} leg(s) of the newest day that no page lists"
            )
        if not pairs:
            counts.unknown("no window was both read and counted")
        elif not differ:
            counts.found(f"equal in all {len(pairs)} windows compared", True, *evidence)
        else:
            counts.found(f"they differ in {len(differ)} of {len(pairs)} windows", False, *evidence)

    def check_count_over_a_day(self) -> None:
        assert self.day is not None
        over = Window(self.day.start - timedelta(hours=1), self.day.end)
        finding = self.f("count_over_a_day")
        try:
            count = self.client.count(over.start, over.end)
        except TeniosAPIError as exc:
            if self.client.last_status != 400:  # noqa: PLR2004
                raise
            finding.found(
                "refused with HTTP 400, as documented (a period of at most one day)",
                "refused",
                f"25 h asked: {safe_text(str(exc), self.key)}",
            )
            return
        extra = self.client.count(over.start, self.day.start)
        if count == self.day_count + extra:
            answer, value = "the whole period is counted", "whole"
        elif count == self.day_count:
            answer, value = "only the last day of the period is counted", "last_day"
        else:
            answer, value = "a number that is neither the whole period nor its last day", "other"
        finding.found(
            answer,
            value,
            f"25 h: {count}; its last 24 h: {self.day_count}; the hour before: {extra}",
        )

    # -- time ------------------------------------------------------------------------

    def check_latency(self) -> None:
        assert self.sample is not None
        latency = self.f("latency")
        if self.zone is None:
            latency.unknown("the stamps' zone is not known")
            return
        ends = [end for leg in self.legs if (end := leg.end(self.zone)) is not None]
        if not ends:
            latency.unknown("no end_stamp readable")
            return
        lag = (self.read_at - max(ends)).total_seconds()
        ahead = sum(end > self.read_at + SECOND for end in ends)
        # The sample holds the newest legs of the newest day with legs (a half
        # without legs is never kept), so its newest end is the account's.
        quiet = (self.now - max(leg.start(self.zone) for leg in self.legs)).total_seconds()
        latency.found(
            f"the newest leg served had ended {human(lag)} before it was read",
            {
                "newest_end_lag_seconds": round(lag, 3),
                "newest_start_seconds_ago": round(quiet, 3),
                "ends_in_the_future": ahead,
            },
            f"{len(ends)} legs read at {format_request(self.read_at)}",
            f"the newest leg started {human(quiet)} before the probe began",
            f"{ahead} leg(s) end after the moment they were read",
            "on a busy line this is about how soon legs appear (on a quiet one, only an "
            "upper bound); --watch shows legs that appear later than that",
        )

    def watch(self) -> None:
        assert self.sample is not None
        finding = self.f("watch")
        if self.watch_minutes <= 0:
            finding.unknown("not watched: run with --watch MINUTES")
            return
        if self.zone is None:
            finding.unknown("the stamps' zone is not known")
            return
        self.log.info("Watching: reading the sample again in %s minutes", self.watch_minutes)
        before = self.totals[self.sample]
        self.client.clock.sleep(self.watch_minutes * 60)
        read_again = self.client.clock.now()
        pages = self.read_window(self.sample)
        after_count = self.client.count(self.sample.start, self.sample.end)
        first = {leg.uuid: leg for leg in self.legs}
        second = {leg.uuid: leg for page in pages for leg in page.legs}
        appeared = [leg for uuid, leg in second.items() if uuid not in first]
        late_ends = [
            (leg, end)
            for leg in appeared
            if (end := leg.end(self.zone)) is not None and end <= self.read_at
        ]
        late = [leg for leg, _ in late_ends]
        late_by = max(((self.read_at - end).total_seconds() for _, end in late_ends), default=0.0)
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
        self.changed = bool(changed)
        for leg in [*late, *changed]:
            self.age_needed = max(self.age_needed, self.read_at - leg.start(self.zone))
        minutes = (read_again - self.read_at).total_seconds() / 60
        parts = [
            f"{len(appeared)} leg(s) appeared ({len(late)} of them had ended before the "
            "first read)",
            f"{len(changed)} changed in place",
        ]
        if vanished:
            parts.append(f"{len(vanished)} vanished")
        evidence = [
            f"the sample read at {format_request(self.read_at)} and again {minutes:.0f} min later",
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

    # -- passive ---------------------------------------------------------------------

    def check_rate_limits(self) -> None:
        answers = self.client.budget.answers
        names: Counter[str] = Counter()
        values: dict[str, set[str]] = {}
        forms: Counter[str] = Counter()
        for seen in answers:
            for name, value in seen.headers.items():
                names[name] += 1
                values.setdefault(name, set()).add(safe_text(value, self.key, from_api=True))
                if name.lower() == "retry-after":
                    forms[retry_after_form(value)] += 1
        throttled = sum(a.status == 429 for a in answers)  # noqa: PLR2004
        finding = self.f("rate_limits")
        evidence = [f"{len(answers)} answers; {throttled} HTTP 429"]
        evidence += [
            f"{name} on {n} answer(s), e.g. {', '.join(sorted(values[name])[:3])}"
            for name, n in names.most_common()
        ]
        if not names and not throttled:
            finding.found(
                "no rate-limit headers and no 429 seen", {"headers": {}, "throttled": 0}, *evidence
            )
            return
        answer = ", ".join(names) if names else "no rate-limit headers"
        if forms:
            answer += "; Retry-After as " + ", ".join(f"{form} ({n})" for form, n in forms.items())
        finding.found(
            answer,
            {"headers": dict(names), "throttled": throttled, "retry_after_forms": dict(forms)},
            *evidence,
        )

    def imply(self) -> None:
        """The settings the findings imply."""
        implied = self.report.implied
        if self.zone is not None:
            stamps = self.f("stamps")
            if stamps.value and stamps.value.get("zone") == "explicit":
                implied.append(
                    Implied(
                        "api_timezone", "UTC", "stamps carry their zone: the setting is not used"
                    )
                )
            else:
                name = (
                    self.zone_name
                    or f"an IANA zone at {offset_text(self.zone.utcoffset(None) or timedelta(0))}"
                )
                implied.append(Implied("api_timezone", name, stamps.answer))
        cap = self.f("page_cap").value
        if isinstance(cap, dict):
            largest = cap.get("largest_honoured")
            if largest is not None and largest < self.settings.page_size:
                implied.append(
                    Implied("page_size", largest, f"the API serves at most {largest} a page")
                )
            else:
                implied.append(
                    Implied("page_size", self.settings.page_size, "served whole at this size")
                )
        if self.legs:
            needed = max(self.longest, self.age_needed)
            minutes = max(
                DEFAULT_LOOKBACK_MINUTES,
                math.ceil(needed.total_seconds() * LOOKBACK_MARGIN / 60),
            )
            why = f"the longest leg seen lasted {human(self.longest.total_seconds())}"
            if self.age_needed:
                why += (
                    f"; legs appeared or changed more than "
                    f"{human(self.age_needed.total_seconds())} after they started"
                )
            implied.append(Implied("lookback_minutes", minutes, why))
        if self.changed is True:
            implied.append(
                Implied(
                    "count-guided lookback",
                    "unsafe",
                    "legs changed in place after they were served: a count does not see that",
                )
            )
        elif self.changed is False:
            implied.append(
                Implied(
                    "count-guided lookback",
                    "safe as far as seen",
                    f"no leg changed in {self.watch_minutes:g} min; watch longer to be surer",
                )
            )
        else:
            implied.append(
                Implied("count-guided lookback", "unknown", "run with --watch MINUTES to find out")
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


def retry_after_form(value: str) -> str:
    """``Retry-After`` in one of its two forms (RFC 9110), or neither."""
    text = value.strip()
    if text.isdigit():
        return "seconds"
    try:
        email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return "other"
    return "HTTP date"
