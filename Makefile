# Two entry points: `make demo` and `make test`. Each sets itself up from python3 alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck unit benchmark test-pythons mutation clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

## The tap against the bundled emulator: what it extracted, per day.
## make demo DEMO_ARGS='--callers hash' (or drop): without the callers' numbers as loaded.
DEMO_ARGS ?=
demo: $(STAMP)
	$(BIN)/python scripts/demo.py $(DEMO_ARGS)

## tap-tenios against a raw requests+json floor, then the whole pipeline into PostgreSQL
## and DuckDB (needs scripts/postgres.sh start), then the dbt models on a million legs,
## incremental against full; a few minutes each.
benchmark: $(STAMP)
	$(BIN)/python scripts/benchmark.py
	$(BIN)/meltano install
	$(BIN)/python scripts/benchmark_pipeline.py
	$(BIN)/python scripts/benchmark_dbt.py

## Mutation testing with mutmut (before a release; hours on two cores, so not in CI):
## every mutant from scratch, or a seeded share (make mutation MUTATION_SAMPLE=0.1:1, a tenth);
## then docs/mutation.md from the results. See docs/testing.md.
MUTATION_SAMPLE ?=
mutation: $(STAMP)
	rm -rf mutants
	start=$$(date +%s); \
	MUTATION_SAMPLE='$(MUTATION_SAMPLE)' nice $(BIN)/mutmut run --max-children 2 && \
	$(BIN)/python scripts/mutation.py report --sample '$(MUTATION_SAMPLE)' \
	  --minutes $$(( ($$(date +%s) - start) / 60 ))

## Lint, type-check, then the whole test suite.
test: lint typecheck unit

lint: $(STAMP)
	$(BIN)/ruff check tap_tenios tests scripts
	$(BIN)/ruff format --check tap_tenios tests scripts

typecheck: $(STAMP)
	$(BIN)/mypy tap_tenios

unit: $(STAMP)
	$(BIN)/pytest

## The test suite on the other supported Pythons (3.10, 3.12, 3.13), each in its own
## .venv-3.X with the light `test` extra, side by side (`make -j3 -O test-pythons`):
## everything but the Meltano tests (run on the main venv's Python in `make test`) and
## the long kill-and-resume properties (`slow`: pure Python, run there too).
OTHER_PYTHONS ?= 3.10 3.12 3.13
.PHONY: $(addprefix test-python-,$(OTHER_PYTHONS))
test-pythons: $(addprefix test-python-,$(OTHER_PYTHONS))

$(addprefix test-python-,$(OTHER_PYTHONS)): test-python-%: .venv-%/.installed
	@echo "== Python $*"
	.venv-$*/bin/python -m pytest -q -p no:cacheprovider -m "not meltano and not slow"

# python3.X from PATH, else the newest pyenv-installed 3.X (pyenv's shims only answer
# for the versions currently selected).
.venv-%/.installed: pyproject.toml
	@py=python$*; $$py -c '' 2>/dev/null || \
	  py=$$(ls -d $${PYENV_ROOT:-$$HOME/.pyenv}/versions/$*.*/bin/python$* 2>/dev/null | sort -V | tail -n 1); \
	  test -n "$$py" || { echo "Python $* not found (install it, e.g. pyenv install $*)"; exit 1; }; \
	  echo "$$py -m venv .venv-$*"; $$py -m venv .venv-$*
	.venv-$*/bin/python -m pip install --quiet --upgrade pip
	.venv-$*/bin/python -m pip install --quiet -e '.[test]'
	touch $@

clean:
	rm -rf $(VENV) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis
