"""The API's answers as the tap reads them: a page of CDRs -> records, a count, a timestamp.

Pure, no I/O. A page is decoded once, in C, with the documented field types
(``decode_page``); such a page (the usual one) leaves only its timestamps' spelling
and its costs' finiteness to check (``page_records``). Any other page takes the
careful path, item by item (``to_record``). What the decoding found is said by the
``CdrPage`` it returns, never by a mark inside the API's data.

The API's field types are undocumented and seen only in public clients, so every
field is read defensively: a value is converted when the conversion is exact and
unambiguous (``"275"`` seconds, a cost given as a string), and anything else is an
error that names the field and the leg's ``uuid``. A wrong value is never emitted
silently: no naive timestamp read as local time, no cost rounded through float.

Timestamps come in whatever spelling the API uses (it documents none) and leave in
one (``format_utc``): the SDK compares bookmarks as strings, so one fixed-width
spelling is what keeps them in order. Digits are ASCII only, on every path: regex
digit classes and ``str.isdigit`` accept other scripts' digits (and ``"²"``), which
``int`` may read or reject; a spelling the tap emits must always parse again when it
comes back as a bookmark.
"""

from __future__ import annotations

import operator
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone, tzinfo
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import TYPE_CHECKING, Any, TypedDict, cast

import msgspec

from tap_tenios.errors import MalformedResponseError

if TYPE_CHECKING:
    from tap_tenios.planner import Window

UTC = timezone.utc

#: A whole number as text: ASCII digits only (``int`` would also read "٣" or "1_0").
_INTEGER_TEXT = re.compile(r"\s*-?[0-9]+\s*", re.ASCII)

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


class RecordError(ValueError):
    """A CDR field the tap cannot read without guessing."""

    def __init__(self, uuid: object, field: str, problem: str) -> None:
        leg = uuid if isinstance(uuid, str) else "<no uuid>"
        super().__init__(f"CDR {leg}: field {field!r} {problem}")
        self.field = field


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)  # a number sent without quotes, e.g. a phone number
    raise TypeError(f"is a {type(value).__name__}, expected a string")


def _integer(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("is a boolean, expected an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.fullmatch(value):
        return int(value)
    raise TypeError(f"is {value!r}, expected an integer")


def _decimal(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("is a boolean, expected a number")
    if isinstance(value, Decimal):
        result = value
    elif isinstance(value, int):
        result = Decimal(value)
    elif isinstance(value, str):
        try:
            result = Decimal(value.strip())
        except InvalidOperation:
            raise TypeError(f"is {value!r}, expected a number") from None
    else:
        # A float has already lost the exact amount: refuse rather than guess.
        raise TypeError(f"is a {type(value).__name__}, expected an exact number")
    if not result.is_finite():
        # Spelled as the Decimal reads it ('Infinity' for 'INf'), as the typed path can only
        # spell it, so that both name a page's refused cost alike.
        raise TypeError(f"is {str(result)!r}, expected a finite number")
    return result


def decimal_string(value: Decimal, precision: int, scale: int) -> str:
    """``value``'s exact digits as text, if ``DECIMAL(precision, scale)`` holds it exactly.

    The warehouse would round a longer fraction and reject a longer integer part; the
    tap refuses both first, so the string form is never less exact than the number.
    """
    if value.adjusted() >= precision - scale:
        raise TypeError(f"is {value}, which has more than {precision - scale} integer digits")
    if value != round(value, scale):
        raise TypeError(f"is {value}, which has more than {scale} decimals")
    return format(value, "f")


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    raise TypeError(f"is {value!r}, expected true or false")


def _timestamp(value: Any, zone: tzinfo = UTC) -> str:
    if not isinstance(value, str):
        raise TypeError(f"is a {type(value).__name__}, expected an ISO-8601 string")
    try:
        return canonical_timestamp(value, zone)
    except TimestampError as exc:
        raise TypeError(str(exc)) from None


#: field -> (converter, nullable). Nullable exactly where the vendor's doc says so.
FIELDS: dict[str, tuple[Callable[[Any], Any], bool]] = {
    "uuid": (_text, False),
    "main_leg_uuid": (_text, True),
    "bleg_uuid": (_text, True),
    "call_type": (_text, False),
    "start_stamp": (_timestamp, False),
    "answer_stamp": (_timestamp, True),
    "end_stamp": (_timestamp, False),
    "duration": (_integer, False),
    "billusec": (_integer, False),
    "cost": (_decimal, False),
    "prepaid": (_boolean, False),
    "hangup_cause": (_text, False),
    "callerid_number": (_text, False),
    "callerid_name": (_text, True),
    "destination_number": (_text, False),
    "source_type": (_text, False),
    "routing_status": (_text, True),
    "billing_status": (_text, True),
}


def to_record(item: Any, zone: tzinfo = UTC) -> dict[str, Any]:
    """The emitted record for one API item, converted field by field; unknown fields
    are dropped. Zone-less timestamps are read in ``zone`` (the ``api_timezone``
    setting).

    The careful path, for pages that did not decode with the documented types: each
    value is converted exactly, or the error names the field and the leg.
    """
    if not isinstance(item, dict):
        raise RecordError(None, "items[]", f"is a {type(item).__name__}, expected an object")
    uuid = item.get("uuid")
    record: dict[str, Any] = {}
    for name, (convert, nullable) in FIELDS.items():
        value = item.get(name)
        if value is None:
            if not nullable:
                problem = "is missing" if name not in item else "is null"
                raise RecordError(uuid, name, problem + ", but the API documents a value")
            record[name] = None
            continue
        try:
            record[name] = _timestamp(value, zone) if convert is _timestamp else convert(value)
        except TypeError as exc:
            raise RecordError(uuid, name, str(exc)) from None
    return record


#: How far a leg may seem to start after the tap's "now": clocks disagree a little.
CLOCK_SKEW = timedelta(minutes=5)


_START = operator.itemgetter("start_stamp")


def misplaced_stamps(
    records: Sequence[dict[str, Any]], asked: Window, now: datetime, zone: str
) -> str | None:
    """Why the legs an API request returned cannot be stamped right, if they cannot.

    The API filters on its own instants, so every leg it returns for ``asked``
    (bounds inclusive or not) starts inside it, and none starts in the future. Legs
    outside it mean the tap reads the API's zone-less stamps in the wrong zone: an
    hour's shift would otherwise pass unseen until a count disagrees.
    """
    lower, upper = format_utc(asked.start), format_utc(asked.end)
    latest = format_utc(now + CLOCK_SKEW)
    starts = list(map(_START, records))
    if not starts or (lower <= min(starts) and max(starts) <= min(upper, latest)):
        return None  # the usual answer, found in C
    outside = [r for r in records if not lower <= r["start_stamp"] <= upper]
    future = [r for r in records if r["start_stamp"] > latest]
    if not outside and not future:
        return None
    if future:
        first = max(future, key=lambda r: r["start_stamp"])
        what = (
            f"{len(future)} leg(s) start later than now ({format_request(now)}), "
            f"e.g. {first['uuid']} at {first['start_stamp']}"
        )
    else:
        first = outside[0]
        what = (
            f"{len(outside)} leg(s) start outside the range asked for "
            f"[{format_request(asked.start)}, {format_request(asked.end)}], "
            f"e.g. {first['uuid']} at {first['start_stamp']}"
        )
    return (
        f"{what}, reading stamps without a zone as {zone}: the API's stamps look like "
        f"another time zone's local time. Set api_timezone to the zone the API writes "
        f"its timestamps in."
    )


class _Cdr(TypedDict):
    """A CDR with exactly the documented types: what a sane page holds."""

    uuid: str
    main_leg_uuid: str | None
    bleg_uuid: str | None
    call_type: str
    start_stamp: str
    answer_stamp: str | None
    end_stamp: str
    duration: int
    billusec: int
    cost: Decimal
    prepaid: bool
    hangup_cause: str
    callerid_number: str
    callerid_name: str | None
    destination_number: str
    source_type: str
    routing_status: str | None
    billing_status: str | None


class _Page(TypedDict):
    items: list[_Cdr]
    total_items: int


#: Decodes, in C, a /cdrs/retrieve page whose items all have the documented types
#: (unknown fields dropped); any other page fails to decode and takes the careful
#: path (``to_record``), which converts exactly or names the field.
TYPED_PAGE = msgspec.json.Decoder(_Page)

#: A list of zone-less whole-second stamps, one per line: the API's usual spelling.
_WHOLE_SECONDS = re.compile(
    r"(?:[0-9]{4}-[0-9]{2}-[0-9]{2}[T ](?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]\n)*",
    re.ASCII,
)


def canonical_stamps(values: list[str], zone: tzinfo = UTC) -> list[str]:
    """``canonical_timestamp`` of each value. Zone-less whole seconds read as UTC (the
    API's usual spelling) are checked and rewritten for the whole list at once, in C:
    one regular expression, each distinct date checked once, two replacements.
    """
    if zone is UTC and values:
        joined = "\n".join(values) + "\n"
        if _WHOLE_SECONDS.fullmatch(joined):
            try:
                for day in {value[:10] for value in values}:
                    datetime.fromisoformat(day)  # the month has that day
            except ValueError:
                pass
            else:
                spelled = joined.replace(" ", "T").replace("\n", ".000000Z\n")
                return spelled.split("\n")[:-1]
    return [canonical_timestamp(value, zone) for value in values]


_COST = operator.itemgetter("cost")


def typed_records(items: list[dict[str, Any]], zone: tzinfo = UTC) -> list[dict[str, Any]]:
    """Records from items decoded with their documented types (``TYPED_PAGE``): only
    the stamps' spelling and the cost's finiteness are left to check.
    """
    answered = [item for item in items if item["answer_stamp"] is not None]
    for name, group in (("start_stamp", items), ("end_stamp", items), ("answer_stamp", answered)):
        try:
            stamps = canonical_stamps(list(map(operator.itemgetter(name), group)), zone)
        except TimestampError:
            return [to_record(item, zone) for item in items]  # names the field and leg
        # Written back in C (``dict.__setitem__`` mapped over the page): a Python loop
        # here cost more than the rewriting itself.
        deque(map(dict.__setitem__, group, repeat(name), stamps), maxlen=0)
    if not all(map(Decimal.is_finite, map(_COST, items))):
        for item in items:
            if not item["cost"].is_finite():
                # Only a JSON string decodes to NaN or Infinity: quoted as the Decimal reads it.
                raise RecordError(
                    item["uuid"], "cost", f"is {str(item['cost'])!r}, expected a finite number"
                )
    return items


@dataclass(frozen=True)
class CdrPage:
    """A decoded ``/cdrs/retrieve`` page: its items, its ``total_items``, and whether
    every item came with the documented types (``typed``: decoded by ``TYPED_PAGE``).

    ``typed`` is the decoder's finding, kept beside the API's data, never in it: a body
    that itself carries a ``"typed"`` key changes nothing.
    """

    items: list[dict[str, Any]]
    total: int
    typed: bool


#: Numbers with a fraction or exponent become ``Decimal`` from their exact text.
_LOOSE = msgspec.json.Decoder(float_hook=Decimal)


def decode_object(content: bytes, required: tuple[str, ...]) -> dict[str, Any]:
    """A body as it comes: a JSON object with exact decimals holding ``required``
    (``total_items``, if required, a count), or ``MalformedResponseError`` saying why not.
    """
    try:
        body = _LOOSE.decode(content)
    except (ValueError, RecursionError) as exc:  # msgspec.DecodeError, UnicodeDecodeError
        raise MalformedResponseError(f"body is not valid JSON ({type(exc).__name__})") from None
    if not isinstance(body, dict):
        raise MalformedResponseError(f"body is a JSON {type(body).__name__}, expected an object")
    for key in required:
        if key not in body:
            raise MalformedResponseError(f"body lacks {key!r}")
    total = body.get("total_items")
    if "total_items" in required and (
        isinstance(total, bool) or not isinstance(total, int) or total < 0
    ):
        raise MalformedResponseError(f"'total_items' is {total!r}, expected a count")
    return body


def decode_page(content: bytes) -> CdrPage:
    """A ``/cdrs/retrieve`` body as a page: decoded with the documented types when every
    item has them, else as it comes (``to_record`` then converts it item by item).

    Raises ``MalformedResponseError`` for a body that is not such a page (retried).
    """
    try:
        typed = TYPED_PAGE.decode(content)
    except (ValueError, RecursionError):
        pass
    else:
        if typed["total_items"] >= 0:  # else the loose decoding names the problem
            items = cast("list[dict[str, Any]]", typed["items"])
            return CdrPage(items, typed["total_items"], typed=True)
    body = decode_object(content, ("items", "total_items"))
    if not isinstance(body["items"], list):
        raise MalformedResponseError("'items' is not a list")
    return CdrPage(body["items"], body["total_items"], typed=False)


def decode_count(content: bytes) -> int:
    """A ``/cdrs/count`` body's ``total_items``; ``MalformedResponseError`` if it has none."""
    return int(decode_object(content, ("total_items",))["total_items"])


def page_records(items: list[Any], typed: bool, zone: tzinfo = UTC) -> list[dict[str, Any]]:
    """The records of items read from pages: the typed path when every page was
    ``typed``, else the careful one. Both give the same records; only speed differs.
    """
    if typed:
        return typed_records(items, zone)
    return [to_record(item, zone) for item in items]
