"""Both streams against the emulator: exactly once, whatever the API does."""

from __future__ import annotations

import dataclasses
import itertools
import logging
import random
import re
from collections import Counter
from datetime import datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import jsonschema
import pytest

from tap_tenios.emulator import (
    BOUNDS,
    ORDERS,
    TIMESTAMP_STYLES,
    Leg,
    generate,
    make_call,
)
from tap_tenios.errors import TapRunError
from tap_tenios.records import format_utc
from tap_tenios.settings import utc_now
from tap_tenios.streams import DECIMAL_COST
from tap_tenios.tap import TapTenios

from .helpers import (
    END,
    START,
    UTC,
    dataset,
    in_range,
    make_config,
    parse_messages,
    run_cli,
    select,
)

BEHAVIOURS = [
    (order, bounds, TIMESTAMP_STYLES[i % len(TIMESTAMP_STYLES)])
    for i, (order, bounds) in enumerate(itertools.product(ORDERS, BOUNDS))
]


@pytest.mark.parametrize(("order", "bounds", "style"), BEHAVIOURS)
def test_every_leg_exactly_once_whatever_the_api_does(serve, run_tap, legs, order, bounds, style):
    emulator = serve(legs, order=order, bounds=bounds, timestamp_style=style)
    run = run_tap(make_config(emulator.url, window_size_hours=6))
    uuids = [r["uuid"] for r in run.records()]
    assert len(uuids) == len(set(uuids)), "a leg was emitted twice"
    assert set(uuids) == in_range(legs)


def test_records_are_exact_and_canonical(serve, run_tap, legs):
    emulator = serve(legs, timestamp_style="offset")
    by_uuid = {r["uuid"]: r for r in run_tap(make_config(emulator.url)).records()}
    for leg in legs:
        if leg.uuid not in by_uuid:
            continue
        record = by_uuid[leg.uuid]
        assert record["cost"] == leg.fields["cost"]
        assert str(record["cost"]) == str(leg.fields["cost"])  # the same digits
        assert record["start_stamp"] == format_utc(leg.start)
        assert record["main_leg_uuid"] == leg.fields["main_leg_uuid"]


def test_costs_keep_every_decimal_digit_on_the_wire(serve, legs, tmp_path):
    emulator = serve(legs)
    result = run_cli(tmp_path, make_config(emulator.url, end_date="2024-03-02"))
    assert result.returncode == 0, result.stderr[-2000:]
    wire_costs = [
        line.split('"cost":')[1].split(",")[0]
        for line in result.stdout.splitlines()
        if line.startswith('{"type":"RECORD","stream":"cdrs"')
    ]
    expected = {format(leg.fields["cost"], "f") for leg in legs}
    assert wire_costs and set(wire_costs) <= expected  # e.g. 0.054400, digits kept
    assert any(len(c.split(".")[1]) == 6 for c in wire_costs)


def test_records_are_emitted_in_start_order(serve, run_tap, legs):
    emulator = serve(legs, order="reverse")
    stamps = [(r["start_stamp"], r["uuid"]) for r in run_tap(make_config(emulator.url)).records()]
    assert stamps == sorted(stamps)


@pytest.mark.parametrize(("hours", "workers"), [(1, 1), (5, 3), (24, 4), (72, 2)])
def test_window_size_and_concurrency_do_not_change_the_output(serve, run_tap, legs, hours, workers):
    emulator = serve(legs, order="unsorted", bounds="inclusive")
    run = run_tap(make_config(emulator.url, window_size_hours=hours, max_concurrency=workers))
    reference = sorted(
        (format_utc(leg.start), leg.uuid) for leg in legs if leg.uuid in in_range(legs)
    )
    assert [(r["start_stamp"], r["uuid"]) for r in run.records()] == reference
    assert run.final_state["bookmarks"]["cdrs"]["replication_key_value"] == reference[-1][0]


def test_a_state_message_follows_every_window(serve, run_tap, legs):
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, window_size_hours=12))
    seen: list[str] = []
    bookmarks = []
    for message in run.messages:
        if message["type"] == "RECORD":
            seen.append(message["record"]["start_stamp"])
        elif message["type"] == "STATE" and seen:
            bookmark = message["value"]["bookmarks"]["cdrs"]["replication_key_value"]
            assert bookmark == max(seen), "state must be exactly the last emitted leg"
            bookmarks.append(bookmark)
    assert len(bookmarks) >= 6  # six 12-hour windows, plus the final state


def test_resuming_from_any_state_loses_nothing_and_redoes_at_most_a_window(serve, run_tap, legs):
    """Simulates a kill right after each STATE: the next run starts from that state."""
    emulator = serve(legs, order="unsorted", bounds="inclusive")
    config = make_config(emulator.url, window_size_hours=12)
    full = run_tap(config)
    everything = in_range(legs)
    emitted: list[str] = []
    for message in full.messages:
        if message["type"] == "RECORD":
            emitted.append(message["record"]["uuid"])
        elif message["type"] == "STATE" and emitted:
            resumed = run_tap(config, state=message["value"])
            again = [r["uuid"] for r in resumed.records()]
            assert set(emitted) | set(again) == everything
            redone = set(emitted) & set(again)
            assert len(redone) <= 12 * 60 / 24 * 4  # legs of about one 12-hour window


def late_arrival() -> tuple[datetime, list[Leg], list[Leg]]:
    """A long call that started before a run's end and ended after it, then a short one.

    The short call ends before the run, so the run's bookmark passes the long call's start.
    """
    run_end = END - timedelta(hours=2)
    late_call = make_call(random.Random(5), run_end - timedelta(hours=3))
    for leg in late_call:
        leg.visible_at = run_end + timedelta(hours=3)
    later_call = make_call(random.Random(6), run_end - timedelta(minutes=30))
    for leg in later_call:
        leg.visible_at = leg.start
    return run_end, late_call, later_call


def test_lookback_picks_up_a_leg_that_appeared_after_the_run(serve, run_tap, legs):
    run_end, late_call, later_call = late_arrival()
    emulator = serve(legs + late_call + later_call, now=run_end)
    first = run_tap(make_config(emulator.url, end_date=run_end.isoformat(), lookback_minutes=1440))
    late = {leg.uuid for leg in late_call}
    assert not late & {r["uuid"] for r in first.records()}

    emulator.emulator.behaviour.now = END + timedelta(hours=5)
    second = run_tap(
        make_config(emulator.url, end_date=END.isoformat(), lookback_minutes=1440),
        state=first.final_state,
    )
    assert late <= {r["uuid"] for r in second.records()}


def test_without_lookback_a_late_leg_is_missed_which_is_why_it_exists(serve, run_tap, legs):
    run_end, late_call, later_call = late_arrival()
    emulator = serve(legs + late_call + later_call, now=run_end)
    first = run_tap(make_config(emulator.url, end_date=run_end.isoformat()))
    emulator.emulator.behaviour.now = END + timedelta(hours=5)
    second = run_tap(make_config(emulator.url), state=first.final_state)
    assert not {leg.uuid for leg in late_call} & {r["uuid"] for r in second.records()}


def test_the_bookmark_never_moves_back_during_the_lookback(serve, run_tap, legs):
    emulator = serve(legs)
    first = run_tap(make_config(emulator.url, end_date="2024-03-03"))
    saved = first.final_state["bookmarks"]["cdrs"]["replication_key_value"]
    second = run_tap(
        make_config(emulator.url, lookback_minutes=2880, window_size_hours=6),
        state=first.final_state,
    )
    bookmarks = [s["bookmarks"]["cdrs"].get("replication_key_value") for s in second.states]
    assert all(b >= saved for b in bookmarks if b)
    assert len({r["uuid"] for r in second.records()}) > len(in_range(legs, END - timedelta(days=1)))


def hourly_runs(serve, run_tap, legs, mode, extra=()):
    """Two runs an hour apart with a day's lookback, as an hourly schedule makes them."""
    first_end = END - timedelta(hours=3)
    emulator = serve([*legs, *extra], now=first_end)
    config = make_config(
        emulator.url, end_date=first_end.isoformat(), lookback_minutes=1440, lookback_mode=mode
    )
    first = run_tap(config)
    emulator.emulator.behaviour.now = first_end + timedelta(hours=1)
    emulator.emulator.stats.bodies.clear()
    second = run_tap(
        {**config, "end_date": (first_end + timedelta(hours=1)).isoformat()},
        state=first.final_state,
    )
    return first, second, emulator.emulator.stats.bodies


def test_by_default_each_run_reads_its_whole_lookback_again_and_keeps_no_day_counts(
    serve, run_tap, legs
):
    first, second, _ = hourly_runs(serve, run_tap, legs, None)
    bookmark = datetime.fromisoformat(
        first.final_state["bookmarks"]["cdrs"]["replication_key_value"].replace("Z", "+00:00")
    )
    reread = in_range(legs, bookmark - timedelta(days=1), END - timedelta(hours=2))
    assert {r["uuid"] for r in second.records()} == reread
    assert not [
        s for s in [*first.states, *second.states] if "parts_read" in s["bookmarks"]["cdrs"]
    ]


def test_back_to_the_default_a_run_reads_its_whole_lookback_and_drops_the_parts(
    serve, run_tap, legs
):
    first, _, _ = hourly_runs(serve, run_tap, legs, "on_count_change")
    emulator = serve(legs)
    again = run_tap(
        make_config(emulator.url, lookback_minutes=1440, end_date=END.isoformat()),
        state=first.final_state,
    )
    assert "parts_read" in first.final_state["bookmarks"]["cdrs"]
    assert "parts_read" not in again.final_state["bookmarks"]["cdrs"]
    bookmark = first.final_state["bookmarks"]["cdrs"]["replication_key_value"]
    start = datetime.fromisoformat(bookmark.replace("Z", "+00:00")) - timedelta(days=1)
    assert {r["uuid"] for r in again.records()} == in_range(legs, start, END)


def test_on_count_change_reads_only_the_new_hour_when_no_count_changed(serve, run_tap, legs):
    first, second, bodies = hourly_runs(serve, run_tap, legs, "on_count_change")
    first_end = END - timedelta(hours=3)
    assert {r["uuid"] for r in second.records()} == in_range(
        legs, first_end, first_end + timedelta(hours=1)
    )
    # Each saved day was counted over exactly the part read (shifted by a millisecond).
    saved = first.final_state["bookmarks"]["cdrs"]["parts_read"]
    counted = sorted(b["start_date_from"] for b in bodies if "page" not in b)
    assert [day["from"] for day in saved] == [
        "2024-03-02T00:00:00.000000Z",
        "2024-03-03T00:00:00.000000Z",
    ]
    assert counted == ["2024-03-01T23:59:59.999Z", "2024-03-02T23:59:59.999Z"]
    assert [d["to"] for d in saved] == [
        "2024-03-03T00:00:00.000000Z",
        "2024-03-03T21:00:00.000000Z",
    ]
    assert [d["legs"] for d in saved] == [
        len(in_range(legs, START + timedelta(days=1), START + timedelta(days=2))),
        len(in_range(legs, START + timedelta(days=2), first_end)),
    ]


def test_on_count_change_reads_a_day_again_when_a_late_leg_changed_its_count(serve, run_tap, legs):
    first_end = END - timedelta(hours=3)
    late_call = make_call(random.Random(5), first_end - timedelta(hours=2))
    for leg in late_call:
        leg.visible_at = first_end + timedelta(minutes=30)
    first, second, _ = hourly_runs(serve, run_tap, legs, "on_count_change", late_call)
    late = {leg.uuid for leg in late_call}
    assert not late & {r["uuid"] for r in first.records()}
    # The day it started in is read again, whole; the day before is not.
    today = START + timedelta(days=2)
    assert {r["uuid"] for r in second.records()} == in_range(
        [*legs, *late_call], today, first_end + timedelta(hours=1)
    )


def test_on_count_change_misses_a_leg_changed_in_place_which_is_its_stated_assumption(
    serve, run_tap, legs
):
    """Billing filled in after a leg appears leaves the count as it was: the default
    mode emits the final values at its next run, on_count_change never does."""
    first_end = END - timedelta(hours=3)
    # Legs that ended in the last three hours before the first run are still unbilled;
    # the next run comes once they are billed.
    settle = timedelta(hours=3)
    pending = {leg.uuid for leg in legs if first_end - settle <= leg.visible_at < first_end}
    assert pending
    final = {}
    for mode in ("always", "on_count_change"):
        emulator = serve(legs, now=first_end, settle_seconds=settle.total_seconds())
        config = make_config(
            emulator.url, end_date=first_end.isoformat(), lookback_minutes=1440, lookback_mode=mode
        )
        first = run_tap(config)
        assert {r["billing_status"] for r in first.records() if r["uuid"] in pending} == {"PENDING"}
        emulator.emulator.behaviour.now = first_end + settle
        second = run_tap(
            {**config, "end_date": (first_end + settle).isoformat()}, state=first.final_state
        )
        final[mode] = {
            r["uuid"]
            for r in second.records()
            if r["uuid"] in pending and r["billing_status"] != "PENDING"
        }
    assert final["always"] == pending
    assert final["on_count_change"] == set()


def test_a_run_says_how_many_of_the_legs_it_emitted_are_new(serve, run_tap, legs, caplog):
    with caplog.at_level(logging.INFO, logger="tap-tenios"):
        first, second, _ = hourly_runs(serve, run_tap, legs, None)
    bookmark = first.final_state["bookmarks"]["cdrs"]["replication_key_value"]
    new = [r for r in second.records() if r["start_stamp"] > bookmark]
    lines = [
        r.getMessage() for r in caplog.records if r.getMessage().startswith("cdrs: read up to")
    ]
    assert f"{len(first.records())} legs ({len(first.records())} beyond" in lines[0]
    assert f"{len(second.records())} legs ({len(new)} beyond the saved bookmark)" in lines[-1]
    assert 0 < len(new) < len(second.records())


def test_an_incremental_run_with_nothing_new_keeps_the_bookmark(serve, run_tap, legs):
    emulator = serve(legs)
    first = run_tap(make_config(emulator.url))
    second = run_tap(make_config(emulator.url, lookback_minutes=60), state=first.final_state)
    assert second.final_state["bookmarks"]["cdrs"] == first.final_state["bookmarks"]["cdrs"]


def local_counts(
    legs, zone: ZoneInfo, start: datetime = START, end: datetime = END
) -> Counter[str]:
    """Legs per local day, of those that start in ``[start, end)`` (the extracted range)."""
    return Counter(
        leg.start.astimezone(zone).date().isoformat() for leg in legs if start <= leg.start < end
    )


def around(days_before: int = 2, days_after: int = 2) -> list[Leg]:
    """The test range's calls, and calls before and after it, as a real account has."""
    return generate(START - timedelta(days=days_before), END + timedelta(days=days_after), 40)


@pytest.mark.parametrize("bounds", BOUNDS)
def test_daily_counts_match_the_legs_of_each_local_day(serve, run_tap, bounds):
    legs = around()
    emulator = serve(legs, bounds=bounds)
    run = run_tap(make_config(emulator.url, timezone="Europe/Berlin"), streams=("cdr_counts",))
    rows = run.records("cdr_counts")
    expected = local_counts(legs, ZoneInfo("Europe/Berlin"))
    assert [r["date"] for r in rows] == ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
    for row in rows:
        assert row["total_items"] == expected[row["date"]], row
        assert row["timezone"] == "Europe/Berlin"
    assert rows[1]["start_date_from"] == "2024-03-01T23:00:00.000000Z"
    assert rows[1]["start_date_to"] == rows[2]["start_date_from"]


@pytest.mark.parametrize(
    ("zone", "first", "last"),
    [
        # The extraction [2024-03-01T00:00Z, 2024-03-04T00:00Z) in local days.
        (
            "UTC",
            ("2024-03-01", "00:00", "2024-03-02T00:00"),
            ("2024-03-03", "00:00", "2024-03-04T00:00"),
        ),
        (
            "Europe/Berlin",
            ("2024-03-01", "00:00", "2024-03-01T23:00"),
            ("2024-03-04", "23:00", "2024-03-04T00:00"),
        ),
        (
            "America/New_York",
            ("2024-02-29", "00:00", "2024-03-01T05:00"),
            ("2024-03-03", "05:00", "2024-03-04T00:00"),
        ),
    ],
)
def test_days_the_extraction_begins_or_ends_within_are_counted_where_it_extracts(
    serve, run_tap, zone, first, last
):
    """A real account has calls before and after any range: the first and last local
    days are counted over the part the legs are extracted from, and marked partial."""
    legs = around()
    emulator = serve(legs)
    config = make_config(emulator.url, timezone=zone)
    run = run_tap(config, streams=("cdrs", "cdr_counts"))
    rows = run.records("cdr_counts")
    head, tail = rows[0], rows[-1]
    assert (head["date"], head["start_date_from"][11:16], head["start_date_to"][:16]) == first
    assert (tail["date"], tail["start_date_from"][11:16], tail["start_date_to"][:16]) == last
    assert head["start_date_from"] == "2024-03-01T00:00:00.000000Z"
    assert tail["start_date_to"] == "2024-03-04T00:00:00.000000Z"
    whole = [r["whole_day"] for r in rows]
    assert whole == [zone == "UTC"] + [True] * (len(rows) - 2) + [zone == "UTC"]
    # Every row, whole or not, counts exactly the loaded legs of its own period.
    stamps = [r["start_stamp"] for r in run.records()]
    for row in rows:
        inside = [s for s in stamps if row["start_date_from"] <= s < row["start_date_to"]]
        assert row["total_items"] == len(inside), row
    assert sum(r["total_items"] for r in rows) == len(stamps) == len(in_range(legs))


def test_today_is_counted_up_to_now_and_marked_partial(serve, run_tap):
    now = utc_now()
    legs = generate(now - timedelta(days=2), now + timedelta(days=1), 30, seed=2)
    emulator = serve(legs, now=now)
    config = make_config(
        emulator.url, start_date=(now - timedelta(days=1)).date().isoformat(), end_date=None
    )
    rows = run_tap(config, streams=("cdr_counts",)).records("cdr_counts")
    today = rows[-1]
    assert today["date"] == now.date().isoformat() and not today["whole_day"]
    assert today["start_date_to"] >= format_utc(now)
    assert today["start_date_to"] < format_utc(now + timedelta(minutes=5))


def test_a_25_hour_day_is_counted_whole_in_two_requests(serve, run_tap):
    zone = ZoneInfo("Europe/Berlin")
    start = datetime(2024, 10, 26, 22, tzinfo=UTC)  # local midnight of Oct 27 (25 h long)
    legs = generate(start, start + timedelta(hours=25), 200, seed=9)
    legs += make_call(random.Random(1), start) + make_call(
        random.Random(2), start + timedelta(hours=25)
    )
    emulator = serve(legs, bounds="inclusive", now=start + timedelta(days=10))
    config = make_config(
        emulator.url,
        start_date="2024-10-27T00:00:00+02:00",
        end_date="2024-10-28T00:00:00+01:00",
        timezone="Europe/Berlin",
    )
    rows = run_tap(config, streams=("cdr_counts",)).records("cdr_counts")
    assert [(r["date"], r["whole_day"]) for r in rows] == [("2024-10-27", True)]
    counted = local_counts(legs, zone, start, start + timedelta(hours=25))["2024-10-27"]
    assert rows[0]["total_items"] == counted
    count_bodies = [b for b in emulator.emulator.stats.bodies if "page" not in b]
    assert len(count_bodies) == 2


@pytest.mark.parametrize(
    ("minutes", "dates"),
    [(1440, ["2024-03-02", "2024-03-03"]), (2880, ["2024-03-01", "2024-03-02", "2024-03-03"])],
)
def test_counts_recount_recent_days_on_the_next_run(serve, run_tap, legs, minutes, dates):
    """As many days before the bookmark as the lookback spans."""
    emulator = serve(legs)
    config = make_config(emulator.url, lookback_minutes=minutes)
    first = run_tap(config, streams=("cdr_counts",))
    assert first.final_state["bookmarks"]["cdr_counts"]["replication_key_value"] == "2024-03-03"
    second = run_tap(config, state=first.final_state, streams=("cdr_counts",))
    assert [r["date"] for r in second.records("cdr_counts")] == dates


def test_cdr_counts_are_keyed_by_their_date_so_a_recount_replaces_the_row(serve, run_tap, legs):
    run = run_tap(make_config(serve(legs).url, end_date="2024-03-02"), streams=("cdr_counts",))
    schema = next(m for m in run.messages if m["type"] == "SCHEMA")
    assert schema["key_properties"] == ["date"]
    assert "date" in schema["schema"]["required"]
    assert "null" not in schema["schema"]["properties"]["date"]["type"]


def test_both_streams_in_one_run(serve, run_tap):
    legs = dataset(calls_per_day=20)
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url), streams=("cdrs", "cdr_counts"))
    per_day = Counter(r["start_stamp"][:10] for r in run.records())
    assert {r["date"]: r["total_items"] for r in run.records("cdr_counts")} == dict(per_day)
    assert set(run.final_state["bookmarks"]) == {"cdrs", "cdr_counts"}


def test_one_tap_object_can_sync_twice(serve, legs, capsys):
    emulator = serve(legs)
    tap = TapTenios(config=make_config(emulator.url), state={}, parse_env_config=False)
    select(tap, {"cdrs", "cdr_counts"})
    for _ in range(2):
        tap.sync_all()
        out = capsys.readouterr().out
        assert {r["uuid"] for r in records_in(out) if "uuid" in r} == in_range(legs)
        days = [r["date"] for r in records_in(out) if "date" in r]
        assert days == ["2024-03-01", "2024-03-02", "2024-03-03"]
        tap.state.clear()  # a full run again, as from a fresh state


def records_in(out: str) -> list[dict]:
    return [m["record"] for m in parse_messages(out) if m["type"] == "RECORD"]


@pytest.mark.parametrize("typed", [True, False], ids=["typed pages", "careful path"])
@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_stamps_in_the_api_zone_are_read_exactly_when_api_timezone_names_it(
    serve, run_tap, legs, zone, typed
):
    if not typed:  # a duration spelled as text: every page is converted field by field
        legs = [
            dataclasses.replace(g, fields={**g.fields, "duration": str(g.fields["duration"])})
            for g in legs
        ]
    emulator = serve(legs, timestamp_style="space", stamp_zone=zone)
    run = run_tap(make_config(emulator.url, api_timezone=zone))
    truth = {leg.uuid: format_utc(leg.start) for leg in legs}
    records = run.records()
    assert {r["uuid"] for r in records} == in_range(legs)
    assert all(r["start_stamp"] == truth[r["uuid"]] for r in records)
    assert all(isinstance(r["duration"], int) for r in records)


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_stamps_in_another_zone_stop_the_run_naming_api_timezone(serve, run_tap, legs, zone):
    emulator = serve(legs, timestamp_style="space", stamp_zone=zone)
    run = run_tap(make_config(emulator.url, max_concurrency=1), fails=True)
    message = str(run.error)
    # Whichever window comes first: it has legs whose stamps fall outside it.
    assert re.match(
        r"cdrs window \[(\S+), \S+\): \d+ leg\(s\) start outside the range asked for \[", message
    ), message
    assert "reading stamps without a zone as UTC: the API's stamps look like another" in message
    assert message.endswith("Set api_timezone to the zone the API writes its timestamps in.")
    assert run.records() == [], "nothing read an hour off was emitted"


def test_decimal_cost_is_a_string_with_precision_and_scale(serve, run_tap, legs):
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, use_singer_decimal=True))
    schema = next(m["schema"] for m in run.messages if m["type"] == "SCHEMA")
    assert schema["properties"]["cost"] == {**DECIMAL_COST, "precision": 15, "scale": 6}
    by_uuid = {leg.uuid: leg for leg in legs}
    records = run.records()
    assert records
    for record in records:
        assert record["cost"] == format(by_uuid[record["uuid"]].fields["cost"], "f")


def test_without_use_singer_decimal_cost_is_a_plain_number(serve, run_tap, legs):
    """No precision or scale on it: a loader makes it its usual numeric column."""
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, end_date="2024-03-02"))
    schema = next(m["schema"] for m in run.messages if m["type"] == "SCHEMA")
    cost = schema["properties"]["cost"]
    assert "number" in cost["type"]
    assert "precision" not in cost and "scale" not in cost
    assert all(isinstance(r["cost"], Decimal) for r in run.records())


@pytest.mark.parametrize(
    ("cost", "problem"),
    [
        ("0.0000001", "is 1E-7, which has more than 6 decimals"),
        # Ten integer digits: more than DECIMAL(15, 6) holds, or a float keeps exactly.
        ("1000000000", "is 1000000000, which has more than 9 integer digits"),
        ("-1000000000.5", "is -1000000000.5, which has more than 9 integer digits"),
    ],
)
def test_a_cost_the_decimal_column_would_round_stops_the_run(
    serve, run_tap, legs, cost: str, problem: str
):
    legs[0].fields["cost"] = Decimal(cost)
    emulator = serve(legs)
    run = run_tap(make_config(emulator.url, use_singer_decimal=True), fails=True)
    assert f"CDR {legs[0].uuid}: field 'cost' {problem}" in str(run.error)


def test_every_record_matches_the_schema_its_stream_announces(serve, run_tap, legs):
    """Loaders build columns from SCHEMA: a null where it says "not null" breaks them."""
    run = run_tap(make_config(serve(legs).url), streams=("cdrs", "cdr_counts"))
    schemas = {m["stream"]: m["schema"] for m in run.messages if m["type"] == "SCHEMA"}
    for stream in ("cdrs", "cdr_counts"):
        validator = jsonschema.Draft7Validator(schemas[stream])
        records = run.records(stream)
        assert records
        for record in records:
            assert not [e.message for e in validator.iter_errors(record)], record
    nulls = {name for r in run.records() for name, value in r.items() if value is None}
    assert {"main_leg_uuid", "bleg_uuid", "answer_stamp", "callerid_name"} <= nulls
    # Loaders merge re-read legs on the key, and key and bookmark are never null.
    cdrs = next(m for m in run.messages if m["type"] == "SCHEMA" and m["stream"] == "cdrs")
    assert cdrs["key_properties"] == ["uuid"]
    assert cdrs["bookmark_properties"] == ["start_stamp"]
    assert {"uuid", "start_stamp"} <= set(cdrs["schema"]["required"])


@pytest.mark.parametrize(
    ("stream", "path"), [("cdrs", "/cdrs/retrieve"), ("cdr_counts", "/cdrs/count")]
)
def test_a_tap_object_whose_sync_failed_can_sync_again(serve, legs, capsys, stream, path):
    """A failed read sets the stream's stop signal; the next sync must start afresh."""
    emulator = serve(legs, fault_queue=[{"kind": "400", "path": path}])
    tap = TapTenios(config=make_config(emulator.url), state={}, parse_env_config=False)
    select(tap, {stream})
    with pytest.raises(TapRunError, match="400"):
        tap.sync_all()
    capsys.readouterr()
    tap.state.clear()
    tap.sync_all()
    records = records_in(capsys.readouterr().out)
    if stream == "cdrs":
        assert {r["uuid"] for r in records} == in_range(legs)
    else:
        assert [r["date"] for r in records] == ["2024-03-01", "2024-03-02", "2024-03-03"]


@pytest.mark.parametrize(
    ("stream", "bookmark"),
    [
        ("cdrs", "not-a-date"),
        ("cdrs", 17),
        ("cdrs", "2030-01-01T00:00:00.000000Z"),
        ("cdr_counts", "not-a-date"),
        ("cdr_counts", "2024-02-31"),
    ],
)
def test_a_bad_bookmark_in_the_shape_meltano_stores_is_refused_naming_the_fix(
    serve, run_tap, legs, stream, bookmark
):
    """Meltano saves ``replication_key`` beside the value, so the SDK reads the bookmark
    (against ``start_date``) before the stream does: that must not end in its traceback."""
    key = {"cdrs": "start_stamp", "cdr_counts": "date"}[stream]
    emulator = serve(legs)
    state = {"bookmarks": {stream: {"replication_key": key, "replication_key_value": bookmark}}}
    run = run_tap(make_config(emulator.url), state=state, streams=(stream,), fails=True)
    message = str(run.error)
    assert message.startswith(f"The saved state of stream {stream!r} holds bookmark {bookmark!r}")
    assert "`meltano state clear <state id>`" in message
    assert "`meltano state set <state id> '<state>'`" in message
    assert run.records(stream) == []
    assert emulator.emulator.stats.requests == {}


def test_a_readable_bookmark_in_the_shape_meltano_stores_resumes_from_it(serve, run_tap, legs):
    emulator = serve(legs)
    bookmark = "2024-03-02 00:00:00+00:00"  # another spelling than the tap's own
    state = {
        "bookmarks": {"cdrs": {"replication_key": "start_stamp", "replication_key_value": bookmark}}
    }
    run = run_tap(make_config(emulator.url), state=state)
    assert {r["uuid"] for r in run.records()} == in_range(legs, START + timedelta(days=1))


def test_the_record_counter_reports_every_record_though_it_reads_the_clock_sparsely(caplog):
    import json as json_module
    import logging

    from singer_sdk import metrics

    from tap_tenios.progress import SparseCounter

    tap = TapTenios(config=make_config("http://127.0.0.1:9"), parse_env_config=False)
    counter = tap.streams["cdrs"].get_record_counter(log_interval=0)
    assert isinstance(counter, SparseCounter)
    with caplog.at_level(logging.INFO, logger="singer_sdk.metrics"), counter:
        for _ in range(2500):
            counter.increment()
    points = [
        json_module.loads(r.getMessage().split("METRIC: ", 1)[1])
        for r in caplog.records
        if "METRIC: " in r.getMessage()
    ]
    counted = [p for p in points if p["metric"] == metrics.Metric.RECORD_COUNT.value]
    assert sum(p["value"] for p in counted) == 2500
    assert 1 < len(counted) <= 3  # a line per thousand (the interval is 0), and the rest
    assert {p["tags"]["stream"] for p in counted} == {"cdrs"}
