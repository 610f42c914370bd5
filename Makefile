# Two commands matter: `make demo` (set up, run the main job on generated sample data)
# and `make test` (set up, lint, run the tests). Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

DEMO_DIR ?= data/demo

.PHONY: demo test lint setup clean bench dagster

$(STAMP): pyproject.toml constraints.txt package.json package-lock.json
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e ".[dev]"  # dev = all (loader + pipeline) + test tools; bytecode on first import
	$(BIN)/python -c "from lakehouse.warehouse import ensure_extensions, project_dir; ensure_extensions(project_dir())"
	@# dbt looks for profiles.yml in the working directory only: after `source .venv/bin/activate`
	@# it finds this checkout's from any folder of it (`cd models && dbt build`)
	grep -q DBT_PROFILES_DIR $(BIN)/activate || printf '\n# make setup: dbt finds the profiles.yml of this checkout from any folder in it\nexport DBT_PROFILES_DIR="%s"\n' "$(CURDIR)" >> $(BIN)/activate
	@# the scripts, styles and fonts of GX's Data Docs, from the npm registry (package-lock.json),
	@# served from each Data Docs site so it renders offline; without npm the pages use the CDNs
	@if command -v npm >/dev/null 2>&1; then npm ci --silent --no-audit --no-fund --ignore-scripts; \
	else echo "Data Docs assets: SKIPPED, npm is not on PATH (Debian: apt-get install npm); the pages load them from CDNs"; fi
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/lakehouse demo --workdir $(DEMO_DIR)

# Dagster's UI on the project (lakehouse.orchestrate): http://127.0.0.1:3000. Its runs,
# schedules and sensor state live in data/dagster (DAGSTER_HOME), telemetry off.
DAGSTER_HOME_DIR := $(abspath data/dagster)
dagster: $(STAMP)
	mkdir -p $(DAGSTER_HOME_DIR)
	test -f $(DAGSTER_HOME_DIR)/dagster.yaml || printf 'telemetry:\n  enabled: false\n' > $(DAGSTER_HOME_DIR)/dagster.yaml
	DAGSTER_HOME=$(DAGSTER_HOME_DIR) $(BIN)/dagster dev

# sqlfluff renders each model with dbt's templater, against a scratch warehouse (no lake or
# demo needed; a model reading a seed at compile time falls back to its data form there)
LINT_DIR := $(abspath data/lint)
lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks
	mkdir -p $(LINT_DIR)
	LAKEHOUSE_DUCKDB=$(LINT_DIR)/warehouse.duckdb LAKEHOUSE_LAKE=$(LINT_DIR)/lake \
	  DBT_SEND_ANONYMOUS_USAGE_STATS=false $(BIN)/sqlfluff lint models

# tests/test_spark.py (the dbt project on Spark equals DuckDB) needs Java; said up front
test: lint
	@if command -v java >/dev/null 2>&1; then \
	  echo "Spark tests: run ($$(command -v java))"; \
	else \
	  echo "Spark tests: SKIPPED, java is not on PATH (Debian: apt-get install openjdk-17-jre-headless)"; \
	fi
	$(BIN)/python -m pytest -n 2 --dist loadfile --durations=15  # two processes, a module on one of them; the slowest named

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[bench]"
	$(BIN)/python benchmarks/bench_ingest.py
	$(BIN)/python benchmarks/bench_warehouse.py
	$(BIN)/python benchmarks/bench_loader.py

clean:
	rm -rf $(VENV) data lake .pytest_cache .duckdb target
