"""``pyproject.toml``: metadata setuptools accepts without deprecation warnings, and a
release that builds cleanly and passes ``twine check``."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile

import pytest

from .helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+; the metadata is the same on 3.10


def test_the_license_is_an_spdx_expression_with_its_file():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # A table here is deprecated by setuptools (a warning on every build).
    assert project["license"] == "Apache-2.0"
    assert [path for path in project["license-files"] if (ROOT / path).is_file()] == ["LICENSE"]
    assert "Apache License" in (ROOT / "LICENSE").read_text()


def test_every_supported_python_is_declared():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["requires-python"] == ">=3.10"
    declared = {c.rsplit(" ", 1)[-1] for c in project["classifiers"] if "Python :: 3." in c}
    assert declared == {"3.10", "3.11", "3.12", "3.13"}


@pytest.mark.meltano  # the dev extra's build and twine, on the main Python
def test_sdist_and_wheel_build_without_warnings_and_pass_twine_check(tmp_path):
    # The environment's "do not write bytecode" makes setuptools warn that it skips
    # byte-compiling: a property of the machine, not of the package.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    built = subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(tmp_path), str(ROOT)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    output = built.stdout + built.stderr
    assert "warning" not in output.lower(), output[-4000:]
    wheel, sdist = sorted(tmp_path.glob("*.whl")), sorted(tmp_path.glob("*.tar.gz"))
    assert len(wheel) == 1 and len(sdist) == 1
    # The wheel is the package alone: the emulator ships, the tests do not.
    names = zipfile.ZipFile(wheel[0]).namelist()
    assert "tap_tenios/emulator/server.py" in names
    assert not [name for name in names if name.startswith("tests/")]
    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", str(wheel[0]), str(sdist[0])],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_changelog_has_an_unreleased_section_and_the_packages_version():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    headings = [
        line for line in (ROOT / "CHANGELOG.md").read_text().splitlines() if line.startswith("## ")
    ]
    assert headings[0] == "## [Unreleased]"
    assert any(line.startswith(f"## [{project['version']}] - ") for line in headings)
