"""The fast output path writes exactly what the SDK's plain path writes."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import threading
import time
from datetime import timedelta

import pytest
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.io_base import SingerWriter as PlainWriter

from tap_tenios import reader, records
from tap_tenios.emulator import TIMESTAMP_STYLES, generate
from tap_tenios.tap import TapTenios
from tap_tenios.windows import format_utc
from tap_tenios.writer import BLOCK, RecordOutput, SingerWriter

from .helpers import START, in_range, make_config, parse_messages, run_cli, tap_command


def comparable(run) -> list[str]:
    """Each message as JSON text, minus what depends on the clock."""
    lines = []
    for message in run.messages:
        message.pop("time_extracted", None)
        for bookmark in message.get("value", {}).get("bookmarks", {}).values():
            bookmark.pop("replication_key_signpost", None)
        lines.append(json.dumps(message, sort_keys=True, default=repr))
    return lines


CASES = [(style, ()) for style in TIMESTAMP_STYLES] + [("space", ("callerid_number", "cost"))]


@pytest.mark.parametrize(("style", "deselect"), CASES)
def test_fast_and_plain_paths_write_the_same_messages(
    serve, run_tap, legs, monkeypatch, style, deselect
):
    emulator = serve(legs, timestamp_style=style, order="unsorted")
    config = make_config(emulator.url)
    fast = run_tap(config, streams=("cdrs", "cdr_counts"), deselect=deselect)
    if deselect:
        assert not set(deselect) & set(fast.records()[0])

    monkeypatch.setattr(TapTenios, "message_writer_class", PlainWriter)
    monkeypatch.setattr(RecordOutput, "TYPE_CONFORMANCE_LEVEL", TypeConformanceLevel.RECURSIVE)
    careful = functools.partial(records.page_records, typed=False)  # every item converted
    monkeypatch.setattr(
        reader, "page_records", lambda items, typed, zone: careful(items, zone=zone)
    )
    plain = run_tap(config, streams=("cdrs", "cdr_counts"), deselect=deselect)

    assert comparable(fast) == comparable(plain)
    assert len(fast.records()) > 100


def test_costs_are_written_with_the_api_digits_by_both_writers(capsysbinary):
    from decimal import Decimal

    from singer_sdk.singerlib.messages import RecordMessage

    message = RecordMessage(stream="cdrs", record={"cost": Decimal("0.054400")})
    writer = SingerWriter()
    writer.write_message(message)
    writer.drain()
    PlainWriter().write_message(message)
    out = capsysbinary.readouterr().out.decode()
    assert out.count('"cost":0.054400') == 2, out
    assert str(parse_messages(out)[0]["record"]["cost"]) == "0.054400"


def test_records_are_held_until_a_state_and_then_written_before_it(capsysbinary):
    from singer_sdk.singerlib.messages import RecordMessage, StateMessage

    writer = SingerWriter()
    for n in range(3):
        writer.write_message(RecordMessage(stream="cdrs", record={"n": n}))
    assert capsysbinary.readouterr().out == b""  # one write per window, not per record
    writer.write_message(StateMessage(value={"bookmarks": {}}))
    lines = parse_messages(capsysbinary.readouterr().out.decode())
    assert [m["type"] for m in lines] == ["RECORD", "RECORD", "RECORD", "STATE"]
    assert [m["record"]["n"] for m in lines[:3]] == [0, 1, 2]


def test_a_long_run_of_records_is_written_in_blocks_without_a_state(capsysbinary):
    from singer_sdk.singerlib.messages import RecordMessage

    writer = SingerWriter()
    line = len(writer.format_message(RecordMessage(stream="cdrs", record={"pad": "x" * 1000})))
    count = BLOCK // line + 2
    for _ in range(count):
        writer.write_message(RecordMessage(stream="cdrs", record={"pad": "x" * 1000}))
    written = capsysbinary.readouterr().out
    assert 0 < len(written) < count * line  # memory stays bounded between states
    assert written.count(b"\n") == len(written) // line  # whole lines only
    writer.drain()
    assert len(written) + len(capsysbinary.readouterr().out) == count * line


def test_records_held_when_the_process_exits_are_written():
    import subprocess
    import sys

    program = (
        "from singer_sdk.singerlib.messages import RecordMessage\n"
        "from tap_tenios.writer import SingerWriter\n"
        "SingerWriter().write_message(RecordMessage(stream='cdrs', record={'n': 1}))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, check=True, text=True
    ).stdout
    assert [m["record"] for m in parse_messages(out)] == [{"n": 1}]


class ShortWrites:
    """An unbuffered stdout (``PYTHONUNBUFFERED``) whose writes take at most 1000 bytes."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.buffer = self

    def write(self, data: memoryview) -> int:
        self.writes.append(bytes(data[:1000]))
        return len(self.writes[-1])

    def flush(self) -> None:
        pass


def test_a_stdout_that_takes_part_of_a_block_per_write_still_gets_all_of_it(monkeypatch):
    from singer_sdk.singerlib.messages import RecordMessage, StateMessage

    out = ShortWrites()
    monkeypatch.setattr("sys.stdout", out)
    writer = SingerWriter()
    for number in range(2000):
        writer.write_message(RecordMessage(stream="cdrs", record={"n": number, "pad": "x" * 40}))
    writer.write_message(StateMessage(value={"bookmarks": {"cdrs": {"n": 1999}}}))

    text = b"".join(out.writes)
    messages = parse_messages(text.decode())
    assert [m["record"]["n"] for m in messages[:-1]] == list(range(2000))
    assert messages[-1] == {"type": "STATE", "value": {"bookmarks": {"cdrs": {"n": 1999}}}}
    assert len(out.writes) == -(-len(text) // 1000)  # full 1000-byte writes, none per record


class SlowReader(threading.Thread):
    """Reads a process's stdout a little at a time, so its pipe stays full: a block
    the tap writes is taken in many pieces, and a signal can land in the middle."""

    CHUNK = 4096
    PAUSE = 0.002  # about 2 MB/s

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        super().__init__(daemon=True)
        self.process = process
        self.data = bytearray()
        self.states = 0
        self.lock = threading.Lock()

    def run(self) -> None:
        assert self.process.stdout is not None
        while chunk := self.process.stdout.read1(self.CHUNK):
            with self.lock:
                self.data += chunk
                self.states = self.data.count(b'{"type":"STATE"')
            time.sleep(self.PAUSE)


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(6))
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_through_a_slow_pipe_leaves_whole_lines_and_a_safe_state(
    tmp_path, serve, sig, attempt
):
    """What an orchestrator stopping a task sees: only whole lines, none twice; exit
    128 + the signal within two seconds; a last STATE that covers only records written;
    and a resumed run that loses nothing."""
    legs = generate(START, START + timedelta(days=2), 1500, seed=attempt)
    emulator = serve(legs, latency_ms=30, order="unsorted")
    config = make_config(
        emulator.url, end_date=(START + timedelta(days=2)).isoformat(), page_size=400
    )
    command = tap_command(tmp_path, config)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    reader = SlowReader(process)
    reader.start()
    wanted = 2 + attempt % 4  # after a few windows, at a moment that varies
    deadline = time.monotonic() + 60
    while reader.states < wanted and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.001)
    time.sleep(0.05 * attempt)
    assert process.poll() is None, "the run ended before the signal: make it longer"
    signalled = time.monotonic()
    process.send_signal(sig)
    code = process.wait(timeout=30)
    took = time.monotonic() - signalled
    reader.join(timeout=30)
    assert code == 128 + sig, f"exit code {code} after {sig.name}"
    assert took < 2, f"{sig.name} took {took:.1f} s"

    out = bytes(reader.data)
    assert out.endswith(b"\n"), "the last line is cut"
    lines = out.decode().splitlines()
    messages = [json.loads(line) for line in lines]  # every line whole
    cdrs = [
        (i, m["record"]["uuid"])
        for i, m in enumerate(messages)
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    ]
    uuids = [uuid for _, uuid in cdrs]
    assert len(uuids) == len(set(uuids)), "a record was written twice"
    states = [(i, m["value"]) for i, m in enumerate(messages) if m["type"] == "STATE"]
    assert states, "no STATE before the signal: the test proves little"
    position, state = states[-1]
    bookmark = state["bookmarks"].get("cdrs", {}).get("replication_key_value")
    written = {uuid for i, uuid in cdrs if i < position}
    if bookmark:
        passed = {leg.uuid for leg in legs if format_utc(leg.start) < bookmark}
        assert passed <= written, "the last STATE passes records that were not written"

    resumed = run_cli(tmp_path, config, state=state)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    again = {
        m["record"]["uuid"]
        for m in resumed.messages
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    }
    assert set(uuids) | again == in_range(legs, START, START + timedelta(days=2))
