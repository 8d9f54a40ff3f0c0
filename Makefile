# gridpatrol — `make run` and `make test` do the whole set-up themselves (see README.md).
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BIN  := .venv/bin
ENV  := .local/env
HOST ?= 127.0.0.1
PORT ?= 5000
# Load DATABASE_URL and GRIDPATROL_SECRET_KEY written by scripts/ensure-db.sh.
WITH_ENV := set -a && . $(ENV) && set +a &&

.PHONY: help venv db migrate demo run test lint format bench clean db-stop

help:
	@echo "make run     set everything up, load the demo city, serve on http://$(HOST):$(PORT)"
	@echo "make test    set everything up and run the whole test suite"
	@echo "make lint    ruff"
	@echo "make bench   benchmarks (see benchmarks/README.md)"
	@echo "make db-stop stop the private PostgreSQL cluster, if one was started"

venv:
	@bash scripts/ensure-venv.sh

db:
	@bash scripts/ensure-db.sh

migrate: venv db
	@$(WITH_ENV) $(BIN)/gridpatrol db upgrade

DEMO_ENTITIES ?= 100000

demo: migrate
	@$(WITH_ENV) $(BIN)/gridpatrol demo load --entities $(DEMO_ENTITIES)

run: demo
	@echo
	@echo "  API        http://$(HOST):$(PORT)/api/v1/"
	@echo "  API docs   http://$(HOST):$(PORT)/api/docs   (OpenAPI: /api/openapi.json)"
	@echo "  health     http://$(HOST):$(PORT)/healthz"
	@echo
	@$(WITH_ENV) { $(BIN)/gridpatrol worker & worker=$$!; trap 'kill $$worker 2>/dev/null' EXIT; \
		$(BIN)/gridpatrol serve --host $(HOST) --port $(PORT); }

test: venv db
	@$(WITH_ENV) $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	@$(BIN)/ruff check .
	@$(BIN)/ruff format --check backend geo mobile_api migrations tests benchmarks

format: venv
	@$(BIN)/ruff format backend geo mobile_api migrations tests benchmarks
	@$(BIN)/ruff check --fix .

bench: migrate
	@$(BIN)/python -m pip install -q --disable-pip-version-check -e '.[dev,bench]'
	@$(WITH_ENV) $(BIN)/python benchmarks/run_all.py

db-stop:
	@bash scripts/stop-db.sh

clean:
	rm -rf .venv build *.egg-info .pytest_cache .ruff_cache .hypothesis
