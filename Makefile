# The two README commands: `make run` and `make test`. Both bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
NEWMAN_STAMP := $(VENV)/node/.installed

.PHONY: run test lint bench-pipeline bench-serving clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# Train, then (local demo only) approve the version just registered, deploy it and serve it.
run: $(STAMP)
	$(BIN)/cloudviz pipeline run
	@echo "Local demo only: approving the version just registered. On AWS a person approves it in the registry."
	$(BIN)/cloudviz models approve CloudVizIris latest --reason "make run: local demo"
	$(BIN)/cloudviz deploy local
	$(BIN)/cloudviz serve

# newman runs the Postman collection in tests/test_postman.py, which skips when npm (Node.js) is missing.
$(NEWMAN_STAMP):
	@if command -v npm >/dev/null; then npm install --prefix $(VENV)/node newman@6 --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/test_postman.py will be skipped"; fi

test: $(STAMP) $(NEWMAN_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .

bench-pipeline: $(STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

# Installs wrk (apt) and MLflow (in .venv-bench-mlflow) on first use.
bench-serving: $(STAMP)
	$(BIN)/python benchmarks/bench_serving.py

clean:
	rm -rf $(VENV) .cloudviz *.egg-info .pytest_cache
