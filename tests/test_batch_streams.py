"""BATCH files from the streams: every leg exactly once per run, a STATE only over
announced files, a killed run resumed without loss, stream maps applied."""

from __future__ import annotations

import gzip
import json
import os
import resource
import signal
import subprocess
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from .helpers import in_range, log_lines, make_config, run_cli, run_until, tap_command


def batch_config(root: Path, size: int = 25, compression: str = "none") -> dict[str, Any]:
    return {
        "encoding": {"format": "jsonl", "compression": compression},
        "storage": {"root": root.as_uri()},
        "batch_size": size,
    }


def announced(messages: list[dict[str, Any]], stream: str = "cdrs") -> list[dict[str, Any]]:
    """The records of every file a BATCH message names, in order."""
    records = []
    for message in messages:
        if message["type"] == "BATCH" and message["stream"] == stream:
            for url in message["manifest"]:
                path = Path(url.removeprefix("file://"))
                raw = path.read_bytes()
                if message["encoding"]["compression"] == "gzip":
                    raw = gzip.decompress(raw)
                records += [json.loads(line, parse_float=Decimal) for line in raw.splitlines()]
    return records


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_batch_run_emits_every_leg_once_in_files_and_state_after_each(
    tmp_path, serve, legs, compression
) -> None:
    emulator = serve(legs, order="unsorted", bounds="inclusive")
    config = make_config(emulator.url, batch_config=batch_config(tmp_path / "b", 40, compression))
    result = run_cli(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = result.messages
    assert not [m for m in messages if m["type"] == "RECORD" and m["stream"] == "cdrs"]
    records = announced(messages)
    uuids = [r["uuid"] for r in records]
    assert set(uuids) == in_range(legs) and len(uuids) == len(set(uuids))
    # After each BATCH message (before the next), a STATE at that file's last leg.
    marks = [i for i, m in enumerate(messages) if m["type"] == "BATCH" and m["stream"] == "cdrs"]
    for i, j in zip(marks, [*marks[1:], len(messages)], strict=True):
        upto = announced(messages[: i + 1])[-1]["start_stamp"]
        states = [m for m in messages[i + 1 : j] if m["type"] == "STATE"]
        assert states[-1]["value"]["bookmarks"]["cdrs"]["replication_key_value"] == upto


@pytest.mark.parametrize(
    ("batches", "delay", "sig"),
    [
        (1, 0.0, signal.SIGKILL),
        (2, 0.02, signal.SIGTERM),
        (3, 0.0, signal.SIGTERM),
        (4, 0.05, signal.SIGKILL),
    ],
)
def test_a_killed_batch_run_resumes_from_its_last_state_losing_nothing(
    tmp_path, serve, legs, batches, delay, sig
) -> None:
    emulator = serve(legs, order="unsorted", bounds="inclusive", latency_ms=5)
    config = make_config(
        emulator.url,
        window_size_hours=12,
        page_size=25,
        max_concurrency=2,
        batch_config=batch_config(tmp_path / "b", 30, "gzip"),
    )
    first = run_until(tmp_path, config, None, batches, sig, kind="BATCH", delay=delay)
    states = [m["value"] for m in first if m["type"] == "STATE"]
    done = {r["uuid"] for r in announced(first)}
    bookmark = (states[-1]["bookmarks"].get("cdrs", {}) if states else {}).get(
        "replication_key_value", ""
    )
    # The last STATE covers announced files only: every leg before its bookmark is in one.
    covered = {leg.uuid for leg in legs if leg.start.strftime("%Y-%m-%dT%H:%M:%S.%fZ") < bookmark}
    assert covered & in_range(legs) <= done
    result = run_cli(tmp_path, config, state=states[-1] if states else None)
    assert result.returncode == 0, result.stderr[-2000:]
    again = [r["uuid"] for r in announced(result.messages)]
    assert done | set(again) == in_range(legs)
    assert len(again) == len(set(again))


def test_stream_maps_and_deselected_fields_shape_the_files_as_they_shape_records(
    tmp_path, serve, legs
) -> None:
    emulator = serve(legs)
    config = make_config(
        emulator.url,
        batch_config=batch_config(tmp_path / "b", 1000),
        stream_maps={"cdrs": {"cost_text": "str(cost)", "callerid_number": None}},
    )
    result = run_cli(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    records = announced(result.messages)
    assert records and all("callerid_number" not in r for r in records)
    by_uuid = {leg.uuid: leg for leg in legs}
    for record in records:
        assert record["cost_text"] == format(by_uuid[record["uuid"]].fields["cost"], "f")


def test_a_stream_map_that_renames_the_stream_cannot_go_into_files(tmp_path, serve, legs):
    emulator = serve(legs)
    config = make_config(
        emulator.url,
        batch_config=batch_config(tmp_path / "b"),
        stream_maps={"cdrs": {"__alias__": "calls"}},
    )
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    assert (
        "Stream 'cdrs': a stream map that renames, copies or splits the stream cannot be "
        "written as BATCH files; remove batch_config or the map" in result.stderr
    )
    assert not [m for m in result.messages if m["type"] == "BATCH"]


def test_a_batch_config_the_tap_cannot_honour_fails_before_any_request(tmp_path, serve, legs):
    emulator = serve(legs)
    config = make_config(
        emulator.url,
        batch_config={"encoding": {"format": "parquet"}, "storage": {"root": "s3://b/x"}},
    )
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    assert "batch_config.encoding.format: 'parquet' is not supported" in result.stderr
    assert "batch_config.storage.root: 's3://b/x' is not a local folder" in result.stderr
    assert emulator.emulator.stats.requests == {}


#: Where no process may create a folder, root included (sysfs refuses every mkdir).
REFUSED = Path("/sys/tap-tenios-batches")


@pytest.mark.parametrize("where", ["parent is a file", "refused", "disk full"])
def test_a_batch_folder_that_cannot_be_written_ends_in_one_line_naming_it(
    tmp_path, serve, legs, where
) -> None:
    """A full disk is played by a limit on file size: every write past it fails
    (EFBIG), as on a disk that fills up, while stdout and stderr (pipes) go on."""
    if where == "refused" and not Path("/sys").is_dir():
        pytest.skip("no sysfs here")
    root = {
        "parent is a file": tmp_path / "file" / "batches",
        "refused": REFUSED,
        "disk full": tmp_path / "batches",
    }[where]
    (tmp_path / "file").write_text("")
    emulator = serve(legs)
    config = make_config(emulator.url, batch_config=batch_config(root, 1000))

    def small_files() -> None:
        if where == "disk full":
            resource.setrlimit(resource.RLIMIT_FSIZE, (64_000, 64_000))

    done = subprocess.run(
        tap_command(tmp_path, config),
        capture_output=True,
        text=True,
        timeout=60,
        env=os.environ.copy(),
        preexec_fn=small_files,
        check=False,
    )
    assert done.returncode == 1
    errors = [message for level, message in log_lines(done.stderr) if level == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].startswith(f"Cannot write BATCH files in {root}")
    assert errors[0].endswith("or set batch_config.storage.root to another folder.")
    messages = [json.loads(line) for line in done.stdout.splitlines()]
    assert not [m for m in messages if m["type"] == "BATCH"]
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    assert not any(s["bookmarks"].get("cdrs", {}).get("replication_key_value") for s in states)
    if where == "disk full":
        assert [p.name for p in root.iterdir()] == [], "no unfinished file, no empty folder"


def test_the_next_run_removes_the_files_of_an_ended_run_at_once(tmp_path, serve, legs) -> None:
    """The files hold caller numbers: an ended run's are gone when the next run starts,
    not an hour later (a run of the same job starts once the last one's loader ended)."""
    emulator = serve(legs)
    root = tmp_path / "b"
    config = make_config(emulator.url, batch_config=batch_config(root, 1000))
    assert run_cli(tmp_path, config).returncode == 0
    (first,) = root.iterdir()
    assert run_cli(tmp_path, config).returncode == 0
    (second,) = root.iterdir()
    assert second != first


def test_on_count_change_saves_only_days_whose_legs_are_in_announced_files(
    tmp_path, serve, legs
) -> None:
    emulator = serve(legs, order="unsorted")
    config = make_config(
        emulator.url,
        batch_config=batch_config(tmp_path / "b", 40),
        lookback_minutes=1440,
        lookback_mode="on_count_change",
        window_size_hours=5,
    )
    result = run_cli(tmp_path, config)
    assert result.returncode == 0, result.stderr[-2000:]
    messages = result.messages
    saved = 0
    for i, message in enumerate(messages):
        if message["type"] != "STATE":
            continue
        days = message["value"]["bookmarks"].get("cdrs", {}).get("parts_read", [])
        stamps = [r["start_stamp"] for r in announced(messages[:i])]
        for day in days:
            saved += 1
            assert day["legs"] == sum(day["from"] <= s < day["to"] for s in stamps), day
    states = [m["value"] for m in messages if m["type"] == "STATE"]
    final = states[-1]["bookmarks"]["cdrs"]["parts_read"]
    assert final[-1]["to"] == "2024-03-04T00:00:00.000000Z" and saved > len(final)
