"""``meltano.yml``: in step with the tap, and every job, schedule and utility resolves."""

from __future__ import annotations

import json

import pytest

from .helpers import load_script, meltano

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
    assert tasks["tenios-to-snowflake"][0] == "tap-tenios target-snowflake"
    assert tasks["tenios-to-duckdb"][0] == "tap-tenios--number target-duckdb"
    schedules = json.loads(meltano("schedule", "list", "--format=json").stdout)["schedules"]
    hourly = {s["name"]: s for s in schedules["job"]}["tenios-hourly"]
    assert hourly["interval"] == "@hourly"
    assert hourly["job"]["name"] == "tenios-to-postgres"


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
