# dorgu — the README's two commands are `make demo` and `make test`; both do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests need (the control-plane build installs its own: rsync; see dorgu/envtest).
APT_PACKAGES ?= prometheus

.PHONY: all test pytest lint demo deps envtest clean distclean

all: test

# Python environment: a venv with dorgu installed editable; redone only when pyproject.toml changes.
$(STAMP): pyproject.toml
	@if [ -n "$(APT_PACKAGES)" ]; then \
	  missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	  if [ -n "$$missing" ]; then echo "installing $$missing"; apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; fi; fi
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

deps: $(STAMP)

# The local control plane's binaries: built once per machine from Debian's sources and cached.
envtest: $(STAMP)
	$(BIN)/python -m dorgu.envtest build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# pytest's exit code 5 ("no tests collected") is not a failure of the suite.
pytest: $(STAMP) envtest
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test: lint pytest

demo: $(STAMP) envtest
	$(BIN)/dorgu dev demo

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build *.egg-info

distclean: clean
	rm -rf $(VENV)
