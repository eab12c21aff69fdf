"""The probe's run: its checks in order, and how it ends (its budget spent, the API
failing, Ctrl-C) with the findings made so far.

The order matters: the range found first is what every later check reads; the
stamps' zone must be known before a window can be put exactly on a leg's start (the
bounds) or a leg's end compared with the clock (latency). Each check writes its own
``Finding``; one that cannot answer says why, and the run goes on.
"""

from __future__ import annotations

import logging

from tap_tenios.errors import TeniosAPIError
from tap_tenios.probe.client import OutOfBudgetError, ProbeClient
from tap_tenios.probe.counting import check_count_over_a_day, check_counts
from tap_tenios.probe.implied import imply
from tap_tenios.probe.limits import check_rate_limits
from tap_tenios.probe.paging import check_order, check_page_cap
from tap_tenios.probe.report import Report, safe_text
from tap_tenios.probe.sample import find_range, read_sample
from tap_tenios.probe.state import ProbeState
from tap_tenios.probe.timing import check_latency, watch
from tap_tenios.probe.zone import check_bounds, check_stamps
from tap_tenios.records import format_request
from tap_tenios.settings import Settings

#: The checks that send requests, in order (each needs what those before it found).
CHECKS = (
    read_sample,
    check_order,
    check_stamps,
    check_bounds,
    check_page_cap,
    check_counts,
    check_count_over_a_day,
    check_latency,
    watch,
)


class Probe:
    """One probe run."""

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
        self.state = ProbeState(
            client, settings, key, days=days, watch_minutes=watch_minutes, logger=logger
        )

    @property
    def failed(self) -> bool:
        """Whether the probe stopped because of the API or Ctrl-C (not its budget)."""
        return self.state.failed

    def run(self) -> Report:
        """Every check that the budget and the API allow; the findings so far either way."""
        state = self.state
        try:
            find_range(state)
            if state.sample is not None:
                for check in CHECKS:
                    check(state)
        except OutOfBudgetError as exc:
            why = f": {safe_text(str(exc), state.key)}" if str(exc) else ""
            state.report.stopped = (
                f"the request budget is used up (--max-requests {state.client.budget.allowed})"
                f"{why}; the findings below are what it allowed"
            )
        except TeniosAPIError as exc:
            state.failed = True
            state.report.stopped = safe_text(str(exc), state.key)
        except KeyboardInterrupt:
            state.failed = True
            state.report.stopped = "interrupted (Ctrl-C)"
        finally:
            if state.sample is None and not state.report.stopped:
                for finding in state.report.findings[2:]:
                    finding.unknown(f"no legs in the last {state.days} days to look at")
            check_rate_limits(state)
            imply(state)
            state.report.requests_used = state.client.budget.used
            state.report.finished = format_request(state.client.clock.now())
        return state.report
