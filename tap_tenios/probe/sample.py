"""The range the probe reads: the newest day with legs, found by counting day by day
back from now, and a sample of it small enough to read whole.

The first count also tells whether the key is accepted.
"""

from __future__ import annotations

from tap_tenios.errors import TeniosAPIError
from tap_tenios.planner import Window
from tap_tenios.probe.report import safe_text
from tap_tenios.probe.state import DAY, ProbeState, human
from tap_tenios.records import format_request

#: The sample window is narrowed (by counts) until it holds at most this many legs.
SAMPLE_MAX = 100
#: Halvings of the day at most, to find the sample (2**12: 21 s of a day).
MAX_HALVINGS = 12


def find_range(state: ProbeState) -> None:
    """Count day by day back from now; narrow the newest day with legs to a sample."""
    state.log.info("Counting legs per day, back from %s", format_request(state.now))
    per_day: list[int] = []
    for back in range(state.days):
        day = Window(state.now - (back + 1) * DAY, state.now - back * DAY)
        try:
            count = state.client.count(day.start, day.end)
        except TeniosAPIError as exc:
            if back == 0 and state.client.last_status in (401, 403):
                state.finding("auth").found("rejected", False, safe_text(str(exc), state.key))
            raise
        if back == 0:
            state.finding("auth").found("the access key is accepted", True, "/cdrs/count: HTTP 200")
        state.counts[day] = count
        per_day.append(count)
        if count > 0:
            state.day, state.day_count = day, count
            break
    rng = state.finding("range")
    counted = f"legs per day counted back from now: {', '.join(map(str, per_day))}"
    if state.day is None:
        rng.unknown(f"no legs in the last {len(per_day)} days", counted)
        return
    window, count = state.day, state.day_count
    for _ in range(MAX_HALVINGS):
        if count <= SAMPLE_MAX:
            break
        middle = window.start + (window.end - window.start) / 2
        middle = middle.replace(microsecond=middle.microsecond // 1000 * 1000)
        later = state.client.count(middle, window.end)
        state.counts[Window(middle, window.end)] = later
        window, count = (
            (Window(middle, window.end), later) if later else (Window(window.start, middle), count)
        )
    state.sample = window
    back = len(per_day) - 1
    when = "the last 24 hours" if back == 0 else f"the 24 hours ending {back} day(s) ago"
    rng.found(
        f"{state.day_count} legs in {when}; a sample of "
        f"{count} legs over {human((window.end - window.start).total_seconds())}",
        {"days_back": back, "day_count": state.day_count, "sample_count": count},
        counted,
        f"sample window {window.describe()}",
    )


def read_sample(state: ProbeState) -> None:
    """Read the sample whole: the legs most checks look at, and when they were read."""
    assert state.sample is not None
    state.log.info("Reading the sample window %s", state.sample.describe())
    state.read_at = state.client.clock.now()
    pages = state.read_window(state.sample)
    state.first_page = pages[0].legs
    state.legs = [leg for page in pages for leg in page.legs]
    state.note_durations(state.legs)
    unusable = sum(p.unusable for p in pages)
    if unusable:
        state.finding("stamps").evidence.append(
            f"{unusable} item(s) without a uuid or a readable start_stamp"
        )
