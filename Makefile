# NeoPain: `make run` starts everything on a laptop, `make test` runs the whole suite.
SHELL := /bin/bash
PY := .venv/bin/python

.PHONY: run worker test test-fast lint format bench venv venv-test chromium migrate setup ci help audit faults

help:
	@echo "make run     - install, migrate, set up the demo unit, start web (127.0.0.1:\$$PORT) + Celery worker"
	@echo "make worker  - a Celery worker (inference + default queues, with beat)"
	@echo "make test    - the whole test suite on the embedded default (SQLite + SQLAlchemy broker)"
	@echo "make lint    - ruff"
	@echo "make audit   - bandit (high severity) over our code, pip-audit over the installed dependencies"
	@echo "make faults  - the fault-injection suite (private PostgreSQL + Redis, real workers)"
	@echo "make bench   - the benchmarks in scripts/bench_*.py"

venv:
	@scripts/ensure_venv.sh run

venv-test:
	@scripts/ensure_venv.sh test

run:
	@scripts/run.sh

worker:
	@scripts/worker.sh

migrate: venv
	$(PY) manage.py migrate --noinput

setup: migrate
	$(PY) manage.py neopain_setup

# The browser tests drive Debian's Chromium (Playwright cannot download browsers here).
chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update && apt-get install -y chromium)

# The embedded default: no DATABASE_URL / REDIS_URL, whatever the caller's shell has set.
# pytest's exit 5 ("no tests ran") is a failure, never a pass.
test: venv-test chromium
	@env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL $(PY) -m pytest; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

test-fast: venv-test
	@env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL $(PY) -m pytest -m "not slow and not e2e and not browser" -q

lint: venv-test
	$(PY) -m ruff check .

# pip-audit needs network access to PyPI's vulnerability data; docs/security.md explains each finding.
audit: venv-test
	$(PY) -m bandit -q -r inference triage annotations ehr neopain_site scripts manage.py \
		--severity-level high --confidence-level medium -x "*/tests/*,*/migrations/*"
	$(PY) -m pip_audit --progress-spinner off --skip-editable

faults: venv-test
	@env -u DATABASE_URL -u REDIS_URL -u CELERY_BROKER_URL $(PY) -m pytest -m faults tests/faults -q

format: venv-test
	$(PY) -m ruff format .

bench: venv
	@set -e; for script in scripts/bench_*.py; do \
		[ -e "$$script" ] || continue; echo "== $$script"; $(PY) "$$script"; \
	done

ci:
	bash .ci/run
