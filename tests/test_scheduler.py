"""Reads ahead on worker threads: results in order, memory bounded, prompt to stop."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from tap_tenios import scheduler
from tap_tenios.scheduler import DaemonPool, Split, ordered_map, ordered_plan
from tap_tenios.windows import format_utc

from .helpers import in_range, make_config, parse_messages, tap_command, write_json


class Drawn:
    """An iterator that counts how many items have been taken from it."""

    def __init__(self, items: range) -> None:
        self.taken = 0
        self.source = iter(items)

    def __iter__(self) -> Iterator[int]:
        for item in self.source:
            self.taken += 1
            yield item


@pytest.mark.parametrize("workers", [1, 3])
def test_ordered_map_keeps_twice_the_workers_in_hand_and_no_more(workers: int) -> None:
    items = Drawn(range(100))
    results = ordered_map(lambda n: n * n, items, workers, threading.Event())
    assert next(results) == 0
    assert items.taken == 2 * workers, "calls queued or running when the first is used"
    assert next(results) == 1
    assert items.taken == 2 * workers + 1
    assert list(results) == [n * n for n in range(2, 100)]


def test_ordered_map_sets_stop_when_a_call_fails_but_not_when_it_ends() -> None:
    stop = threading.Event()
    assert list(ordered_map(str, range(5), 2, stop)) == ["0", "1", "2", "3", "4"]
    assert not stop.is_set(), "a map that ended normally must leave stop alone"

    def boom(n: int) -> int:
        if n == 3:
            raise RuntimeError("window 3 failed")
        return n

    with pytest.raises(RuntimeError, match="window 3"):
        list(ordered_map(boom, range(50), 2, stop))
    assert stop.is_set()


def halves(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
    """A read of the numbers [a, b): ranges wider than 4 split in two."""
    a, b = item
    if b - a > 4:
        middle = (a + b) // 2
        return Split([(a, middle), (middle, b)])
    return list(range(a, b))


def test_ordered_plan_reads_the_parts_of_a_split_in_its_place() -> None:
    tops = [(0, 37), (37, 40), (40, 100)]
    chunks = list(ordered_plan(halves, tops, 3, threading.Event()))
    assert [n for chunk in chunks for n in chunk] == list(range(100))
    assert all(len(chunk) <= 4 for chunk in chunks)


def test_a_read_that_splits_just_after_the_loop_looked_is_read_as_its_parts(
    monkeypatch,
) -> None:
    """The race: the first read finishes, as a split, between the look for splits and
    the emitting of results. Its parts must be read, never the split emitted."""
    expand = scheduler.expand_splits
    looked, finish = threading.Event(), threading.Event()

    def look_then_let_it_finish(slots):  # type: ignore[no-untyped-def]
        out = expand(slots)
        if not looked.is_set():
            looked.set()
            finish.set()
            head = out[0][0].future
            assert head is not None
            head.result(10)  # it finishes now, after the look
        return out

    def read(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
        if item == (0, 8):
            finish.wait(10)
        return halves(item)

    monkeypatch.setattr(scheduler, "expand_splits", look_then_let_it_finish)
    chunks = list(ordered_plan(read, [(0, 8)], 1, threading.Event()))
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7]]


@pytest.mark.parametrize(("workers", "ahead"), [(2, None), (3, 5)])
def test_ordered_plan_holds_at_most_its_limit(workers: int, ahead: int | None) -> None:
    items = Drawn(range(200))
    reads = ordered_plan(lambda n: [n], items, workers, threading.Event(), ahead)
    assert next(reads) == [0]
    assert items.taken == (ahead or 2 * workers)
    assert [r[0] for r in reads] == list(range(1, 200))


def test_ordered_plan_sleeps_while_the_first_read_runs_behind_finished_ones() -> None:
    """Finished reads waiting behind a slow first one must not make the loop spin: the
    thread emitting results spends a second waiting, not a second of CPU."""
    release = threading.Event()

    def read(n: int) -> list[int]:
        if n == 0:
            release.wait(10)
        return [n]

    timer = threading.Timer(1.0, release.set)
    timer.start()
    began = time.thread_time()
    try:
        assert [r[0] for r in ordered_plan(read, range(6), 2, threading.Event())] == list(range(6))
    finally:
        timer.cancel()
    # Sleeping, a few milliseconds; a loop looking again and again, most of the second.
    assert time.thread_time() - began < 0.2


def test_ordered_plan_fails_at_the_first_failed_read_and_sets_stop() -> None:
    stop = threading.Event()

    def read(item: tuple[int, int]) -> list[int] | Split[tuple[int, int]]:
        if item == (10, 15):
            raise RuntimeError("part failed")
        return halves(item)

    with pytest.raises(RuntimeError, match="part failed"):
        list(ordered_plan(read, [(0, 6), (6, 24), (24, 99)], 2, stop))
    assert stop.is_set()


def test_ordered_plan_that_ends_normally_leaves_stop_alone() -> None:
    stop = threading.Event()
    assert len(list(ordered_plan(halves, [(0, 37), (37, 40)], 2, stop))) > 2
    assert not stop.is_set(), "a tap that read its range must be able to sync again"


def gated(gate: threading.Event, ran: list[int]) -> Callable[[int], list[int]]:
    """A read that records each item it starts; items other than 0 wait for ``gate``."""

    def read(n: int) -> list[int]:
        ran.append(n)
        if n:
            gate.wait(5)
        return [n]

    return read


@pytest.mark.parametrize("plan", [False, True])
def test_reads_still_queued_when_the_consumer_stops_never_start(plan: bool) -> None:
    # Two workers, four reads in hand: 0 returns, 1 and 2 hold both workers, 3 waits
    # in the queue when the consumer stops after the first result.
    gate, ran = threading.Event(), []
    read = gated(gate, ran)
    stop = threading.Event()
    results = (
        ordered_plan(read, range(10), 2, stop) if plan else ordered_map(read, range(10), 2, stop)
    )
    assert next(results) == [0]
    results.close()
    assert stop.is_set()
    gate.set()
    time.sleep(0.3)  # what a worker would need to start a read left in the queue
    assert 3 not in ran and set(ran) <= {0, 1, 2}


def test_a_pool_runs_as_many_calls_at_once_as_it_has_workers() -> None:
    together = threading.Barrier(3, timeout=5)
    with DaemonPool(3, "test") as pool:
        futures = [pool.submit(together.wait) for _ in range(3)]
        assert sorted(f.result(timeout=10) for f in futures) == [0, 1, 2]


def test_a_pool_of_one_runs_one_call_at_a_time() -> None:
    second_started = threading.Event()
    with DaemonPool(1, "test") as pool:
        first = pool.submit(second_started.wait, 0.3)
        pool.submit(second_started.set)
        assert first.result(timeout=10) is False, "the second call ran beside the first"


def test_pool_threads_never_hold_up_the_exit() -> None:
    release = threading.Event()
    with DaemonPool(2, "test") as pool:
        pool.submit(release.wait)
        threads = [t for t in threading.enumerate() if t.name.startswith("test-")]
    assert threads and all(t.daemon for t in threads)
    release.set()


def test_sigterm_ends_a_run_with_a_hanging_request_at_once_and_a_safe_state(
    tmp_path, serve, legs
) -> None:
    """A request that hangs (for as long as the timeout allows) does not delay SIGTERM,
    and the last STATE never passes a leg that was not emitted."""
    emulator = serve(legs, latency_ms=5)
    config = make_config(emulator.url, page_size=10, max_concurrency=2, request_timeout_seconds=120)
    command = tap_command(tmp_path, config)
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True
    )
    stats = emulator.emulator.stats
    behaviour = emulator.emulator.behaviour
    deadline = time.monotonic() + 60
    while stats.requests.get("/cdrs/retrieve", 0) < 8 and time.monotonic() < deadline:
        time.sleep(0.005)
    # From now on every request hangs for a minute.
    behaviour.stall_seconds = 60
    behaviour.fault_kinds = ("stall",)
    behaviour.fault_rate = 1.0
    while not stats.faults.get("stall") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert stats.faults.get("stall"), "no request hung: the test proves nothing"
    signalled = time.monotonic()
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=30)
    took = time.monotonic() - signalled
    assert took < 10, f"SIGTERM took {took:.1f} s with a request hanging"
    messages = parse_messages(out)
    records = [m["record"] for m in messages if m["type"] == "RECORD" and m["stream"] == "cdrs"]
    emitted = {r["uuid"] for r in records}
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert states, "a STATE must be written on SIGTERM"
    bookmark = states[-1]["bookmarks"].get("cdrs", {}).get("replication_key_value")
    if bookmark:
        passed = {leg.uuid for leg in legs if format_utc(leg.start) < bookmark}
        assert passed & in_range(legs) <= emitted, "state passed a leg never emitted"
    # The next run, from that state, gets the rest: nothing is lost.
    behaviour.fault_rate = 0.0
    resumed = subprocess.run(
        [*command, "--state", str(write_json(tmp_path, "state.json", states[-1]))],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    again = {
        m["record"]["uuid"]
        for m in parse_messages(resumed.stdout)
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    }
    assert emitted | again == in_range(legs)
