"""The probe's requests: read-only, within a budget, paced, every answer's headers kept.

Built on the tap's ``Transport`` (the same key handling, retries and error lines), with
its observer counting every try, so retries count against ``--max-requests`` too. Only
``/cdrs/count`` and ``/cdrs/retrieve`` can be asked: the probe never writes.
The clock and the sleep are injected, so tests pace and wait without waiting.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import partial
from importlib.metadata import version
from typing import Any, Protocol

import requests

from tap_tenios.errors import TeniosAPIError
from tap_tenios.records import decode_object, format_request
from tap_tenios.settings import Settings
from tap_tenios.transport import Transport

#: The only endpoints the probe may call: both read.
READ_ENDPOINTS = ("/cdrs/count", "/cdrs/retrieve")
#: Retries per request at most, whatever ``max_retries`` says: a probe should end soon.
PROBE_RETRIES = 2
#: Headers worth reporting: rate limits and ``Retry-After``, whatever their spelling.
RATE_HEADER = re.compile(r"^(x-)?(rate-?limit|ratelimit)|^retry-after$", re.IGNORECASE)
#: The slowest pace a 429 can bring the probe to, in seconds between requests.
MAX_PACE = 30.0
#: ``X-RateLimit-Reset``-style waits above this are not sat out by pacing.
MAX_PACING_WAIT = 120.0


class Clock(Protocol):
    """Wall time and a way to wait: the real ones, or a test's."""

    def now(self) -> datetime: ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    """The real clock."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class OutOfBudgetError(Exception):
    """The request budget (``--max-requests``) is spent."""


@dataclass(frozen=True)
class Answer:
    """One try: endpoint, status (``None``: no answer came), rate-limit headers, when."""

    path: str
    status: int | None
    headers: dict[str, str]
    at: datetime


@dataclass
class Budget:
    """Requests allowed and made."""

    allowed: int
    answers: list[Answer] = field(default_factory=list)

    @property
    def used(self) -> int:
        return len(self.answers)

    @property
    def left(self) -> int:
        return max(0, self.allowed - self.used)


class ProbeClient:
    """Read requests to the API, one at a time, at least ``pace`` seconds apart."""

    def __init__(
        self,
        settings: Settings,
        key: str,
        *,
        max_requests: int,
        pace: float,
        clock: Clock,
        logger: logging.Logger,
    ) -> None:
        self.clock = clock
        self.pace = pace
        self.budget = Budget(max_requests)
        self._spent = threading.Event()
        self._next_at: float | None = None
        self.transport = Transport(
            settings.api_url,
            key,
            timeout=settings.request_timeout,
            tries=min(settings.max_retries, PROBE_RETRIES) + 1,
            concurrency=1,
            user_agent=f"tap-tenios-probe/{version('tap-tenios')}",
            logger=logger,
            stop=self._spent,
            clock=self._seconds,
            sleep=clock.sleep,
            observe=self._observe,
        )

    def _seconds(self) -> float:
        return self.clock.now().timestamp()

    def _observe(self, path: str, response: requests.Response | None) -> None:
        headers = {}
        if response is not None:
            headers = {k: v for k, v in response.headers.items() if RATE_HEADER.search(k)}
        status = None if response is None else response.status_code
        answer = Answer(path, status, headers, self.clock.now())
        self.budget.answers.append(answer)
        if self.budget.left == 0:
            self._spent.set()  # a retry inside the transport is not sent
        if status == 429:  # noqa: PLR2004
            # Slower from now on: the pace was too fast for this account.
            self.pace = min(max(self.pace * 2, 1.0), MAX_PACE)
        self._next_at = self._seconds() + self.pace + self._asked_pause(headers)

    @staticmethod
    def _asked_pause(headers: dict[str, str]) -> float:
        """The wait a rate-limit header asks for once no request is left in its window."""
        lowered = {k.lower(): v.strip() for k, v in headers.items()}
        remaining = next((v for k, v in lowered.items() if k.endswith("remaining")), None)
        reset = next((v for k, v in lowered.items() if k.endswith("reset")), None)
        if remaining != "0" or reset is None:
            return 0.0
        try:
            seconds = float(reset)
        except ValueError:
            return 0.0
        # A reset given as an epoch instant rather than a wait is not a wait.
        return seconds if 0 <= seconds <= MAX_PACING_WAIT else 0.0

    @property
    def last_status(self) -> int | None:
        return self.budget.answers[-1].status if self.budget.answers else None

    def _post(
        self, path: str, fields: dict[str, Any], where: str, required: tuple[str, ...]
    ) -> dict[str, Any]:
        assert path in READ_ENDPOINTS
        if self.budget.left == 0:
            raise OutOfBudgetError
        if self._next_at is not None and (wait := self._next_at - self._seconds()) > 0:
            self.clock.sleep(wait)
        try:
            return self.transport.post(
                path, fields, where, partial(decode_object, required=required)
            )
        except TeniosAPIError as exc:
            status = self.last_status
            final = status is not None and 400 <= status < 500 and status not in (408, 429)  # noqa: PLR2004
            if self._spent.is_set() and not final:
                # A retry the budget did not allow: say so, with what it was for.
                raise OutOfBudgetError(str(exc)) from None
            raise

    def count(self, lower: datetime, upper: datetime) -> int:
        """``/cdrs/count`` for ``[lower, upper]`` as the API reads its bounds."""
        fields = {"start_date_from": format_request(lower), "start_date_to": format_request(upper)}
        body = self._post("/cdrs/count", fields, describe(lower, upper), ("total_items",))
        return int(body["total_items"])

    def retrieve(
        self, lower: datetime, upper: datetime, page: int, page_size: int
    ) -> dict[str, Any]:
        """One page of ``/cdrs/retrieve``, as decoded by the tap's transport."""
        fields = {
            "start_date_from": format_request(lower),
            "start_date_to": format_request(upper),
            "page": page,
            "page_size": page_size,
        }
        where = f"{describe(lower, upper)} page {page} (page_size {page_size})"
        return self._post("/cdrs/retrieve", fields, where, ("items", "total_items"))


def describe(lower: datetime, upper: datetime) -> str:
    """A window as messages name it."""
    return f"[{format_request(lower)}, {format_request(upper)}]"
