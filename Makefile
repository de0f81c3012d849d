# orchestra — developer commands. `make` (or `make help`) lists them.
.DEFAULT_GOAL := help
SHELL := /bin/bash
# `pip install --user uv` lands in ~/.local/bin: keep it on PATH for every recipe
export PATH := $(HOME)/.local/bin:$(PATH)
UV ?= uv
PYTEST_ARGS ?=

.PHONY: help uv install demo test test-fast test-explore lint format bench clean

help: ## list the targets
	@grep -E '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

uv: ## install uv if it is missing (with pip: --user first, then into the current Python)
	@command -v $(UV) >/dev/null 2>&1 || python3 -m pip install --user --quiet uv || python3 -m pip install --quiet uv
	@command -v $(UV) >/dev/null 2>&1 || { echo "uv could not be installed: install it (https://docs.astral.sh/uv/) and re-run"; exit 1; }

install: uv ## create .venv from uv.lock (dev tools included), compile bytecode and the numba kernels once
	$(UV) sync --frozen --compile-bytecode
	@$(UV) run python -m compileall -q orchestra
	@$(UV) run python -m orchestra.engine.warm

demo: install ## run the embedded default (synthetic data) and write the HTML report
	$(UV) run orch-bt run configs/example.yaml --html

test: install ## run the whole test suite (slow tests included)
	$(UV) run pytest -n 2 $(PYTEST_ARGS)

test-fast: install ## the suite without tests marked slow
	$(UV) run pytest -n 2 -m "not slow" $(PYTEST_ARGS)

test-explore: install ## property tests with new random examples each run (not in CI)
	HYPOTHESIS_PROFILE=explore $(UV) run pytest -n 2 -m "not slow" $(PYTEST_ARGS)

lint: install ## ruff check + ruff format --check + mypy on orchestra/
	$(UV) run ruff check .
	$(UV) run ruff format --check .
	$(UV) run mypy orchestra

format: install ## apply ruff's formatter and fixes
	$(UV) run ruff format .
	$(UV) run ruff check --fix .

bench: install ## benchmarks: wall time per stage, throughput, peak memory, ratio to a naive loop
	$(UV) run python research/bench.py

clean: ## remove caches (numba's compiled kernels included) and run directories
	rm -rf .pytest_cache .mypy_cache .ruff_cache .hypothesis runs
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
