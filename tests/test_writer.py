"""The fast output path writes exactly what the SDK's plain path writes."""

from __future__ import annotations

import json

import pytest
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.io_base import SingerWriter as PlainWriter

from tap_tenios import reader, records
from tap_tenios.emulator import TIMESTAMP_STYLES
from tap_tenios.tap import TapTenios
from tap_tenios.writer import BLOCK, RecordOutput, SingerWriter

from .helpers import make_config, parse_messages


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
    monkeypatch.setattr(reader, "to_record", records._convert)
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
