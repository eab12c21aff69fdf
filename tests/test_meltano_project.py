"""``meltano.yml``: in step with the tap, and every job, schedule and utility resolves."""

from __future__ import annotations

import json

import pytest

from .helpers import load_script, meltano

readme_tables = load_script("readme_tables")


def test_meltano_yml_describes_the_settings_exactly_as_the_tap_does():
    text = readme_tables.MELTANO_YML.read_text()
    assert readme_tables.meltano_section(text) == readme_tables.meltano_settings(), (
        "meltano.yml's tap-tenios settings are stale: run python scripts/readme_tables.py --write"
    )


@pytest.mark.meltano
def test_jobs_and_the_schedule_resolve_to_declared_plugins():
    jobs = json.loads(meltano("job", "list", "--format=json").stdout)["jobs"]
    tasks = {job["job_name"]: job["tasks"] for job in jobs}
    assert tasks["tenios-to-postgres"] == ["tap-tenios target-postgres"]
    assert tasks["tenios-to-snowflake"] == ["tap-tenios target-snowflake"]
    assert tasks["tenios-to-duckdb"] == ["tap-tenios--number target-duckdb"]
    schedules = json.loads(meltano("schedule", "list", "--format=json").stdout)["schedules"]
    hourly = {s["name"]: s for s in schedules["job"]}["tenios-hourly"]
    assert hourly["interval"] == "@hourly"
    assert hourly["job"]["name"] == "tenios-to-postgres"


@pytest.mark.meltano
def test_the_emulator_comes_with_meltano_install():
    meltano("install", "--plugin-type=utility", "tap-tenios-emulator")
    usage = meltano("invoke", "tap-tenios-emulator", "--help").stdout
    assert "--access-key" in usage
