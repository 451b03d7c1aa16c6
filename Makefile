# citysense — `make up` runs the whole pipeline on this machine; `make test` runs the test suite.
SHELL := /bin/bash
VENV  := .venv
BIN   := $(VENV)/bin
ENV_INPUTS := scripts/bootstrap-env requirements-dev.txt libs/common/pyproject.toml \
              $(wildcard services/*/pyproject.toml) tools/localstack/pyproject.toml
STAMP := $(VENV)/.citysense-env
ENV_INPUTS += $(wildcard scripts/bootstrap.d/*)

.PHONY: up watch test env contracts generate lint clean help

help:  ## list targets
	@grep -E '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

$(STAMP): $(ENV_INPUTS)
	@scripts/bootstrap-env
	@touch $@

env: $(STAMP)  ## create/refresh the Python environment in .venv

up: $(STAMP)  ## run broker, simulator, scorer, API and notifier locally (Ctrl-C stops all)
	@exec $(BIN)/citysense-stack up

watch: $(STAMP)  ## live readings/s, stations and invalid readings on the running stack's topic
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
