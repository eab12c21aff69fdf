"""Time windows and timestamp spellings: the pure logic behind both streams.

Nothing here does I/O, so every edge (window bounds, DST days, odd ISO-8601
spellings) is tested directly, without HTTP.

Why the care: the Tenios API documents neither the spelling of the timestamps it
returns nor whether ``start_date_from``/``start_date_to`` are inclusive. The tap
therefore asks for a little more than it needs (``padded``) and keeps exactly the
half-open window it owns, so every leg is emitted by exactly one window whatever
the API does at the edges.

Digits are ASCII only, on every path: regex digit classes and ``str.isdigit`` accept other
scripts' digits (and ``"²"``), which ``int`` may read or reject; a spelling the tap
emits must always parse again when it comes back as a bookmark.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone, tzinfo
from zoneinfo import ZoneInfo

UTC = timezone.utc

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

_TIMESTAMP = re.compile(
    r"""
    (?P<year>\d{4})-(?P<month>\d{2})-(?P<day>\d{2})
    [Tt\ ]
    (?P<hour>\d{2}):(?P<minute>\d{2})
    (?::(?P<second>\d{2})
        (?:[.,:](?P<fraction>\d{1,9}))?   # ':' covers the vendor doc's "00:00:00:000Z"
    )?
    \s*
    (?P<zone>[Zz]|[+-]\d{2}(?::?\d{2})?)?
    """,
    re.VERBOSE | re.ASCII,
)
_DATE_ONLY = re.compile(r"(\d{4})-(\d{2})-(\d{2})", re.ASCII)
_MILLIS = re.compile(r"[0-9]{3}")


class TimestampError(ValueError):
    """A timestamp that is not a valid ISO-8601 date-time."""


def parse_timestamp(value: str, naive_zone: tzinfo = UTC) -> datetime:
    """Read an ISO-8601 date-time in any common spelling as an aware UTC datetime.

    Accepts ``T`` or a space, optional seconds and fraction, ``Z``, an offset, or no
    zone at all, which is read in ``naive_zone`` (never in the machine's local time).
    A local time that a clock change repeats is read as its first occurrence.
    Fractions below a microsecond are truncated: Python cannot hold them.

    ``datetime.fromisoformat`` does the reading (calendar, clock and offset ranges);
    the pattern in front of it keeps out what it would also take but the API never
    sends and a careful reader would not guess at: week and ordinal dates, the basic
    format without separators, any character as the date-time separator, a date
    without a time. It also lets in the spellings Python 3.10's ``fromisoformat``
    does not know (``Z``, short fractions, ``+HHMM``), rewritten into one it does.
    """
    if not isinstance(value, str):
        raise TimestampError(f"expected an ISO-8601 string, got {type(value).__name__}")
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise TimestampError(f"not an ISO-8601 date-time: {value!r}")
    fraction = (match["fraction"] or "")[:6].ljust(6, "0")
    zone = match["zone"]
    offset = ""
    if zone and zone not in ("Z", "z"):
        digits = zone[1:].replace(":", "")
        if digits[2:] > "59":  # ``fromisoformat`` reads "+01:60" as two hours
            raise TimestampError(f"invalid UTC offset in {value!r}")
        offset = f"{zone[0]}{digits[:2]}:{digits[2:] or '00'}"
    elif zone:
        offset = "+00:00"
    spelling = (
        f"{match['year']}-{match['month']}-{match['day']}T{match['hour']}:{match['minute']}:"
        f"{match['second'] or '00'}.{fraction}{offset}"
    )
    try:
        parsed = datetime.fromisoformat(spelling)
    except ValueError as exc:
        raise TimestampError(f"invalid date-time {value!r}: {exc}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=naive_zone)
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 9999-12-31T23:30 in New York is in the year 10000 in UTC
        raise TimestampError(f"{value!r} lies outside the years 1 to 9999 in UTC") from None


def canonical_timestamp(value: str, naive_zone: tzinfo = UTC) -> str:
    """``format_utc(parse_timestamp(value, naive_zone))``, several times faster for
    common spellings.

    The API most likely always uses one spelling, and a busy account sends three
    timestamps per leg, so the usual zone-less (read as UTC) or ``Z`` spellings are
    rewritten by slicing once C ``fromisoformat`` has checked the digits. Anything
    else, such as offsets, odd fractions or zone-less stamps in another zone, takes
    the general path. Both paths accept and refuse exactly the same strings.
    """
    size = len(value)
    if (
        size >= 19  # noqa: PLR2004
        and (naive_zone is UTC or value[-1:] in ("Z", "z"))
        and value[10] in "T "
        and value[4] == "-"
        and value[7] == "-"  # not an ISO week date, which fromisoformat also accepts
        and value[13] == ":"
        and value[16] == ":"
        and (size == 19 or _fast_suffix(value[19:]))  # noqa: PLR2004
    ):
        head = value[:19]
        try:
            datetime.fromisoformat(head)
        except ValueError:
            pass
        else:
            suffix = value[19:]
            millis = suffix[1:4] if len(suffix) >= 4 else "000"  # noqa: PLR2004
            if _MILLIS.fullmatch(millis):
                return f"{head[:10]}T{head[11:]}.{millis}000Z"
    return format_utc(parse_timestamp(value, naive_zone))


def _fast_suffix(suffix: str) -> bool:
    """``Z``, or ``.mmm`` with an optional ``Z``: UTC, at most millisecond precision."""
    return suffix in ("Z", "z") or (
        suffix[:1] == "." and len(suffix) in (4, 5) and suffix[4:] in ("", "Z", "z")
    )


def parse_setting(value: str) -> datetime:
    """Read a ``start_date``/``end_date`` setting: a date or a date-time, UTC if no zone."""
    text = value.strip() if isinstance(value, str) else value
    if isinstance(text, str) and (m := _DATE_ONLY.fullmatch(text)):
        try:
            return datetime(int(m[1]), int(m[2]), int(m[3]), tzinfo=UTC)
        except ValueError as exc:
            raise TimestampError(f"invalid date {value!r}: {exc}") from None
    return parse_timestamp(text)


def format_utc(moment: datetime) -> str:
    """Spell an instant the one way the tap emits it: RFC 3339, UTC, microseconds, ``Z``.

    One fixed-width spelling matters: the SDK compares bookmarks as strings.
    """
    utc = moment.astimezone(UTC) if moment.tzinfo is not UTC else moment
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def format_request(moment: datetime) -> str:
    """Spell an instant as the API's examples do: ``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC."""
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


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
