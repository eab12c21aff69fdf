"""``meltano.yml``: in step with the tap, every job, schedule and utility resolves, and a
failure reads under Meltano as the tap says it."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from .helpers import KEY, ROOT, load_script, meltano, pipeline_env
from .helpers import documented_commands as documented_block

readme_tables = load_script("readme_tables")
MELTANO_YML = readme_tables.MELTANO_YML


def test_meltano_yml_describes_the_settings_exactly_as_the_tap_does():
    text = readme_tables.MELTANO_YML.read_text()
    assert readme_tables.meltano_section(text) == readme_tables.meltano_settings(), (
        "meltano.yml's tap-tenios settings are stale: run python scripts/readme_tables.py --write"
    )


@pytest.mark.meltano
def test_jobs_and_the_schedule_resolve_to_declared_plugins():
    jobs = json.loads(meltano("job", "list", "--format=json").stdout)["jobs"]
    tasks = {job["job_name"]: job["tasks"] for job in jobs}
    assert tasks["tenios-to-postgres"][0] == "tap-tenios target-postgres"
    assert tasks["tenios-to-snowflake"][0] == "tap-tenios--snowflake target-snowflake"
    assert tasks["tenios-to-duckdb"][0] == "tap-tenios--number target-duckdb"
    schedules = json.loads(meltano("schedule", "list", "--format=json").stdout)["schedules"]
    hourly = {s["name"]: s for s in schedules["job"]}["tenios-hourly"]
    assert hourly["interval"] == "@hourly"
    assert hourly["job"]["name"] == "tenios-to-postgres"


def test_the_postgres_job_removes_the_batch_files_once_its_loader_has_read_them():
    """The files hold caller numbers: the step after the loader removes them, from the
    folder tap-tenios writes them to in every environment."""
    yaml = pytest.importorskip("yaml")  # Meltano's own dependency
    project = yaml.safe_load(MELTANO_YML.read_text())
    (job,) = [job for job in project["jobs"] if job["name"] == "tenios-to-postgres"]
    assert job["tasks"][:2] == ["tap-tenios target-postgres", "tap-tenios-batches:remove"]
    (utility,) = [p for p in project["plugins"]["utilities"] if p["name"] == "tap-tenios-batches"]
    command = [utility["executable"], *utility["commands"]["remove"]["args"].split()]
    assert command[:4] == ["python", "-m", "tap_tenios.batch", "remove"]
    for environment in project["environments"]:
        (tap,) = [
            e for e in environment["config"]["plugins"]["extractors"] if e["name"] == "tap-tenios"
        ]
        root = tap["config"]["batch_config"]["storage"]["root"]
        assert root == f"file://{command[4]}", environment["name"]


@pytest.mark.meltano
def test_the_emulator_comes_with_meltano_install():
    meltano("install", "--plugin-type=utility", "tap-tenios-emulator")
    usage = meltano("invoke", "tap-tenios-emulator", "--help").stdout
    assert "--access-key" in usage


@pytest.mark.meltano
def test_every_job_ends_with_the_production_dbt_build_of_its_warehouse():
    """A scheduled run refreshes the models of the warehouse it loaded, without the
    dbt unit tests (they test the SQL, in CI: in production one that a loader's column
    types upset would skip every model after it)."""
    yaml = pytest.importorskip("yaml")  # Meltano's own dependency
    jobs = {
        job["job_name"]: job["tasks"]
        for job in json.loads(meltano("job", "list", "--format=json").stdout)["jobs"]
    }
    schedules = json.loads(meltano("schedule", "list", "--format=json").stdout)["schedules"]
    scheduled = {schedule["job"]["name"] for schedule in schedules["job"]}
    assert scheduled and scheduled <= jobs.keys()
    utilities = {
        plugin["name"]: plugin
        for plugin in yaml.safe_load(MELTANO_YML.read_text())["plugins"]["utilities"]
    }
    for name, tasks in jobs.items():
        loader = tasks[0].split()[-1]
        assert loader.startswith("target-"), name
        warehouse = loader.removeprefix("target-")
        assert tasks[-1] == f"dbt-{warehouse}:build", name
        commands = utilities[f"dbt-{warehouse}"]["commands"]
        assert commands["build"]["args"].split() == [
            "build",
            "--exclude-resource-type",
            "unit_test",
        ]
        assert commands["build-with-unit-tests"]["args"] == "build"


@pytest.mark.meltano
def test_every_sql_loader_writes_each_account_to_its_own_schema(tmp_path):
    """The loaders' ``default_target_schema`` is the extractor's ``load_schema``, so a
    second account run into the same warehouse cannot land in the first one's schema.
    (The configuration each loader gets in that pipeline, resolved without a run; the
    dbt pipeline tests load accounts into their schemas in PostgreSQL and DuckDB.)"""
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"}
    pipelines = (
        ("tap-tenios", "target-postgres", "tenios"),
        ("tap-tenios--account-b", "target-postgres", "tenios_account_b"),
        ("tap-tenios--snowflake", "target-snowflake", "tenios"),
        ("tap-tenios--account-b", "target-snowflake", "tenios_account_b"),
    )
    for extractor, loader, schema in pipelines:
        dumped = meltano("el", extractor, loader, "--dump=loader-config", env=env).stdout
        config = json.loads(dumped[dumped.index("{") :])
        assert config["default_target_schema"] == schema, (loader, extractor)


@pytest.mark.meltano
def test_a_rejected_keys_final_line_reaches_meltanos_log_at_error(serve, legs, tmp_path):
    """``structured-logging``: Meltano keeps the level of each tap log line (without
    it, every line a plugin writes is logged at info)."""
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    meltano("install", "--plugin-type=loader", "target-jsonl")
    emulator = serve(legs, access_key="another-key")
    env = {**pipeline_env(tmp_path, emulator.url), "TARGET_JSONL_DESTINATION_PATH": str(tmp_path)}
    done = meltano("run", "tap-tenios", "target-jsonl", env=env, succeeds=False)
    (reason,) = [line for line in done.stderr.splitlines() if "rejected the access key" in line]
    assert re.search(r"\[error\s*\] tap-tenios\s+The Tenios API rejected the access key", reason)
    assert KEY not in done.stderr


def documented_commands(path: Path, name: str) -> list[str]:
    """The shell lines of the block between ``<!-- NAME: ... -->`` markers in ``path``."""
    text = path.read_text()
    begin = text.index(f"<!-- {name}: run as written by tests/test_meltano_project.py -->")
    block = text[begin : text.index(f"<!-- end of {name} -->", begin)]
    code = block.split("```sh\n", 1)[1].split("```", 1)[0]
    return [line for line in code.splitlines() if line.strip()]


@pytest.mark.meltano
def test_meltano_config_test_works_as_documented(serve, legs, tmp_path):
    """Against the emulator, as the emulator environment sets it up (its key; the port
    is this test's own). ``meltano config`` ignores ``default_environment``, so the
    command names the environment."""
    meltano("install", "--plugin-type=extractor", "tap-tenios")
    emulator = serve(legs, access_key="demo-access-key")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_TENIOS_", "MELTANO_"))}
    env |= {
        "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}",
        "TAP_TENIOS_API_URL": emulator.url,
    }
    (command,) = documented_commands(ROOT / "docs" / "troubleshooting.md", "config test")
    assert command.split()[0] == "meltano"
    done = meltano(*shlex.split(command)[1:], env=env)
    assert "Plugin configuration is valid" in done.stdout + done.stderr


@pytest.mark.meltano
@pytest.mark.parametrize("environment", ["emulator", "prod"])
def test_batch_files_go_only_to_the_loaders_that_read_them(environment):
    """tap-tenios writes BATCH files (target-postgres), tap-tenios--snowflake gzipped ones;
    the plugins for loaders that read RECORD messages only must not inherit them.
    (Meltano hands an inheriting plugin an environment's plain values, not its objects:
    should that change, tap-tenios--number would write files target-duckdb ignores.)"""

    def batch(plugin: str) -> dict:
        printed = meltano("--environment", environment, "config", "--unsafe", "print", plugin)
        return json.loads(printed.stdout).get("batch_config") or {}

    assert batch("tap-tenios")["encoding"] == {"format": "jsonl", "compression": "none"}
    assert batch("tap-tenios--snowflake")["encoding"] == {"format": "jsonl", "compression": "gzip"}
    for records_only in ("tap-tenios--number", "tap-tenios--account-b", "tap-tenios--records"):
        assert batch(records_only) == {}, records_only


#: ``meltano state copy|clear|set`` naming a state id, in a document's code (up to the
#: end of its code span, or the next command of a code block).
STATE_COMMAND = re.compile(
    r"meltano state (?:copy|clear|set)\b(?:(?!meltano )[^`])*:(?:(?!meltano )[^`])*"
)


def documented_state_commands() -> list[str]:
    documents = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    texts = [document.read_text().replace("\n", " ") for document in documents]
    return [" ".join(m[0].split()) for text in texts for m in STATE_COMMAND.finditer(text)]


def test_documented_state_commands_do_not_wait_for_an_answer():
    """``meltano state copy``, ``clear`` and ``set`` ask for confirmation, which a run
    without a terminal (a deploy script, a CI job) cannot give: they abort."""
    commands = documented_state_commands()
    assert any(c.startswith("meltano state copy") for c in commands), commands
    assert [c for c in commands if "--force" not in c] == []


@pytest.mark.meltano
def test_the_documented_state_copy_works_without_a_terminal(tmp_path):
    (copy,) = [c for c in documented_state_commands() if c.startswith("meltano state copy")]
    source, target = shlex.split(copy)[-2:]
    env = {**os.environ, "MELTANO_DATABASE_URI": f"sqlite:///{tmp_path / 'meltano.db'}"}
    state = {"singer_state": {"bookmarks": {"cdrs": {"replication_key_value": "2024-01-15"}}}}
    meltano("state", "set", "--force", source, json.dumps(state), env=env)
    meltano(*shlex.split(copy)[1:], env=env)
    assert json.loads(meltano("state", "get", target, env=env).stdout) == state


def test_the_troubleshooting_recovery_reads_days_of_the_emulator_project():
    """Run as written in this repository's project, the recovery block must read days
    its default environment (the emulator's three weeks) holds."""
    yaml = pytest.importorskip("yaml")  # Meltano's own dependency
    project = yaml.safe_load(MELTANO_YML.read_text())
    (emulator,) = [
        e for e in project["environments"] if e["name"] == project["default_environment"]
    ]
    (tap,) = [p for p in emulator["config"]["plugins"]["extractors"] if p["name"] == "tap-tenios"]
    lines = documented_block(
        ROOT / "docs" / "troubleshooting.md", "warehouse recovery", "tests/test_transform.py"
    )
    dates = dict(
        word.removeprefix("TAP_TENIOS_").split("=") for word in shlex.split(lines[0]) if "=" in word
    )
    start, end = tap["config"]["start_date"], tap["config"]["end_date"]
    assert start <= dates["START_DATE"] < dates["END_DATE"] <= end, (dates, start, end)
