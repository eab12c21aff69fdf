"""``make benchmark``: run as it is, each script takes as many runs as its table
(docs/performance.md) says its figures are medians of."""

from __future__ import annotations

import re
import sys

import pytest

from .helpers import ROOT, load_script

TABLES = ROOT / "docs" / "performance.md"


def runs_taken(
    monkeypatch: pytest.MonkeyPatch, script: str, measure: str, *skipped: str
) -> list[int]:
    """``scripts/SCRIPT.py`` run with no arguments, ``measure`` recording its ``runs``
    (and the ``skipped`` measurements, which take no runs, not run at all)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))
    module = load_script(script)
    taken: list[int] = []

    def record(runs: int, *_: object) -> list[str]:
        taken.append(runs)
        return []

    monkeypatch.setattr(module, measure, record)
    for name in skipped:
        monkeypatch.setattr(module, name, lambda *_: [])
    monkeypatch.setattr(sys, "argv", [f"{script}.py"])
    module.main()
    return taken


def test_the_client_benchmark_takes_the_medians_its_table_shows(monkeypatch):
    module_runs = runs_taken(monkeypatch, "benchmark", "speed", "shifting", "memory", "hourly")
    (shown,) = re.findall(r"medians of (\d+) runs each", TABLES.read_text())
    assert module_runs == [int(shown)]


def test_the_pipeline_benchmark_takes_the_medians_its_table_shows(monkeypatch):
    pytest.importorskip("psycopg")  # the script's own import
    module_runs = runs_taken(monkeypatch, "benchmark_pipeline", "run")
    (shown,) = re.findall(r"median of (\d+) run\(s\)", TABLES.read_text())
    assert module_runs == [int(shown)]
