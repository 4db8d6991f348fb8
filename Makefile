# template-pipeline: the two commands a newcomer needs are `make demo` and `make test`.
# Everything they need is installed here, into .venv; nothing has to be installed by hand.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
CLI := $(VENV)/bin/template-pipeline
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: install demo test test-e2e test-browser browser-deps validate dev lint format bench-site bench-nightly bench-cli-sync bench-soak clean-local

# `sudo` only where we are not root already (CI machines run as root).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Reinstall only when the dependency list changes.
$(STAMP): pyproject.toml setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

## make demo: embedded PostgreSQL + Template simulator + a full sync of the three demo sites.
demo: install
	$(CLI) demo

## make test: the whole suite (unit, PostgreSQL, Dagster, end-to-end processes).
## pytest exits 5 when it ran no test: make treats that, like any non-zero code, as a failure.
test: install
	$(PY) -m pytest $(PYTEST_ARGS)

test-e2e: install
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

## make test-browser: the Dagster UI in headless Chromium (Debian's package driven by Playwright;
## no browser is ever downloaded). `make test` runs it too where /usr/bin/chromium exists.
test-browser: install browser-deps
	$(PY) -m pytest -m browser $(PYTEST_ARGS)

## Debian's chromium for the browser check.
browser-deps:
	@test -x /usr/bin/chromium || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }

## make validate: `dagster definitions validate` on a throwaway instance (in the repo root,
## Dagster would otherwise read the production dagster.yaml, which needs DAGSTER_POSTGRES_URL).
validate: install
	DAGSTER_HOME=$$(mktemp -d) $(VENV)/bin/dagster definitions validate -m template_pipeline.definitions

## make dev: the demo setup under `dagster dev` (UI on http://127.0.0.1:3000).
dev: install
	$(CLI) dev

## make lint: ruff, and the import contracts of pyproject.toml (layers import downwards only).
## `make test` checks the contracts too (template_pipeline_tests/test_architecture.py).
lint: install
	$(VENV)/bin/ruff check template_pipeline template_pipeline_tests benchmarks
	$(VENV)/bin/ruff format --check template_pipeline template_pipeline_tests benchmarks
	$(VENV)/bin/lint-imports

format: install
	$(VENV)/bin/ruff format template_pipeline template_pipeline_tests benchmarks
	$(VENV)/bin/ruff check --fix template_pipeline template_pipeline_tests benchmarks

bench-site: install
	$(PY) benchmarks/bench_site.py $(BENCH_ARGS)

bench-nightly: install
	$(PY) benchmarks/bench_nightly.py $(BENCH_ARGS)

bench-cli-sync: install
	$(PY) benchmarks/bench_cli_sync.py $(BENCH_ARGS)

## make bench-soak: random faults on many sites, two nightly syncs through the daemon, audited
## (12 sites; BENCH_ARGS="--sites 200" for the README's run). Exits 1 if an invariant fails.
bench-soak: install
	$(PY) benchmarks/soak.py $(BENCH_ARGS)

## Stop the embedded PostgreSQL and forget the demo state.
clean-local: install
	$(PY) -c "from template_pipeline.store import embedded; embedded.stop_embedded_postgres()"
	rm -rf .local
