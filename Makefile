# Every target creates the virtual environment first if it is missing or stale.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# 90 % coverage needs the PostgreSQL and Redis tests; without their servers (a laptop) 80 %.
COV_FAIL_UNDER ?= $(if $(and $(TENANTRY_TEST_POSTGRES_URL),$(TENANTRY_TEST_REDIS_URL)),90,80)
SERVE_ARGS ?=

.PHONY: install serve test lint typecheck check bench bench-smoke clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[all,dev,bench]'
	touch $@

install: $(VENV)/.installed

serve: $(VENV)/.installed
	$(VENV)/bin/tenantry serve $(SERVE_ARGS)

test: $(VENV)/.installed
	$(PY) -m pytest --cov=tenantry --cov-report=term --cov-fail-under=$(COV_FAIL_UNDER) $(PYTEST_ARGS)

lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: $(VENV)/.installed
	$(PY) -m mypy

check: lint typecheck test

bench: $(VENV)/.installed
	$(PY) -m bench

bench-smoke: $(VENV)/.installed
	$(PY) -m bench --smoke

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .coverage htmlcov
