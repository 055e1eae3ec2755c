# Two commands on a fresh clone: `make demo` and `make test`. Both create .venv/ if
# missing and are idempotent (the install re-runs only when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
TORCH_VERSION := 2.13.0
# torch build: `pip install torch==2.13.0` takes the registry's default build, which is
# the CUDA build on Linux (and a machine's local CPU wheel where pip's find-links has
# one). Another build: `make TORCH_INDEX=https://download.pytorch.org/whl/cu126 ...`
# (or .../whl/cpu for a CPU-only machine without a local wheel).
TORCH_INDEX ?=
PIP_TORCH_ARGS := $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))

.PHONY: venv demo test test-fast lint format docs docs-build mlflow-ui mlflow-server

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@if command -v nvidia-smi >/dev/null 2>&1; then echo "GPU found: installing the CUDA build of torch $(TORCH_VERSION)"; \
	 else echo "no GPU found: installing torch $(TORCH_VERSION) (CPU wheel where one is available locally)"; fi
	$(BIN)/pip install -q torch==$(TORCH_VERSION) $(PIP_TORCH_ARGS)
	$(BIN)/pip install -q -e ".[dev]"
	@touch $@

demo: venv
	@PATH="$(CURDIR)/$(BIN):$$PATH" bash scripts/demo.sh

# Everything (CI runs this, after `make lint`): two pytest workers (pytest-xdist; the
# suite mostly waits on subprocesses), then the `serial` tests alone (DVC's queue
# workers lose experiments when DVC's lock stalls on a busy machine: docs/faults.md, Parallel queues).
PYTEST_WORKERS ?= 2
test: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not serial"
	$(BIN)/python -m pytest -m serial

# For iterating: skips the end-to-end DVC/MLflow runs (marked slow), about a minute.
test-fast: venv
	$(BIN)/python -m pytest -n $(PYTEST_WORKERS) -m "not slow and not serial"

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

# The documentation site (docs/, mkdocs.yml): served with live reload on 127.0.0.1 only;
# docs-build is what CI runs: --strict fails on a broken link, a missing or unlisted page.
DOCS_PORT ?= 8000
docs: venv
	$(BIN)/mkdocs serve --dev-addr 127.0.0.1:$(DOCS_PORT)

docs-build: venv
	$(BIN)/mkdocs build --strict

# Prints the experiment's runs table in the model-training view (docs/experiments.md: "The MLflow UI")
# before starting the UI; creates the store and experiment if they do not exist yet.
MLFLOW_URI ?= sqlite:///$(CURDIR)/mlflow.db
MLFLOW_UI_PORT ?= 5000
mlflow-ui: venv
	@MLFLOW_TRACKING_URI="$(MLFLOW_URI)" $(BIN)/python -m pipeline.tracking params.yaml \
	  --ui-url http://127.0.0.1:$(MLFLOW_UI_PORT) || true
	$(BIN)/mlflow ui --backend-store-uri "$(MLFLOW_URI)" --host 127.0.0.1 --port $(MLFLOW_UI_PORT)

# A shared tracking server: database backend + proxied artifacts, on 127.0.0.1 unless
# MLFLOW_HOST says otherwise. Point runs at it with MLFLOW_TRACKING_URI=http://HOST:PORT.
# PostgreSQL: make mlflow-server MLFLOW_BACKEND=postgresql+psycopg2://user@host/db (credentials via ~/.pgpass).
MLFLOW_HOST ?= 127.0.0.1
MLFLOW_PORT ?= 5001
MLFLOW_BACKEND ?= sqlite:///$(CURDIR)/mlflow-server.db
MLFLOW_ARTIFACTS ?= $(CURDIR)/mlartifacts-server
mlflow-server: venv
	$(BIN)/mlflow server --backend-store-uri "$(MLFLOW_BACKEND)" --artifacts-destination "$(MLFLOW_ARTIFACTS)" \
	  --serve-artifacts --host $(MLFLOW_HOST) --port $(MLFLOW_PORT)
