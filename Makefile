# The README's two commands: `make demo` and `make test`. Everything is installed into .venv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: demo test test-slow lint bench-detect bench-embed bench-watchlist bench-pipeline soak eval calibrate models models-check clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "edge-agent needs Python >= 3.11 (found $$($(PYTHON) --version))"; exit 1; }
	@$(PYTHON) -m venv $(VENV) || \
		{ echo "could not create $(VENV): on Debian run 'apt-get install python3-venv'"; exit 1; }
	$(PIP) install --quiet --upgrade pip

$(VENV)/.runtime-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e .
	@touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e '.[dev]'
	@touch $@ $(VENV)/.runtime-installed

# The demo's live agent publishes to a local mosquitto; install it where we may (root on Debian).
demo: $(VENV)/.runtime-installed
	@command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || \
		{ [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
		  (apt-get install -y -qq mosquitto >/dev/null 2>&1 || \
		   (apt-get update -qq && apt-get install -y -qq mosquitto >/dev/null)); } || \
		echo "mosquitto is not installed (apt-get install mosquitto): the demo's events will stay in its outbox"
	$(BIN)/edge-agent demo

lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: lint
	$(BIN)/python -m pytest

test-slow: $(VENV)/.dev-installed
	EDGE_AGENT_TEST_SLOW=1 $(BIN)/python -m pytest -m slow

bench-detect: $(VENV)/.dev-installed
	$(BIN)/edge-agent bench detect

bench-embed: $(VENV)/.dev-installed
	$(BIN)/edge-agent bench embed

bench-watchlist: $(VENV)/.dev-installed
	$(BIN)/edge-agent bench watchlist --size 1000000

# The live agent end to end on the demo clip with its own mosquitto, beside face_recognition's approach (dlib)
bench-pipeline: $(VENV)/.dev-installed
	$(BIN)/edge-agent bench pipeline --repeat 5

# Memory of the live agent over a looped clip; fails (exit 1) if RSS grows 5% or more after warm-up
SOAK_MINUTES ?= 10
soak: $(VENV)/.dev-installed
	$(BIN)/edge-agent bench soak --minutes $(SOAK_MINUTES)

# Accuracy of the project pipeline beside dlib's (people/ + strangers/, lfw-devtrain) -> docs/accuracy.md
eval: $(VENV)/.dev-installed
	$(BIN)/python tools/eval.py

# Match thresholds per false-match rate from lfw-devtrain -> models/manifest.toml
calibrate: $(VENV)/.dev-installed
	$(BIN)/python tools/calibrate.py

# Rebuild the embedder from dlib's model (needs apt-get install g++ libdlib-dev); models-check rebuilds and
# compares byte for byte (the `tools` extra pins the versions that built the shipped files) and names any
# tool version that differs from the manifest's built_with
TOOLS_VENV ?= .venv-tools
$(TOOLS_VENV)/.tools-installed: pyproject.toml
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/python -m pip install --quiet -e '.[tools]'
	@touch $@

models: $(TOOLS_VENV)/.tools-installed
	$(TOOLS_VENV)/bin/python tools/build_models.py --out models

models-check: $(TOOLS_VENV)/.tools-installed
	$(TOOLS_VENV)/bin/python tools/build_models.py --check

clean:
	rm -rf $(VENV) demo-output .pytest_cache .mypy_cache .ruff_cache
