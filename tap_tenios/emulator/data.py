"""Deterministic synthetic CDRs: the same seed and range always give the same legs.

Calls look like a small service line: several service numbers, each forwarding to a
few destinations (PSTN or SIP) one after the other until one answers; destinations
that are busy or do not answer; callers who give up while it rings (some within
seconds); calls answered by an announcement alone; the odd routing failure. Each call
is an inbound leg plus its forwarded legs, linked through ``main_leg_uuid``/``bleg_uuid``;
costs have 4-6 decimals; timestamps have whole-second precision, as FreeSWITCH writes
them. Every leg also carries the outcome its call was generated with (``Leg.outcome``),
so tests can check what a warehouse model makes of the legs.

``generate`` makes the calls to the service numbers; ``generate_outbound`` (separate, so
that ``generate``'s output for a seed never changes) the legs an account places
itself: faxes (``FAXOUT``) and calls out to mobile, fixed and foreign numbers (a
``FORWARD`` leg with no main leg, as a call-back places them), some of them busy,
unanswered, rejected or failed.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal

UTC = timezone.utc

CALL_TYPES_IN = ("INBOUND", "INBOUND", "INBOUND", "INBOUND", "INBOUND", "WEBRTCINBOUND")
CALL_TYPES_OUT = ("FORWARD", "FORWARD", "SIPFORWARD_USER", "SIPFORWARD_PRFL")
#: Service numbers with their share of the calls and the per-minute cost of the inbound leg.
SERVICE_NUMBERS = (
    ("+498005550100", 0.4, Decimal("0.0290")),  # freephone: the callee pays more
    ("+49305550100", 0.3, Decimal("0.0120")),
    ("+49895550100", 0.2, Decimal("0.0120")),
    ("+491805550100", 0.1, Decimal("0.0090")),
)
FORWARD_RATE = {"FORWARD": Decimal("0.0390"), "SIPFORWARD_USER": Decimal("0.0020")}
FAILURE_CAUSES = ("NO_ROUTE_DESTINATION", "UNALLOCATED_NUMBER", "NORMAL_TEMPORARY_FAILURE")
#: Outcomes a generated call can have (what ``Leg.outcome`` holds).
OUTCOMES = ("answered", "announcement", "abandoned", "short_abandon", "busy", "no_answer", "failed")
SHORT_ABANDON_SECONDS = 5
P_FAILED = 0.02
P_ANNOUNCEMENT = 0.06
P_BUSY = 0.12
P_ANSWER = 0.68
MEAN_PATIENCE_SECONDS = 110


@dataclass
class Leg:
    """One call leg. ``visible_at``: the instant the API starts returning it (its end).

    ``outcome``: what happened to the whole call, as generated (one of ``OUTCOMES``).
    """

    uuid: str
    start: datetime
    visible_at: datetime
    fields: dict[str, object]
    outcome: str | None = None


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _cost(rng: random.Random, seconds: int, rate_per_min: Decimal) -> Decimal:
    places = rng.choice((4, 5, 6))
    raw = rate_per_min * Decimal(seconds) / Decimal(60)
    return raw.quantize(Decimal(1).scaleb(-places))


def _number(rng: random.Random, prefix: str) -> str:
    return prefix + "".join(rng.choice("0123456789") for _ in range(8))


def _leg(
    leg_uuid: str,
    start: datetime,
    *,
    end: datetime,
    answered_at: datetime | None,
    talk: int,
    cost: Decimal,
    cause: str,
    **fields: object,
) -> Leg:
    record: dict[str, object] = {
        "uuid": leg_uuid,
        "main_leg_uuid": None,
        "bleg_uuid": None,
        "call_type": "INBOUND",
        "start_stamp": start,
        "answer_stamp": answered_at,
        "end_stamp": end,
        "duration": int((end - start).total_seconds()),
        "billusec": talk * 1_000_000,
        "cost": cost,
        "prepaid": False,
        "hangup_cause": cause,
        "callerid_number": "anonymous",
        "callerid_name": None,
        "destination_number": "",
        "source_type": "FIXED_LINE",
        "routing_status": None,
        "billing_status": None,
    }
    record.update(fields)
    return Leg(leg_uuid, start, end, record)


def _service(rng: random.Random) -> tuple[int, str, Decimal]:
    pick = rng.random()
    for index, (number, share, rate) in enumerate(SERVICE_NUMBERS):
        pick -= share
        if pick < 0:
            return index, number, rate
    return len(SERVICE_NUMBERS) - 1, SERVICE_NUMBERS[-1][0], SERVICE_NUMBERS[-1][2]


def make_call(rng: random.Random, start: datetime) -> list[Leg]:  # noqa: PLR0915
    """One customer call: its inbound leg and the legs forwarded from it."""
    inbound_uuid = _uuid(rng)
    call_type = rng.choice(CALL_TYPES_IN)
    index, service_number, inbound_rate = _service(rng)
    caller = "anonymous" if rng.random() < 0.05 else _number(rng, "+4915")  # noqa: PLR2004
    source_type = rng.choice(("FIXED_LINE", "MOBILE"))
    prepaid = rng.random() < 0.1  # noqa: PLR2004
    route = rng.random()
    # Seconds the caller waits for an answer before hanging up.
    patience = 1 + int(rng.expovariate(1 / MEAN_PATIENCE_SECONDS))
    out_legs: list[Leg] = []
    answered_at: datetime | None = None
    talk = 0
    routing_status = None

    if route < P_FAILED:
        outcome, cause = "failed", rng.choice(FAILURE_CAUSES)
        end = start + timedelta(seconds=rng.randint(0, 2))
        routing_status = "NO_ROUTE"
    elif route < P_FAILED + P_ANNOUNCEMENT:
        # Answered by the platform: an announcement or IVR, nobody to forward to.
        outcome, cause = "announcement", "NORMAL_CLEARING"
        answered_at = start + timedelta(seconds=1)
        talk = rng.randint(8, 45)
        end = answered_at + timedelta(seconds=talk)
    else:
        outcome, cause = "no_answer", "NO_ANSWER"
        give_up = start + timedelta(seconds=patience)
        leg_start = start + timedelta(seconds=1)
        destinations = [f"+4930555{index}2{slot}0" for slot in range(3)]
        for attempt in range(rng.choice((1, 2, 2, 3))):
            draw = rng.random()
            out_type = rng.choice(CALL_TYPES_OUT)
            out_uuid = _uuid(rng)
            leg_answer: datetime | None = None
            leg_talk = 0
            if draw < P_BUSY:
                leg_cause, ring = "USER_BUSY", rng.randint(0, 2)
            elif draw < P_BUSY + P_ANSWER:
                leg_cause, ring = "NORMAL_CLEARING", rng.randint(3, 25)
            else:
                leg_cause, ring = "NO_ANSWER", rng.choice((20, 25, 30))
            leg_end = leg_start + timedelta(seconds=ring)
            if give_up <= leg_end:
                # The caller hangs up while this destination rings.
                leg_cause, leg_end = "ORIGINATOR_CANCEL", max(give_up, leg_start)
                waited = int((leg_end - start).total_seconds())
                outcome = "short_abandon" if waited < SHORT_ABANDON_SECONDS else "abandoned"
                cause = "ORIGINATOR_CANCEL"
            elif leg_cause == "NORMAL_CLEARING":
                leg_answer = leg_end
                leg_talk = talk = int(min(rng.lognormvariate(5.0, 0.9), 3600)) + 5
                leg_end = leg_answer + timedelta(seconds=leg_talk)
                answered_at, outcome, cause = leg_answer, "answered", "NORMAL_CLEARING"
            else:
                outcome = "busy" if leg_cause == "USER_BUSY" else "no_answer"
                cause = leg_cause
            rate = FORWARD_RATE.get(out_type, Decimal(0))
            out_legs.append(
                _leg(
                    out_uuid,
                    leg_start,
                    end=leg_end,
                    answered_at=leg_answer,
                    talk=leg_talk,
                    cost=_cost(rng, leg_talk, rate),
                    cause=leg_cause,
                    main_leg_uuid=inbound_uuid,
                    bleg_uuid=inbound_uuid,
                    call_type=out_type,
                    callerid_number=caller,
                    callerid_name="Support" if out_type.startswith("SIP") else None,
                    destination_number=destinations[attempt],
                )
            )
            if outcome in {"answered", "abandoned", "short_abandon"}:
                break
            leg_start = leg_end + timedelta(seconds=1)
        end = out_legs[-1].visible_at

    inbound = _leg(
        inbound_uuid,
        start,
        end=end,
        answered_at=answered_at,
        talk=talk,
        cost=_cost(rng, talk, inbound_rate),
        cause=cause,
        bleg_uuid=out_legs[0].uuid if out_legs else None,
        call_type=call_type,
        prepaid=prepaid,
        callerid_number=caller,
        destination_number=service_number,
        source_type=source_type,
        routing_status=routing_status,
        billing_status="PREPAID_LIMIT" if prepaid and rng.random() < 0.02 else None,  # noqa: PLR2004
    )
    legs = [inbound, *out_legs]
    for leg in legs:
        leg.outcome = outcome
    return legs


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


#: Outbound destinations: number prefix, per-minute rate.
OUTBOUND_DESTINATIONS = (
    ("+4915", Decimal("0.0790")),  # German mobile
    ("+4917", Decimal("0.0790")),
    ("+4930", Decimal("0.0190")),  # Berlin, fixed
    ("+4989", Decimal("0.0190")),  # Munich, fixed
    ("+43664", Decimal("0.1490")),  # Austrian mobile
    ("+4171", Decimal("0.0590")),  # Swiss fixed
    ("+33612", Decimal("0.1290")),  # French mobile
)
FAX_RATE = Decimal("0.0390")
#: How an outbound leg ends, with its share: answered, or one of the causes.
OUTBOUND_ENDINGS = (
    ("NORMAL_CLEARING", 0.70),
    ("USER_BUSY", 0.08),
    ("NO_ANSWER", 0.10),
    ("CALL_REJECTED", 0.04),
    ("UNALLOCATED_NUMBER", 0.04),
    ("NORMAL_TEMPORARY_FAILURE", 0.04),
)


def make_outbound(rng: random.Random, start: datetime) -> Leg:
    """One leg the account places itself: a fax, or a call out (a FORWARD leg that has
    no main leg). ``outcome``: ``answered``, else ``failed`` (as for any call that is
    not inbound).
    """
    fax = rng.random() < 0.25  # noqa: PLR2004
    prefix, rate = ("+4930", FAX_RATE) if fax else rng.choice(OUTBOUND_DESTINATIONS)
    pick, cause = rng.random(), "NORMAL_CLEARING"
    for cause, share in OUTBOUND_ENDINGS:  # noqa: B007
        pick -= share
        if pick < 0:
            break
    ring = rng.randint(2, 25) if cause in {"NORMAL_CLEARING", "NO_ANSWER"} else rng.randint(0, 3)
    answered_at = start + timedelta(seconds=ring) if cause == "NORMAL_CLEARING" else None
    talk = int(min(rng.lognormvariate(4.5, 0.8), 1800)) + 5 if answered_at else 0
    end = (answered_at or start + timedelta(seconds=ring)) + timedelta(seconds=talk)
    leg = _leg(
        _uuid(rng),
        start,
        end=end,
        answered_at=answered_at,
        talk=talk,
        cost=_cost(rng, talk, rate),
        cause=cause,
        call_type="FAXOUT" if fax else "FORWARD",
        callerid_number="+49305550100",
        destination_number=_number(rng, prefix)[: len(prefix) + 7],
    )
    leg.outcome = "answered" if answered_at else "failed"
    return leg


def generate_outbound(
    start: datetime, end: datetime, legs_per_day: int, seed: int = 1
) -> list[Leg]:
    """Faxes and calls out spread over ``[start, end)``, sorted by start."""
    rng = random.Random(seed)
    span = int((end - start).total_seconds())
    if span <= 0 or legs_per_day <= 0:
        return []
    count = max(1, round(legs_per_day * span / 86_400))
    legs = [
        make_outbound(rng, start + timedelta(seconds=rng.randrange(span))) for _ in range(count)
    ]
    legs.sort(key=lambda leg: (leg.start, leg.uuid))
    return legs
