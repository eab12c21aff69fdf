"""Deterministic synthetic CDRs: the same seed and range always give the same legs.

Legs look like the real thing: an inbound leg (PSTN or browser) per call, and for
answered-by-forwarding calls one or two forwarded legs linked through
``main_leg_uuid``/``bleg_uuid``; answered and unanswered calls; costs with 4-6
decimals. Timestamps have whole-second precision, as FreeSWITCH writes them.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

UTC = timezone.utc

CALL_TYPES_IN = ("INBOUND", "INBOUND", "INBOUND", "WEBRTCINBOUND")
CALL_TYPES_OUT = ("FORWARD", "FORWARD", "SIPFORWARD_USER", "SIPFORWARD_PRFL")
UNANSWERED_CAUSES = ("NO_ANSWER", "USER_BUSY", "ORIGINATOR_CANCEL", "CALL_REJECTED")


@dataclass
class Leg:
    """One call leg. ``visible_at``: the instant the API starts returning it (its end)."""

    uuid: str
    start: datetime
    visible_at: datetime
    fields: dict[str, object]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _cost(rng: random.Random, seconds: int, rate_per_min: Decimal) -> Decimal:
    places = rng.choice((4, 5, 6))
    raw = rate_per_min * Decimal(seconds) / Decimal(60)
    return raw.quantize(Decimal(1).scaleb(-places))


def _number(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789") for _ in range(8))


def make_call(rng: random.Random, start: datetime) -> list[Leg]:
    """One customer call: its inbound leg and any forwarded legs."""
    inbound_uuid = _uuid(rng)
    call_type = rng.choice(CALL_TYPES_IN)
    ring = rng.randint(2, 25)
    answered = rng.random() < 0.72  # noqa: PLR2004
    talk = rng.randint(5, 900) if answered else 0
    end = start + timedelta(seconds=ring + talk)
    forwarded = answered and rng.random() < 0.6  # noqa: PLR2004
    service_number = "+49" + rng.choice(("800", "180", "30", "89")) + "5550100"
    caller = "anonymous" if rng.random() < 0.05 else _number(rng, "+4915")  # noqa: PLR2004

    out_legs: list[Leg] = []
    if forwarded:
        for attempt in range(rng.choice((1, 1, 2))):
            leg_start = start + timedelta(seconds=1 + attempt * 3)
            leg_answered = attempt == 0 or rng.random() < 0.5  # noqa: PLR2004
            leg_talk = talk if leg_answered else 0
            leg_end = leg_start + timedelta(seconds=max(ring - 1, 1) + leg_talk)
            out_type = rng.choice(CALL_TYPES_OUT)
            out_uuid = _uuid(rng)
            out_legs.append(
                Leg(
                    out_uuid,
                    leg_start,
                    leg_end,
                    {
                        "uuid": out_uuid,
                        "main_leg_uuid": inbound_uuid,
                        "bleg_uuid": inbound_uuid,
                        "call_type": out_type,
                        "start_stamp": leg_start,
                        "answer_stamp": leg_start + timedelta(seconds=ring - 1)
                        if leg_answered
                        else None,
                        "end_stamp": leg_end,
                        "duration": int((leg_end - leg_start).total_seconds()),
                        "billusec": leg_talk * 1_000_000,
                        "cost": _cost(rng, leg_talk, Decimal("0.0390")),
                        "prepaid": False,
                        "hangup_cause": "NORMAL_CLEARING" if leg_answered else "NO_ANSWER",
                        "callerid_number": caller,
                        "callerid_name": "Support" if out_type.startswith("SIP") else None,
                        "destination_number": _number(rng, "+4930"),
                        "source_type": "FIXED_LINE",
                        "routing_status": None,
                        "billing_status": None,
                    },
                )
            )
    inbound = Leg(
        inbound_uuid,
        start,
        end,
        {
            "uuid": inbound_uuid,
            "main_leg_uuid": None,
            "bleg_uuid": out_legs[0].uuid if out_legs else None,
            "call_type": call_type,
            "start_stamp": start,
            "answer_stamp": start + timedelta(seconds=ring) if answered else None,
            "end_stamp": end,
            "duration": ring + talk,
            "billusec": talk * 1_000_000,
            "cost": _cost(rng, talk, Decimal("0.0120")),
            "prepaid": rng.random() < 0.1,  # noqa: PLR2004
            "hangup_cause": "NORMAL_CLEARING" if answered else rng.choice(UNANSWERED_CAUSES),
            "callerid_number": caller,
            "callerid_name": None,
            "destination_number": service_number,
            "source_type": rng.choice(("FIXED_LINE", "MOBILE")),
            "routing_status": None if answered or rng.random() < 0.8 else "NO_ROUTE",  # noqa: PLR2004
            "billing_status": None,
        },
    )
    return [inbound, *out_legs]


def generate(start: datetime, end: datetime, calls_per_day: int, seed: int = 1) -> list[Leg]:
    """Calls spread over ``[start, end)``, busier in office hours, sorted by start."""
    rng = random.Random(seed)
    span = int((end - start).total_seconds())
    if span <= 0 or calls_per_day <= 0:
        return []
    n_calls = max(1, round(calls_per_day * span / 86_400))
    legs: list[Leg] = []
    for _ in range(n_calls):
        offset = rng.randrange(span)
        moment = start + timedelta(seconds=offset)
        if not 7 <= moment.hour < 20 and rng.random() < 0.6:  # noqa: PLR2004
            moment = start + timedelta(seconds=rng.randrange(span))
        legs.extend(make_call(rng, moment))
    legs.sort(key=lambda leg: (leg.start, leg.uuid))
    return legs
