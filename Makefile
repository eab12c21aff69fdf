# Two entry points: `make demo` and `make test`. Each sets itself up from python3 alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit benchmark mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The tap against the bundled emulator: what it extracted, per day.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## tap-tenios against a raw requests+json floor, measured in the same run (a few minutes).
benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py

## Mutation testing of the core modules against their tests (minutes; not in CI).
## Arguments: make mutation MUTATION_ARGS="--sample 100 --seed 2 tap_tenios/windows.py"
MUTATION_ARGS ?=
mutation: $(STAMP)
	$(BIN)/python scripts/mutation.py $(MUTATION_ARGS)

## Lint, type-check, then the whole test suite.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check tap_tenios tests scripts
	$(BIN)/ruff format --check tap_tenios tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy tap_tenios

unit: $(STAMP)
	$(BIN)/pytest

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
