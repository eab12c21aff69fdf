"""What a run reads and how the ``cdrs`` stream cuts it into windows: decisions, no I/O.

Nothing here does I/O, so every decision and every edge (window bounds, DST days,
whatever counts the API gives) is tested directly, without HTTP.

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

With ``lookback_mode`` ``on_count_change`` the lookback is checked before it is
read: each part of a UTC day that an earlier run read whole (``PartRead``, kept in
state) is counted again over exactly that part, and only a part whose count differs
from the legs emitted from it is read again (``worth_checking``, ``spans_to_read``,
``Ledger``).

Edges fall on whole seconds (the API's timestamps are FreeSWITCH stamps, and a
request is padded by ``EDGE_PADDING`` anyway), and never closer than ``MIN_PART``.

Why windows are half-open and requests padded: the Tenios API does not document
whether ``start_date_from``/``start_date_to`` are inclusive. The tap therefore asks
for a little more than it needs (``Window.padded``) and keeps exactly the half-open
window it owns, so every leg is emitted by exactly one window whatever the API does
at the edges.
"""

from __future__ import annotations

import bisect
import itertools
import math
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from tap_tenios.records import (
    CLOCK_SKEW,
    UTC,
    TimestampError,
    format_request,
    format_utc,
    parse_setting,
    parse_timestamp,
)
from tap_tenios.settings import Settings

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


#: How far each ``/cdrs/retrieve`` request reaches past the window it serves, on both
#: sides. Any width > 0 makes the bounds' inclusiveness irrelevant; one second also
#: covers an API that truncates request instants to whole seconds.
EDGE_PADDING = timedelta(seconds=1)

#: ``/cdrs/count`` cannot be filtered client-side, so its requests are shifted one
#: millisecond earlier: ``[a - 1ms, b - 1ms]`` selects exactly ``[a, b)`` for an API
#: whose CDR timestamps have whole-second precision (they are FreeSWITCH stamps),
#: whichever bounds the API treats as inclusive.
COUNT_SHIFT = timedelta(milliseconds=1)

#: The API's documented maximum period for ``/cdrs/count``.
MAX_COUNT_PERIOD = timedelta(days=1)


@dataclass(frozen=True)
class Window:
    """A half-open interval ``[start, end)`` of call start instants."""

    start: datetime
    end: datetime

    def padded(self) -> Window:
        """The range requested from the API: this window plus ``EDGE_PADDING`` each side."""
        return Window(self.start - EDGE_PADDING, self.end + EDGE_PADDING)

    def describe(self) -> str:
        """The window as shown in logs and error messages."""
        return f"[{format_request(self.start)}, {format_request(self.end)})"

    def count_requests(self) -> list[tuple[datetime, datetime]]:
        """The ``/cdrs/count`` periods whose sum is this window's count.

        The API refuses periods over one day, so a longer window (a 25-hour local day,
        say) is asked for in pieces that meet without overlap. Each piece is shifted
        by ``COUNT_SHIFT`` (see there).
        """
        pieces = iter_windows(self.start, self.end, MAX_COUNT_PERIOD)
        return [(p.start - COUNT_SHIFT, p.end - COUNT_SHIFT) for p in pieces]


def count_bounds(stamps: list[str], periods: list[tuple[datetime, datetime]]) -> tuple[int, int]:
    """The fewest and the most of ``stamps`` that ``/cdrs/count`` over ``periods`` can count.

    ``stamps`` are start instants as ``format_utc`` spells them. Which bounds the API
    includes is unknown: a leg exactly on a bound may be counted or not. With
    whole-second stamps no leg lies on a bound shifted by ``COUNT_SHIFT``, and the
    two numbers agree; with finer stamps (milliseconds, say) a leg at ``.999`` does,
    and a right count is anywhere between them.
    """
    fewest = most = 0
    for lower, upper in periods:
        # The instants as the API reads them: requests carry milliseconds.
        low = format_utc(parse_timestamp(format_request(lower)))
        high = format_utc(parse_timestamp(format_request(upper)))
        for stamp in stamps:
            if low < stamp < high:
                fewest += 1
                most += 1
            elif stamp in (low, high):
                most += 1
    return fewest, most


def iter_windows(
    start: datetime, end: datetime, size: timedelta, anchor: datetime | None = None
) -> Iterator[Window]:
    """Split ``[start, end)`` into consecutive windows of at most ``size``, ascending.

    With an ``anchor``, window edges fall on ``anchor + k * size`` (the first window may
    be shorter), so runs that resume from different instants still share one grid.
    """
    if size <= timedelta(0):
        raise ValueError("window size must be positive")
    cursor = start
    while cursor < end:
        upper = cursor + size
        if anchor is not None:
            upper = anchor + ((cursor - anchor) // size + 1) * size
        upper = min(upper, end)
        yield Window(cursor, upper)
        cursor = upper


@dataclass(frozen=True)
class LocalDay:
    """One calendar day in a time zone, as the UTC instants that bound it."""

    day: date
    window: Window


def local_days(first: date, last: date, tz: ZoneInfo) -> Iterator[LocalDay]:
    """Every calendar day from ``first`` to ``last`` (inclusive) in ``tz``, ascending."""
    day = first
    while day <= last:
        following = day + timedelta(days=1)
        start = datetime(day.year, day.month, day.day, tzinfo=tz).astimezone(UTC)
        end = datetime(following.year, following.month, following.day, tzinfo=tz).astimezone(UTC)
        yield LocalDay(day, Window(start, end))
        day = following


def local_date(moment: datetime, tz: ZoneInfo) -> date:
    """The calendar date of an instant in ``tz``."""
    return moment.astimezone(tz).date()


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


def top_windows(
    settings: Settings, begin: datetime, end: datetime, spans: Sequence[Window] | None = None
) -> Iterator[Window]:
    """The windows a ``cdrs`` run starts from, ascending, on the grid of ``start_date``.

    They cover ``spans`` (ascending parts of ``[begin, end)``; by default all of it).
    None straddles the start of the settling range (the lookback of the run's end),
    so a window either is re-read by the next run or is not.
    """
    settling = min(max(begin, end - settings.lookback), end)
    for span in spans if spans is not None else [Window(begin, end)]:
        for lower, upper in (
            (span.start, min(span.end, settling)),
            (max(span.start, settling), span.end),
        ):
            yield from iter_windows(lower, upper, settings.window, settings.start)


_DAY = timedelta(days=1)


def utc_day(moment: datetime) -> Window:
    """The UTC calendar day ``moment`` lies in: one ``/cdrs/count`` request long."""
    day = moment.astimezone(UTC).date()
    start = datetime(day.year, day.month, day.day, tzinfo=UTC)
    return Window(start, start + _DAY)


@dataclass(frozen=True)
class PartRead:
    """A part of one UTC day that a run read whole, and how many legs it emitted from it.

    ``lookback_mode`` ``on_count_change`` keeps these in state for the lookback's days:
    a later run counts the same part again and reads it only if the count differs
    from ``legs``. A part lies within one UTC day, so one count request covers it.
    """

    window: Window
    legs: int

    @property
    def day(self) -> Window:
        return utc_day(self.window.start)

    def to_state(self) -> dict[str, Any]:
        return {
            "from": format_utc(self.window.start),
            "to": format_utc(self.window.end),
            "legs": self.legs,
        }

    @classmethod
    def from_state(cls, value: object) -> PartRead | None:
        """An entry of saved state, or ``None`` if it is not one the tap wrote (then
        its part is read again, which is always safe).
        """
        if not isinstance(value, dict):
            return None
        legs = value.get("legs")
        if isinstance(legs, bool) or not isinstance(legs, int) or legs < 0:
            return None
        try:
            start, end = parse_setting(value["from"]), parse_setting(value["to"])
        except (KeyError, TimestampError, TypeError, AttributeError):
            return None
        if not start < end <= utc_day(start).end:
            return None
        return cls(Window(start, end), legs)


def parts_read_from_state(value: object) -> list[PartRead]:
    """The saved ``PartRead`` entries, ascending; malformed or overlapping ones dropped."""
    parts = [
        p for raw in (value if isinstance(value, list) else []) if (p := PartRead.from_state(raw))
    ]
    kept: list[PartRead] = []
    for part in sorted(parts, key=lambda p: p.window.start):
        if not kept or kept[-1].window.end <= part.window.start:
            kept.append(part)
    return kept


def worth_checking(saved: Sequence[PartRead], begin: datetime, end: datetime) -> list[PartRead]:
    """The saved parts whose recount could spare a read in ``[begin, end)``: those
    that reach into it. A part that begins before ``begin`` is counted whole: equal,
    the part of it in the range is skipped; different, only that part is read.
    """
    return [p for p in saved if p.window.start < end and p.window.end > begin]


def spans_to_read(begin: datetime, end: datetime, confirmed: Sequence[PartRead]) -> list[Window]:
    """``[begin, end)`` less the parts ``confirmed`` unchanged by their recount, ascending."""
    spans: list[Window] = []
    cursor = begin
    for part in sorted(confirmed, key=lambda p: p.window.start):
        lower, upper = max(part.window.start, begin), min(part.window.end, end)
        if lower >= upper:
            continue
        if cursor < lower:
            spans.append(Window(cursor, lower))
        cursor = max(cursor, upper)
    if cursor < end:
        spans.append(Window(cursor, end))
    return spans


#: The most parts kept per day. Each run's reads make a part of their own, so the
#: last hours, where late legs land (calls still going at a run's end), are checked,
#: and read again, apart from the rest of the day; older parts are merged.
PARTS_PER_DAY = 4


class Ledger:
    """The parts of days read whole so far, as the next run may check them.

    Starts from the parts confirmed unchanged by their recount; every window read is
    added in order (``add``). This run's reads extend the part it last added while
    they continue it within the day, so each run adds one part per day it reads on
    (more where it skips a confirmed part). ``entries`` is true of whatever has been
    emitted: the caller saves it only where its records are out.
    """

    def __init__(self, confirmed: Sequence[PartRead] = ()) -> None:
        self.parts: dict[datetime, PartRead] = {p.window.start: p for p in confirmed}
        self._open: PartRead | None = None

    def add(self, window: Window, stamps: Sequence[str]) -> None:
        """``window`` read whole; ``stamps``: its legs' ``start_stamp``, sorted."""
        cursor = window.start
        while cursor < window.end:
            day = utc_day(cursor)
            upper = min(day.end, window.end)
            legs = bisect.bisect_left(stamps, format_utc(upper)) - bisect.bisect_left(
                stamps, format_utc(cursor)
            )
            part = PartRead(Window(cursor, upper), legs)
            last = self._open
            if last is not None and last.window.end == cursor and last.day == day:
                if self.parts.get(last.window.start) == last:
                    part = PartRead(Window(last.window.start, upper), last.legs + legs)
            self.parts[part.window.start] = self._open = part
            cursor = upper

    def entries(self, settings: Settings, bookmark: str | None) -> list[PartRead]:
        """The parts a later run may use, ascending: those of the days of the lookback
        of ``bookmark`` (where every later run starts), of no more days than the
        lookback spans, at most ``PARTS_PER_DAY`` a day (the earliest merged). The
        ledger keeps no more than that either.
        """
        floor = parse_setting(bookmark) - settings.lookback if bookmark else None
        days: dict[datetime, list[PartRead]] = {}
        for part in sorted(self.parts.values(), key=lambda p: p.window.start):
            if floor is None or part.window.end > floor:
                days.setdefault(part.day.start, []).append(part)
        kept: list[PartRead] = []
        for day in sorted(days)[-(math.ceil(settings.lookback / _DAY) + 2) :]:
            parts = days[day]
            while len(parts) > PARTS_PER_DAY:
                first, second, *rest = parts
                if first.window.end == second.window.start:
                    merged = PartRead(
                        Window(first.window.start, second.window.end), first.legs + second.legs
                    )
                    parts = [merged, *rest]
                else:
                    parts = [second, *rest]
            kept += parts
        self.parts = {p.window.start: p for p in kept}
        return kept


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
