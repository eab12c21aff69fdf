"""What each target makes of our schema, and proof that the documented fixes work.

The loaders come from ``meltano.yml`` (installed into ``.meltano/`` once per session);
column types are computed offline, so no Snowflake account is needed.
"""

from __future__ import annotations

import subprocess
from decimal import Decimal

import pytest

from .helpers import dataset, in_range, load_script, make_config, meltano, pipeline_env

readme_tables = load_script("readme_tables")


@pytest.fixture(scope="module")
def loaders() -> dict[str, dict[str, dict[str, str]]]:
    meltano("install", "--plugin-type=loader", *readme_tables.LOADERS)
    return readme_tables.column_types()


@pytest.mark.meltano
def test_readme_column_types_match_the_targets(loaders):
    readme = readme_tables.OPERATIONS.read_text()
    assert readme_tables.section(readme, "types") == readme_tables.types_table(), (
        "docs/operations.md column types are stale: run python scripts/readme_tables.py --write"
    )


@pytest.mark.meltano
def test_where_exactness_is_lost_and_where_it_is_kept(loaders):
    """The README's quirks section rests on these facts; if a target changes, so must it."""
    postgres, snowflake, duckdb = (loaders[name] for name in readme_tables.LOADERS)
    assert postgres["cdrs"]["cost"] == "DECIMAL"  # NUMERIC without limits: exact
    assert snowflake["cdrs"]["cost"] == "FLOAT"
    assert duckdb["cdrs"]["cost"] == "DOUBLE"
    decimal = readme_tables.column_types(use_singer_decimal=True)
    assert decimal["target-snowflake"]["cdrs"]["cost"] == "DECIMAL(15, 6)"
    assert decimal["target-postgres"]["cdrs"]["cost"] == "DECIMAL(15, 6)"
    assert decimal["target-duckdb"]["cdrs"]["cost"] == "VARCHAR"
    assert snowflake["cdrs"]["start_stamp"] == "TIMESTAMP_NTZ"  # UTC values, no zone
    assert postgres["cdrs"]["start_stamp"] == "TIMESTAMP WITHOUT TIME ZONE"
    assert duckdb["cdr_counts"]["date"] == "VARCHAR"


def test_the_documented_stream_map_gives_snowflake_an_exact_text_copy(serve, run_tap, tmp_path):
    legs = dataset(calls_per_day=10)
    emulator = serve(legs)
    config = make_config(emulator.url, stream_maps={"cdrs": {"cost_text": "str(cost)"}})
    run = run_tap(config)
    schema = next(m["schema"] for m in run.messages if m["type"] == "SCHEMA")
    assert schema["properties"]["cost_text"]["type"][0] == "string"
    by_uuid = {leg.uuid: leg for leg in legs}
    for record in run.records():
        assert record["cost_text"] == format(by_uuid[record["uuid"]].fields["cost"], "f")


@pytest.mark.meltano
def test_target_duckdb_loads_every_row_and_the_documented_cast_is_exact(loaders, serve, tmp_path):
    legs = dataset(calls_per_day=40)
    emulator = serve(legs)
    database = tmp_path / "check.duckdb"
    env = {**pipeline_env(tmp_path, emulator.url), "TARGET_DUCKDB_FILEPATH": str(database)}
    meltano("run", "tap-tenios--number", "target-duckdb", env=env)
    python = readme_tables.loader_python("target-duckdb")
    sql = (
        "SELECT count(*), count(DISTINCT uuid), sum(cost::DECIMAL(18, 6))::VARCHAR FROM tenios.cdrs"
    )
    read = subprocess.run(
        [
            str(python),
            "-c",
            f"import duckdb; db = duckdb.connect({str(database)!r}); "
            f"print(*db.sql({sql!r}).fetchone())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert read.returncode == 0, read.stderr[-2000:]
    out = read.stdout.split()
    expected = in_range(legs)
    exact = sum((leg.fields["cost"] for leg in legs if leg.uuid in expected), Decimal(0))
    assert int(out[0]) == int(out[1]) == len(expected)  # duckdb 1.2.2: no dropped rows
    assert Decimal(out[2]) == exact
