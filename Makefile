# dorgu — the README's two commands are `make demo` and `make test`; both do all set-up on a fresh machine.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
# Debian packages the tests need (the control-plane build installs its own: rsync; see dorgu/envtest).
APT_PACKAGES ?= prometheus

.PHONY: all test pytest lint demo deps envtest clean distclean image e2e-k3d e2e-k3d-tools

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

# The operator's image (Dockerfile): needs a Docker engine, which these machines lack.
IMAGE ?= ghcr.io/dorgu-ai/dorgu:dev
image:
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	  echo "make image: needs a running Docker engine (docker info failed); nothing was built" >&2; exit 2; }
	docker build -t $(IMAGE) .

# The end-to-end suite on a real k3d cluster (machines with Docker and k3d): create, import the image,
# apply deploy/, run tests/e2e/test_k3d.py against that cluster, delete. Without Docker or k3d it stops at once.
K3D_CLUSTER ?= dorgu-e2e
e2e-k3d-tools:
	@command -v k3d >/dev/null 2>&1 || { echo "make e2e-k3d: needs k3d (https://k3d.io) and Docker; k3d is not installed, nothing was run" >&2; exit 2; }
	@command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1 || { \
	  echo "make e2e-k3d: needs a running Docker engine (docker info failed); nothing was run" >&2; exit 2; }

e2e-k3d: e2e-k3d-tools $(STAMP)
	$(MAKE) image
	k3d cluster create $(K3D_CLUSTER) --wait --kubeconfig-update-default=false
	set -e; trap 'k3d cluster delete $(K3D_CLUSTER)' EXIT; \
	  kubeconfig=$$(mktemp); k3d kubeconfig get $(K3D_CLUSTER) > $$kubeconfig; \
	  k3d image import -c $(K3D_CLUSTER) $(IMAGE); \
	  KUBECONFIG=$$kubeconfig kubectl apply -k deploy/ ; \
	  KUBECONFIG=$$kubeconfig kubectl -n dorgu-system set image statefulset/dorgu operator=$(IMAGE); \
	  KUBECONFIG=$$kubeconfig kubectl -n dorgu-system rollout status statefulset/dorgu --timeout=300s; \
	  DORGU_E2E_KUBECONFIG=$$kubeconfig $(BIN)/python -m pytest tests/e2e/test_k3d.py $(PYTEST_ARGS)

clean:
	rm -rf .pytest_cache .ruff_cache .hypothesis build *.egg-info

distclean: clean
	rm -rf $(VENV)
