"""``pyproject.toml``: metadata setuptools accepts without deprecation warnings."""

from __future__ import annotations

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
