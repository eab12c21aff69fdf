"""Which column type each target would create for each field, computed offline.

Runs inside a target's own virtualenv (the targets pin their own SDK versions):

    <target venv>/bin/python scripts/target_types.py snowflake catalog.json

and prints ``{"stream": {"field": "SQL TYPE"}}`` as JSON. No connection is made: the
targets' type mappings are pure functions of the JSON schema.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any


def snowflake() -> Callable[[dict[str, Any]], str]:
    from snowflake.sqlalchemy.snowdialect import SnowflakeDialect
    from target_snowflake.connector import SnowflakeConnector

    connector = SnowflakeConnector(config={"account": "offline", "user": "u", "database": "d"})
    dialect = SnowflakeDialect()
    return lambda prop: str(connector.to_sql_type(prop).compile(dialect=dialect))


def postgres() -> Callable[[dict[str, Any]], str]:
    from sqlalchemy.dialects.postgresql import dialect as pg_dialect
    from target_postgres.connector import PostgresConnector

    connector = PostgresConnector(config={"sqlalchemy_url": "postgresql://offline/db"})
    dialect = pg_dialect()
    return lambda prop: str(connector.to_sql_type(prop).compile(dialect=dialect))


def duckdb() -> Callable[[dict[str, Any]], str]:
    from target_duckdb.db_sync import column_type

    return lambda prop: str(column_type(prop)).upper()


TARGETS = {"snowflake": snowflake, "postgres": postgres, "duckdb": duckdb}


def main() -> None:
    target, catalog_path = sys.argv[1], sys.argv[2]
    with open(catalog_path) as handle:
        catalog = json.load(handle)
    to_type = TARGETS[target]()
    result = {
        entry["stream"]: {
            name: to_type(prop) for name, prop in entry["schema"]["properties"].items()
        }
        for entry in catalog["streams"]
    }
    json.dump(result, sys.stdout, indent=1, sort_keys=True)


if __name__ == "__main__":
    main()
