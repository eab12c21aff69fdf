"""Per account, the legs in the warehouse against the API's own count of them.

The API's count is what the tap loaded into ``cdr_counts`` (``/cdrs/count`` per local
day, over exactly the range ``cdrs`` extracted); the legs are the distinct ``uuid``
rows of ``cdrs``. Equal numbers mean the account is whole; ``duplicates`` counts rows
beyond one per ``uuid`` (always 0 with an upserting loader).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import psycopg
from psycopg import sql

from .accounts import Account


@dataclass(frozen=True)
class AccountCount:
    """One account's figures; ``None`` where its tables do not exist (never loaded)."""

    account: str
    schema: str
    legs: int | None
    duplicates: int | None
    api_count: int | None

    @property
    def whole(self) -> bool:
        return self.legs is not None and self.legs == self.api_count and self.duplicates == 0


def warehouse_dsn(environ: Mapping[str, str] | None = None) -> str:
    """The loader's database, from the ``TARGET_POSTGRES_*`` variables meltano.yml reads."""
    env = os.environ if environ is None else environ
    return psycopg.conninfo.make_conninfo(
        host=env.get("TARGET_POSTGRES_HOST", "127.0.0.1"),
        port=env.get("TARGET_POSTGRES_PORT", "15432"),
        user=env.get("TARGET_POSTGRES_USER", "postgres"),
        password=env.get("TARGET_POSTGRES_PASSWORD", ""),
        dbname=env.get("TARGET_POSTGRES_DATABASE", "postgres"),
    )


def count_accounts(accounts: list[Account], dsn: str) -> list[AccountCount]:
    """The figures of every account, in the accounts file's order."""
    counts = []
    with psycopg.connect(dsn, autocommit=True) as connection:
        for account in accounts:
            schema = sql.Identifier(account.schema)
            try:
                row = connection.execute(
                    sql.SQL(
                        "SELECT (SELECT count(DISTINCT uuid) FROM {s}.cdrs), "
                        "(SELECT count(*) - count(DISTINCT uuid) FROM {s}.cdrs), "
                        "(SELECT sum(total_items) FROM {s}.cdr_counts)"
                    ).format(s=schema)
                ).fetchone()
            except psycopg.errors.UndefinedTable:
                row = None
            legs, duplicates, api = row if row else (None, None, None)
            counts.append(
                AccountCount(
                    account.account,
                    account.schema,
                    None if legs is None else int(legs),
                    None if duplicates is None else int(duplicates),
                    None if api is None else int(api),
                )
            )
    return counts


def format_counts(counts: list[AccountCount]) -> str:
    """A plain table, one line per account."""
    lines = [f"{'account':<16} {'schema':<24} {'legs':>8} {'API count':>10} {'dup':>4}  whole"]
    for c in counts:
        legs = "-" if c.legs is None else str(c.legs)
        api = "-" if c.api_count is None else str(c.api_count)
        dup = "-" if c.duplicates is None else str(c.duplicates)
        lines.append(
            f"{c.account:<16} {c.schema:<24} {legs:>8} {api:>10} {dup:>4}  "
            f"{'yes' if c.whole else 'NO'}"
        )
    return "\n".join(lines)
