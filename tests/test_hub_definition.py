"""The plugin definition in Meltano Hub's format (``hub/``): in step with ``--about``,
and enough for a data team's own Meltano project to install and run the tap."""

from __future__ import annotations

import json
import os

import pytest

from .helpers import END, KEY, ROOT, START, load_script, meltano

readme_tables = load_script("readme_tables")
yaml = pytest.importorskip("yaml")  # the SDK's own dependency


def test_the_hub_definition_is_what_the_generator_writes():
    assert readme_tables.HUB_DEFINITION.read_text() == readme_tables.hub_definition(), (
        "hub/ is stale: run python scripts/readme_tables.py --write"
    )


def test_the_hub_definition_describes_every_setting_and_capability():
    definition = yaml.safe_load(readme_tables.HUB_DEFINITION.read_text())
    about = readme_tables.about_all()
    assert {"name", "namespace", "variant", "label", "pip_url"} <= definition.keys()
    assert definition["capabilities"] == sorted(about["capabilities"])
    assert [s["name"] for s in definition["settings"]] == sorted(about["settings"]["properties"])
    for setting in definition["settings"]:
        assert setting["kind"] and setting["label"] and setting["description"], setting
    (secret,) = [s for s in definition["settings"] if s.get("sensitive")]
    assert secret["name"] == "access_key"


def test_a_project_of_ones_own_is_told_to_load_instants_in_utc():
    """Only this repository's meltano.yml pins target-postgres's sessions to UTC: a
    project of one's own must be told, in the Hub definition and in the README."""
    definition = yaml.safe_load(readme_tables.HUB_DEFINITION.read_text())
    readme = (ROOT / "README.md").read_text()
    own_project = readme[readme.index("### In your own Meltano project") :]
    own_project = own_project[: own_project.index("### This repository's project")]
    for text in (definition["usage"], own_project):
        assert "PGTZ=UTC" in text
        assert "assert_loaded_instants_are_utc" in text
    project = yaml.safe_load(readme_tables.MELTANO_YML.read_text())
    (loader,) = [p for p in project["plugins"]["loaders"] if p["name"] == "target-postgres"]
    assert loader["env"] == {"PGTZ": "UTC"}


def test_meltano_yml_declares_the_capabilities_the_tap_does():
    project = yaml.safe_load(readme_tables.MELTANO_YML.read_text())
    (tap,) = [p for p in project["plugins"]["extractors"] if p["name"] == "tap-tenios"]
    assert sorted(tap["capabilities"]) == sorted(readme_tables.about_all()["capabilities"])


@pytest.mark.meltano
def test_a_fresh_meltano_project_adds_installs_and_runs_the_tap_from_it(serve, legs, tmp_path):
    """``meltano init``, ``meltano add --from-ref`` with the package from this checkout,
    every setting listed, and the tap reading an emulator through Meltano."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TAP_TENIOS_", "MELTANO_"))}
    env["MELTANO_SEND_ANONYMOUS_USAGE_STATS"] = "false"
    meltano("init", "pipeline", "--no_usage_stats", env=env, cwd=tmp_path)
    project = tmp_path / "pipeline"
    definition = yaml.safe_load(readme_tables.HUB_DEFINITION.read_text())
    definition["pip_url"] = str(ROOT)  # the package as this checkout builds it
    reference = tmp_path / "tap-tenios.yml"
    reference.write_text(yaml.safe_dump(definition))

    meltano(
        "add",
        "--plugin-type=extractor",
        "tap-tenios",
        "--from-ref",
        str(reference),
        env=env,
        cwd=project,
    )

    listed = meltano("config", "list", "tap-tenios", "--all", env=env, cwd=project).stdout
    names = {line.split(" [env:")[0] for line in listed.splitlines() if " [env: " in line}
    assert names == set(readme_tables.about())
    emulator = serve(legs)
    settings = {
        "TAP_TENIOS_API_URL": emulator.url,
        "TAP_TENIOS_ACCESS_KEY": KEY,
        "TAP_TENIOS_START_DATE": START.isoformat(),
        "TAP_TENIOS_END_DATE": END.isoformat(),
    }
    out = meltano("invoke", "tap-tenios", env={**env, **settings}, cwd=project).stdout
    records = [json.loads(line) for line in out.splitlines() if '"type":"RECORD"' in line]
    cdrs = {record["record"]["uuid"] for record in records if record["stream"] == "cdrs"}
    assert cdrs == {leg.uuid for leg in legs if START <= leg.start < END}
    assert KEY not in out
