"""The accounts file: one entry per Tenios account, checked whole before anything runs.

Each entry names the account (the Dagster partition and the suffix of its Meltano
state id), its ``api_url``, the *name* of the environment variable holding its access
key (never the key itself: the file can live in version control), its ``start_date``
and ``timezone``, and optionally the warehouse ``schema`` it loads into (default
``tenios_<account>``). A bad file stops everything with one line naming the entry and
the field, so a typo in account 17 cannot leave accounts 1 to 16 loaded and the
rest not.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

#: The environment variable naming the accounts file.
ACCOUNTS_FILE_ENV = "TENIOS_ACCOUNTS_FILE"

#: Account names are partition keys, state id suffixes and schema suffixes: keep them
#: plain lower-case identifiers.
_ACCOUNT = re.compile(r"[a-z][a-z0-9_]{0,39}")
#: An unquoted PostgreSQL / Snowflake identifier (63 bytes at most in PostgreSQL).
_SCHEMA = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELDS = frozenset({"account", "api_url", "access_key_env", "start_date", "timezone", "schema"})
_REQUIRED = ("account", "api_url", "access_key_env", "start_date", "timezone")


class AccountsError(ValueError):
    """The accounts file cannot be used; the message is one line naming what to fix."""


@dataclass(frozen=True)
class Account:
    """One Tenios account as the orchestration runs it."""

    account: str
    api_url: str
    access_key_env: str
    start_date: str
    timezone: str
    schema: str

    def access_key(self, environ: Mapping[str, str] | None = None) -> str:
        """The key from its environment variable (checked present when the file was read)."""
        return (os.environ if environ is None else environ)[self.access_key_env]


def accounts_path(environ: Mapping[str, str] | None = None) -> Path:
    """The accounts file named by ``TENIOS_ACCOUNTS_FILE``."""
    value = (os.environ if environ is None else environ).get(ACCOUNTS_FILE_ENV, "")
    if not value:
        raise AccountsError(
            f"{ACCOUNTS_FILE_ENV} is not set: name the accounts file (accounts.yml)"
        )
    return Path(value)


def load_accounts(path: Path, environ: Mapping[str, str] | None = None) -> list[Account]:
    """Every account of ``path``, in file order, or an ``AccountsError`` for the first problem."""
    env = os.environ if environ is None else environ
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise AccountsError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise AccountsError(f"{path}: not valid YAML{where}") from None
    entries = document.get("accounts") if isinstance(document, dict) else document
    if not isinstance(entries, list) or not entries:
        raise AccountsError(f"{path}: expected a non-empty list of accounts (or `accounts:` list)")
    accounts: list[Account] = []
    seen_accounts: dict[str, int] = {}
    seen_schemas: dict[str, str] = {}
    for number, entry in enumerate(entries, start=1):
        account = _account(path, number, entry, env)
        if account.account in seen_accounts:
            raise AccountsError(
                f"{path}: entry {number}: account {account.account!r} is a duplicate of "
                f"entry {seen_accounts[account.account]}"
            )
        schema_key = account.schema.lower()
        if schema_key in seen_schemas:
            raise AccountsError(
                f"{path}: account {account.account!r}: schema {account.schema!r} is already "
                f"used by account {seen_schemas[schema_key]!r}"
            )
        seen_accounts[account.account] = number
        seen_schemas[schema_key] = account.account
        accounts.append(account)
    return accounts


def _account(path: Path, number: int, entry: Any, env: Mapping[str, str]) -> Account:
    if not isinstance(entry, dict):
        raise AccountsError(f"{path}: entry {number}: expected a mapping of account settings")
    name = entry.get("account")
    label = f"account {name!r}" if isinstance(name, str) and name else f"entry {number}"

    def fail(problem: str) -> AccountsError:
        return AccountsError(f"{path}: {label}: {problem}")

    unknown = sorted(str(key) for key in entry if key not in _FIELDS)
    if unknown:
        raise fail(f"unknown field {unknown[0]!r} (fields: {', '.join(sorted(_FIELDS))})")
    for field in _REQUIRED:
        if entry.get(field) in (None, ""):
            raise fail(f"{field} is missing")
    values = {field: str(value) for field, value in entry.items()}
    if not _ACCOUNT.fullmatch(values["account"]):
        raise fail("account must be lower-case letters, digits and _ (at most 40), from a letter")
    schema = values.get("schema") or f"tenios_{values['account']}"
    if not _SCHEMA.fullmatch(schema):
        raise fail(f"schema {schema!r} is not an identifier (letters, digits, _; 63 at most)")
    key_env = values["access_key_env"]
    if not _ENV_NAME.fullmatch(key_env):
        raise fail(f"access_key_env {key_env!r} is not an environment variable name")
    if not env.get(key_env):
        raise fail(f"the environment variable {key_env} (its access key) is not set")
    zone = values["timezone"]
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(f"timezone {zone!r} is not an IANA time zone (e.g. Europe/Berlin)") from None
    start = values["start_date"]
    if not _is_date(start):
        raise fail(f"start_date {start!r} is not a date (YYYY-MM-DD) or ISO-8601 date-time")
    api_url = values["api_url"]
    if not api_url.startswith(("https://", "http://")):
        raise fail(f"api_url {api_url!r} is not an http(s) URL")
    return Account(values["account"], api_url, key_env, start, zone, schema)


def _is_date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        try:
            datetime.fromisoformat(text)
        except ValueError:
            return False
    return True
