# dorgu — the README's two commands are `make demo` and `make test`; both do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests need (the control-plane build installs its own: rsync; see dorgu/envtest).
# nodejs + node-express: tests/cli/test_probes_served.py starts the Express fixture app (NODE_PATH=/usr/share/nodejs).
# zsh + fish: tests/cli/test_surface.py loads `dorgu completion zsh|fish` in the real shells.
APT_PACKAGES ?= prometheus nodejs node-express zsh fish

.PHONY: all test pytest lint demo deps buildinfo envtest bench-peers clean distclean image e2e-k3d e2e-k3d-tools

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

deps: $(STAMP) buildinfo

# `dorgu version`'s commit and build date: cli/_build.py (not in git), rewritten when HEAD moved (cli/buildinfo.py).
# Standard library only: runs before the venv exists.
buildinfo:
	$(PYTHON) -m cli.buildinfo

# The local control plane's binaries: built once per machine from Debian's sources and cached.
envtest: $(STAMP)
	$(BIN)/python -m dorgu.envtest build

# The benchmark peers (`dorgu bench --peers`; bench/peers/README.md), kept out of `make test`: built with the
# Go and client-go of the control plane's kubernetes sources, cached under $XDG_CACHE_HOME/dorgu/peers/.
bench-peers: $(STAMP)
	$(BIN)/python -m bench.peers.build

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# pytest's exit code 5 ("no tests collected") is not a failure of the suite.
pytest: $(STAMP) buildinfo envtest
	$(BIN)/python -m pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; rc=0; fi; exit $$rc

test: lint pytest

demo: $(STAMP) buildinfo envtest
	$(BIN)/dorgu dev demo

# The operator's image (Dockerfile): needs a Docker engine, which these machines lack.
IMAGE ?= ghcr.io/dorgu-ai/dorgu:dev
image:
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	  echo "make image: needs a running Docker engine (docker info failed); nothing was built" >&2; exit 2; }
	$(MAKE) buildinfo
	docker build -t $(IMAGE) .

# The end-to-end test on a real k3d cluster (machines with Docker and k3d), after `make image`: the script
# deploy/e2e-k3d.sh creates the cluster, imports the image, applies deploy/, runs tests/e2e/test_k3d.py
# against it and deletes the cluster on every exit (K3D_KEEP=1 keeps it for debugging). It fails unless that
# test ran and passed: a skip, no test collected or an unusable kubeconfig is a failure. Without Docker or
# k3d it stops at once (exit 2).
K3D_CLUSTER ?= dorgu-e2e
K3D_KEEP ?=
e2e-k3d-tools:
	@command -v k3d >/dev/null 2>&1 || { echo "make e2e-k3d: needs k3d (https://k3d.io) and Docker; k3d is not installed, nothing was run" >&2; exit 2; }
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	  echo "make e2e-k3d: needs a running Docker engine (docker info failed); nothing was run" >&2; exit 2; }

e2e-k3d: e2e-k3d-tools $(STAMP)
	$(MAKE) image
	K3D_CLUSTER='$(K3D_CLUSTER)' K3D_KEEP='$(K3D_KEEP)' IMAGE='$(IMAGE)' PYTHON='$(BIN)/python' \
	  PYTEST_ARGS='$(PYTEST_ARGS)' bash deploy/e2e-k3d.sh

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build *.egg-info

distclean: clean
	rm -rf $(VENV)
