# The two commands that matter: `make run` and `make test` (README).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast bench chaos lint fmt migrate services down clean

# Create .venv/ and install the hash-pinned lock; redone only when a lock file changes.
$(STAMP): requirements.lock requirements-bootstrap.lock pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check --require-hashes -r requirements-bootstrap.lock
	@$(VENV)/bin/uv pip sync --quiet --python $(PY) --require-hashes requirements.lock
	@$(VENV)/bin/uv pip install --quiet --python $(PY) --no-deps -e .
	@touch $(STAMP)

run: $(STAMP)
	@$(PY) -m config.stack run

test: $(STAMP)
	@$(PY) -m config.stack test $(ARGS)

# The edit-test loop: everything but real workers, browsers, subprocesses and process chaos.
test-fast: $(STAMP)
	@$(PY) -m config.stack test -m "not bench and not worker and not slow and not chaos_process" $(ARGS)

bench: $(STAMP)
	@$(PY) -m config.stack test tests/benchmarks -m bench -s -q $(ARGS)

# The fault-injection harness (apps/chaos): 600 seeds by default (over 10,000 faults), one process per core;
# ARGS="--seeds 50 --start 900" (a later --seeds/--start/--jobs wins).
CHAOS_SEEDS ?= 600
CHAOS_JOBS ?= $(shell nproc 2>/dev/null || echo 2)
chaos: $(STAMP)
	@$(PY) -m config.stack chaos --seeds $(CHAOS_SEEDS) --jobs $(CHAOS_JOBS) $(ARGS)

# Style and types, then the layering (docs/architecture.md): the import-linter contracts in pyproject.toml,
# and no import of apps.* inside a function unless its line says `# lazy: <reason>` (tools/check_imports.py).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/lint-imports
	$(PY) tools/check_imports.py

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

migrate: $(STAMP)
	@$(PY) -m config.stack prepare

services: $(STAMP)
	@$(PY) -m config.discovery check

down: $(STAMP)
	@$(PY) -m config.discovery down

lock:
	uv pip compile pyproject.toml --extra dev --generate-hashes --no-emit-index-url --no-emit-find-links --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .import_linter_cache
