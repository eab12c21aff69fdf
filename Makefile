# Two entry points: `make demo` and `make test`. Each sets itself up from python3 alone.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test check lint typecheck unit benchmark test-pythons mutation clean \
	orchestrate-demo orchestrate-benchmark test-orchestrate meltano-postgres-plugins

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
## and DuckDB (needs scripts/postgres.sh start), then the dbt build on PostgreSQL as the
## hourly job runs it (100k and 1M legs, 200 and 2,000 service numbers: first build
## against the hourly build); a few minutes each, the dbt part about a quarter hour.
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

## Lint, type-check, then the whole test suite (what CI runs).
test: lint typecheck unit

## The fast loop while changing the code: lint, types and the unit tests, without
## Meltano, dbt or PostgreSQL and without the long kill-and-resume properties.
CHECK_MARKERS := not meltano and not postgres and not slow
check: lint typecheck
	$(BIN)/pytest -q -p no:cacheprovider -m "$(CHECK_MARKERS)"

lint: $(STAMP)
	$(BIN)/ruff check tap_tenios tests scripts orchestrate
	$(BIN)/ruff format --check tap_tenios tests scripts orchestrate

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

## Many accounts on Dagster (docs/orchestration.md). Dagster, dagster-dbt and their dbt
## live in a virtualenv of their own, .venv-orchestrate (orchestrate/requirements.txt),
## never in the tap's install; Meltano and its plugins stay in .venv and .meltano/.
ORCH       := .venv-orchestrate
ORCH_STAMP := $(ORCH)/.installed
ORCH_ENV   := TENIOS_MELTANO=$(CURDIR)/$(BIN)/meltano

$(ORCH_STAMP): orchestrate/requirements.txt pyproject.toml
	$(PYTHON) -m venv $(ORCH)
	$(ORCH)/bin/python -m pip install --quiet --upgrade pip
	$(ORCH)/bin/python -m pip install --quiet -r orchestrate/requirements.txt -e '.[test]' \
	  mypy types-PyYAML
	touch $@

meltano-postgres-plugins: $(STAMP)
	$(BIN)/meltano install --plugin-type=extractor tap-tenios
	$(BIN)/meltano install --plugin-type=loader target-postgres

## Twenty emulated accounts through Dagster into the PostgreSQL of scripts/postgres.sh,
## then the dbt models; per account the legs loaded against the API's count.
orchestrate-demo: $(ORCH_STAMP) meltano-postgres-plugins
	$(ORCH_ENV) $(ORCH)/bin/python -m orchestrate.demo

## The same twenty accounts' backfill one after another and 1, 2, 4 in flight (minutes).
orchestrate-benchmark: $(ORCH_STAMP) meltano-postgres-plugins
	$(ORCH_ENV) $(ORCH)/bin/python -m orchestrate.demo --measure

## mypy on orchestrate/ (it needs Dagster's types), then tests/test_orchestrate.py: three
## small accounts through Dagster, the per-account lock, a kill and resume, bad input.
test-orchestrate: $(ORCH_STAMP) meltano-postgres-plugins
	$(ORCH)/bin/mypy orchestrate
	$(ORCH_ENV) $(ORCH)/bin/python -m pytest -q -p no:cacheprovider tests/test_orchestrate.py

clean:
	rm -rf $(VENV) $(ORCH) .venv-3.* .pytest_cache .mypy_cache .ruff_cache .hypothesis
