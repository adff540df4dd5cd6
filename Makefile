# One command to set up and run, one to set up and test (see README).
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin

# Clinical data: nothing is sent anywhere. Figures render without a screen.
export KEDRO_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := 1
export MPLBACKEND := Agg
# The same numbers on any x86-64 machine with AVX2: NumPy's OpenBLAS reads this when it loads,
# before the project can set it (PyTorch's and MKL's pins are set by clnm_kedro/__init__.py).
export OPENBLAS_CORETYPE ?= Haswell

.PHONY: setup run test lint viz viz-screenshot mlflow-ui optuna-dashboard ipython jupyter clean-data

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --progress-bar off --disable-pip-version-check -q -e ".[dev]"
	touch $@

setup: $(BIN)/.installed            ## create .venv and install the project with its pinned dependencies

run: setup                          ## simulate the synthetic cohort and run every pipeline on it
	$(BIN)/kedro run --pipelines demo --runner clnm_kedro.runner.SideBySideRunner

test: setup                         ## run the test suite
	$(BIN)/pytest

lint: setup
	$(BIN)/ruff check src tests benchmarks

viz: setup                          ## build kedro-viz as a static site in build/
	$(BIN)/kedro viz build

viz-screenshot: setup               ## regenerate docs/images/kedro_viz_pipeline.png (needs chromium)
	$(BIN)/python -m clnm_kedro.kedro_viz_site --pipeline demo --output docs/images/kedro_viz_pipeline.png

mlflow-ui: setup                    ## open the MLflow UI on the default tracking store
	$(BIN)/mlflow ui --backend-store-uri sqlite:///mlflow.db --host 127.0.0.1 --port 5000

optuna-dashboard: setup             ## look at the heads' Optuna studies (http://127.0.0.1:8080)
	$(BIN)/optuna-dashboard sqlite:///data/06_models/optuna.db --host 127.0.0.1 --port 8080

# `kedro ipython` and `kedro mlflow ui` start `ipython` and `mlflow` by name, from PATH: put the
# project's environment first, as `source .venv/bin/activate` would.
ipython: setup                      ## IPython with the project loaded (catalog, context, pipelines)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/kedro ipython

jupyter: setup                      ## JupyterLab on the project, with the notebooks in notebooks/
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/kedro jupyter lab --ServerApp.root_dir=notebooks

clean-data:                         ## remove generated outputs; never a cohort you put in data/01_raw
	find data/0[2-8]_* -mindepth 1 ! -name .gitkeep -delete
	rm -rf data/01_raw/synthetic_cohort data/01_raw/synthetic_cohort_oracle.csv
