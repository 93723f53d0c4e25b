# The two commands: `make run` starts the whole system, `make test` runs the whole suite.
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8000
SAGA_WORKERS ?= 2
export DEBUG ?= 1
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: venv run test lint bench chaos mutate clean

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
	$(PY) manage.py migrate --no-input
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

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy .

# The suite runs on PostgreSQL (the real database); the SQLite default has its own end-to-end test.
test: export DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/saga
test: venv lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

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
