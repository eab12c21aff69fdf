"""A local Tenios CDR API: both endpoints, strict validation, and switches for what
the real API leaves undocumented (ordering, bound inclusiveness, timestamp spelling,
when a CDR appears) and for the faults any HTTP API shows now and then.

Stdlib only, so it ships in the package and runs anywhere the tap runs.
"""

from __future__ import annotations

import bisect
import email.utils
import json
import math
import random
import re
import socket
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from zoneinfo import ZoneInfo

from tap_tenios.emulator.data import Leg

UTC = timezone.utc

#: What the real API documents for request dates (the overview also allows an offset).
REQUEST_DATE = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}(Z|[+-]\d{2}:\d{2})")

#: ``ties_shuffled``: by start second, ties in a new random order for every query, as
#: SQL's LIMIT/OFFSET over a non-unique ORDER BY may do: pages can repeat or skip legs.
ORDERS = ("sorted", "unsorted", "reverse", "ties_shuffled")
BOUNDS = ("half_open", "inclusive", "exclusive", "left_open")
TIMESTAMP_STYLES = ("space", "iso_z", "millis_z", "offset", "naive_t")
NAIVE_STYLES = ("space", "naive_t")
#: Faults a client should ride out by retrying.
TRANSIENT_FAULTS = (
    "429",  # Too Many Requests with Retry-After
    "429-bare",  # ... without Retry-After
    "500",
    "502-html",
    "503-html",
    "reset",  # connection closed without an answer
    "stall",  # no answer for ``stall_seconds`` (a read timeout for the client)
    "truncated",  # 200 whose JSON body is cut short
    "not-json",  # 200 with an HTML body
    "no-items",  # 200 whose JSON lacks "items"
    "no-total",  # 200 whose JSON lacks "total_items"
)
FAULT_KINDS = (*TRANSIENT_FAULTS, "400", "403")


@dataclass
class Behaviour:
    """The emulator's switches; all may be changed while it runs."""

    access_key: str = "emulator-access-key"
    order: str = "sorted"
    bounds: str = "half_open"
    timestamp_style: str = "space"
    #: IANA zone whose local time the zone-less styles (``space``, ``naive_t``) are
    #: written in, as a FreeSWITCH server in that zone would; ``None``: UTC.
    stamp_zone: str | None = None
    latency_ms: float = 0.0
    max_page_size: int = 10_000
    #: Serve at most this many items per page, silently: the answer still echoes the
    #: ``page_size`` asked for, and pages are cut at this size.
    page_cap: int | None = None
    echo_body_in_errors: bool = False
    #: Legs become visible when they end; ``None`` means the real clock.
    now: datetime | None = None
    #: Seconds after its end before a leg is served (the API's own delay in taking in
    #: CDRs): a leg that ended just before a read appears only in a later one.
    appear_delay_seconds: float = 0.0
    #: Legs changed in place after they appear, as late billing would: until this many
    #: seconds after its end a leg is served with ``cost`` 0 and ``billing_status``
    #: ``"PENDING"``, then with its real values. ``None``: served final at once.
    settle_seconds: float | None = None
    retry_after_seconds: int = 2
    #: ``Retry-After`` as ``seconds`` (``"2"``) or ``http_date`` (an RFC 9110 date).
    retry_after_style: str = "seconds"
    #: A rate limit: at most this many requests per ``rate_period_seconds`` (fixed
    #: windows on ``rate_clock``); every answer then carries ``X-RateLimit-Limit``,
    #: ``-Remaining`` and ``-Reset`` headers, and a request over it gets a 429 with
    #: ``Retry-After``. ``None``: no limit and no such headers.
    rate_limit: int | None = None
    rate_period_seconds: float = 1.0
    rate_clock: Callable[[], float] = time.monotonic
    stall_seconds: float = 2.0
    #: Faults for the next requests, in order: ``{"kind": ..., "path": optional}``.
    fault_queue: list[dict[str, Any]] = field(default_factory=list)
    #: Random faults: share of requests, kinds drawn from, seeded for repeatability.
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = ("429", "500", "reset")
    fault_seed: int = 7
    #: Legs that "land" while a client pages: after page 1 of a retrieve is served, a new
    #: leg appears at the start of its range (shifting later pages), this many times.
    insert_during_paging: int = 0
    #: Pages after the first start one leg early: each repeats the previous page's last
    #: leg (and the page boundaries shift, as with an unstable sort).
    repeat_leg_across_pages: bool = False
    #: Legs counted in ``total_items`` (and by /cdrs/count) but never listed.
    hidden_legs: frozenset[str] = frozenset()
    #: Added to every /cdrs/count answer: a count endpoint that disagrees.
    count_offset: int = 0
    #: The longest period /cdrs/count accepts (400 beyond, as documented); ``None``:
    #: any period is counted whole.
    count_max_period: timedelta | None = timedelta(days=1)
    #: Answer /cdrs/retrieve with exactly these bytes (hostile-input tests).
    retrieve_body: bytes | None = None
    #: Keep every page served and answer the same request from memory (benchmarks:
    #: the client is measured, not the emulator). Never with ``ties_shuffled`` or the
    #: switches that change data while a client reads.
    cache_pages: bool = False


@dataclass
class Stats:
    """What the emulator saw and did, for tests and the fault campaign's figures."""

    requests: dict[str, int] = field(default_factory=dict)
    faults: dict[str, int] = field(default_factory=dict)
    bodies: list[dict[str, Any]] = field(default_factory=list)

    def count(self, table: dict[str, int], key: str) -> None:
        table[key] = table.get(key, 0) + 1


def _spell(moment: datetime, style: str, zone: str | None = None) -> str:
    if zone and style in NAIVE_STYLES:
        moment = moment.astimezone(ZoneInfo(zone))
    if style == "space":
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    if style == "iso_z":
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    if style == "millis_z":
        return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
    if style == "offset":
        return moment.astimezone(timezone(timedelta(hours=1))).isoformat()
    if style == "naive_t":
        return moment.strftime("%Y-%m-%dT%H:%M:%S")
    raise ValueError(f"unknown timestamp style {style!r}")


def encode_leg(leg: Leg, style: str, zone: str | None = None) -> bytes:
    """A leg as the API would send it; ``cost`` keeps its exact decimal digits."""
    out: dict[str, object] = {}
    cost_text = None
    for key, value in leg.fields.items():
        if isinstance(value, datetime):
            out[key] = _spell(value, style, zone)
        elif isinstance(value, Decimal):
            cost_text = format(value, "f")
            out[key] = "__COST__"
        else:
            out[key] = value
    text = json.dumps(out, separators=(",", ":"))
    if cost_text is not None:
        text = text.replace('"__COST__"', cost_text)
    return text.encode()


class LegStore:
    """Legs sorted by start instant; range look-ups by bisection."""

    def __init__(self, legs: list[Leg]) -> None:
        self._lock = threading.Lock()
        self._legs = sorted(legs, key=lambda leg: (leg.start, leg.uuid))
        self._starts = [leg.start for leg in self._legs]
        self._encoded: dict[tuple[str, str, str | None], bytes] = {}

    def __len__(self) -> int:
        return len(self._legs)

    def all(self) -> list[Leg]:
        with self._lock:
            return list(self._legs)

    def add(self, leg: Leg) -> None:
        with self._lock:
            index = bisect.bisect_right(self._starts, leg.start)
            self._legs.insert(index, leg)
            self._starts.insert(index, leg.start)

    def select(self, lower: datetime, upper: datetime, bounds: str, now: datetime) -> list[Leg]:
        """Visible legs whose start lies between the bounds, in start order."""
        with self._lock:
            if bounds in ("half_open", "inclusive"):
                lo = bisect.bisect_left(self._starts, lower)
            else:
                lo = bisect.bisect_right(self._starts, lower)
            if bounds in ("inclusive", "left_open"):
                hi = bisect.bisect_right(self._starts, upper)
            else:
                hi = bisect.bisect_left(self._starts, upper)
            return [leg for leg in self._legs[lo:hi] if leg.visible_at <= now]

    def encoded(self, leg: Leg, style: str, zone: str | None = None) -> bytes:
        key = (leg.uuid, style, zone)
        cached = self._encoded.get(key)
        if cached is None:
            cached = self._encoded[key] = encode_leg(leg, style, zone)
        return cached


class ApiError(Exception):
    """An error answer: status and message, as the real API would send."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _instant(body: dict[str, Any], name: str) -> datetime:
    value = body.get(name)
    if not isinstance(value, str) or not REQUEST_DATE.fullmatch(value):
        raise ApiError(400, f"Invalid {name}: expected YYYY-MM-DDTHH:MM:SS.mmmZ")
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def _positive_int(body: dict[str, Any], name: str, maximum: int) -> int:
    value = body.get(name)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise ApiError(400, f"Invalid {name}: expected an integer from 1 to {maximum}")
    return value


class Emulator:
    """The API's behaviour, independent of HTTP: ``handle(path, body)`` gives an answer."""

    def __init__(self, legs: list[Leg], behaviour: Behaviour | None = None) -> None:
        self.store = LegStore(legs)
        self.behaviour = behaviour or Behaviour()
        self.stats = Stats()
        self._rng = random.Random(self.behaviour.fault_seed)
        self._lock = threading.Lock()
        self._inserted = 0
        self._queries = 0
        self._pages: dict[tuple[str, str, int, int], bytes] = {}
        self._rate_window = -1
        self._rate_used = 0

    def now(self) -> datetime:
        return self.behaviour.now or datetime.now(UTC)

    def seen_until(self) -> datetime:
        """Legs that ended at or before this instant are served (``appear_delay_seconds``)."""
        return self.now() - timedelta(seconds=self.behaviour.appear_delay_seconds)

    def retry_after(self, seconds: float) -> str:
        """A ``Retry-After`` value for a wait of ``seconds``, in the configured form."""
        if self.behaviour.retry_after_style == "http_date":
            moment = self.now() + timedelta(seconds=seconds)
            return email.utils.format_datetime(moment.astimezone(UTC), usegmt=True)
        return str(math.ceil(seconds))

    def rate_check(self) -> tuple[bool, dict[str, str]]:
        """Count one request against ``rate_limit``: whether it may be answered, and
        the rate-limit headers its answer carries (none without a limit).
        """
        b = self.behaviour
        if b.rate_limit is None:
            return True, {}
        with self._lock:
            moment = b.rate_clock()
            window = math.floor(moment / b.rate_period_seconds)
            if window != self._rate_window:
                self._rate_window, self._rate_used = window, 0
            self._rate_used += 1
            allowed = self._rate_used <= b.rate_limit
            reset = (window + 1) * b.rate_period_seconds - moment
        headers = {
            "X-RateLimit-Limit": str(b.rate_limit),
            "X-RateLimit-Remaining": str(max(0, b.rate_limit - self._rate_used)),
            "X-RateLimit-Reset": str(math.ceil(reset)),
        }
        if not allowed:
            headers["Retry-After"] = self.retry_after(reset)
        return allowed, headers

    def next_fault(self, path: str) -> str | None:
        """The fault to inject into this request, if any (queue first, then chance)."""
        with self._lock:
            queue = self.behaviour.fault_queue
            for i, fault in enumerate(queue):
                if fault.get("path") in (None, path):
                    del queue[i]
                    self.stats.count(self.stats.faults, fault["kind"])
                    return str(fault["kind"])
            if self.behaviour.fault_rate and self._rng.random() < self.behaviour.fault_rate:
                kind = self._rng.choice(self.behaviour.fault_kinds)
                self.stats.count(self.stats.faults, kind)
                return kind
        return None

    def retrieve(self, body: dict[str, Any]) -> bytes:
        b = self.behaviour
        lower = _instant(body, "start_date_from")
        upper = _instant(body, "start_date_to")
        page = _positive_int(body, "page", 10**9)
        page_size = _positive_int(body, "page_size", b.max_page_size)
        if upper < lower:
            raise ApiError(400, "start_date_to must not be before start_date_from")
        key = (body["start_date_from"], body["start_date_to"], page, page_size)
        cacheable = b.cache_pages and not (
            b.order == "ties_shuffled"
            or b.insert_during_paging
            or b.hidden_legs
            or b.repeat_leg_across_pages
            or b.retrieve_body is not None
            or b.settle_seconds is not None
        )
        if cacheable and (cached := self._pages.get(key)) is not None:
            return cached
        answer = self._render(lower, upper, page, page_size)
        if cacheable:
            with self._lock:
                self._pages[key] = answer
        return answer

    def _render(self, lower: datetime, upper: datetime, page: int, page_size: int) -> bytes:
        b = self.behaviour
        legs = self.store.select(lower, upper, b.bounds, self.seen_until())
        total = len(legs)
        if b.hidden_legs:
            legs = [leg for leg in legs if leg.uuid not in b.hidden_legs]
        if b.order == "unsorted":
            legs.sort(key=lambda leg: zlib.crc32(leg.uuid.encode()))
        elif b.order == "reverse":
            legs.reverse()
        elif b.order == "ties_shuffled":
            with self._lock:
                self._queries += 1
                ties = random.Random(b.fault_seed * 1_000_003 + self._queries)
            legs.sort(key=lambda leg: (leg.start.replace(microsecond=0), ties.random()))
        served = min(page_size, b.page_cap) if b.page_cap else page_size
        first = (page - 1) * served
        if b.repeat_leg_across_pages and page > 1:
            first -= 1
        chunk = legs[first : first + served]
        if b.insert_during_paging and page == 1 and chunk:
            with self._lock:
                b.insert_during_paging -= 1
            self._insert_leg(lower)
        if b.retrieve_body is not None:
            return b.retrieve_body
        items = b",".join(self._encoded(leg) for leg in chunk)
        head = b'{"items":['
        tail = f'],"total_items":{total},"page":{page},"page_size":{page_size}}}'
        return head + items + tail.encode()

    def _encoded(self, leg: Leg) -> bytes:
        """A leg as served now: unsettled (``settle_seconds``) or final."""
        b = self.behaviour
        if b.settle_seconds is not None and self.now() < leg.visible_at + timedelta(
            seconds=b.settle_seconds
        ):
            pending = {**leg.fields, "cost": Decimal(0), "billing_status": "PENDING"}
            return encode_leg(Leg(leg.uuid, leg.start, leg.visible_at, pending), *self._style())
        return self.store.encoded(leg, *self._style())

    def _style(self) -> tuple[str, str | None]:
        return self.behaviour.timestamp_style, self.behaviour.stamp_zone

    def _insert_leg(self, lower: datetime) -> None:
        """A leg that 'lands' while a client pages: it shifts every later page."""
        existing = self.store.select(
            lower, lower + timedelta(days=1), "half_open", self.seen_until()
        )
        if not existing:
            return
        template = existing[len(existing) // 2]  # well inside the window being read
        self._inserted += 1
        new_uuid = f"00000000-0000-4000-8000-{self._inserted:012d}"
        fields = {**template.fields, "uuid": new_uuid}
        self.store.add(Leg(new_uuid, template.start, template.visible_at, fields))

    def count(self, body: dict[str, Any]) -> bytes:
        lower = _instant(body, "start_date_from")
        upper = _instant(body, "start_date_to")
        if upper < lower:
            raise ApiError(400, "start_date_to must not be before start_date_from")
        longest = self.behaviour.count_max_period
        if longest is not None and upper - lower > longest:
            raise ApiError(400, "The interval can be max. 1 day")
        legs = self.store.select(lower, upper, self.behaviour.bounds, self.seen_until())
        return json.dumps({"total_items": len(legs) + self.behaviour.count_offset}).encode()

    def handle(self, path: str, raw: bytes) -> tuple[int, bytes]:
        """Answer one request: (status, JSON body). Raises ``ApiError`` for errors."""
        handler: dict[str, Callable[[dict[str, Any]], bytes]] = {
            "/cdrs/retrieve": self.retrieve,
            "/cdrs/count": self.count,
        }
        if path not in handler:
            raise ApiError(404, f"Unknown method {path}")
        try:
            body = json.loads(raw)
        except ValueError:
            raise ApiError(400, "Request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "Request body must be a JSON object")
        with self._lock:
            self.stats.bodies.append({k: v for k, v in body.items() if k != "access_key"})
        if body.get("access_key") != self.behaviour.access_key:
            raise ApiError(403, "Invalid access key")
        return 200, handler[path](body)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: Answers leave at once: with Nagle's algorithm on, a keep-alive client's delayed
    #: ACK holds back every answer by tens of milliseconds.
    disable_nagle_algorithm = True
    server: _Server
    #: Headers every answer to the current request carries (rate-limit headers).
    extra_headers: dict[str, str] | None = None

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: request lines would only clutter test output."""

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        """Head and body in one write, so one answer is one burst of segments."""
        lines = [
            f"{self.protocol_version} {status} {HTTPStatus(status).phrase}",
            f"Content-Type: {content_type}",
            f"Content-Length: {len(body)}",
            *(f"{name.replace('_', '-')}: {value}" for name, value in headers.items()),
            *(f"{name}: {value}" for name, value in (self.extra_headers or {}).items()),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.wfile.write(head + body)

    def _error(self, status: int, message: str, raw: bytes) -> None:
        payload: dict[str, Any] = {"error": message, "status": status}
        if self.server.emulator.behaviour.echo_body_in_errors:
            # In the message a client quotes, too: the worst case for its logs.
            echoed = raw.decode("utf-8", "replace")
            payload = {"error": f"{message} (request: {echoed})", "status": status}
            payload["request"] = echoed
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        self.extra_headers = None
        if self.path == "/_emulator/stats":
            stats = self.server.emulator.stats
            body = {
                "requests": stats.requests,
                "faults": stats.faults,
                "legs": len(self.server.emulator.store),
            }
            self._send(200, json.dumps(body).encode(), "application/json")
            return
        self._error(404, "Unknown method", b"")

    def do_POST(self) -> None:
        emulator = self.server.emulator
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?", 1)[0]
        with emulator._lock:
            emulator.stats.count(emulator.stats.requests, path)
        b = emulator.behaviour
        if b.latency_ms:
            time.sleep(b.latency_ms / 1000)
        allowed, self.extra_headers = emulator.rate_check()
        if not allowed:
            self._send(429, b'{"error":"Too many requests"}', "application/json")
            return
        fault = emulator.next_fault(path)
        if fault and self._fault(fault, raw):
            return
        try:
            status, body = emulator.handle(path, raw)
        except ApiError as exc:
            self._error(exc.status, exc.message, raw)
            return
        self._send(status, body, "application/json")

    def _fault(self, kind: str, raw: bytes) -> bool:
        """Inject one fault; False when the request should be answered normally after it."""
        b = self.server.emulator.behaviour
        html = b"<html><body><h1>Bad Gateway</h1></body></html>"
        if kind == "429":
            self._send(
                429,
                b'{"error":"Too many requests"}',
                "application/json",
                Retry_After=self.server.emulator.retry_after(b.retry_after_seconds),
            )
        elif kind == "429-bare":
            self._send(429, b'{"error":"Too many requests"}', "application/json")
        elif kind == "500":
            self._error(500, "Internal error", raw)
        elif kind in ("502-html", "503-html"):
            self._send(int(kind[:3]), html, "text/html")
        elif kind == "reset":
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.close_connection = True
            self.connection.close()
        elif kind == "stall":
            time.sleep(b.stall_seconds)
            self.close_connection = True
        elif kind == "truncated":
            self._send(200, b'{"items":[{"uuid":"', "application/json")
        elif kind == "not-json":
            self._send(200, html, "text/html")
        elif kind == "no-items":
            self._send(200, b'{"total_items":3,"page":1}', "application/json")
        elif kind == "no-total":
            self._send(200, b'{"items":[],"page":1}', "application/json")
        elif kind in ("400", "403"):
            self._error(int(kind), "Bad request" if kind == "400" else "Invalid access key", raw)
        else:
            return False
        return True


#: How often the serving loop checks for a stop request.
STOP_POLL_SECONDS = 0.02


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, address: tuple[str, int], emulator: Emulator) -> None:
        super().__init__(address, _Handler)
        self.emulator = emulator


class RunningEmulator:
    """An emulator serving on 127.0.0.1 in a background thread (tests, demo, benchmarks)."""

    def __init__(self, emulator: Emulator, port: int = 0) -> None:
        self.emulator = emulator
        self._server = _Server(("127.0.0.1", port), emulator)
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def _serve(self) -> None:
        # The loop notices a stop request only between polls: a short poll keeps
        # ``stop()`` prompt (the default would make every stop wait up to half a second).
        self._server.serve_forever(poll_interval=STOP_POLL_SECONDS)

    def start(self) -> RunningEmulator:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def __enter__(self) -> RunningEmulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
