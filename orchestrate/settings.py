"""The orchestration's own settings, from the environment, checked once.

Everything an operator tunes without touching code: where the Meltano project and
its executable are, which Meltano environment and plugins run, Meltano's system
database, how many accounts load at once, and the retry policy. Defaults suit this
repository's project and its PostgreSQL (``scripts/postgres.sh``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .accounts import AccountsError

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Settings:
    """How every account's run is made."""

    #: The Meltano project (its ``meltano.yml``).
    project_root: Path
    #: The ``meltano`` executable (Meltano has its own virtualenv; Dagster another).
    meltano: str
    #: The Meltano environment (``prod`` for the real API, ``emulator`` for the demo).
    environment: str
    extractor: str
    loader: str
    #: Meltano's system database (state included): a ``postgresql+psycopg://`` URI, so
    #: that any worker resumes any account; ``sqlite:///`` only on one machine.
    database_uri: str
    #: Accounts loading at once in one run (the multiprocess executor's limit).
    max_in_flight: int
    #: Retries of one account's load after a failure, and the first wait (doubling).
    retries: int
    retry_delay_seconds: float
    #: How long a run waits for another run of the same account to finish (0: refuse).
    lock_wait_seconds: float

    @property
    def on_postgres(self) -> bool:
        """Whether the system database is PostgreSQL (then runs take an advisory lock)."""
        return self.database_uri.startswith(("postgresql", "postgres:"))

    def state_id(self, account: str) -> str:
        """The Meltano state id of ``account``'s loads (``meltano run --state-id-suffix``)."""
        return f"{self.environment}:{self.extractor}-to-{self.loader}:{account}"


def _number(env: Mapping[str, str], name: str, default: str, *, whole: bool) -> float:
    text = env.get(name) or default
    try:
        value = int(text) if whole else float(text)
    except ValueError:
        raise AccountsError(f"{name}={text!r} is not a {'whole ' if whole else ''}number") from None
    if value < 0 or (name == "TENIOS_MAX_IN_FLIGHT" and value < 1):
        raise AccountsError(f"{name}={text!r} is out of range")
    return value


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """The settings from ``environ`` (default: this process's environment)."""
    env = os.environ if environ is None else environ
    root = Path(env.get("MELTANO_PROJECT_ROOT") or ROOT)
    meltano = env.get("TENIOS_MELTANO") or shutil.which("meltano") or ""
    if not meltano:
        raise AccountsError("meltano was not found: set TENIOS_MELTANO to its executable")
    uri = env.get("MELTANO_DATABASE_URI", "")
    if not uri:
        raise AccountsError(
            "MELTANO_DATABASE_URI is not set: Meltano's system database, "
            "e.g. postgresql+psycopg://user@host:5432/meltano"
        )
    return Settings(
        project_root=root,
        meltano=meltano,
        environment=env.get("MELTANO_ENVIRONMENT") or "prod",
        extractor=env.get("TENIOS_EXTRACTOR") or "tap-tenios",
        loader=env.get("TENIOS_LOADER") or "target-postgres",
        database_uri=uri,
        max_in_flight=int(_number(env, "TENIOS_MAX_IN_FLIGHT", "4", whole=True)),
        retries=int(_number(env, "TENIOS_RETRIES", "3", whole=True)),
        retry_delay_seconds=_number(env, "TENIOS_RETRY_DELAY_SECONDS", "60", whole=False),
        lock_wait_seconds=_number(env, "TENIOS_LOCK_WAIT_SECONDS", "0", whole=False),
    )
