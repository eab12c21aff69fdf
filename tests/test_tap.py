"""The tap as a whole: the SDK's standard tests, settings, the CLI, kill and resume, and
its Singer output (the same messages as the SDK's plain writer, in whole blocks)."""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from singer_sdk.helpers.conform import TypeConformanceLevel
from singer_sdk.io_base import SingerWriter as PlainWriter
from singer_sdk.testing import SuiteConfig, get_tap_test_class

from tap_tenios import reader, records
from tap_tenios.emulator import TIMESTAMP_STYLES, Behaviour, Emulator, RunningEmulator, generate
from tap_tenios.records import format_utc
from tap_tenios.streams import TeniosStream
from tap_tenios.tap import BLOCK, SingerWriter, TapTenios

from .helpers import (
    END,
    KEY,
    MELTANO,
    ROOT,
    START,
    dataset,
    documented_commands,
    free_port,
    in_range,
    load_script,
    log_lines,
    make_config,
    meltano,
    parse_messages,
    run_cli,
    run_until,
    tap_command,
)

# The SDK builds its standard test class (and a tap, for discovery) when this module is
# imported, before any fixture runs: the configuration names no server until the class
# fixture below starts one and points the configuration at it.
_STANDARD_CONFIG = make_config("http://127.0.0.1:9")

_StandardTests = get_tap_test_class(
    tap_class=TapTenios,
    config=_STANDARD_CONFIG,
    suite_config=SuiteConfig(max_records_limit=None),
)


class TestTapTenios(_StandardTests):
    @pytest.fixture(scope="class", autouse=True)
    @classmethod
    def standard_api(cls) -> Iterator[None]:
        behaviour = Behaviour(access_key=KEY, now=END + timedelta(days=1))
        with RunningEmulator(Emulator(dataset(calls_per_day=15), behaviour)) as api:
            _STANDARD_CONFIG["api_url"] = api.url
            yield


def test_sample_config_names_every_setting_and_holds_no_secret() -> None:
    from pathlib import Path

    sample = json.loads((Path(__file__).parent.parent / "sample_config.json").read_text())
    settings = set(TapTenios.config_jsonschema["properties"])
    assert set(sample) <= settings
    assert {"access_key", "start_date"} <= set(sample)
    assert "PLACEHOLDER" in sample["access_key"].upper()


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"start_date": "yesterday"}, "start_date: 'yesterday' is not a date"),
        ({"start_date": "2024-02-30"}, "start_date"),
        ({"end_date": "2024-02-01"}, "end_date: '2024-02-01' is not after start_date"),
        ({"timezone": "Mars/Olympus"}, "timezone: 'Mars/Olympus' is not an IANA time zone"),
        ({"page_size": 0}, "page_size: 0 is less than the minimum of 1"),
        ({"window_size_hours": -1}, "window_size_hours"),
        ({"max_concurrency": 0}, "max_concurrency"),
        ({"lookback_minutes": -5}, "lookback_minutes"),
        ({"api_url": "ftp://example"}, "api_url"),
        ({"on_count_mismatch": "ignore"}, "on_count_mismatch"),
        ({"lookback_mode": "sometimes"}, "lookback_mode"),
        ({"access_key": 12345678}, "access_key"),
        ({"access_key": ""}, "access_key"),
        ({"access_key": None}, "access_key"),
    ],
)
def test_bad_settings_fail_before_any_request(tmp_path, serve, legs, changes, named) -> None:
    emulator = serve(legs)
    config = {**make_config(emulator.url), **changes}
    config = {k: v for k, v in config.items() if v is not None}
    result = run_cli(tmp_path, config)
    assert result.returncode != 0
    assert named in result.stderr
    assert emulator.emulator.stats.requests == {}
    assert result.stdout == ""
    assert "12345678" not in result.stderr
    assert KEY not in result.stderr


def test_about_lists_every_setting_with_a_description(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tap_tenios", "--about", "--format=json"],
        capture_output=True,
        text=True,
        check=True,
    )
    about = json.loads(done.stdout)
    properties = about["settings"]["properties"]
    for name in (
        "access_key",
        "start_date",
        "end_date",
        "api_url",
        "page_size",
        "timezone",
        "lookback_minutes",
        "window_size_hours",
        "max_concurrency",
    ):
        assert properties[name]["description"], name
    assert properties["access_key"]["secret"] is True
    assert properties["lookback_minutes"]["default"] == 1440
    # The opt-in's assumption is stated where the setting is chosen.
    assert properties["lookback_mode"]["default"] == "always"
    assert (
        "a CDR does not change once the API serves it" in properties["lookback_mode"]["description"]
    )


def test_the_console_script_emits_both_streams_and_a_final_state(tmp_path, serve, legs) -> None:
    emulator = serve(legs)
    result = run_cli(tmp_path, make_config(emulator.url))
    assert result.returncode == 0, result.stderr[-3000:]
    messages = result.messages
    streams = {m["stream"] for m in messages if m["type"] == "RECORD"}
    assert streams == {"cdrs", "cdr_counts"}
    assert messages[-1]["type"] == "STATE"
    assert set(messages[-1]["value"]["bookmarks"]) == {"cdrs", "cdr_counts"}
    progress = re.search(
        r"cdrs: read up to 2024-03-04T00:00:00.000Z: (\d+) legs \((\d+) beyond the saved "
        r"bookmark\) in \d+ window\(s\), "
        r"\d+ request\(s\); 100% of the range after [\d:]+, about [\d:]+ left",
        result.stderr,
    )
    assert progress, result.stderr[-2000:]
    assert progress[1] == progress[2], "a first run's legs are all new"
    assert "+49" not in result.stderr, "no phone numbers (PII) in logs"


@pytest.mark.parametrize(
    ("kill_after", "sig"),
    [(1, signal.SIGKILL), (130, signal.SIGKILL), (300, signal.SIGKILL), (200, signal.SIGTERM)],
)
def test_killed_and_resumed_from_the_last_state_loses_nothing(
    tmp_path, serve, legs, kill_after, sig
) -> None:
    emulator = serve(legs, order="unsorted", bounds="inclusive", latency_ms=5)
    config = make_config(emulator.url, window_size_hours=12, page_size=25, max_concurrency=2)
    config = {k: v for k, v in config.items() if v is not None}
    first = run_until(tmp_path, config, None, kill_after, sig)
    states = [m["value"] for m in first if m["type"] == "STATE"]
    emitted = [
        m["record"]["uuid"] for m in first if m["type"] == "RECORD" and m["stream"] == "cdrs"
    ]
    result = run_cli(tmp_path, config, state=states[-1] if states else None)
    assert result.returncode == 0, result.stderr[-2000:]
    again = [
        m["record"]["uuid"]
        for m in result.messages
        if m["type"] == "RECORD" and m["stream"] == "cdrs"
    ]
    assert set(emitted) | set(again) == in_range(legs)
    assert len(again) == len(set(again))
    # A resumed run redoes at most about one 12-hour window (~30 legs of ~60 calls/day).
    assert len(set(emitted) & set(again)) <= 80


def test_readme_settings_table_matches_about() -> None:
    readme_tables = load_script("readme_tables")
    readme = readme_tables.README.read_text()
    assert readme_tables.section(readme, "settings") == readme_tables.settings_table(), (
        "README settings table is stale: run python scripts/readme_tables.py --write"
    )


def test_invalid_settings_end_in_one_line_that_names_each_problem(tmp_path) -> None:
    config = make_config("http://api.tenios.com", start_date="soon", page_size=0)
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    assert result.stdout == ""
    errors = [message for level, message in log_lines(result.stderr) if level == "ERROR"]
    assert errors == [
        "Invalid settings, fix them in the tap's config: "
        "start_date: 'soon' is not a date (YYYY-MM-DD) or an ISO-8601 date-time; "
        "api_url: 'http://api.tenios.com' is plain http, which would send the access key "
        "unencrypted; use https:// (plain http is only for a local emulator on localhost, "
        "127.0.0.1 or ::1); page_size: 0 is less than the minimum of 1"
    ]
    assert log_lines(result.stderr)[-1] == ("ERROR", errors[0])


def test_a_refused_request_ends_in_one_line_and_a_traceback_only_at_debug(
    tmp_path, serve, legs
) -> None:
    emulator = serve(legs, fault_rate=1.0, fault_kinds=("400",))
    config = make_config(emulator.url, max_concurrency=1)
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    level, message = log_lines(result.stderr)[-1]
    assert level == "ERROR"
    assert message.startswith("2 streams failed: cdr_counts: The Tenios API refused /cdrs/")
    debug = run_cli(tmp_path, config, env={"TAP_TENIOS_LOGLEVEL": "DEBUG"})
    assert debug.returncode == 1
    assert "Traceback (most recent call last)" in debug.stderr


def test_a_rejected_key_ends_in_exactly_one_error_line(tmp_path, serve, legs) -> None:
    emulator = serve(legs)
    config = make_config(emulator.url, access_key="not-the-key")
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    errors = [message for level, message in log_lines(result.stderr) if level == "ERROR"]
    assert len(errors) == 1, errors
    assert "rejected the access key" in errors[0]
    assert "not-the-key" not in result.stderr


def test_a_stream_that_fails_on_its_own_ends_the_run_in_exactly_one_error_line(
    tmp_path, serve, legs
) -> None:
    """The failure is caught where the records are made: the SDK never sees it, so
    nothing logs it twice; the other stream still runs, and the run exits 1."""
    emulator = serve(legs, fault_queue=[{"kind": "400", "path": "/cdrs/count"}])
    result = run_cli(tmp_path, make_config(emulator.url, max_concurrency=1))
    assert result.returncode == 1
    errors = [message for level, message in log_lines(result.stderr) if level == "ERROR"]
    assert errors == [errors[-1]] and errors[0].startswith(
        "The Tenios API refused /cdrs/count for day 2024-03-01"
    ), errors
    assert {m["stream"] for m in result.messages if m["type"] == "RECORD"} == {"cdrs"}
    final = [m for m in result.messages if m["type"] == "STATE"][-1]["value"]["bookmarks"]
    assert "cdr_counts" not in final or not final["cdr_counts"].get("replication_key_value")


def test_a_garbled_bookmark_saved_by_meltano_ends_in_one_line(tmp_path, serve, legs) -> None:
    emulator = serve(legs)
    bookmark = {"replication_key": "start_stamp", "replication_key_value": "not-a-date"}
    state = {"bookmarks": {"cdrs": bookmark}}
    result = run_cli(tmp_path, make_config(emulator.url), state=state)
    assert result.returncode == 1
    errors = [message for level, message in log_lines(result.stderr) if level == "ERROR"]
    assert len(errors) == 1, errors
    assert errors[0].startswith(
        "The saved state of stream 'cdrs' holds bookmark 'not-a-date', which is not a "
        "date-time: clear the saved state of stream 'cdrs' to start again from start_date "
        "(`meltano state clear <state id>`), or save a bookmark it can read"
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_stopped_run_says_by_what_and_where_the_next_resumes(tmp_path, serve, sig) -> None:
    emulator = serve(dataset(calls_per_day=200), latency_ms=20)
    process = subprocess.Popen(
        tap_command(tmp_path, make_config(emulator.url, page_size=40)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    for line in process.stdout:
        if line.startswith('{"type":"STATE"'):
            break
    process.send_signal(sig)
    process.stdout.read()
    stderr = process.stderr.read()
    assert process.wait(timeout=30) == 128 + sig
    warnings = [message for level, message in log_lines(stderr) if level == "WARNING"]
    assert warnings[-1] == (
        f"The run was stopped by {sig.name}: the last STATE written covers every record "
        "before it; the next run resumes from there."
    )


def test_a_bug_keeps_its_traceback() -> None:
    """Only the tap's own failures become one line: anything else is a bug to report."""
    tap = TapTenios(config=make_config("http://127.0.0.1:9"), parse_env_config=False)
    stream = tap.streams["cdrs"]

    def broken(context: object) -> Iterator[dict[str, object]]:
        raise KeyError("a bug")

    stream.read_records = broken  # type: ignore[method-assign]
    with pytest.raises(KeyError):
        stream.sync()


def test_an_unreachable_api_ends_in_one_line_naming_host_and_cause(tmp_path) -> None:
    config = make_config("https://no-such-host.invalid", end_date="2024-03-02")
    result = run_cli(tmp_path, config)
    assert result.returncode == 1
    level, message = log_lines(result.stderr)[-1]
    assert level == "ERROR"
    assert "the Tenios API at no-such-host.invalid is unreachable: the host name does not" in (
        message
    )


def test_when_both_streams_fail_the_run_names_both(run_tap, serve, legs) -> None:
    faults = [{"kind": "400", "path": "/cdrs/count"}, {"kind": "400", "path": "/cdrs/retrieve"}]
    emulator = serve(legs, fault_queue=faults)
    config = make_config(emulator.url, max_concurrency=1)
    run = run_tap(config, streams=("cdrs", "cdr_counts"), fails=True)
    message = str(run.error)
    assert message.startswith("2 streams failed: cdr_counts: The Tenios API refused /cdrs/count")
    assert " | cdrs: The Tenios API refused /cdrs/" in message


@pytest.mark.meltano
def test_meltano_config_test_shows_the_problem_itself(tmp_path) -> None:
    """Meltano shows only the last line a failing tap printed: it must hold the reasons."""
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    env = {
        **os.environ,
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_TENIOS_ACCESS_KEY": KEY,
        "TAP_TENIOS_START_DATE": "soon",
        "TAP_TENIOS_API_URL": "http://api.tenios.com",
    }
    assert MELTANO is not None
    done = subprocess.run(
        [MELTANO, "config", "test", "tap-tenios"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert "start_date: 'soon' is not a date" in output
    assert "api_url: 'http://api.tenios.com' is plain http" in output
    assert KEY not in output


@pytest.mark.parametrize(
    ("ours", "name"),
    [
        ("tap_tenios.streams:TeniosStream", "_increment_stream_state"),
        ("tap_tenios.streams:CdrsStream", "_generate_schema_messages"),
        ("tap_tenios.streams:CdrsStream", "_write_state_message"),
        ("tap_tenios.streams:TeniosStream", "_write_state_message"),
        ("tap_tenios.streams:TeniosStream", "_sync_records"),
        ("tap_tenios.tap:TapTenios", "_validate_config"),
    ],
)
def test_the_private_sdk_hooks_the_tap_relies_on_still_exist(ours: str, name: str) -> None:
    """The SDK offers no public hook for these (see each override's docstring); a
    renamed or re-shaped one would be silently skipped, so it must fail here first."""
    import importlib
    import inspect

    module, cls_name = ours.split(":")
    cls = getattr(importlib.import_module(module), cls_name)
    sdk = [c for c in cls.__mro__ if c.__module__.startswith("singer_sdk.")]
    owners = [c for c in sdk if name in vars(c)]
    assert owners, f"the SDK no longer defines {name}"
    theirs = inspect.signature(getattr(owners[0], name)).parameters
    assert list(inspect.signature(getattr(cls, name)).parameters) == list(theirs)


def test_the_sdk_writes_a_state_only_when_its_state_manager_says_it_is_due() -> None:
    """``advance_bookmark`` marks the state due (``is_flushed``), as the SDK's own
    record and batch writing do; without it, the STATE after a BATCH file is lost."""
    import inspect

    from singer_sdk.streams.core import Stream

    tap = TapTenios(config=make_config("http://127.0.0.1:9"), parse_env_config=False)
    assert tap.streams["cdrs"].state_manager.is_flushed is True
    assert "state_manager.is_flushed" in inspect.getsource(Stream._write_state_message)


def test_the_readme_standalone_steps_work_as_written(tmp_path) -> None:
    """In a folder holding sample_config.json, with the package installed (the venv's
    scripts on PATH) and the emulator on a port of this test's own."""
    port = free_port()
    steps = [
        line.replace("8766", str(port))
        for line in documented_commands(ROOT / "README.md", "standalone steps", "tests/test_tap.py")
        if not line.startswith("pip ")
    ]
    shutil.copy(ROOT / "sample_config.json", tmp_path)
    bin_dir = Path(sys.executable).parent
    env = {k: v for k, v in os.environ.items() if not k.startswith("TAP_TENIOS_")}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env.get('PATH', '')}"
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null' EXIT\n" + "\n".join(steps) + "\n"
    done = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    catalog = json.loads((tmp_path / "catalog.json").read_text())
    assert {s["tap_stream_id"] for s in catalog["streams"]} == {"cdrs", "cdr_counts"}
    messages = [json.loads(line) for line in (tmp_path / "messages.jsonl").read_text().splitlines()]
    dates = {
        m["record"]["date"]
        for m in messages
        if m["type"] == "RECORD" and m["stream"] == "cdr_counts"
    }
    assert {"2024-01-01", "2024-01-21"} <= dates  # the emulator's three weeks
    assert any(m["type"] == "RECORD" and m["stream"] == "cdrs" for m in messages)


def test_the_command_runs_the_taps_sync_all() -> None:
    """``TapTenios.sync_all`` raises the run's failures; the SDK marks it final (for
    type checkers), so a command that stopped calling it would end failed runs as
    successes: this fails first."""
    import inspect

    from singer_sdk import Tap

    assert "tap.sync_all()" in inspect.getsource(Tap.invoke)


# The Singer output: the fast path writes exactly what the SDK's plain path writes, in whole blocks.
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
        "from tap_tenios.tap import SingerWriter\n"
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
