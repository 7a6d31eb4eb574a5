# The two commands a newcomer needs: `make run` and `make test`.
# Python packages come only from the hashed locks in requirements/ (see requirements/README.md).

# The first of these that is Python 3.11 or 3.12; `make PYTHON=/path/to/python3.12` to choose.
SUPPORTED_PY := import sys; sys.exit(0 if (3, 11) <= sys.version_info[:2] <= (3, 12) else 1)
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12 python3,\
            $(shell command -v $(p) >/dev/null 2>&1 && $(p) -c '$(SUPPORTED_PY)' 2>/dev/null && echo $(p))))
VENV   ?= .venv
BIN    := $(VENV)/bin
LOCKS  := requirements
lock_stamp = $(VENV)/.installed-$(1)-$(shell cksum < $(LOCKS)/$(1).txt | cut -d' ' -f1)

NODE_STAMP := node_modules/.installed-$(shell cksum < package-lock.json | cut -d' ' -f1)
CLIENT_STAMP := client/node_modules/.installed-$(shell cksum < client/package-lock.json | cut -d' ' -f1)

.PHONY: install install-ml install-test-tools client run test test-workers lint lock lock-keep wheel reliability clean

# A virtual environment holding exactly what a lock names, plus Colabel itself (editable).
$(VENV)/bin/python:
	@test -n "$(PYTHON)" && $(PYTHON) -c '$(SUPPORTED_PY)' 2>/dev/null || { echo "Colabel needs Python 3.11 or 3.12" \
	  "($(or $(PYTHON),none found)): install one (for example 'pyenv install 3.12' or your" \
	  "system's python3.12 package) or run 'make PYTHON=/path/to/python3.12 ...'" >&2; exit 1; }
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-%: | $(VENV)/bin/python
	@$(BIN)/python -c '$(SUPPORTED_PY)' || { echo "$(VENV) holds Python" \
	  "$$($(BIN)/python -V 2>&1); Colabel needs 3.11 or 3.12: 'make clean' and retry" >&2; exit 1; }
	$(BIN)/pip install --quiet --require-hashes -r $(LOCKS)/$(word 1,$(subst -, ,$*)).txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-$(word 1,$(subst -, ,$*))-*
	touch $@

# Server, ML assistance and the test tools (make test, CI).
install: $(call lock_stamp,dev)
# Server and ML assistance (make run).
install-ml: $(call lock_stamp,ml)

# Node tools the tests drive (the Azurite blob emulator, Yjs clients).
$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

install-test-tools: $(NODE_STAMP)

# The browser app, built into client/dist (the server serves it at /).
$(CLIENT_STAMP): client/package.json client/package-lock.json
	cd client && npm ci --no-audit --no-fund --loglevel=error
	touch $@

client: $(CLIENT_STAMP)
	cd client && npm run build --silent

# Serve on the embedded PostgreSQL and Redis, with a demo admin and project.
run: install-ml client
	$(BIN)/colabel serve --demo

# The whole suite: lint, types, the lock check, then unit, integration and browser tests;
# then the tests of what leans hardest on Redis and Postgres once more on the embedded
# engines, which is what `colabel serve` runs by default.
EMBEDDED_TESTS := tests/integration/test_auth.py tests/integration/test_login_throttle.py \
  tests/integration/test_dispatch.py tests/integration/test_dispatch_properties.py \
  tests/integration/test_lease_lifecycle.py tests/integration/test_review_events.py \
  tests/integration/test_stats.py tests/integration/test_collab.py \
  tests/integration/test_socket_access.py tests/integration/test_page_submit.py \
  tests/integration/test_events_outbox.py tests/integration/test_corrections.py \
  tests/integration/test_data_manager.py tests/integration/test_jobs.py \
  tests/integration/test_ingest.py tests/integration/test_label_imports.py \
  tests/integration/test_imports.py

test: install install-test-tools client lint
	$(BIN)/pytest
	COLABEL_TEST_ENGINES=embedded $(BIN)/pytest -q $(EMBEDDED_TESTS)

# The browser tests and those of live documents and work distribution against
# `colabel serve --workers 2` (every request may land on either process); not part of
# `make test`, which covers the processes of a cluster in tests/faults.
WORKERS_TESTS := tests/e2e tests/integration/test_collab.py tests/integration/test_page_submit.py \
  tests/integration/test_dispatch.py tests/integration/test_lease_lifecycle.py \
  tests/integration/test_socket_access.py tests/integration/test_review_events.py \
  tests/integration/test_ml.py tests/integration/test_role_matrix.py tests/integration/test_auth.py

test-workers: install install-test-tools client
	COLABEL_TEST_SERVER_WORKERS=2 $(BIN)/pytest -q $(WORKERS_TESTS)

lint: install
	$(BIN)/python $(LOCKS)/lockfile.py check
	$(BIN)/ruff check server collab inference migrations tests bench requirements docker setup.py
	$(BIN)/mypy
	$(BIN)/python -m tests.reliability --check

# Run every attack and fault test and rewrite docs/RELIABILITY.md from what they measured.
reliability: install install-test-tools client
	$(BIN)/python -m tests.reliability

# Resolve the locks afresh from PyPI after changing dependencies in pyproject.toml
# (or to take newer releases); review the diff, then run `make test`.
lock: install
	$(BIN)/python $(LOCKS)/lockfile.py compile

# Resolve the locks keeping every pin that still fits (after adding a dependency).
lock-keep: install
	$(BIN)/python $(LOCKS)/lockfile.py compile --keep

# A wheel in dist/ with the browser app inside (setup.py copies client/dist into it):
# `pip install dist/colabel-*.whl`, then `colabel serve --demo` from any directory.
wheel: install client
	rm -rf build  # setuptools would reuse stale files from an earlier build
	$(BIN)/pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .
	@ls dist/colabel-*.whl

clean:
	rm -rf $(VENV) node_modules client/node_modules client/dist build dist \
	  .pytest_cache .mypy_cache .ruff_cache
