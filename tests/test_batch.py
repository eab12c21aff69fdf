"""BATCH files: settings, files a loader built on the SDK reads back exactly, run folders."""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any, ClassVar

import pytest
from singer_sdk import Sink, Target
from singer_sdk import typing as th

from tap_tenios.batch import (
    DEFAULT_BATCH_SIZE,
    LOCK_NAME,
    BatchSettings,
    BatchSettingsError,
    RunFolder,
    local_path,
    sweep,
    write_batches,
)
from tap_tenios.errors import TapRunError

from .helpers import item


def settings(tmp_path: Path, **changes: Any) -> BatchSettings:
    raw: dict[str, Any] = {
        "encoding": {"format": "jsonl", "compression": "none"},
        "storage": {"root": tmp_path.as_uri()},
        "batch_size": 3,
    }
    raw.update(changes)
    return BatchSettings.from_config(raw)


def legs(count: int) -> list[dict[str, Any]]:
    """Records as the tap emits them: exact decimals (trailing zeros too), UTC stamps."""
    return [
        item(
            uuid=f"leg-{n}",
            start_stamp=f"2024-03-01T12:00:{n:02d}.000000Z",
            end_stamp=f"2024-03-01T12:01:{n:02d}.000000Z",
            cost=Decimal(f"0.{n:02d}0400"),
        )
        for n in range(count)
    ]


def read_file(url: str) -> list[dict[str, Any]]:
    path = local_path(url)
    assert path is not None
    raw = path.read_bytes()
    text = gzip.decompress(raw) if path.suffix == ".gz" else raw
    return [json.loads(line, parse_float=Decimal) for line in text.splitlines()]


# --- settings ---------------------------------------------------------------------


@pytest.mark.parametrize("compression", [None, "none", "gzip"])
def test_settings_accept_jsonl_uncompressed_or_gzip(tmp_path, compression) -> None:
    found = settings(tmp_path, encoding={"format": "jsonl", "compression": compression})
    assert found.root == tmp_path
    expected = "gzip" if compression == "gzip" else None
    assert found.encoding == {"format": "jsonl", "compression": expected}
    assert found.suffix == (".jsonl.gz" if compression == "gzip" else ".jsonl")


def test_settings_take_a_plain_path_and_default_to_the_sdk_batch_size(tmp_path) -> None:
    found = BatchSettings.from_config(
        {"encoding": {"format": "jsonl"}, "storage": {"root": str(tmp_path), "prefix": "t-"}}
    )
    assert (found.root, found.prefix, found.batch_size) == (tmp_path, "t-", DEFAULT_BATCH_SIZE)


def test_unusable_settings_are_each_named(tmp_path) -> None:
    with pytest.raises(BatchSettingsError) as caught:
        BatchSettings.from_config(
            {
                "encoding": {"format": "parquet", "compression": "bz2"},
                "storage": {"root": "s3://bucket/batches", "prefix": "a/b"},
                "batch_size": 0,
            }
        )
    message = str(caught.value)
    for name in (
        "batch_config.encoding.format: 'parquet'",
        "batch_config.encoding.compression: 'bz2'",
        "batch_config.storage.root: 's3://bucket/batches' is not a local folder",
        "batch_config.storage.prefix",
        "batch_config.batch_size: 0",
    ):
        assert name in message


@pytest.mark.parametrize(
    ("raw", "named"),
    [
        ({"storage": {"root": "batches", "prefix": 5}}, "batch_config.storage.prefix"),
        ({"batch_size": "10"}, "batch_config.batch_size: '10'"),
        ({"batch_size": 2.5}, "batch_config.batch_size: 2.5"),
        ({"batch_size": True}, "batch_config.batch_size: True"),
    ],
)
def test_settings_of_the_wrong_type_are_named_not_crashed_on(raw, named) -> None:
    config = {"encoding": {"format": "jsonl"}, "storage": {"root": "batches"}, **raw}
    with pytest.raises(BatchSettingsError) as caught:
        BatchSettings.from_config(config)
    assert named in str(caught.value)


def test_a_missing_root_is_named(tmp_path) -> None:
    with pytest.raises(BatchSettingsError, match=r"batch_config\.storage\.root: missing"):
        BatchSettings.from_config({"encoding": {"format": "jsonl"}, "storage": {}})


# --- files ------------------------------------------------------------------------


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_records_are_split_into_files_that_hold_them_exactly(tmp_path, compression) -> None:
    config = settings(tmp_path, encoding={"format": "jsonl", "compression": compression})
    records = legs(7)
    written = list(write_batches(records, tmp_path, "cdrs", config))

    assert [last["uuid"] for _, last in written] == ["leg-2", "leg-5", "leg-6"]
    assert [Path(local_path(url) or "").name for url, _ in written] == [
        f"cdrs-0000{n}{config.suffix}" for n in (1, 2, 3)
    ]
    read = [record for url, _ in written for record in read_file(url)]
    assert read == records
    # The API's digits, trailing zeros included: exact numbers, never through a float.
    assert [str(r["cost"]) for r in read] == [str(r["cost"]) for r in records]


def test_no_records_make_no_file(tmp_path) -> None:
    assert list(write_batches([], tmp_path, "cdrs", settings(tmp_path))) == []
    assert list(tmp_path.iterdir()) == []


def test_a_failing_source_first_hands_over_the_complete_records(tmp_path) -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield from legs(4)
        raise RuntimeError("a window could not be read")

    batches = write_batches(source(), tmp_path, "cdrs", settings(tmp_path))
    first = next(batches)
    second = next(batches)  # the partial file, finished before the failure goes on
    assert second[1]["uuid"] == "leg-3"
    assert [r["uuid"] for r in read_file(second[0])] == ["leg-3"]
    with pytest.raises(RuntimeError, match="could not be read"):
        next(batches)
    assert first[1]["uuid"] == "leg-2"


@pytest.mark.parametrize("interruption", [KeyboardInterrupt, SystemExit])
def test_an_interrupted_run_leaves_no_unfinished_file(tmp_path, interruption) -> None:
    def source() -> Iterator[dict[str, Any]]:
        yield from legs(4)
        raise interruption

    batches = write_batches(source(), tmp_path, "cdrs", settings(tmp_path))
    next(batches)
    with pytest.raises(interruption):
        next(batches)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdrs-00001.jsonl"]


def test_a_consumer_that_stops_leaves_no_unfinished_file(tmp_path) -> None:
    batches = write_batches(iter(legs(5)), tmp_path, "cdrs", settings(tmp_path))
    next(batches)
    batches.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cdrs-00001.jsonl"]


def test_a_transform_shapes_or_drops_records_and_the_bookmark_still_sees_them(tmp_path) -> None:
    def shape(record: dict[str, Any]) -> dict[str, Any] | None:
        if record["uuid"] == "leg-2":
            return None
        return {"uuid": record["uuid"]}

    ((url, last),) = write_batches(
        legs(3), tmp_path, "cdrs", settings(tmp_path, batch_size=5), shape
    )
    assert last["uuid"] == "leg-2"
    assert read_file(url) == [{"uuid": "leg-0"}, {"uuid": "leg-1"}]


def test_a_full_disk_is_one_error_naming_the_folder_and_batch_config(tmp_path) -> None:
    """The file's name points at /dev/full, whose every write fails with ENOSPC."""
    (tmp_path / "cdrs-00001.jsonl").symlink_to("/dev/full")
    batches = write_batches(iter(legs(2)), tmp_path, "cdrs", settings(tmp_path))
    with pytest.raises(TapRunError) as failure:
        next(batches)
    assert str(failure.value) == (
        f"Cannot write BATCH files in {tmp_path}: No space left on device (writing "
        "cdrs-00001.jsonl). Free space or grant write access there, or set "
        "batch_config.storage.root to another folder."
    )
    assert list(tmp_path.iterdir()) == [], "the unfinished file is gone"


@pytest.mark.parametrize("blocker", ["root", "parent"])
def test_a_root_where_a_file_stands_is_one_error_naming_it(tmp_path, blocker) -> None:
    root = tmp_path / "batches" / "tenios"
    if blocker == "root":
        root.parent.mkdir()
    (root if blocker == "root" else root.parent).write_text("")
    with pytest.raises(TapRunError) as failure:
        RunFolder.create(root)
    assert str(failure.value) == (
        f"Cannot write BATCH files in {root}: a file stands where a folder should be. "
        "Free space or grant write access there, or set batch_config.storage.root to "
        "another folder."
    )


# --- read back by the SDK's own loader code ------------------------------------------


class CollectingSink(Sink):
    """Keeps what the SDK's BATCH handling hands a loader (``process_batch_files``)."""

    loaded: ClassVar[list[dict[str, Any]]] = []

    def process_record(self, record: dict[str, Any], context: dict[str, Any]) -> None:
        raise AssertionError("BATCH files must not arrive as RECORD messages")

    def process_batch(self, context: dict[str, Any]) -> None:
        type(self).loaded.extend(context["records"])


class CollectingTarget(Target):
    name = "target-collecting"
    config_jsonschema = th.PropertiesList().to_dict()
    default_sink_class = CollectingSink


@pytest.mark.parametrize("compression", ["none", "gzip"])
def test_a_loader_built_on_the_sdk_reads_the_files_exactly(tmp_path, compression) -> None:
    config = settings(tmp_path, encoding={"format": "jsonl", "compression": compression})
    records = legs(5)
    messages = [
        {
            "type": "SCHEMA",
            "stream": "cdrs",
            "schema": {"properties": {"uuid": {"type": "string"}}},
            "key_properties": ["uuid"],
        }
    ]
    for url, _ in write_batches(records, tmp_path, "cdrs", config):
        batch = {"type": "BATCH", "stream": "cdrs", "encoding": config.encoding, "manifest": [url]}
        messages.append(batch)
    CollectingSink.loaded = []
    CollectingTarget(config={}).listen(io.StringIO("".join(json.dumps(m) + "\n" for m in messages)))
    assert CollectingSink.loaded == records


# --- run folders ------------------------------------------------------------------


def test_a_run_folder_makes_the_folders_above_it(tmp_path) -> None:
    root = tmp_path / "not" / "yet"
    folder = RunFolder.create(root)
    assert folder.path.parent == root and (folder.path / LOCK_NAME).exists()
    folder.release()


def test_a_run_folder_is_locked_while_its_run_lives(tmp_path) -> None:
    live = RunFolder.create(tmp_path)
    assert live.path.parent == tmp_path
    assert (live.path / LOCK_NAME).exists()
    assert sweep(tmp_path, grace=0) == []
    assert live.path.exists()
    live.release()
    assert sweep(tmp_path, grace=0) == [live.path]
    assert not live.path.exists()


def test_sweep_keeps_recent_folders_and_what_is_not_a_run(tmp_path) -> None:
    ended = RunFolder.create(tmp_path, clock=lambda: 0.0)
    ended.release()
    (tmp_path / "notes").mkdir()
    (tmp_path / "run-by-hand.jsonl").write_text("")
    now = ended.path.stat().st_mtime
    assert sweep(tmp_path, grace=60, clock=lambda: now + 59) == []
    assert sweep(tmp_path, grace=60, clock=lambda: now + 61) == [ended.path]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes", "run-by-hand.jsonl"]


def test_sweep_keeps_the_folder_it_is_told_to(tmp_path) -> None:
    mine = RunFolder.create(tmp_path)
    mine.release()
    assert sweep(tmp_path, grace=0, keep=mine.path) == []


def test_a_run_folder_without_files_is_removed_and_one_with_files_is_not(tmp_path) -> None:
    empty, full = RunFolder.create(tmp_path), RunFolder.create(tmp_path)
    (full.path / "cdrs-00001.jsonl").write_text("{}\n")
    assert empty.remove_if_empty()
    assert not full.remove_if_empty()
    assert sorted(tmp_path.iterdir()) == [full.path]


def test_sweep_leaves_what_it_cannot_remove(tmp_path, monkeypatch) -> None:
    ended = RunFolder.create(tmp_path)
    ended.release()

    def refuse(path: Path) -> None:
        raise PermissionError(path)

    monkeypatch.setattr("tap_tenios.batch.shutil.rmtree", refuse)
    assert sweep(tmp_path, grace=0) == []
    assert ended.path.exists()


def test_sweep_of_a_missing_root_is_a_no_op(tmp_path) -> None:
    assert sweep(tmp_path / "absent", grace=0) == []


def test_run_folders_of_one_second_do_not_collide(tmp_path) -> None:
    first = RunFolder.create(tmp_path, clock=lambda: 0.0)
    second = RunFolder.create(tmp_path, clock=lambda: 0.0)
    assert first.path != second.path
    assert first.path.name.startswith("run-19700101T000000Z-")


def test_the_remove_command_takes_the_files_of_ended_runs_at_once(tmp_path) -> None:
    """What a job runs once its loader has read the files (meltano.yml's
    ``tap-tenios-batches:remove``): ended runs' folders go, however recent; a live
    run's stays."""
    ended, live = RunFolder.create(tmp_path), RunFolder.create(tmp_path)
    for folder in (ended, live):
        (folder.path / "cdrs-00001.jsonl").write_text('{"callerid_number": "+4930123"}\n')
    ended.release()
    done = subprocess.run(
        [sys.executable, "-m", "tap_tenios.batch", "remove", tmp_path.as_uri()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == f"Removed the BATCH files of 1 ended run(s) under {tmp_path}\n"
    assert sorted(tmp_path.iterdir()) == [live.path]
    live.release()
