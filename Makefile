# citysense — `make up` runs the whole pipeline on this machine; `make test` runs the test suite.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
# Two levels: what running needs (`make up`), and on top of it what the tests need (`make test` and the rest).
RUN_INPUTS := scripts/bootstrap-env libs/common/pyproject.toml $(wildcard services/*/pyproject.toml) \
              tools/localstack/pyproject.toml
RUN_STAMP  := $(VENV)/.citysense-run
STAMP      := $(VENV)/.citysense-test

.PHONY: up watch test env contracts generate lint clean help

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(RUN_STAMP): $(RUN_INPUTS)
	@scripts/bootstrap-env run
	@touch $@

$(STAMP): $(RUN_STAMP) requirements-dev.txt $(wildcard scripts/bootstrap.d/*)
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

clean:  ## remove local state (.citysense) — keeps the environment
	rm -rf .citysense

# Feature targets (cluster, containers, benchmarks, ...) live in mk/*.mk, one file per concern.
-include mk/*.mk
