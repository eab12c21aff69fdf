"""The mutation-testing script: which changes it makes, and that each one is real."""

from __future__ import annotations

import ast
import random

import pytest

from .helpers import load_script

mutation = load_script("mutation")

SOURCE = '''"""A module."""

import logging

LOG = logging.getLogger(__name__)
__all__ = ["f"]


def f(x: int = 7) -> int:
    """Docstring."""
    LOG.info("x is %d", x + 1)
    label = f"{x + 1}"
    if x < 2 and not label:
        return min(x, 3)
    return True
'''


def changes(source: str = SOURCE) -> set[tuple[int, str, str]]:
    return {(m.line, m.kind, m.change) for m in mutation.mutants_of("m.py", source)}


def test_each_kind_of_change_is_made_where_it_can_be() -> None:
    assert changes() == {
        (12, "delete", "label = f'{x + 1}' -> (deleted)"),
        (13, "compare:0", "x < 2 -> x <= 2"),
        (13, "int+1", "2 -> 3"),
        (13, "int-1", "2 -> 1"),
        (13, "boolop", "x < 2 and (not label) -> x < 2 or not label"),
        (13, "drop-not", "not label -> label"),
        (14, "return-none", "return min(x, 3) -> return None"),
        (14, "min-max", "min(x, 3) -> max(x, 3)"),
        (14, "int+1", "3 -> 4"),
        (14, "int-1", "3 -> 2"),
        (15, "return-none", "return True -> return None"),
        (15, "flip-bool", "True -> False"),
        (5, "delete", "LOG = logging.getLogger(__name__) -> (deleted)"),
        (9, "int+1", "7 -> 8"),
        (9, "int-1", "7 -> 6"),
    }


def test_text_is_left_alone_docstrings_logging_f_strings_and_annotations() -> None:
    lines = {line for line, _, _ in changes()}
    assert 11 not in lines  # the logging call
    assert 6 not in lines  # __all__
    assert all("x + 1" not in change or kind == "delete" for _, kind, change in changes())


def test_mutants_of_the_project_compile_and_differ_from_the_original() -> None:
    modules = [path for path in mutation.TESTS if (mutation.ROOT / path).exists()]
    mutants = [m for path in modules for m in mutation.mutants_of(path)]
    assert {m.path for m in mutants} == set(modules)
    assert len({m.key for m in mutants}) == len(mutants), "keys are unique"
    for mutant in random.Random(0).sample(mutants, 40):
        original = (mutation.ROOT / mutant.path).read_text()
        changed = mutation.mutated_source(mutant, original)
        compile(changed, mutant.path, "exec")
        assert ast.dump(ast.parse(changed)) != ast.dump(ast.parse(original)), mutant.change


def test_keys_survive_edits_elsewhere_in_the_file() -> None:
    keys = {m.key for m in mutation.mutants_of("m.py", SOURCE)}
    edited = SOURCE.replace(
        '__all__ = ["f"]\n', '__all__ = ["f"]\n\n\ndef g() -> int:\n    return 1\n'
    )
    moved = {m.key for m in mutation.mutants_of("m.py", edited)}
    assert keys < moved


@pytest.mark.parametrize("kind", ["int+1", "delete"])
def test_a_mutant_changes_only_its_own_node(kind: str) -> None:
    mutant = next(m for m in mutation.mutants_of("m.py", SOURCE) if m.kind == kind)
    changed = mutation.mutated_source(mutant, SOURCE)
    diff = [
        (a, b)
        for a, b in zip(
            ast.unparse(ast.parse(SOURCE)).splitlines(), changed.splitlines(), strict=True
        )
        if a != b
    ]
    assert len(diff) == 1
