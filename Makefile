# Every target creates the virtual environment first if it is missing, and (re)installs what
# it needs when pyproject.toml changed. `serve` installs only the server (`.[server]`);
# `install`, `test`, `bench`, `lint` and `typecheck` install everything (`.[all,dev,bench]`).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=
# 90 % coverage needs the PostgreSQL and Redis tests; without their servers (a laptop) 80 %.
COV_FAIL_UNDER ?= $(if $(and $(TENANTRY_TEST_POSTGRES_URL),$(TENANTRY_TEST_REDIS_URL)),90,80)
# Flags for `tenantry serve`, e.g. make serve SERVE_ARGS="--port 8091"
SERVE_ARGS ?=

.PHONY: install serve test lint typecheck check bench bench-smoke clean

$(PY):
	$(PYTHON) -m venv $(VENV)

# What serving needs: the server extra (FastAPI, uvicorn, a2a-sdk, PyJWT, openai ...).
# --no-compile: Python compiles (and caches) only the modules the server imports, on first
# use, instead of pip compiling every file of every package (half of pip's CPU time here).
$(VENV)/.installed-server: pyproject.toml | $(PY)
	$(PY) -m pip install -q --no-compile -e '.[server]'
	touch $@

# Everything: every backend, the tests' and the benchmarks' tools (the server's too).
$(VENV)/.installed: pyproject.toml | $(PY)
	$(PY) -m pip install -q -e '.[all,dev,bench]'
	touch $@ $(VENV)/.installed-server

install: $(VENV)/.installed

serve: $(VENV)/.installed-server
	@$(VENV)/bin/tenantry serve $(SERVE_ARGS)

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
