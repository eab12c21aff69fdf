"""What a run reads and how the ``cdrs`` stream cuts it into reads: decisions, no I/O.

Each run reads from its saved bookmark, less the lookback (never before
``start_date``), to ``end_date`` or now (``cdrs_range``, ``count_days``), after
checking that the bookmark can be trusted (``bookmark_problem``).

The API tells, on page 1 of every ``/cdrs/retrieve``, how many legs the whole
request holds (``total_items``). The planner uses that instead of a fixed window:

* A window is first asked for whole. If all its legs are on page 1, that one
  request is the read: one query, which cannot disagree with itself. So a quiet
  range costs one request however long it is.
* If they are not, the window is cut into equal parts, as many as its count says
  are needed for each to fit one page with room to spare (``FILL``), and each part
  is read the same way. A busy day becomes as many parts as it needs; no part is
  read in pages that could shift between queries.
* A part narrower than ``2 * MIN_PART`` cannot be cut: more legs start within a
  second or two of it than a page holds. Only such a part is read page by page,
  keeping every leg seen across reads until the distinct legs reach the count.

Edges fall on whole seconds (the API's timestamps are FreeSWITCH stamps, and a
request is padded by ``EDGE_PADDING`` anyway), and never closer than ``MIN_PART``.
"""

from __future__ import annotations

import itertools
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from tap_tenios.records import CLOCK_SKEW
from tap_tenios.settings import Settings
from tap_tenios.windows import (
    LocalDay,
    TimestampError,
    Window,
    format_request,
    iter_windows,
    local_date,
    local_days,
    parse_setting,
)

#: Parts are planned to hold this share of a page, so that the spread of a count
#: over a part (busier hours, chance) rarely pushes one past a page.
FILL = 0.8

#: The narrowest part the planner cuts; narrower parts would not hold fewer legs,
#: since every request reaches ``EDGE_PADDING`` (a second) past both edges.
MIN_PART = timedelta(seconds=1)

#: The most parts one window is cut into at once: a very busy window is cut into
#: this many, each cut again as its own count says. Keeps the list of parts waiting
#: to be read short (it is walked after every read).
MAX_PARTS = 512

#: The most legs a part that cannot be cut may hold (it is held whole in memory).
MAX_WINDOW_LEGS = 100_000

#: How far a recount of the same legs may exceed the first count: this many times
#: it, plus ``RECOUNT_MARGIN`` (see ``plausible_recount``).
RECOUNT_SLACK = 4
RECOUNT_MARGIN = 100

_SECOND = timedelta(seconds=1)


@dataclass(frozen=True)
class Page:
    """What page 1 of a read said: legs listed, legs counted (``total_items``)."""

    listed: int
    total: int


class PageSize:
    """The page size the API really serves, learned from its answers.

    An API may serve fewer items than asked while echoing the ``page_size`` asked
    for. A page 1 that lists fewer legs than asked, but counts more, shows such a cap
    (or legs it counts but never lists, which is found out later). Once a page as
    long as asked has been seen there is no cap below it, and short pages say
    nothing more about the size. Shared by the threads reading parts.
    """

    def __init__(self, asked: int) -> None:
        self.asked = asked
        self._cap: int | None = None
        self._confirmed = False
        self._lock = threading.Lock()

    @property
    def capacity(self) -> int:
        """Legs one page is believed to hold."""
        with self._lock:
            return self.asked if self._cap is None else self._cap

    @property
    def capped(self) -> bool:
        """Whether the API was seen serving less than asked."""
        with self._lock:
            return self._cap is not None

    def observe(self, page: Page) -> None:
        with self._lock:
            if page.listed >= self.asked:
                self._confirmed, self._cap = True, None
            elif not self._confirmed and 0 < page.listed < page.total:
                self._cap = max(self._cap or 0, page.listed)


def fits(page: Page, capacity: int) -> bool:
    """Whether page 1 was the whole read (or should have been: the count fits a page)."""
    return page.total <= max(page.listed, capacity)


def plausible_recount(first: int, recount: int) -> bool:
    """Whether the API may count ``recount`` legs where it first counted ``first``.

    Used where the API counts the same legs again: the parts of a window between
    them (each part's request reaches a second past both edges, so narrow parts
    count their neighbours too: up to four times), or a later page of a paged read
    (legs landing meanwhile). Counts beyond that do not follow the requested dates,
    or are made up, and would make the planner cut, or page, without end.
    """
    return recount <= RECOUNT_SLACK * first + RECOUNT_MARGIN


def can_split(window: Window) -> bool:
    """Whether ``window`` can be cut into parts of at least ``MIN_PART``."""
    return _cut_span(window) is not None


def split(window: Window, total: int, capacity: int) -> list[Window]:
    """Cut ``window`` into equal parts, each expected to hold ``FILL`` of a page.

    At least two parts, cut on whole seconds, none narrower than ``MIN_PART``. The
    legs are assumed spread evenly: a part that turns out busier is cut again.
    """
    span = _cut_span(window)
    if span is None:
        raise ValueError(f"window {window.describe()} is too narrow to split")
    first, last = span
    available = int((last - first) / _SECOND) + 1
    wanted = max(2, math.ceil(total / max(1.0, capacity * FILL)))
    parts = min(wanted, available + 1, MAX_PARTS)
    width = (window.end - window.start) / parts
    cuts: list[datetime] = []
    for i in range(1, parts):
        lowest = cuts[-1] + MIN_PART if cuts else first
        cut = max(_floor_second(window.start + width * i), lowest)
        if cut > last:
            break
        cuts.append(cut)
    bounds = [window.start, *cuts, window.end]
    return [Window(a, b) for a, b in itertools.pairwise(bounds)]


def _floor_second(moment: datetime) -> datetime:
    return moment.replace(microsecond=0)


def _cut_span(window: Window) -> tuple[datetime, datetime] | None:
    """The first and last whole seconds at least ``MIN_PART`` inside both edges."""
    first = _floor_second(window.start + MIN_PART)
    if first < window.start + MIN_PART:
        first += _SECOND
    last = _floor_second(window.end - MIN_PART)
    return (first, last) if first <= last else None


def bookmark_problem(stream: str, value: object, now: datetime) -> str | None:
    """Why a saved bookmark cannot be trusted, if it cannot: it does not parse, or it
    lies in the future.

    A run from a future bookmark reads nothing and exits 0, every time, until the
    clock catches up: years of silently empty runs. A date-only bookmark names a
    local calendar day, which may begin up to a day ahead of UTC.
    """
    if value is None or value == "":
        return None
    advice = (
        f"clear the saved state of stream {stream!r} to start again from start_date "
        "(`meltano state clear <state id>`), or save a bookmark it can read "
        "(`meltano state set <state id> '<state>'`)."
    )
    try:
        moment = parse_setting(value)  # type: ignore[arg-type]
    except (TimestampError, TypeError):
        return (
            f"The saved state of stream {stream!r} holds bookmark {value!r}, which "
            f"is not a date-time: {advice}"
        )
    slack = timedelta(days=1) if len(str(value).strip()) == 10 else CLOCK_SKEW  # noqa: PLR2004
    if moment > now + slack:
        return (
            f"The saved state of stream {stream!r} holds bookmark {value!r}, later "
            f"than now ({format_request(now)}): runs from it would read nothing. Fix the "
            f"clock, or {advice}"
        )
    return None


def cdrs_range(
    settings: Settings, bookmark: str | None, now: datetime
) -> tuple[datetime, datetime]:
    """From (bookmark - lookback), never before ``start_date``, to ``end_date``/now."""
    begin = settings.start
    if bookmark:
        begin = max(begin, parse_setting(bookmark) - settings.lookback)
    return begin, settings.run_end(now)


def top_windows(settings: Settings, begin: datetime, end: datetime) -> Iterator[Window]:
    """The windows a ``cdrs`` run starts from, ascending, on the grid of ``start_date``.

    None straddles the start of the settling range (the lookback of the run's end),
    so a window either is re-read by the next run or is not.
    """
    settling = min(max(begin, end - settings.lookback), end)
    for lower, upper in ((begin, settling), (settling, end)):
        yield from iter_windows(lower, upper, settings.window, settings.start)


@dataclass(frozen=True)
class CountedDay:
    """A local day as ``cdr_counts`` counts it: the day, and the part of it counted."""

    day: LocalDay
    counted: Window

    @property
    def date(self) -> str:
        """The local date, ``YYYY-MM-DD``."""
        return self.day.day.isoformat()

    @property
    def whole(self) -> bool:
        return self.counted == self.day.window


def count_days(settings: Settings, bookmark: str | None, now: datetime) -> list[CountedDay]:
    """The local days a ``cdr_counts`` run counts: from ``start_date``'s day, or as
    many days before the bookmark as the lookback spans, to the run's end.

    Each day is counted over the part of it that ``cdrs`` extracts: from
    ``start_date`` where the extraction begins within the day, to ``end_date`` or now
    where it ends within the day. A count over the whole local day would include
    calls outside the extracted range (every real account has calls before and after
    any range), and those days would never reconcile with the loaded legs.
    """
    zone = settings.timezone
    end = settings.run_end(now)
    first = local_date(settings.start, zone)
    if bookmark:
        recount = math.ceil(settings.lookback / timedelta(days=1))
        first = max(first, parse_setting(bookmark).date() - timedelta(days=recount))
    last = local_date(end - timedelta(microseconds=1), zone)
    return [
        CountedDay(day, Window(max(day.window.start, settings.start), min(day.window.end, end)))
        for day in local_days(first, last, zone)
    ]
