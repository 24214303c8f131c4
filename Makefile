# The two README commands: `make run` and `make test`. Both bootstrap .venv on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
NEWMAN_STAMP := $(VENV)/node/.installed
CHECKOV_VERSION := 3.3.30
CHECKOV_VENV := .venv-checkov
CHECKOV_STAMP := $(CHECKOV_VENV)/.installed-$(CHECKOV_VERSION)
CHROMIUM := /usr/bin/chromium

.PHONY: run test lint bench-pipeline bench-scale bench-serving dashboard-screenshot clean

$(STAMP): setup.py
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $(STAMP)

# The tests also check the SageMaker side, so they need the aws extra (the SageMaker SDK, about 1 GB).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,aws]'
	touch $(TEST_STAMP)

# Train, then (local demo only) approve the version just registered, deploy it and serve it.
run: $(STAMP)
	$(BIN)/cloudviz pipeline run
	@echo "Local demo only: approving the version just registered. On AWS a person approves it in the registry."
	$(BIN)/cloudviz models approve CloudVizIris latest --reason "make run: local demo"
	$(BIN)/cloudviz deploy local
	$(BIN)/cloudviz serve

# newman runs the Postman collection in tests/deploy/test_postman.py, which skips when npm (Node.js) is missing.
$(NEWMAN_STAMP):
	@if command -v npm >/dev/null; then npm install --prefix $(VENV)/node newman@6 --no-audit --no-fund && touch $@; \
	else echo "npm not found: tests/deploy/test_postman.py will be skipped"; fi

# Debian's chromium, which Playwright drives in tests/deploy/dashboard/test_dashboard.py (no browser download: never
# `playwright install`). apt needs root; without it the browser test is skipped and says why.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	else echo "not root: cannot apt-get install chromium; tests/deploy/dashboard/test_dashboard.py's browser test will be skipped"; fi

# checkov (tests/deploy/aws/test_checkov.py) pins older boto3/botocore/packaging than the SageMaker SDK and moto need,
# so it gets a venv of its own; the test runs it from there, offline.
$(CHECKOV_STAMP):
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov==$(CHECKOV_VERSION)'
	touch $@

test: $(TEST_STAMP) $(NEWMAN_STAMP) $(CHROMIUM) $(CHECKOV_STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest

# docs/dashboard.png, the README's screenshot: a demo state home, live traffic, headless chromium.
dashboard-screenshot: $(TEST_STAMP) $(CHROMIUM)
	$(BIN)/python docs/dashboard_screenshot.py docs/dashboard.png

lint: $(TEST_STAMP)
	$(BIN)/ruff check .

bench-pipeline: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_pipeline.py

# How far one instance goes: Preprocess and 1- and 2-host training on 0.25M, 1M and 2M rows (about 3 minutes).
bench-scale: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_scale.py

# Installs wrk (apt) and MLflow (in .venv-bench-mlflow) on first use.
bench-serving: $(TEST_STAMP)
	$(BIN)/python benchmarks/bench_serving.py

clean:
	rm -rf $(VENV) $(CHECKOV_VENV) .cloudviz *.egg-info .pytest_cache
