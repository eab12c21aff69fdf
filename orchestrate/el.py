"""One account's extract-load: ``meltano run`` with its settings, under its own lock.

The run gets the account's API URL, key, start date, time zone and schema through
Meltano's environment variables (``TAP_TENIOS_*``, ``TAP_TENIOS__LOAD_SCHEMA``), and its
own state id (``--state-id-suffix <account>``) in Meltano's system database. Before it
starts, the run takes a PostgreSQL advisory lock on that state id in the same
database, held by this process's connection: a second run of the same account, from
any worker, waits or refuses, so two runs never write one account's rows and state at
once. Meltano's own check (a RUNNING job with that id) is not atomic and keeps a
killed run's id blocked for five minutes; under the lock it is redundant, so the run
passes ``--force``, and a retry after a kill resumes at once from the last STATE.

Meltano writes a plugin's catalog and config files into ``.meltano/run/<plugin>/``,
one folder per plugin name: two accounts of the same extractor at once would
overwrite each other's files. Each account therefore gets its own Meltano system
directory (``MELTANO_SYS_DIR_ROOT``, under ``.meltano/accounts/``) whose plugin
folders link to the project's installed plugins.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psycopg

from tap_tenios.errors import redact
from tap_tenios.probe.report import PHONE, phone_shape

from .accounts import Account
from .settings import Settings

#: Lines of a failed run's log kept for its error message.
_TAIL = 15
#: How long an interrupted ``meltano run`` gets to stop before it is killed.
_STOP_SECONDS = 60
#: The tap's first line once data moves: everything before it is start-up.
_FIRST_SYNC = "Beginning sync of"


class AccountBusyError(RuntimeError):
    """Another run of the same account holds its lock."""


class LoadFailedError(RuntimeError):
    """``meltano run`` failed; the message ends with the tail of its log."""


@dataclass(frozen=True)
class LoadResult:
    """How one account's run went, for Dagster's metadata and the benchmark."""

    account: str
    state_id: str
    seconds: float
    #: From launch to the tap's first sync line: Meltano's start, discovery, imports.
    startup_seconds: float


def lock_key(state_id: str) -> int:
    """The advisory lock's 64-bit key for a state id (stable across processes)."""
    digest = hashlib.sha256(state_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def libpq_uri(database_uri: str) -> str:
    """A SQLAlchemy URI (``postgresql+psycopg://``) as libpq reads it."""
    scheme, sep, rest = database_uri.partition("://")
    return f"{scheme.split('+', 1)[0]}{sep}{rest}"


@contextmanager
def account_lock(settings: Settings, state_id: str) -> Iterator[None]:
    """Hold the account's advisory lock (none without a PostgreSQL system database)."""
    if not settings.on_postgres:
        yield
        return
    with psycopg.connect(libpq_uri(settings.database_uri), autocommit=True) as connection:
        key = lock_key(state_id)
        deadline = time.monotonic() + settings.lock_wait_seconds
        while True:
            row = connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if row and row[0]:
                break
            if time.monotonic() >= deadline:
                raise AccountBusyError(
                    f"{state_id}: another run of this account is loading (its lock is "
                    f"held); not started"
                )
            time.sleep(min(1.0, settings.lock_wait_seconds))
        try:
            yield
        finally:
            connection.execute("SELECT pg_advisory_unlock(%s)", (key,))


#: Folders of Meltano's system directory shared by every account: the installed plugins.
_SHARED = ("extractors", "loaders", "utilities", "mappers", "transformers", "orchestrators")


def account_sys_dir(account: Account, settings: Settings) -> Path:
    """The account's own Meltano system directory, its plugin folders linked to the
    project's (``meltano install`` once, for every account).
    """
    shared = settings.project_root / ".meltano"
    own = shared / "accounts" / account.account
    own.mkdir(parents=True, exist_ok=True)
    for name in _SHARED:
        link = own / name
        if (shared / name).is_dir() and not link.is_symlink():
            link.symlink_to(shared / name, target_is_directory=True)
    return own


def account_env(
    account: Account, settings: Settings, environ: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of the account's ``meltano run``."""
    env = dict(os.environ if environ is None else environ)
    env.update(
        {
            "MELTANO_PROJECT_ROOT": str(settings.project_root),
            "MELTANO_SYS_DIR_ROOT": str(account_sys_dir(account, settings)),
            "MELTANO_ENVIRONMENT": settings.environment,
            "MELTANO_DATABASE_URI": settings.database_uri,
            "TAP_TENIOS_API_URL": account.api_url,
            "TAP_TENIOS_ACCESS_KEY": account.access_key(environ),
            "TAP_TENIOS_START_DATE": account.start_date,
            "TAP_TENIOS_TIMEZONE": account.timezone,
            # The extractor's load_schema: every loader's default_target_schema.
            "TAP_TENIOS__LOAD_SCHEMA": account.schema,
            "TAP_TENIOS_BATCH_CONFIG": json.dumps(account_batch_config(account, settings)),
        }
    )
    return env


def account_batch_config(account: Account, settings: Settings) -> dict[str, object]:
    """BATCH files in a folder of the account's own.

    A run's start removes the folders of runs whose tap has ended, and a tap ends
    before its loader has read the files. Accounts loading side by side in one shared
    folder would remove each other's unread files; one account's runs never overlap
    (its lock), so a folder per account is safe. Uncompressed JSON Lines, as the
    project's environments write them for target-postgres.
    """
    root = account_sys_dir(account, settings) / "batches"
    return {
        "encoding": {"format": "jsonl", "compression": "none"},
        "storage": {"root": root.as_uri()},
    }


def meltano_command(account: Account, settings: Settings) -> list[str]:
    """``meltano run`` for the account (``--force``: the advisory lock guards the state id)."""
    force = ["--force"] if settings.on_postgres else []
    return [
        settings.meltano,
        "run",
        "--state-id-suffix",
        account.account,
        *force,
        settings.extractor,
        settings.loader,
    ]


def stop(process: subprocess.Popen[str]) -> None:
    """Stop the ``meltano run`` of an interrupted step (Dagster terminates a run by
    signalling its steps) while the account's lock is still held, so that no load
    outlives it: SIGTERM, then SIGKILL after a minute.
    """
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=_STOP_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def run_account(
    account: Account, settings: Settings, environ: Mapping[str, str] | None = None
) -> LoadResult:
    """Load one account; raise ``AccountBusyError`` or ``LoadFailedError`` if it cannot."""
    state_id = settings.state_id(account.account)
    with account_lock(settings, state_id):
        started = time.monotonic()
        first_sync: float | None = None
        tail: deque[str] = deque(maxlen=_TAIL)
        process = subprocess.Popen(  # noqa: S603 (the executable is a setting)
            meltano_command(account, settings),
            cwd=settings.project_root,
            env=account_env(account, settings, environ),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert process.stderr is not None
        for line in process.stderr:
            if first_sync is None and _FIRST_SYNC in line:
                first_sync = time.monotonic()
            tail.append(line.rstrip())
        code = process.wait()
        ended = time.monotonic()
    if code != 0:
        # A loader's error can quote row values (callers' numbers), and nothing of the
        # key may travel into the orchestrator's event log.
        log = PHONE.sub(phone_shape, redact("\n".join(tail), account.access_key(environ)))
        raise LoadFailedError(f"{state_id}: meltano run exited with {code}; its last lines:\n{log}")
    return LoadResult(
        account=account.account,
        state_id=state_id,
        seconds=ended - started,
        startup_seconds=(first_sync or ended) - started,
    )


def prepare_system_database(settings: Settings) -> None:
    """Create or migrate Meltano's system database once, before the accounts start
    (several first runs at once would each try to migrate it).
    """
    done = subprocess.run(  # noqa: S603 (the executable is a setting)
        [settings.meltano, "upgrade", "database"],
        cwd=settings.project_root,
        env={
            **os.environ,
            "MELTANO_PROJECT_ROOT": str(settings.project_root),
            "MELTANO_DATABASE_URI": settings.database_uri,
        },
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.splitlines()[-_TAIL:])
        raise LoadFailedError(f"meltano upgrade database failed; its last lines:\n{tail}")
