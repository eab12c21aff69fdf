"""``scripts/postgres.sh``: the project's server keeps its data across a restart."""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from .helpers import ROOT, free_port

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.postgres


@pytest.fixture
def script() -> Iterator[tuple[dict[str, str], str]]:
    """``scripts/postgres.sh`` on a port and data folder of this test's own, and its DSN.

    The folder is under /tmp, not pytest's tmp_path: the server runs as the
    ``postgres`` user, who cannot enter root's private pytest folders.
    """
    if not glob.glob("/usr/lib/postgresql/*/bin") and not os.environ.get("TENIOS_REQUIRE_POSTGRES"):
        pytest.skip("PostgreSQL is not installed (scripts/postgres.sh start installs it)")
    port = free_port()
    data = Path(f"/tmp/tap-tenios-test-pgdata-{uuid.uuid4().hex[:10]}")
    env = {**os.environ, "PGPORT": str(port), "PGDATA_DIR": str(data)}
    yield env, f"postgresql://postgres@127.0.0.1:{port}/postgres"
    subprocess.run([ROOT / "scripts" / "postgres.sh", "stop"], env=env, check=False)
    shutil.rmtree(data, ignore_errors=True)


def postgres_sh(env: dict[str, str], command: str) -> str:
    done = subprocess.run(
        [ROOT / "scripts" / "postgres.sh", command],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def tables(dsn: str) -> list[str]:
    with psycopg.connect(dsn, connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchall()
    return [row[0] for row in rows]


def test_a_restart_keeps_the_warehouse_and_only_wipe_deletes_it(script):
    env, dsn = script
    postgres_sh(env, "start")  # the first start creates the data folder
    with psycopg.connect(dsn) as connection:
        connection.execute("CREATE TABLE kept (id int)")

    postgres_sh(env, "stop")
    postgres_sh(env, "start")
    assert tables(dsn) == ["kept"]

    assert "Deleted" in postgres_sh(env, "wipe")
    assert not Path(env["PGDATA_DIR"]).exists()
    postgres_sh(env, "start")  # a fresh, empty server again
    assert tables(dsn) == []


def test_the_servers_and_the_tests_settings_are_documented():
    """PGPORT and PGDATA_DIR (the script), TENIOS_TEST_PG_DSN and
    TENIOS_REQUIRE_POSTGRES (the tests): named where a developer looks, with the
    defaults the code has."""
    testing = (ROOT / "docs" / "testing.md").read_text()
    readme = (ROOT / "README.md").read_text()
    script = (ROOT / "scripts" / "postgres.sh").read_text()
    for name in ("PGPORT", "PGDATA_DIR", "TENIOS_TEST_PG_DSN", "TENIOS_REQUIRE_POSTGRES"):
        assert f"`{name}" in testing, name
    for name in ("PGPORT", "TENIOS_TEST_PG_DSN"):
        assert f"`{name}" in readme, name
    default = "postgresql://postgres@127.0.0.1:15432/postgres"
    assert default in testing and default in readme
    assert f'"TENIOS_TEST_PG_DSN", "{default}"' in (ROOT / "tests" / "helpers.py").read_text()
    assert 'PGPORT="${PGPORT:-15432}"' in script
