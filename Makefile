# Two commands set up everything on a fresh machine:  `make run`  and  `make test`.
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
ENV    ?= quick
PIPELINE ?= atari_epoch

export KEDRO_DISABLE_TELEMETRY := 1
export DO_NOT_TRACK := 1
export DVC_NO_ANALYTICS := 1
export NO_MKDOCS_2_WARNING := 1
export DISABLE_MKDOCS_2_WARNING := true
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: setup run test bench repro mlflow-ui docs docs-build

# The CPU build of torch unless an NVIDIA driver is present (then PyPI's default CUDA build of the same range).
$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	if command -v nvidia-smi >/dev/null 2>&1; then $(PY) -m pip install 'torch>=2.4,<2.14'; \
	else $(PY) -m pip install 'torch==2.13.0'; fi
	$(PY) -m pip install -e '.[dev]'
	test -d .dvc || $(VENV)/bin/dvc init --quiet
	# tests/docs/test_browser.py drives the system's Chromium (Playwright's own download is not needed)
	if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    apt-get update && apt-get install -y chromium; \
	  else echo "make setup: no chromium found; install it (e.g. apt-get install chromium) for tests/docs/test_browser.py" >&2; fi; \
	fi
	touch $@

setup: $(VENV)/.installed

# One epoch of the paper's training loop, quick CPU profile (resumes the run); then record the replay
# store and checkpoints as the outputs of the DVC stage atari@Breakout (when ENV is dvc_params' profile).
run: setup
	$(VENV)/bin/kedro run --pipelines=$(PIPELINE) --env=$(ENV)
	if grep -qx "kedro_env: $(ENV)" dvc_params.yaml; then $(VENV)/bin/dvc commit --force --quiet atari@Breakout; fi

test: setup
	$(PY) -m pytest -q

bench: setup
	$(PY) benchmarks/bench_models.py
	$(PY) benchmarks/bench_replay.py
	$(PY) benchmarks/bench_env.py
	$(PY) benchmarks/bench_epoch.py --env quick

repro: setup  ## dvc repro with the project's venv on PATH
	$(VENV)/bin/dvc repro

mlflow-ui: setup
	$(VENV)/bin/mlflow ui --backend-store-uri sqlite:///mlflow.db --port 5000

# The documentation site (docs/, mkdocs.yml): build it and serve it on http://127.0.0.1:8000, rebuilding on change
docs: setup
	$(VENV)/bin/mkdocs serve --dev-addr 127.0.0.1:8000

# Build it into site/ with warnings as errors (as tests/docs does)
docs-build: setup
	$(VENV)/bin/mkdocs build --strict
