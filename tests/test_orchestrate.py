"""orchestrate/: many accounts on Dagster, with Meltano's state in PostgreSQL.

Runs in the orchestration's own virtualenv (``make test-orchestrate``: Dagster is not
part of the tap's install) and skips elsewhere. Every account is an emulator of its
own; the loads go through the real ``meltano run`` into the real PostgreSQL, and
Meltano's system database is a PostgreSQL database of the test's own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("dagster", reason="needs Dagster: make test-orchestrate")
psycopg = pytest.importorskip("psycopg")
yaml = pytest.importorskip("yaml")

from orchestrate.accounts import load_accounts  # noqa: E402
from orchestrate.el import AccountBusyError, account_env, lock_key, run_account  # noqa: E402
from orchestrate.settings import Settings, load_settings  # noqa: E402

from .conftest import own_database  # noqa: E402
from .helpers import (  # noqa: E402
    END,
    KEY,
    PG_DSN,
    ROOT,
    START,
    dataset,
    documented_commands,
    in_range,
    query,
)

pytestmark = [
    pytest.mark.orchestrate,
    pytest.mark.postgres,
    pytest.mark.meltano,
    # dagster-dbt's SQL parser (sqlglot) imports its deprecated Rust tokenizer when present.
    pytest.mark.filterwarnings("ignore:sqlglotrs is deprecated:DeprecationWarning"),
]

DOC = ROOT / "docs" / "orchestration.md"


@pytest.fixture
def system_database(server: Any) -> Iterator[str]:
    """Meltano's system database: a PostgreSQL database of this test's own."""
    yield from own_database(server)


def pg_uri(database: str, driver: str = "postgresql+psycopg") -> str:
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    user, host, port = info.get("user", "postgres"), info.get("host"), info.get("port", 5432)
    return f"{driver}://{user}@{host}:{port}/{database}"


def orchestrate_env(tmp_path: Path, warehouse: str, system: str, **extra: str) -> dict[str, str]:
    """The environment of one test's runs: its own databases, the emulator environment
    of meltano.yml with this test's dates, no waits between retries."""
    info = psycopg.conninfo.conninfo_to_dict(PG_DSN)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_TENIOS_", "MELTANO_"))}
    return {
        **env,
        "TENIOS_MELTANO": os.environ.get("TENIOS_MELTANO", str(ROOT / ".venv" / "bin" / "meltano")),
        "MELTANO_ENVIRONMENT": "emulator",
        "MELTANO_DATABASE_URI": pg_uri(system),
        "TAP_TENIOS_END_DATE": END.isoformat(),
        "TENIOS_RETRY_DELAY_SECONDS": "0",
        "TARGET_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "TARGET_POSTGRES_PORT": str(info.get("port", 5432)),
        "TARGET_POSTGRES_DATABASE": warehouse,
        "DBT_POSTGRES_HOST": str(info.get("host", "127.0.0.1")),
        "DBT_POSTGRES_PORT": str(info.get("port", 5432)),
        "DBT_POSTGRES_DBNAME": warehouse,
        **extra,
    }


def entry(name: str, url: str, **changes: str) -> dict[str, str]:
    """One account of an accounts file; its key in ``TENIOS_KEY_<NAME>``."""
    return {
        "account": name,
        "api_url": url,
        "access_key_env": f"TENIOS_KEY_{name.upper()}",
        "start_date": START.date().isoformat(),
        "timezone": "Europe/Berlin",
        **changes,
    }


def write_accounts(tmp_path: Path, entries: list[dict[str, str]]) -> Path:
    path = tmp_path / "accounts.yml"
    path.write_text(yaml.safe_dump({"accounts": entries}, sort_keys=False))
    return path


def keys(entries: list[dict[str, str]]) -> dict[str, str]:
    return {e["access_key_env"]: KEY for e in entries}


def cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrate", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )


def loaded(warehouse: str, schema: str) -> list[str]:
    return [row[0] for row in query(warehouse, f"SELECT uuid FROM {schema}.cdrs")]


# --- Bad input: one line, nothing run -----------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("duplicate", "account 'acct_b' is a duplicate of entry 2"),
        ("no_key", "the environment variable TENIOS_KEY_ACCT_B (its access key) is not set"),
        ("zone", "timezone 'Europe/Berlín' is not an IANA time zone"),
        ("schema", "schema 'tenios-b' is not an identifier"),
    ],
)
def test_a_bad_accounts_file_is_one_line_and_nothing_runs(serve, tmp_path, change, message):
    emulator = serve(dataset(calls_per_day=5))
    entries = [entry("acct_a", emulator.url), entry("acct_b", emulator.url)]
    env_keys = keys(entries)
    if change == "duplicate":
        entries.append(entry("acct_b", emulator.url, schema="other"))
    elif change == "no_key":
        del env_keys["TENIOS_KEY_ACCT_B"]
    elif change == "zone":
        entries[1]["timezone"] = "Europe/Berlín"
    else:
        entries[1]["schema"] = "tenios-b"
    path = write_accounts(tmp_path, entries)
    env = {
        **orchestrate_env(tmp_path, "unused", "unused"),
        **env_keys,
        "TENIOS_ACCOUNTS_FILE": str(path),
    }

    done = cli(["run"], env)

    assert done.returncode == 2
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith(f"error: {path}: ")
    assert message in lines[0]
    assert emulator.emulator.stats.bodies == []  # no account was started
    assert KEY not in done.stderr + done.stdout


# --- Three accounts through Dagster, as documented ---------------------------------


def test_the_documented_command_runs_every_account_then_the_models_once(
    serve, database, system_database, tmp_path
):
    small, medium, flaky = dataset(calls_per_day=8, seed=1), dataset(30, seed=2), dataset(4, 3)
    emulators = {"acct_a": serve(small), "acct_b": serve(medium), "acct_c": serve(flaky)}
    # acct_c's first run is refused (one request, one 403): the retry policy reloads it.
    emulators["acct_c"].emulator.behaviour.fault_queue.append({"kind": "403"})
    entries = [entry(name, emulator.url) for name, emulator in emulators.items()]
    entries[1]["schema"] = "brand_b"
    entries[2]["timezone"] = "UTC"
    path = write_accounts(tmp_path, entries)
    env = {**orchestrate_env(tmp_path, database, system_database), **keys(entries)}
    (line,) = documented_commands(DOC, "orchestrate run", "tests/test_orchestrate.py")
    command = line.replace("/path/to/accounts.yml", str(path)).replace(
        ".venv-orchestrate/bin/python", sys.executable
    )

    done = subprocess.run(
        ["bash", "-c", command],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )

    assert done.returncode == 0, done.stderr[-4000:]
    for (name, emulator), schema in zip(
        emulators.items(), ("tenios_acct_a", "brand_b", "tenios_acct_c"), strict=True
    ):
        uuids = loaded(database, schema)
        assert len(uuids) == len(set(uuids))
        assert set(uuids) == in_range(emulator.emulator.store.all())
        # The report: one line per account, its legs equal to the API's count.
        (row,) = [r for r in done.stdout.splitlines() if r.startswith(name)]
        assert row.split()[1:] == [schema, str(len(uuids)), str(len(uuids)), "0", "yes"]
    assert emulators["acct_c"].emulator.stats.faults == {"403": 1}
    # Each account's state under its own id in the PostgreSQL system database.
    assert sorted(r[0] for r in query(system_database, "SELECT state_id FROM state")) == [
        f"emulator:tap-tenios-to-target-postgres:{name}" for name in emulators
    ]
    # The dbt models, built once after the loads, over every account's schema.
    calls = query(
        database, "SELECT account, count(*) FROM analytics.tenios__calls GROUP BY 1 ORDER BY 1"
    )
    assert [account for account, _ in calls] == list(emulators)
    assert KEY not in done.stdout + done.stderr


# --- One account's run: its lock, and a kill ----------------------------------------


def settings_for(env: dict[str, str], **changes: Any) -> Settings:
    settings = load_settings(env)
    return Settings(**{**settings.__dict__, **changes})


def lock_held(system: str, state_id: str) -> bool:
    """Whether some session holds the account's advisory lock (a bigint key: pg_locks
    shows its high and low 32 bits)."""
    key = lock_key(state_id) & 0xFFFFFFFFFFFFFFFF
    rows = query(
        system,
        "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
        f"AND objsubid = 1 AND classid = {key >> 32} AND objid = {key & 0xFFFFFFFF}",
    )
    return bool(rows[0][0])


def test_a_second_run_of_the_same_account_refuses_while_the_first_loads(
    serve, database, system_database, tmp_path, monkeypatch
):
    legs = dataset(calls_per_day=20)
    emulator = serve(legs, latency_ms=150)
    entries = [entry("acct_a", emulator.url)]
    path = write_accounts(tmp_path, entries)
    env = {**orchestrate_env(tmp_path, database, system_database), **keys(entries)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    (account,) = load_accounts(path, env)
    settings = settings_for(env)
    state_id = settings.state_id("acct_a")
    first: list[Any] = []
    thread = threading.Thread(target=lambda: first.append(run_account(account, settings, env)))
    thread.start()
    for _ in range(600):
        if lock_held(system_database, state_id) and emulator.emulator.stats.bodies:
            break
        time.sleep(0.1)  # polling for the first run to be under way, not a retry wait
    requests_before = len(emulator.emulator.stats.bodies)

    with pytest.raises(AccountBusyError, match="another run of this account is loading"):
        run_account(account, settings, env)

    thread.join(timeout=600)
    assert first, "the first run did not finish"
    assert requests_before > 0
    uuids = loaded(database, "tenios_acct_a")
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == in_range(legs)
    assert not lock_held(system_database, state_id)


def first_request_day(bodies: list[dict[str, Any]]) -> datetime:
    """Where the earliest cdrs request of these starts."""
    starts = [b["start_date_from"] for b in bodies if "page" in b]
    assert starts
    return min(datetime.fromisoformat(str(s).replace(" ", "T")) for s in starts)


def test_a_run_killed_mid_load_resumes_in_another_process_losing_and_doubling_nothing(
    serve, database, system_database, tmp_path
):
    legs = dataset(calls_per_day=40)
    # Narrow windows and a slow API: a run long enough to be killed in the middle.
    emulator = serve(legs, latency_ms=150)
    entries = [entry("acct_a", emulator.url)]
    path = write_accounts(tmp_path, entries)
    env = {
        **orchestrate_env(
            tmp_path,
            database,
            system_database,
            TAP_TENIOS_WINDOW_SIZE_HOURS="4",
            TAP_TENIOS_LOOKBACK_MINUTES="60",
        ),
        **keys(entries),
        "TENIOS_ACCOUNTS_FILE": str(path),
    }
    script = (
        "from orchestrate.accounts import accounts_path, load_accounts\n"
        "from orchestrate.el import run_account\n"
        "from orchestrate.settings import load_settings\n"
        "run_account(load_accounts(accounts_path())[0], load_settings())\n"
    )

    def worker(end: datetime) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-c", script],
            cwd=ROOT,
            env={**env, "TAP_TENIOS_END_DATE": end.isoformat()},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    # The first day, loaded whole: its STATE is what Meltano keeps.
    first = worker(START + timedelta(days=1))
    assert first.wait(timeout=900) == 0, first.stderr.read() if first.stderr else ""
    served = len(emulator.emulator.stats.bodies)
    # The next run, killed (SIGKILL, every process of it) once it is reading.
    second = worker(END)
    try:
        for _ in range(6000):
            if len([b for b in emulator.emulator.stats.bodies[served:] if "page" in b]) >= 3:
                break
            assert second.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)  # polling for the run to be reading, not a retry wait
    finally:
        os.killpg(second.pid, signal.SIGKILL)
        second.wait(timeout=60)
    assert second.returncode == -signal.SIGKILL
    killed_at = len(emulator.emulator.stats.bodies)

    # Another process, at once: the killed run's lock went with it, and its RUNNING
    # job in Meltano's tables does not block the retry.
    third = worker(END)
    assert third.wait(timeout=900) == 0, third.stderr.read() if third.stderr else ""

    uuids = loaded(database, "tenios_acct_a")
    assert len(uuids) == len(set(uuids))
    assert set(uuids) == in_range(legs)
    # It resumed from the first run's STATE (less the lookback), not from start_date.
    assert first_request_day(emulator.emulator.stats.bodies[killed_at:]) > START + timedelta(
        hours=12
    )


# --- The definitions ----------------------------------------------------------------


def test_the_definitions_have_a_partition_per_account_an_hourly_schedule_and_limits(
    tmp_path, monkeypatch
):
    from dagster import build_schedule_context

    from orchestrate.definitions import definitions_from_env

    entries = [entry(name, "https://api.tenios.com") for name in ("b_one", "a_two", "c_three")]
    path = write_accounts(tmp_path, entries)
    env = {
        **orchestrate_env(tmp_path, "unused", "unused", TENIOS_MAX_IN_FLIGHT="3"),
        **keys(entries),
        "TENIOS_ACCOUNTS_FILE": str(path),
        "TENIOS_RETRIES": "5",
    }

    defs = definitions_from_env(env)

    job = defs.resolve_job_def("tenios_accounts")
    assert job.partitions_def is not None
    assert job.partitions_def.get_partition_keys() == ["b_one", "a_two", "c_three"]
    assert job.executor_def.name == "multiprocess"
    (load,) = [node for node in job.all_node_defs if node.name == "load_account"]
    assert load.retry_policy is not None
    assert load.retry_policy.max_retries == 5
    # The dbt models read both loaded streams of every account.
    assets = defs.resolve_asset_graph()
    reconciliation = next(
        k for k in assets.get_all_asset_keys() if k.path[-1] == "tenios__cdr_reconciliation"
    )
    upstream = {key.to_user_string() for key in assets.get_ancestor_asset_keys(reconciliation)}
    assert {"tenios/cdrs", "tenios/cdr_counts"} <= upstream
    # Every hour, every account: one run over the whole range.
    schedule = defs.resolve_schedule_def("tenios_hourly")
    assert schedule.cron_schedule == "0 * * * *"
    (request,) = schedule.evaluate_tick(build_schedule_context()).run_requests or []
    assert request.tags["dagster/asset_partition_range_start"] == "b_one"
    assert request.tags["dagster/asset_partition_range_end"] == "c_three"
    assert request.run_config == {"execution": {"config": {"max_concurrent": 3}}}


def test_each_account_writes_its_batch_files_in_a_folder_of_its_own(tmp_path):
    """A run's start removes the folders of taps that have ended, while their loader may
    still read them: accounts loading side by side must not share one."""
    entries = [entry(name, "https://api.tenios.com") for name in ("one", "two")]
    env = {
        **orchestrate_env(tmp_path, "unused", "unused"),
        **keys(entries),
        "MELTANO_PROJECT_ROOT": str(tmp_path),
    }
    settings = load_settings(env)
    roots = []
    for account in load_accounts(write_accounts(tmp_path, entries), env):
        batch = json.loads(account_env(account, settings, env)["TAP_TENIOS_BATCH_CONFIG"])
        assert batch["encoding"] == {"format": "jsonl", "compression": "none"}
        roots.append(batch["storage"]["root"])
    assert len(set(roots)) == 2
    assert all(root.startswith((tmp_path / ".meltano" / "accounts").as_uri()) for root in roots)
