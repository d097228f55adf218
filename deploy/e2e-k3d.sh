#!/usr/bin/env bash
# `make e2e-k3d` (after `make image`): the end-to-end test on a real k3d cluster.
# Creates the cluster K3D_CLUSTER, imports IMAGE, applies deploy/, waits for the StatefulSet, runs
# tests/e2e/test_k3d.py::test_k3d_cluster_runs_dorgu against the cluster's kubeconfig, deletes the cluster.
#
# Rules this script keeps:
# - The cluster is deleted on every exit once its creation was attempted (success, failure, Ctrl-C),
#   unless K3D_KEEP=1, which keeps it and prints its kubeconfig and the command that deletes it.
# - It exits 0 only if that test ran and passed. A skip, no test collected (pytest exit 5), a test that
#   could not start (an unusable kubeconfig; DORGU_E2E_REQUIRED=1 turns that into an error, not a skip) is a
#   failure with a message saying the e2e test did not run (tests/e2e/k3d_gate.py reads pytest's JUnit XML).
#
# Environment: K3D_CLUSTER (dorgu-e2e), IMAGE (ghcr.io/dorgu-ai/dorgu:dev), PYTHON (.venv/bin/python),
# PYTEST_ARGS (extra pytest arguments, word-split), K3D_KEEP (1 keeps the cluster).
set -euo pipefail

cd "$(dirname "$0")/.."
K3D_CLUSTER=${K3D_CLUSTER:-dorgu-e2e}
IMAGE=${IMAGE:-ghcr.io/dorgu-ai/dorgu:dev}
PYTHON=${PYTHON:-.venv/bin/python}
PYTEST_ARGS=${PYTEST_ARGS:-}
K3D_KEEP=${K3D_KEEP:-}
TARGET=test_k3d_cluster_runs_dorgu

work=$(mktemp -d)
kubeconfig=$work/kubeconfig
junit=$work/junit.xml
step="start"

say() { echo "make e2e-k3d: $*" >&2; }

cleanup() {
  local rc=$?
  trap - EXIT
  if [ "$rc" -ne 0 ] && [ "$step" != "verdict" ]; then
    say "FAILED: the k3d e2e test did not run: '$step' failed (exit $rc)"
  fi
  if [ "$K3D_KEEP" = 1 ]; then
    say "K3D_KEEP=1: kept cluster $K3D_CLUSTER; kubeconfig: $kubeconfig"
    say "delete it with: k3d cluster delete $K3D_CLUSTER"
  else
    k3d cluster delete "$K3D_CLUSTER" || say "warning: 'k3d cluster delete $K3D_CLUSTER' failed"
    rm -rf "$work"
  fi
  exit "$rc"
}
# A signal ends the script through exit, so the EXIT trap deletes the cluster then too.
trap 'exit 130' INT
trap 'exit 143' TERM
trap cleanup EXIT

step="k3d cluster create"
k3d cluster create "$K3D_CLUSTER" --wait --kubeconfig-update-default=false
step="k3d kubeconfig get"
k3d kubeconfig get "$K3D_CLUSTER" > "$kubeconfig"
step="k3d image import"
k3d image import -c "$K3D_CLUSTER" "$IMAGE"
step="kubectl apply -k deploy/"
kubectl --kubeconfig="$kubeconfig" apply -k deploy/
step="kubectl set image"
kubectl --kubeconfig="$kubeconfig" -n dorgu-system set image statefulset/dorgu operator="$IMAGE"
step="kubectl rollout status"
kubectl --kubeconfig="$kubeconfig" -n dorgu-system rollout status statefulset/dorgu --timeout=300s

step="pytest"
rc=0
# shellcheck disable=SC2086  # PYTEST_ARGS is a list of arguments
DORGU_E2E_KUBECONFIG=$kubeconfig DORGU_E2E_REQUIRED=1 "$PYTHON" -m pytest -rs --junitxml="$junit" \
  "tests/e2e/test_k3d.py::$TARGET" $PYTEST_ARGS || rc=$?
step="verdict"
if ! verdict=$("$PYTHON" -m tests.e2e.k3d_gate "$junit" "$rc" "$TARGET"); then
  say "FAILED: $verdict"
  exit 1
fi
say "passed: $verdict"
