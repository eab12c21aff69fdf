"""``tap-tenios-emulator``: serve synthetic CDRs on 127.0.0.1 until interrupted."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
import threading
from datetime import timedelta

from tap_tenios.emulator.data import generate
from tap_tenios.emulator.server import (
    BOUNDS,
    FAULT_KINDS,
    ORDERS,
    TIMESTAMP_STYLES,
    Behaviour,
    Emulator,
    RunningEmulator,
)
from tap_tenios.records import parse_setting

#: A fixed range by default, so the same calls are served every time and the
#: ``emulator`` Meltano environment's ``start_date`` can name where they begin.
DEFAULT_START = "2024-01-01"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tap-tenios-emulator",
        description="A local Tenios CDR API with deterministic synthetic calls.",
    )
    parser.add_argument(
        "--port", type=int, default=8766, help="port on 127.0.0.1 (0: any free one)"
    )
    parser.add_argument(
        "--start",
        default=DEFAULT_START,
        help=f"first day of data, UTC (default {DEFAULT_START}, the start_date of the "
        "emulator environment in meltano.yml)",
    )
    parser.add_argument("--days", type=int, default=21, help="days of data")
    parser.add_argument(
        "--calls-per-day",
        type=float,
        default=400,
        help="calls per day (legs are more; a fraction spreads fewer than one a day)",
    )
    parser.add_argument("--seed", type=int, default=1, help="seed of the synthetic data")
    parser.add_argument(
        "--access-key", default=Behaviour.access_key, help="the key the emulator accepts"
    )
    parser.add_argument("--order", choices=ORDERS, default="sorted", help="order of returned items")
    parser.add_argument(
        "--bounds", choices=BOUNDS, default="half_open", help="inclusiveness of date bounds"
    )
    parser.add_argument("--timestamp-style", choices=TIMESTAMP_STYLES, default="space")
    parser.add_argument(
        "--page-cap",
        type=int,
        default=None,
        help="serve at most this many items per page, silently (page_size is echoed)",
    )
    parser.add_argument(
        "--cache-pages",
        action="store_true",
        help="serve repeated requests from memory (benchmarks measure the client)",
    )
    parser.add_argument(
        "--stamp-zone",
        default=None,
        help="IANA zone whose local time zone-less stamps are written in (default UTC)",
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before every answer")
    parser.add_argument("--fault-rate", type=float, default=0.0, help="share of requests that fail")
    parser.add_argument(
        "--fault-kinds",
        default="429,500,reset",
        help=f"comma-separated, of: {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument(
        "--appear-delay-seconds",
        type=float,
        default=0.0,
        help="serve a leg only this long after it ended (default 0: when it ends)",
    )
    parser.add_argument(
        "--settle-seconds",
        type=float,
        default=None,
        help="serve a leg with cost 0 and billing_status PENDING until this long after "
        "it ended, then with its real values (legs changed in place)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=None,
        help="at most this many requests per second (429 beyond, X-RateLimit-* headers)",
    )
    parser.add_argument(
        "--retry-after-style",
        choices=("seconds", "http_date"),
        default="seconds",
        help="how Retry-After is written",
    )
    parser.add_argument(
        "--echo-body-in-errors", action="store_true", help="echo the request in error bodies"
    )
    return parser


def cannot_listen(port: int, exc: OSError) -> str:
    """Why the emulator cannot serve on ``port``, in one line that says what to do."""
    if exc.errno == errno.EADDRINUSE:
        reason = "the port is in use (an emulator still running?)"
    else:
        reason = exc.strerror or type(exc).__name__
    return (
        f"cannot listen on 127.0.0.1:{port}: {reason}. Stop what listens there, or "
        "choose another port with --port."
    )


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    start = parse_setting(args.start)
    end = start + timedelta(days=args.days)
    behaviour = Behaviour(
        access_key=args.access_key,
        order=args.order,
        bounds=args.bounds,
        timestamp_style=args.timestamp_style,
        stamp_zone=args.stamp_zone,
        latency_ms=args.latency_ms,
        page_cap=args.page_cap,
        cache_pages=args.cache_pages,
        fault_rate=args.fault_rate,
        fault_kinds=tuple(k for k in args.fault_kinds.split(",") if k),
        echo_body_in_errors=args.echo_body_in_errors,
        appear_delay_seconds=args.appear_delay_seconds,
        settle_seconds=args.settle_seconds,
        rate_limit=args.rate_limit,
        retry_after_style=args.retry_after_style,
    )
    legs = generate(start, end, args.calls_per_day, seed=args.seed)
    try:
        running = RunningEmulator(Emulator(legs, behaviour), port=args.port).start()
    except OSError as exc:
        print(f"tap-tenios-emulator: {cannot_listen(args.port, exc)}", file=sys.stderr)
        return 1
    # A call near the end can forward to a leg that starts at or after it: served to a
    # query that reaches that far, but not part of the range announced here.
    in_range = sum(start <= leg.start < end for leg in legs)
    print(
        f"Tenios API emulator on {running.url}: {in_range} legs from "
        f"{start:%Y-%m-%d} to {end:%Y-%m-%d} (exclusive)",
        file=sys.stderr,
        flush=True,
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    running.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
