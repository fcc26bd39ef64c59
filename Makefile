# The two commands the README promises: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export FLASK_APP := wsgi

.PHONY: run stack test test-sqlite test-postgres lint install install-dev migrate bench faults soak clean

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: requirements.txt $(BIN)/activate
	$(BIN)/pip install -q -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install -q -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask db upgrade

## Serve the API on 127.0.0.1:5000 on the embedded default (SQLite, in-process tasks).
run: migrate
	$(BIN)/flask demo
	$(BIN)/flask assets sweep
	$(BIN)/flask run --host 127.0.0.1 --port $${PORT:-5000}

## The production stack on this machine: the Procfile's web, worker, webhooks and beat under
## honcho (each line prefixed by its process; Ctrl-C stops them all), on PostgreSQL and Redis
## (this machine's unless STACK_DATABASE_URL / STACK_REDIS_URL say otherwise), listening on
## 127.0.0.1:$${PORT:-5000}. Migrations run first; state (keys, beat's schedule) is kept in
## instance/stack/.
stack: install-dev
	$(BIN)/python devstack.py stack $(PROCESSES)

# The PostgreSQL server of the second test pass; the run makes and drops a database of its own.
TEST_PG_SERVER ?= $(or $(TEST_DATABASE_URL),postgresql://postgres@127.0.0.1:5432/)

## The code's shape, held by CI: `ruff format` (one layout) and ruff's rules (pycodestyle's E
## and W with 110-character lines, unused and undefined names, import order, imports at the
## top of the app's modules; ruff.toml) over every Python file; import-linter's contracts
## (.importlinter: the layers, one way down); mypy over chat/ (mypy.ini: the backends'
## Protocols strictly, every function body checked).
PYTHON_SOURCES := chat workers tests bench tools migrations config.py devstack.py gunicorn.conf.py wsgi.py
lint: install-dev
	$(BIN)/ruff format --check $(PYTHON_SOURCES)
	$(BIN)/ruff check $(PYTHON_SOURCES)
	$(BIN)/lint-imports
	$(BIN)/mypy

## Run the whole test suite twice, on SQLite and on PostgreSQL, at the same time, each pass on
## pytest-xdist workers (two for SQLite, three for PostgreSQL, or TEST_WORKERS for both;
## tests/passes.py): each pass's output is printed whole when it ends, then a summary; the run
## fails if either pass fails, pytest's exit code 5 (no test ran) included.
test: install-dev lint
	TEST_PG_SERVER='$(TEST_PG_SERVER)' $(BIN)/python -m tests.passes $(PYTEST_ARGS)

## One pass only: `make test-sqlite` / `make test-postgres`.
test-sqlite: install-dev
	env -u TEST_DATABASE_URL $(BIN)/python -m pytest $(PYTEST_ARGS)

test-postgres: install-dev
	TEST_DATABASE_URL='$(TEST_PG_SERVER)' $(BIN)/python -m pytest $(PYTEST_ARGS)

## The benchmark drives the server with wrk (a compiled load generator: a Python client would be
## the bottleneck); Debian's package is installed when missing.
bench: install-dev
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; } \
	  || { echo "make bench needs wrk (Debian: apt-get install wrk)" >&2; exit 1; }
	$(BIN)/python -m bench $(BENCH)

## The fault suite: the production stack on a private PostgreSQL cluster and Redis, 10,000
## messages from 20 users while the worker, Redis and PostgreSQL are killed (bench/faults.py).
## `make test` runs its short version (tests/integration/test_faults.py).
faults: install-dev
	$(BIN)/python -m bench.faults $(FAULTS)

## The soak: 10 minutes at a steady rate with streams open; memory and latency must stay flat.
soak: install-dev
	$(BIN)/python -m bench.soak $(SOAK)

clean:
	rm -rf $(VENV) instance .pytest_cache
