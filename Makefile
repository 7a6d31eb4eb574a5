# The two commands a newcomer needs: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum < pyproject.toml | cut -d' ' -f1)

NODE_STAMP := node_modules/.installed-$(shell cksum < package-lock.json | cut -d' ' -f1)
CLIENT_STAMP := client/node_modules/.installed-$(shell cksum < client/package-lock.json | cut -d' ' -f1)

.PHONY: install install-test-tools client run test lint clean

# A virtual environment with Colabel and its test tools; redone when pyproject changes.
$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "Colabel needs Python 3.11")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Node tools the tests drive (the Azurite blob emulator).
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
run: install client
	$(BIN)/colabel serve --demo

# The whole suite: lint, types, then unit and integration tests against real servers.
test: install install-test-tools client lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff check server collab inference migrations tests bench
	$(BIN)/mypy

clean:
	rm -rf $(VENV) node_modules client/node_modules client/dist .pytest_cache .mypy_cache .ruff_cache
