"""The fast output path writes exactly what the SDK's plain path writes."""

from __future__ import annotations

import json

import pytest
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.io_base import SingerWriter as PlainWriter

from tap_tenios import records
from tap_tenios.client import TeniosStream
from tap_tenios.emulator import TIMESTAMP_STYLES
from tap_tenios.tap import TapTenios
from tap_tenios.writer import SingerWriter

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
    monkeypatch.setattr(TeniosStream, "TYPE_CONFORMANCE_LEVEL", TypeConformanceLevel.RECURSIVE)
    monkeypatch.setattr(records, "to_record", records._convert)
    plain = run_tap(config, streams=("cdrs", "cdr_counts"), deselect=deselect)

    assert comparable(fast) == comparable(plain)
    assert len(fast.records()) > 100


def test_costs_are_written_with_the_api_digits_by_both_writers(capsysbinary):
    from decimal import Decimal

    from singer_sdk.singerlib.messages import RecordMessage

    message = RecordMessage(stream="cdrs", record={"cost": Decimal("0.054400")})
    SingerWriter().write_message(message)
    PlainWriter().write_message(message)
    out = capsysbinary.readouterr().out.decode()
    assert out.count('"cost":0.054400') == 2, out
    assert str(parse_messages(out)[0]["record"]["cost"]) == "0.054400"
