# IA Continu: `make` lists the targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash

VENV ?= .venv
PY := $(VENV)/bin/python
PYTHON ?= python3
UV_VERSION := 0.13.8

# Embedded default: everything on 127.0.0.1, state under .iac/ (delete it to start over).
PREFECT_PORT ?= 4200
MLFLOW_PORT ?= 5000
API_PORT ?= 8000
UI_PORT ?= 8501
export PATH := $(abspath $(VENV))/bin:$(PATH)
export IAC_DATA_DIR ?= $(abspath .iac)
export IAC_WORK_POOL ?= ia-continu-process
export IAC_MLFLOW_TRACKING_URI ?= http://127.0.0.1:$(MLFLOW_PORT)
export IAC_API_PORT ?= $(API_PORT)
export IAC_UI_PORT ?= $(UI_PORT)
export IAC_UI_API_URL ?= http://127.0.0.1:$(API_PORT)
export IAC_UI_PREFECT_UI_URL ?= http://127.0.0.1:$(PREFECT_PORT)
export IAC_UI_API_TOKEN_FILE ?= $(IAC_DATA_DIR)/console.token
# The console asks for the operator password once IAC_UI_PASSWORD_HASH is set
# (`ia-continu ui-password`); without one the local demo runs it open.
export IAC_UI_AUTH ?= $(if $(IAC_UI_PASSWORD_HASH),password,disabled)
export PREFECT_PORT MLFLOW_PORT
# No phoning home and no MLflow GenAI job runners (5+ processes) on a 2-core machine.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION ?= false
export MLFLOW_DISABLE_TELEMETRY ?= true
export DO_NOT_TRACK ?= true
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: help install demo traffic bench-serving test test-unit test-browser test-docker test-integration lint format mutation bench lock clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml requirements/lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(VENV)/bin/uv pip sync -q --compile-bytecode -p $(PY) requirements/lock.txt
	$(VENV)/bin/uv pip install -q -p $(PY) --no-deps -e .
	@touch $@

install: $(VENV)/.installed ## Create .venv with the locked dependencies (dev + bench extras)

# IAC_DEMO_MODE=serving: API clients replay Elec2 through /predict and drop the true labels
# IAC_DEMO_LABEL_DELAY seconds later; the loop learns from the served traffic only.
IAC_DEMO_MODE ?= replay
ifeq ($(IAC_DEMO_MODE),serving)
export IAC_DATA_SOURCE ?= serving
export IAC_SERVING_SEED_SOURCE ?= replay
export IAC_LABEL_DELAY ?= 60
export IAC_DEMO_LABEL_DELAY ?= 45
# About one batch (IAC_BATCH_SIZE 336 rows) per 30 s cycle.
export IAC_DEMO_RATE ?= 11
DEMO_PROCFILE := infra/local/Procfile.serving
else
DEMO_PROCFILE := infra/local/Procfile
endif

demo: install ## Run the loop: Prefect server, MLflow, process pool, deployments, worker (IAC_DEMO_MODE=serving: through the API)
	@mkdir -p $(IAC_DATA_DIR)
	PREFECT_HOME=$(IAC_DATA_DIR)/prefect \
	PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api \
	honcho -f $(DEMO_PROCFILE) -d . start

# Replays the stream as API clients against a running `make demo` and drops the true labels
# late into the inbox; TRAFFIC_ARGS adds flags (e.g. --bad-label-files, --batches 3).
TRAFFIC_ARGS ?=
traffic: install ## Send the stream to the running API as clients, labels late into the inbox (TRAFFIC_ARGS=--help)
	$(PY) -m bench.traffic --api-url http://127.0.0.1:$(API_PORT) --token-file $(IAC_UI_API_TOKEN_FILE) \
	  --rate $(or $(IAC_DEMO_RATE),11) --rows-per-request 12 --label-delay $(or $(IAC_DEMO_LABEL_DELAY),45) \
	  --labels-dir $(IAC_DATA_DIR)/labels --wait-ready $(TRAFFIC_ARGS)

test: install ## Run the test suite (unit, flow, API, console, integration, browser and Docker tests)
	infra/scripts/ensure-test-deps.sh
	infra/scripts/ensure-debian-package.sh /usr/bin/chromium chromium
	infra/scripts/ensure-debian-package.sh promtool prometheus
	infra/scripts/ensure-debian-package.sh prometheus-pushgateway prometheus-pushgateway
	infra/scripts/ensure-docker.sh
	@# Uptime Kuma from npm (about 4 min on a clean machine, mostly download and a C++
	@# build) installs while the first test modules run; its test waits for it (flock).
	@mkdir -p test-artifacts
	@if command -v npm > /dev/null; then \
	  infra/uptime-kuma/install-dev-server.sh > test-artifacts/uptime-kuma-install.log 2>&1 & fi
	$(PY) -m pytest

test-unit: install ## Unit tests only (no servers)
	$(PY) -m pytest tests/unit

test-browser: install ## Browser test only: headless Chromium against the demo stack
	infra/scripts/ensure-debian-package.sh /usr/bin/chromium chromium
	$(PY) -m pytest -m browser

test-docker: install ## Docker tests only: Docker work pool, compose.yaml (installs and starts the engine as root)
	infra/scripts/ensure-test-deps.sh
	infra/scripts/ensure-docker.sh
	$(PY) -m pytest -m docker

test-integration: install ## Integration tests only (real Prefect, MLflow, PostgreSQL servers)
	infra/scripts/ensure-test-deps.sh
	$(PY) -m pytest -m integration

lint: install ## ruff check (with google docstrings), ruff format --check, mypy, jactionlint (.github/workflows)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/jactionlint

format: install ## Format and autofix with ruff
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

mutation: install ## Mutation testing (mutmut): pile-up guard, retries, concept drift, promotion gate, training window, retrain policy; lists survivors
	$(VENV)/bin/mutmut run
	$(VENV)/bin/mutmut results

bench: install ## Benchmarks: drift policy on 10 streams, cycle wall time, drift vs Evidently, API vs MLflow serving
	$(PY) -m bench.streams
	$(PY) -m bench.cbpe
	$(PY) -m bench.cycle_wall_time
	$(PY) -m bench.drift_speed
	infra/scripts/ensure-debian-package.sh wrk wrk --required
	$(PY) -m bench.api_throughput
	$(MAKE) bench-serving

bench-serving: install ## The loop on served traffic, real servers: drift's first request -> new champion's first answer
	$(PY) -m pytest -q -p no:cacheprovider -s tests/integration/test_serving_loop.py
	cp test-artifacts/serving-loop.json bench/results/serving-loop.json

IMAGES := flows api ui

# One resolution (lock.txt, everything: dev installs every app's extra), then slices of it
# with the lock as constraints, so a package has one version everywhere: core.txt (the
# images' shared layer) and each image's extra.
lock: ## Re-resolve requirements/lock.txt (dev) and requirements/{core,flows,api,ui}.txt (images) from pyproject.toml
	$(VENV)/bin/uv pip compile pyproject.toml --extra dev --extra bench -p 3.11 --no-header -o requirements/lock.txt
	$(VENV)/bin/uv pip compile pyproject.toml -c requirements/lock.txt -p 3.11 --no-header -o requirements/core.txt
	for image in $(IMAGES); do \
	  $(VENV)/bin/uv pip compile pyproject.toml --extra $$image -c requirements/lock.txt -p 3.11 --no-header -o requirements/$$image.txt || exit 1; \
	done

clean: ## Remove local state (.iac) and caches
	rm -rf .iac .pytest_cache .mypy_cache .ruff_cache

.PHONY: bench-containers
bench-containers: install ## Docker pool: scheduled start -> Completed of 20 runs without and 20 with retrain, skipped share (~25 min)
	infra/scripts/ensure-test-deps.sh
	infra/scripts/ensure-docker.sh
	$(PY) -m bench.container_runtime --runs 20
