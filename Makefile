# Everything installs from this project's own files into .venv. `make demo` installs only what
# shoal needs to run; `make test` adds the development tools (the `dev` extra) on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench browser clean

# --no-compile: Python writes the bytecode of the modules a command imports when it first
# imports them, instead of pip compiling every module of numpy, numba and pyarrow up front
# (about 10 s of CPU on a first install).
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-compile -e .
	touch $(STAMP)

$(DEV_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	touch $(DEV_STAMP)

demo: $(STAMP)
	$(BIN)/shoal demo

lint: $(DEV_STAMP)
	$(BIN)/ruff check shoal tests benchmarks
	$(BIN)/ruff format --check shoal tests benchmarks

typecheck: $(DEV_STAMP)
	$(BIN)/mypy

# The report's browser test drives Chromium from the OS packages; CI runs as root on Debian,
# so it is installed here when missing (elsewhere the test skips and says why).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    apt-get update -qq && apt-get install -y -qq chromium >/dev/null; } || \
	  echo "no chromium: the browser tests will skip"

unit: $(DEV_STAMP) browser
	$(BIN)/python -m pytest -q

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
