"""What one probe run knows so far, shared by the checks: the settings and client,
the range found, the legs read, the stamps' zone, what was counted and totalled.

The checks (``sample``, ``paging``, ``zone``, ``counting``, ``timing``, ``limits``,
``implied``) read and extend it; ``checks`` runs them in order.
"""

from __future__ import annotations

import logging
from datetime import timedelta, tzinfo
from urllib.parse import urlsplit

from tap_tenios.planner import Window
from tap_tenios.probe.client import ProbeClient
from tap_tenios.probe.report import Finding, Report
from tap_tenios.probe.served import Page, Served
from tap_tenios.records import UTC, format_request
from tap_tenios.settings import Settings

#: The findings, in the order they are reported.
QUESTIONS = (
    ("auth", "Authentication"),
    ("range", "A recent range with legs"),
    ("order", "Order of items"),
    ("stability", "The same query twice, and pages"),
    ("stamps", "Stamp spelling and zone"),
    ("bounds", "Inclusiveness of the bounds"),
    ("page_cap", "Largest page honoured"),
    ("counts", "total_items against /cdrs/count"),
    ("count_over_a_day", "A count over more than a day"),
    ("latency", "How soon legs appear"),
    ("watch", "Late legs and changes in place"),
    ("rate_limits", "Rate-limit headers and Retry-After"),
)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
#: The page size the probe reads with: what public clients use, below any likely cap.
SAMPLE_PAGE = 100
#: Pages of one window at most.
MAX_PAGES = 5


def host_of(url: str) -> str:
    """The API's host and port, without a path or any credentials in the URL."""
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}" if parts.port else str(parts.hostname)


def human(seconds: float) -> str:
    """A duration as people read it."""
    if abs(seconds) < 120:  # noqa: PLR2004
        return f"{seconds:.0f} s"
    if abs(seconds) < 7200:  # noqa: PLR2004
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def offset_text(offset: timedelta) -> str:
    """An offset from UTC as ``UTC+01:00``."""
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


class ProbeState:
    """The probe's knowledge so far; ``None`` or empty where a check has not found it."""

    def __init__(
        self,
        client: ProbeClient,
        settings: Settings,
        key: str,
        *,
        days: int,
        watch_minutes: float,
        logger: logging.Logger,
    ) -> None:
        self.client = client
        self.settings = settings
        self.key = key
        self.days = days
        self.watch_minutes = watch_minutes
        self.log = logger
        now = client.clock.now().astimezone(UTC)
        #: When the probe began, to the millisecond (the API's request precision).
        self.now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        self.report = Report(
            api_host=host_of(settings.api_url),
            started=format_request(self.now),
            findings=[Finding(key, question) for key, question in QUESTIONS],
            requests_allowed=client.budget.allowed,
        )
        #: The newest 24 hours with legs, and its count.
        self.day: Window | None = None
        self.day_count = 0
        #: Part of ``day`` (its newest legs) small enough to read whole.
        self.sample: Window | None = None
        #: The sample's legs as first read, and its first page in the order served.
        self.legs: list[Served] = []
        self.first_page: list[Served] = []
        self.read_at = self.now
        #: The zone zone-less stamps are written in (``UTC`` for zoned stamps), and
        #: its IANA name when one fits.
        self.zone: tzinfo | None = None
        self.zone_name: str | None = None
        #: A leg already served by a window around its own start.
        self.anchor: Served | None = None
        #: ``total_items`` and ``/cdrs/count`` per window asked for.
        self.totals: dict[Window, int] = {}
        self.counts: dict[Window, int] = {}
        #: The longest leg seen.
        self.longest = timedelta(0)
        #: Whether legs changed in place during ``--watch`` (``None``: not watched).
        self.changed: bool | None = None
        #: How long after their start legs appeared or changed, at least.
        self.age_needed = timedelta(0)
        #: Legs the newest day's total_items counts but no page lists.
        self.unlisted = 0
        #: Whether the API stopped answering (rather than the budget running out).
        self.failed = False

    def finding(self, key: str) -> Finding:
        return self.report.finding(key)

    def read_window(self, window: Window, page_size: int = SAMPLE_PAGE) -> list[Page]:
        """The pages of ``window`` until ``total_items`` is read (``MAX_PAGES`` at most)."""
        pages: list[Page] = []
        for number in range(1, MAX_PAGES + 1):
            page = Page.read(self.client.retrieve(window.start, window.end, number, page_size))
            pages.append(page)
            if page.items == 0 or sum(p.items for p in pages) >= page.total_items:
                break
        self.totals[window] = pages[0].total_items
        return pages

    def note_durations(self, legs: list[Served]) -> None:
        """Keep the longest leg seen: the lookback must cover it."""
        for leg in legs:
            if (lasted := leg.duration()) is not None:
                self.longest = max(self.longest, lasted)
