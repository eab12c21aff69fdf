"""The access key never appears anywhere, whatever goes wrong, at any log level.

Every error path, at DEBUG, against an emulator that echoes the request body (key
included) in its error answers: stdout, stderr, logs, exceptions and state are
searched for the key, whole and in part.
"""

from __future__ import annotations

import json
import logging

import pytest

from tap_tenios.emulator import FAULT_KINDS

from .helpers import KEY, make_config, run_cli

#: Every fault but the stall, whose timeout only costs real time here.
FAULTS = [kind for kind in FAULT_KINDS if kind != "stall"]


def leaked(text: str) -> bool:
    return KEY in text or KEY[:13] in text or KEY[-12:] in text


@pytest.mark.parametrize(
    ("behaviour", "settings"),
    [
        *[({"fault_rate": 1.0, "fault_kinds": (kind,)}, {"max_retries": 1}) for kind in FAULTS],
        ({"hidden_legs": "first"}, {}),  # a window that never agrees with its count
        # The count endpoint disagrees (it is asked for windows read in pages: pages
        # of 1 cannot hold the two calls that start in the same second at noon).
        (
            {"count_offset": 2},
            {"page_size": 1, "start_date": "2024-03-01T11:00", "end_date": "2024-03-01T13:00"},
        ),
        ({"retrieve_body": b'{"items": [{"uuid": "x", "cost": "abc"}], "total_items": 1}'}, {}),
        ({"access_key": "another-key"}, {}),  # the key is rejected
    ],
)
def test_no_error_path_shows_the_key(serve, run_tap, legs, caplog, capfd, behaviour, settings):
    caplog.set_level(logging.DEBUG)
    if behaviour.get("hidden_legs") == "first":
        behaviour = {"hidden_legs": frozenset({legs[0].uuid})}
    emulator = serve(legs, echo_body_in_errors=True, stall_seconds=0.1, **behaviour)
    run = run_tap(make_config(emulator.url, **settings), streams=("cdrs", "cdr_counts"), fails=True)
    out, err = capfd.readouterr()
    everything = "\n".join(
        [
            caplog.text,
            out,
            err,
            str(run.error),
            repr(run.error),
            json.dumps(run.messages, default=str),
        ]
    )
    assert not leaked(everything)


@pytest.mark.parametrize("kind", ["400", "403", "500"])
def test_the_console_script_at_debug_never_shows_the_key(tmp_path, serve, legs, kind):
    emulator = serve(legs, echo_body_in_errors=True, fault_rate=1.0, fault_kinds=(kind,))
    result = run_cli(
        tmp_path, make_config(emulator.url, max_retries=1), env={"TAP_TENIOS_LOGLEVEL": "DEBUG"}
    )
    assert result.returncode != 0
    assert "DEBUG" in result.stderr  # the level really was DEBUG
    assert not leaked(result.stdout + result.stderr)


#: What Meltano hands an SDK plugin that declares ``structured-logging`` (as meltano.yml
#: does for tap-tenios): every log record as one JSON object, its extra fields included.
STRUCTURED_LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "singer_sdk.logging.StructuredFormatter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "json",
            "stream": "ext://sys.stderr",
        }
    },
    "root": {"handlers": ["console"], "level": "DEBUG"},
}


@pytest.mark.parametrize("kind", ["403", "500"])
def test_structured_logs_at_debug_never_show_the_key(tmp_path, serve, legs, kind):
    emulator = serve(legs, echo_body_in_errors=True, fault_rate=1.0, fault_kinds=(kind,))
    log_config = tmp_path / "logging.json"
    log_config.write_text(json.dumps(STRUCTURED_LOGGING))
    result = run_cli(
        tmp_path,
        make_config(emulator.url, max_retries=1),
        env={"SINGER_SDK_LOG_CONFIG": str(log_config), "TAP_TENIOS_LOGLEVEL": "DEBUG"},
    )
    assert result.returncode != 0
    records = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    assert any(record["level"] == "debug" for record in records)
    # The run's one-line reason comes last, at its own level (requests still out on
    # other threads may add debug lines after it).
    assert [r["level"] for r in records if r["level"] != "debug"][-1] == "error"
    assert not leaked(result.stdout + result.stderr)


@pytest.mark.parametrize(
    "bad",
    [
        {"access_key": 123456789},
        {"access_key": ["k", KEY]},
        {"start_date": "not a date"},
        {"start_date": KEY},  # the key pasted into the wrong setting
    ],
)
def test_config_errors_never_show_the_key(tmp_path, bad):
    config = {"access_key": KEY, "start_date": "2024-01-01", **bad}
    result = run_cli(tmp_path, config, env={"TAP_TENIOS_LOGLEVEL": "DEBUG"})
    assert result.returncode != 0
    assert not leaked(result.stdout + result.stderr)
    assert "123456789" not in result.stderr


def test_the_echoing_api_really_echoes_the_key(serve, legs):
    """Guards the secrets tests: they only mean something if the key is on offer."""
    import requests

    emulator = serve(legs, echo_body_in_errors=True)
    body = {"access_key": KEY, "start_date_from": "bad", "start_date_to": "bad"}
    answer = requests.post(emulator.url + "/cdrs/count", json=body, timeout=5)
    assert answer.status_code == 400 and KEY in answer.text


@pytest.mark.parametrize("stream", ["cdrs", "cdr_counts"])
@pytest.mark.parametrize("meltano_shape", [False, True])
def test_a_bookmark_holding_the_key_is_refused_without_showing_it(
    tmp_path, serve, legs, stream, meltano_shape
):
    """Say the key was pasted into the state by mistake: the line that refuses the
    bookmark names it redacted, and no log line (the SDK's own, at DEBUG) shows it.
    (The STATE messages hand back the state as it was given: not searched here.)"""
    emulator = serve(legs)
    bookmark = {"replication_key_value": KEY}
    if meltano_shape:
        bookmark["replication_key"] = {"cdrs": "start_stamp", "cdr_counts": "date"}[stream]
    config = make_config(emulator.url)
    state = {"bookmarks": {stream: bookmark}}
    result = run_cli(tmp_path, config, state=state, env={"TAP_TENIOS_LOGLEVEL": "DEBUG"})
    assert result.returncode == 1
    assert (
        f"The saved state of stream {stream!r} holds bookmark '[redacted]', which is not a "
        "date-time" in result.stderr
    )
    assert not leaked(result.stderr)
