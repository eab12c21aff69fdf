"""Legs as the API served them, read without trusting them: stamps kept as written
(their zone is one of the questions), their spelling told by shape, never by value.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo
from typing import Any

from tap_tenios.records import UTC, TimestampError, parse_timestamp

#: The parts of a stamp that make its spelling.
_SHAPE = re.compile(
    r"\d{4}-\d{2}-\d{2}(?P<sep>[T ])\d{2}:\d{2}(?P<sec>:\d{2})?"
    r"(?:[.,](?P<frac>\d+))?(?P<zone>Z|[+-]\d{2}:?\d{2})?",
    re.ASCII,
)
STAMPS = ("start_stamp", "answer_stamp", "end_stamp")


def stamp_shape(value: object) -> str:
    """``2024-03-01 12:00:00`` as ``YYYY-MM-DD hh:mm:ss``; an offset shows as written."""
    if not isinstance(value, str):
        return "null" if value is None else f"not a string ({type(value).__name__})"
    match = _SHAPE.fullmatch(value.strip())
    if match is None:
        return f"unreadable ({len(value)} chars)"
    shape = f"YYYY-MM-DD{match['sep']}hh:mm" + (":ss" if match["sec"] else "")
    if match["frac"]:
        shape += "." + "f" * len(match["frac"])
    return shape + (match["zone"] or "")


def has_zone(value: str) -> bool:
    match = _SHAPE.fullmatch(value.strip())
    return bool(match and match["zone"])


@dataclass(frozen=True)
class Served:
    """One item of a page: its uuid, its stamps as written, and its other fields."""

    uuid: str
    start_raw: str
    end_raw: str | None
    fields: dict[str, Any]

    def start(self, zone: tzinfo = UTC) -> datetime:
        return parse_timestamp(self.start_raw, zone)

    def end(self, zone: tzinfo = UTC) -> datetime | None:
        try:
            return parse_timestamp(self.end_raw, zone) if self.end_raw else None
        except TimestampError:
            return None

    @property
    def zoned(self) -> bool:
        return has_zone(self.start_raw)

    def duration(self) -> timedelta | None:
        """How long the leg lasted: its ``duration``, else end minus start."""
        value = self.fields.get("duration")
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return timedelta(seconds=value)
        end = self.end()
        return end - self.start() if end else None


@dataclass
class Page:
    """One answer of /cdrs/retrieve: its legs in the order served, and what was unusable."""

    legs: list[Served]
    total_items: int
    page_size_echoed: object
    items: int
    unusable: int

    @classmethod
    def read(cls, body: dict[str, Any]) -> Page:
        legs: list[Served] = []
        unusable = 0
        items = body.get("items") or []
        for item in items:
            leg = served(item)
            if leg is None:
                unusable += 1
            else:
                legs.append(leg)
        return cls(legs, int(body["total_items"]), body.get("page_size"), len(items), unusable)


def served(item: object) -> Served | None:
    """An item as a ``Served`` leg, or ``None`` when it has no uuid or readable start."""
    if not isinstance(item, dict):
        return None
    uuid, start, end = item.get("uuid"), item.get("start_stamp"), item.get("end_stamp")
    if not isinstance(uuid, str) or not isinstance(start, str):
        return None
    try:
        parse_timestamp(start)
    except TimestampError:
        return None
    return Served(uuid, start, end if isinstance(end, str) else None, dict(item))


def shapes(legs: list[Served]) -> Counter[str]:
    """How the stamps are spelled: shape to number of stamps."""
    return Counter(stamp_shape(leg.fields.get(name)) for leg in legs for name in STAMPS)
