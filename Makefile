# Everything installs from this project's own files into .venv. `make demo` installs only what
# shoal needs to run; `make test` adds the development tools (the `dev` extra) on top.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: demo test lint typecheck unit bench test-tools clean

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

# Two tests drive programs from the OS packages: the browser tests (eval's report, the server's
# status page) a headless Chromium, the durability test strace (every acknowledgement after its
# fsync). CI runs as root on Debian, so they are installed here when missing; elsewhere those
# tests skip and say why.
test-tools:
	@missing=""; \
	  command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	    missing="$$missing chromium"; \
	  command -v strace >/dev/null 2>&1 || missing="$$missing strace"; \
	  if [ -n "$$missing" ]; then \
	    { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && apt-get update -qq && \
	      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; } || \
	    echo "not installed:$$missing (their tests will skip)"; \
	  fi

# One pytest worker per core (pytest-xdist), each taking whole test files (module fixtures such
# as a local Ray instance are made once): the suite waits on subprocesses and on numba's first
# compiles as much as it computes, so two workers on two cores take ~0.6x the time of one.
unit: $(DEV_STAMP) test-tools
	$(BIN)/python -m pytest -q -n auto --dist loadfile --durations=15

test: lint typecheck unit

bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	$(BIN)/python benchmarks/bench_train.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
