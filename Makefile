# The two commands of the README: `make demo` and `make test`. Each sets up what it needs.
# bash: the matrix recipe takes pytest's exit status from a pipeline (PIPESTATUS) and times with SECONDS.
SHELL := bash
PYTHON ?= python3
AIRFLOW_VERSION ?= 3.3.2
# The default version lives in .venv; another one in its matrix venv, so that
# `make test-one AIRFLOW_VERSION=3.0.6` reuses .venvs/airflow-3.0.6 instead of reinstalling .venv.
VENV ?= $(if $(filter 3.3.2,$(AIRFLOW_VERSION)),.venv,.venvs/airflow-$(AIRFLOW_VERSION))
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(AIRFLOW_VERSION)
# Pins an Airflow release needs beyond its own requirements, as its constraints file would set them.
# 3.0.6 leaves these open, and today's releases break it: universal-pathlib 0.3 its ObjectStoragePath,
# FastAPI 0.118+ / Cadwyn 5.5+ its execution API (every task start answers 422), PyJWT 2.11+ its
# API server's logins (500: "Issuer (iss) must be a string"). 3.1 caps or handles all four.
# Its UI builds every provider's connection form only when wtforms is installed (the FAB provider
# brings it), so that is what shows any provider's relabelled and extra fields there; 3.1+ needs none.
# 3.0 and 3.1 set an attribute on cryptography's MultiFernet, which 51.0 made a Rust object that refuses
# it: every connection with a password then fails to load ("no attribute 'is_encrypted'"); 3.2 wraps it.
AIRFLOW_PINS_3.0.6 := "cryptography<51" "universal-pathlib<0.3" "fastapi<0.118" "cadwyn<5.5" "pyjwt<2.11" wtforms
AIRFLOW_PINS_3.1.8 := "cryptography<51"
# 3.2.2 leaves FastAPI open (0.137+ breaks its execution API routes; 3.3 caps it) and its
# `dags test` fails with svcs 26 (KeyError 'svcs_registry': the lifespan is not awaited).
AIRFLOW_PINS_3.2.2 := "fastapi<0.137" "svcs<26"
AIRFLOW_PINS := $(AIRFLOW_PINS_$(AIRFLOW_VERSION))

# The supported Airflow versions, oldest first: the newest patch of every 3.x minor, the ones
# pyproject.toml claims. Each gets its own cached venv (built by the same $(STAMP) rule, so it is
# rebuilt only when pyproject.toml changes).
MATRIX_VERSIONS ?= 3.0.6 3.1.8 3.2.2 3.3.2
MATRIX_OLDEST := $(firstword $(MATRIX_VERSIONS))
MATRIX_NEWEST := $(lastword $(MATRIX_VERSIONS))
# The versions between the ends run no deployment tests; they run side by side (see `matrix`).
MATRIX_MIDDLE := $(filter-out $(MATRIX_OLDEST) $(MATRIX_NEWEST),$(MATRIX_VERSIONS))
MATRIX_DIR := .venvs
MATRIX_SUMMARY := $(MATRIX_DIR)/matrix-summary.txt

# Which tests a version runs. The deployment (e2e) tests take minutes each, and what they catch
# (how scheduler, triggerer and executors drive the provider) changes at the ends of the range,
# so the LocalExecutor e2e runs on the oldest and newest only; the CeleryExecutor e2e (opt-in,
# SLIPSTREAM_E2E_CELERY=1) on the newest only. Every version runs all the other tests.
# PYTEST_ARGS come last, so a `-m` there (e.g. '-m "not e2e"') replaces the one chosen here.
matrix_marks = $(if $(filter $(1),$(MATRIX_NEWEST)),,$(if $(filter $(1),$(MATRIX_OLDEST)),-m "not celery",-m "not e2e"))
matrix_celery = $(if $(filter $(1),$(MATRIX_NEWEST)),$(SLIPSTREAM_E2E_CELERY),0)

.PHONY: install demo test test-one matrix matrix-version lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)" $(AIRFLOW_PINS) -e ".[dev]"
	touch $@

install: $(STAMP)

## Run the example DAGs with `airflow dags test` against the bundled simulator.
demo: $(STAMP)
	$(BIN)/python scripts/demo.py

## Lint and type check once, then the test suite on every supported Airflow version (the matrix).
test: matrix

## The fast loop while you iterate: lint, then the whole suite on one version (default 3.3.2, in
## .venv). Another version: `make test-one AIRFLOW_VERSION=3.0.6`.
test-one: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Lint on the newest version, then each version's suite; one line per version in
## $(MATRIX_SUMMARY), printed at the end. A failing version does not stop the others (one run
## shows every version that breaks); the target fails afterwards if lint or any version failed.
## The oldest and newest run alone (their deployment tests take the machine); the middle versions
## run concurrently, each printing its whole output once both are done.
matrix:
	@mkdir -p $(MATRIX_DIR) && : > $(MATRIX_SUMMARY)
	@# The venvs first, concurrently (installing is I/O-bound); a failed one is reported by its version's step.
	@for v in $(MATRIX_VERSIONS); do \
	  $(MAKE) --no-print-directory install VENV=$(MATRIX_DIR)/airflow-$$v AIRFLOW_VERSION=$$v \
	    > $(MATRIX_DIR)/install-$$v.log 2>&1 & \
	done; wait
	@failed=0; \
	if $(MAKE) --no-print-directory lint VENV=$(MATRIX_DIR)/airflow-$(MATRIX_NEWEST) AIRFLOW_VERSION=$(MATRIX_NEWEST); \
	then echo "lint    ok     (ruff, mypy on $(MATRIX_NEWEST))" >> $(MATRIX_SUMMARY); \
	else echo "lint    FAILED (ruff, mypy on $(MATRIX_NEWEST))" >> $(MATRIX_SUMMARY); failed=1; fi; \
	$(MAKE) --no-print-directory matrix-version V=$(MATRIX_OLDEST) || failed=1; \
	pids=(); for v in $(MATRIX_MIDDLE); do \
	  $(MAKE) --no-print-directory matrix-version V=$$v > $(MATRIX_DIR)/matrix-out-$$v.txt 2>&1 & pids+=($$!); \
	done; \
	for pid in "$${pids[@]}"; do wait $$pid || failed=1; done; \
	for v in $(MATRIX_MIDDLE); do cat $(MATRIX_DIR)/matrix-out-$$v.txt; done; \
	$(MAKE) --no-print-directory matrix-version V=$(MATRIX_NEWEST) || failed=1; \
	echo; echo "== Airflow version matrix ($(MATRIX_SUMMARY); logs $(MATRIX_DIR)/matrix-<version>.log)"; \
	cat $(MATRIX_SUMMARY); \
	exit $$failed

# One version of the matrix, V=<version>: build or reuse its venv, run its tests, append
# "<version> ok|FAILED <seconds>s <pytest's counts>" to the summary (seconds include the install).
matrix-version:
	@test -n "$(V)" || { echo "usage: make matrix-version V=<airflow version>"; exit 2; }
	@venv=$(MATRIX_DIR)/airflow-$(V); log=$(MATRIX_DIR)/matrix-$(V).log; start=$$SECONDS; : > $$log; \
	echo '== Airflow $(V) ($(MATRIX_DIR)/airflow-$(V)): pytest $(call matrix_marks,$(V)) $(PYTEST_ARGS)'; \
	if $(MAKE) --no-print-directory install VENV=$$venv AIRFLOW_VERSION=$(V); then \
	  SLIPSTREAM_E2E_CELERY=$(call matrix_celery,$(V)) \
	    $$venv/bin/python -m pytest $(call matrix_marks,$(V)) $(PYTEST_ARGS) 2>&1 | tee $$log; \
	  rc=$${PIPESTATUS[0]}; \
	  counts=$$(grep -E '(passed|failed|error|no tests ran).* in [0-9.]+s' $$log | tail -n 1 | sed -E 's/^=+ //; s/ in [0-9.]+s.*//'); \
	else rc=1; counts="venv install failed"; fi; \
	if [ $$rc -eq 0 ]; then status=ok; else status=FAILED; fi; \
	printf '%-7s %-6s %5ss  %s\n' "$(V)" "$$status" "$$((SECONDS - start))" "$${counts:-no pytest summary (rc=$$rc)}" \
	  >> $(MATRIX_SUMMARY); \
	exit $$rc

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## Benchmarks against the simulator (~18 min): prints a table, writes benchmarks/results.json.
bench: $(STAMP)
	@# Section 5 runs its own PostgreSQL server (as the Celery e2e tests do): Debian's binaries when missing.
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
	  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql; }
	$(BIN)/pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/run.py $(BENCH_ARGS)

clean:
	rm -rf $(VENV) $(MATRIX_DIR) .demo *.egg-info
