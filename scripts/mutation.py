"""What mutmut lacks here: the console script's tests, a seeded share, and the report.

mutmut (configured in ``pyproject.toml``, run by ``make mutation``) loads this module
into each of its pytest runs as a plugin (``-p scripts.mutation``):

* **The console script's tests.** mutmut runs a mutant against the tests that
  called the mutated function in the stats run, and it sees only the calls made in
  the test's own process. A test that starts the console script
  (``python -m tap_tenios``) does run the mutant, since the child imports the
  mutated copy from the working directory and inherits ``MUTANT_UNDER_TEST``, but
  its calls were never seen, so mutmut would never choose it. In the stats run the
  child gets a ``sitecustomize`` that writes the functions it called to a file at
  exit; the plugin adds them to the test's own before mutmut reads them.
* **A seeded share.** ``MUTATION_SAMPLE=SHARE:SEED`` (``make mutation
  MUTATION_SAMPLE=0.1:1``) runs the mutants whose hash with the seed falls below
  the share; every other one ends at once with mutmut's own "skipped" status.

Run as a script, it writes ``docs/mutation.md`` from mutmut's results::

    python scripts/mutation.py report [--sample SHARE:SEED] [--minutes N]

listing every survivor with its reason from ``scripts/mutation_survivors.txt``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
REASONS = ROOT / "scripts" / "mutation_survivors.txt"
SAMPLES = ROOT / "scripts" / "mutation_samples.txt"
REPORT = ROOT / "docs" / "mutation.md"
HITS = "MUTATION_HITS"
SAMPLE = "MUTATION_SAMPLE"
#: mutmut's exit status for a mutant it did not run ("skipped").
SKIPPED = 34

#: The child's ``sitecustomize``: at exit, the functions the stats run saw it call.
CHILD = """\
import atexit, json, os


def _save_mutmut_hits():
    from mutmut.state import state

    path = os.path.join(os.environ["MUTATION_HITS"], f"{os.getpid()}.json")
    with open(path, "w") as out:
        json.dump(sorted(state()._stats), out)


if os.environ.get("MUTANT_UNDER_TEST") == "stats":
    atexit.register(_save_mutmut_hits)
"""


# --- the pytest plugin ------------------------------------------------------------------


def chosen(name: str, sample: str) -> bool:
    """Whether the mutant ``name`` is in the share ``SHARE:SEED`` (the same every run)."""
    share, _, seed = sample.partition(":")
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big") < float(share) * 2**64


def pytest_configure(config: Any) -> None:
    mutant = os.environ.get("MUTANT_UNDER_TEST", "")
    sample = os.environ.get(SAMPLE, "")
    if "__mutmut_" in mutant and sample and not chosen(mutant, sample):
        os._exit(SKIPPED)
    if mutant == "stats" and HITS not in os.environ:
        hits = Path(tempfile.mkdtemp(prefix="mutmut-hits-"))
        (hits / "sitecustomize.py").write_text(CHILD)
        os.environ[HITS] = str(hits)
        os.environ["PYTHONPATH"] = os.pathsep.join(
            filter(None, [str(hits), os.environ.get("PYTHONPATH")])
        )


def _add_child_hits() -> None:
    """Add what the test's child processes called to what the test called itself."""
    directory = os.environ.get(HITS)
    if os.environ.get("MUTANT_UNDER_TEST") != "stats" or not directory:
        return
    from mutmut.state import state

    for path in Path(directory).glob("*.json"):
        state()._stats.update(json.loads(path.read_text()))
        path.unlink()


try:
    import pytest
except ImportError:  # run as a script without pytest
    pass
else:

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_teardown(item: Any, nextitem: Any) -> None:
        _add_child_hits()


# --- the report -------------------------------------------------------------------------

#: mutmut's statuses, as ``mutmut results`` prints them, in the report's order.
STATUSES = ("killed", "timeout", "survived", "no tests", "suspicious", "segfault", "skipped")
CAUGHT = ("killed", "timeout", "segfault")


def load_reasons(path: Path = REASONS) -> dict[str, str]:
    """``name reason`` lines (``#`` comments and blank lines skipped)."""
    reasons: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, reason = line.partition(" ")
            reasons[name] = reason.strip()
    return reasons


def load_samples(path: Path = SAMPLES) -> tuple[list[tuple[str, int, int]], list[tuple[str, str]]]:
    """Other samples' results ``(SHARE:SEED, ran, caught)``, and what their survivors
    were with the tests that now catch them ``(what, tests)``.
    """
    samples: list[tuple[str, int, int]] = []
    tested: list[tuple[str, str]] = []
    for raw in path.read_text().splitlines():
        kind, _, rest = raw.strip().partition(" ")
        if kind == "sample":
            sample, ran, caught = rest.split()
            samples.append((sample, int(ran), int(caught)))
        elif kind == "tested":
            what, _, tests = rest.partition(" | ")
            tested.append((what.strip(), tests.strip()))
    return samples, tested


def spread(sample: str, ran: int, caught: int, path: Path = SAMPLES) -> list[str]:
    """The report's section on how the score varies with the sample: this run beside
    every other sample recorded, and the other samples' survivors now tested.
    """
    others, tested = load_samples(path)
    rows = [(f"`{sample or 'all'}` (this run)", ran, caught)]
    rows += [(f"`{name}`", n, c) for name, n, c in others]
    scores = [100 * c / max(n, 1) for _, n, c in rows]
    lines = [
        "## Spread over samples",
        "",
        "A seeded share is a sample: another seed picks other mutants and scores otherwise. "
        f"Over the samples recorded (`scripts/mutation_samples.txt`) the score lies between "
        f"{min(scores):.1f}% and {max(scores):.1f}%; read it as that range, not one figure.",
        "",
        "| sample | ran | caught | score |",
        "| --- | ---: | ---: | ---: |",
    ]
    lines += [f"| {name} | {n} | {c} | {100 * c / max(n, 1):.1f}% |" for name, n, c in rows]
    if tested:
        lines += [
            "",
            "Survivors of the other samples that tests now catch:",
            "",
            "| survivor | caught by |",
            "| --- | --- |",
        ]
        for what, tests in tested:
            names = ", ".join(
                f"`{test.split('::')[-1]}` ({test.split('::')[0]})" for test in tests.split(", ")
            )
            lines.append(f"| {what} | {names} |")
    return lines


def results() -> dict[str, str]:
    """Every mutant's status from mutmut's last run: ``{name: status}``."""
    listed = subprocess.run(
        [sys.executable, "-m", "mutmut", "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {}
    for line in listed.splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            found[name] = status
    return found


def module_of(name: str) -> str:
    """``tap_tenios.reader.xǁCdrsReaderǁcollect__mutmut_9`` is a mutant of ``reader.py``."""
    return name.split(".")[1] + ".py"


def change_of(name: str) -> str:
    """The mutant's diff as one short line: what was removed, then what was added."""
    shown = subprocess.run(
        [sys.executable, "-m", "mutmut", "show", name],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    removed = [line[1:].strip() for line in shown if line.startswith("-") and line[1:2] != "-"]
    added = [line[1:].strip() for line in shown if line.startswith("+") and line[1:2] != "+"]
    text = f"{' '.join(removed)} → {' '.join(added)}"
    return text if len(text) <= 120 else text[:119] + "…"


def render(
    statuses: dict[str, str], reasons: dict[str, str], sample: str, minutes: int | None
) -> str:
    per_module: dict[str, Counter[str]] = {}
    for name, status in statuses.items():
        per_module.setdefault(module_of(name), Counter())[status] += 1
    total = Counter(statuses.values())
    ran = sum(n for status, n in total.items() if status != "skipped")
    caught = sum(total[s] for s in CAUGHT)
    if sample:
        share, _, seed = sample.partition(":")
        chosen_how = (
            f"`make mutation MUTATION_SAMPLE={sample}` ran a seeded share of the mutants: "
            f"{ran} of the {len(statuses)} mutmut made, those whose SHA-256 of "
            f"`{seed}:NAME` falls in the lowest {float(share):.0%} (the same every run; "
            "the rest have mutmut's status `skipped`)"
        )
    else:
        chosen_how = f"`make mutation` ran every one of the {len(statuses)} mutants mutmut made"
    lines = [
        "# Mutation testing: score and survivors",
        "",
        "Generated by `scripts/mutation.py report` from mutmut's results of one",
        "uninterrupted run; [testing](testing.md) says how it works. Do not edit by hand.",
        "",
        chosen_how + (f", in {minutes} minutes of wall time." if minutes else "."),
        "",
        f"**{caught} of {ran} caught ({100 * caught / max(ran, 1):.1f}%)**: "
        + ", ".join(f"{total[s]} {s}" for s in STATUSES if total[s] and s != "skipped")
        + " (mutmut's counts; a timeout, and a `segfault`, mutmut's name for a run it"
        + " killed at its CPU limit, count as caught).",
        "",
        "| module | mutants | ran | " + " | ".join(STATUSES[:-1]) + " |",
        "| --- | ---: | ---: | " + " | ".join("---:" for _ in STATUSES[:-1]) + " |",
    ]
    for module, counts in sorted(per_module.items()):
        row = [str(sum(counts.values())), str(sum(counts.values()) - counts["skipped"])]
        row += [str(counts[s]) for s in STATUSES[:-1]]
        lines.append(f"| `{module}` | " + " | ".join(row) + " |")
    left = sorted(n for n, s in statuses.items() if s not in (*CAUGHT, "skipped"))
    lines += ["", *spread(sample, ran, caught)]
    lines += [
        "",
        "## Survivors",
        "",
        "Every mutant the tests did not catch, with the reason it is left",
        "(`scripts/mutation_survivors.txt`; `mutmut show NAME` prints the whole change):",
        "",
        "| mutant | status | change | why it is left |",
        "| --- | --- | --- | --- |",
    ]
    for name in left:
        reason = reasons.get(name, "**no reason recorded**")
        change = change_of(name).replace("|", "\\|").replace("`", "'")
        lines.append(
            f"| `{name}` | {statuses[name]} | `{change}` | {reason.replace('|', chr(92) + '|')} |"
        )
    return "\n".join(lines) + "\n"


SURVIVOR_ROW = re.compile(r"^\| `(?P<name>[^`]+__mutmut_\d+)` \| (?P<status>[^|]+) \|", re.M)


def reported_survivors(text: str) -> dict[str, str]:
    """The survivors a generated report lists: ``{name: status}``."""
    return {m["name"]: m["status"].strip() for m in SURVIVOR_ROW.finditer(text)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", choices=["report"])
    parser.add_argument("--sample", default=os.environ.get(SAMPLE, ""), help="SHARE:SEED")
    parser.add_argument("--minutes", type=int, help="the run's wall time, for the report")
    args = parser.parse_args()
    statuses = results()
    if not statuses:
        raise SystemExit("mutmut has no results: run `make mutation` first")
    reasons = load_reasons()
    REPORT.write_text(render(statuses, reasons, args.sample, args.minutes))
    left = [n for n, s in statuses.items() if s not in (*CAUGHT, "skipped")]
    missing = [n for n in left if n not in reasons]
    stale = sorted(set(reasons) - set(left))
    for name in missing:
        print(f"no reason recorded: {name}", file=sys.stderr)
    for name in stale:
        print(f"reason for a mutant that did not survive: {name}", file=sys.stderr)
    print(f"wrote {REPORT.relative_to(ROOT)}: {len(left)} survivors, {len(missing)} unexplained")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
