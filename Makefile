# The two commands: `make run` starts the whole system, `make test` runs the whole suite.
# `make serve` starts it for production (docs/deployment.md).
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
SAGA_WORKERS ?= 2
DEBUG_IN_ENVIRONMENT := $(DEBUG)
export DEBUG ?= 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv run serve test test-multidb lint bench chaos mutate clean

$(VENV)/.installed: requirements.txt requirements-dev.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

venv: $(VENV)/.installed

# Local settings for the processes and for the manage.py commands typed by hand: DEBUG on and a
# secret key of its own. Written once, never overwritten; the real environment wins over it.
.env:
	@printf '# Written by `make run` for local development; see .env.example. Not committed.\nDEBUG=1\nSECRET_KEY=%s\n' \
		"$$(python3 -c 'import secrets; print(secrets.token_urlsafe(50))')" > $@
	@echo "wrote $@ (DEBUG=1, a fresh SECRET_KEY): manage.py commands read it"

# honcho --env /dev/null: honcho would let .env override the real environment; the processes
# read it themselves, under the real environment (sagaproject/envfile.py).
run: venv .env
	$(PY) manage.py migrate_all --no-input
	$(PY) manage.py seed_demo
	@echo ""
	@echo "  API        http://127.0.0.1:$(PORT)/api/  (Authorization: Token <token above>)"
	@echo "  API docs   http://127.0.0.1:$(PORT)/api/docs/"
	@echo "  Dashboard  http://127.0.0.1:$(PORT)/dashboard/  (staff: admin / admin)"
	@echo "  Admin      http://127.0.0.1:$(PORT)/admin/  (admin / admin; demo / demo)"
	@echo "  Metrics    http://127.0.0.1:$(PORT)/metrics"
	@echo "  Health     http://127.0.0.1:$(PORT)/healthz  /readyz"
	@echo "  Try:  curl -H 'Authorization: Token <demo token>' http://127.0.0.1:$(PORT)/api/products/"
	@echo ""
	rm -rf var/prometheus && mkdir -p var/prometheus
	PORT=$(PORT) PROMETHEUS_MULTIPROC_DIR=$(abspath var/prometheus) \
		$(VENV)/bin/honcho --env /dev/null start -c saga_worker=$(SAGA_WORKERS)

# Production, on PostgreSQL: DEBUG off and a SECRET_KEY from the environment (or from the file
# ENV_FILE names; no `.env` is read otherwise). Migrates, collects the static files, then starts
# gunicorn (WEB_CONCURRENCY uvicorn workers on HOST:PORT), SAGA_WORKERS saga workers, one
# django-q2 cluster per service queue and the housekeeping cluster from Procfile.production.
# SIGTERM or Ctrl-C stops them all.
serve: export DEBUG = 0
serve: export ENV_FILE ?=
serve: export PROMETHEUS_MULTIPROC_DIR ?= $(abspath var/prometheus)
serve: venv
	@case "$(DEBUG_IN_ENVIRONMENT)" in ""|0|false|False|no|off) ;; \
	  *) echo "make serve: DEBUG=$(DEBUG_IN_ENVIRONMENT) in the environment; production runs with DEBUG off (\`make run\` is the development command)" >&2; exit 2;; esac
	@[ -n "$$SECRET_KEY" ] || [ -n "$$ENV_FILE" ] || { \
	  echo "make serve: set SECRET_KEY (50+ random characters), or ENV_FILE=<a file that sets it>" >&2; exit 2; }
	@[ -n "$$ENV_FILE" ] || case "$$DATABASE_URL" in postgres://*|postgresql://*) ;; \
	  *) echo "make serve: set DATABASE_URL=postgres://user:password@host:5432/db (production runs on PostgreSQL)" >&2; exit 2;; esac
	mkdir -p "$$PROMETHEUS_MULTIPROC_DIR"
	$(PY) manage.py migrate_all --no-input
	$(PY) manage.py collectstatic --no-input --verbosity 0
	rm -f "$$PROMETHEUS_MULTIPROC_DIR"/*.db  # the metrics of processes gone: start from zero
	PORT=$(PORT) $(VENV)/bin/honcho --env /dev/null --procfile Procfile.production \
		start -c saga_worker=$(SAGA_WORKERS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

# The suite runs on PostgreSQL (the real database); the SQLite default has its own end-to-end test.
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
test: venv lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

# A database per service (docs/architecture.md §8): the four service variables default to
# <DATABASE_URL>_orders, ..._payments, ..._inventory, ..._shipping; pytest-django makes test_<name>
# of each, and the end-to-end tests and the chaos run make fresh ones of their own. The selection:
# the mode's own tests, the redelivery and checkout retries, the audit's planted violations, and
# the end-to-end order flows (with the 50-orders-for-10-units test); the short chaos run is in
# tests/multidb.
MULTIDB_TESTS ?= tests/multidb tests/integration/test_redelivery.py tests/lab/test_audit.py \
	tests/api/test_idempotency.py tests/functional/test_order_flow.py
test-multidb: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
test-multidb: export ORDERS_DATABASE_URL ?= $(DATABASE_URL)_orders
test-multidb: export PAYMENTS_DATABASE_URL ?= $(DATABASE_URL)_payments
test-multidb: export INVENTORY_DATABASE_URL ?= $(DATABASE_URL)_inventory
test-multidb: export SHIPPING_DATABASE_URL ?= $(DATABASE_URL)_shipping
test-multidb: venv
	$(VENV)/bin/pytest $(MULTIDB_TESTS) $(PYTEST_ARGS)

# `make bench` runs the standard set; `make bench BENCH_ARGS="--orders 500 ..."` one run.
BENCH_ARGS ?= --suite standard
bench: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
bench: venv
	$(PY) manage.py saga_bench $(BENCH_ARGS)

chaos: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
chaos: venv
	$(PY) manage.py saga_chaos $(CHAOS_ARGS)

# Mutation testing (docs/mutation.md), not part of `make test`: mutmut mutates the engine's logic and
# the services' rules one change at a time and runs the fast suites against each mutant, with
# MUTATE_CHILDREN mutants at a time (each test process on a test database of its own). A fresh
# run every time: a cached verdict would not see a test added since.
MUTATE_CHILDREN ?= 2
mutate: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
mutate: venv
	rm -rf mutants
	$(VENV)/bin/mutmut run --max-children $(MUTATE_CHILDREN)
	$(VENV)/bin/mutmut results
	$(VENV)/bin/mutmut export-cicd-stats && cat mutants/mutmut-cicd-stats.json

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache mutants
