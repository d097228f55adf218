"""`make e2e-k3d`: without Docker or k3d it stops at once with a clear message; with them (and
``DORGU_E2E_KUBECONFIG`` set by deploy/e2e-k3d.sh) the installed system is checked on the k3d cluster.

Outside `make e2e-k3d` the cluster test skips. Under it (``DORGU_E2E_REQUIRED=1``) a missing or unusable
kubeconfig is an error, never a skip; tests/e2e/test_k3d_target.py checks that `make e2e-k3d` then fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import NoReturn

import pytest

from tests.e2e.kit import ROOT

KUBECONFIG = os.environ.get("DORGU_E2E_KUBECONFIG")
# Set by `make e2e-k3d`: there a test that cannot run is a failure, never a skip.
REQUIRED = os.environ.get("DORGU_E2E_REQUIRED") == "1"


def _cannot_run(reason: str) -> NoReturn:
    if REQUIRED:
        pytest.fail(f"the k3d e2e test did not run: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture
def k3d_kubeconfig() -> str:
    """DORGU_E2E_KUBECONFIG, once kubectl has reached the cluster's API server with it."""
    if not KUBECONFIG:
        _cannot_run("runs only from `make e2e-k3d` (DORGU_E2E_KUBECONFIG is not set)")
    try:
        out = subprocess.run(
            ["kubectl", f"--kubeconfig={KUBECONFIG}", "version", "-o", "json", "--request-timeout=30s"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired) as e:
        _cannot_run(f"kubectl could not be run: {e}")
    try:
        server = json.loads(out.stdout).get("serverVersion")
    except (ValueError, AttributeError):
        server = None
    # The kubeconfig is usable only if the API server answered (kubectl prints its version).
    if out.returncode != 0 or not server:
        detail = out.stderr.strip()[-500:] or "no output"
        _cannot_run(f"kubectl got no server version with {KUBECONFIG} (exit {out.returncode}): {detail}")
    return KUBECONFIG


def test_make_e2e_k3d_stops_at_once_without_docker_or_k3d(tmp_path: Path) -> None:
    # A PATH with make and the shell's basics but neither k3d nor docker.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("make", "bash", "sh", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    t0 = time.monotonic()
    out = subprocess.run(
        ["make", "--no-print-directory", "e2e-k3d"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )  # fmt: skip
    took = time.monotonic() - t0
    print(f"\nmake e2e-k3d without k3d: exit {out.returncode} after {took:.2f} s: {out.stderr.strip()}")
    assert out.returncode == 2
    assert "needs k3d" in out.stderr and "nothing was run" in out.stderr
    assert "venv" not in out.stdout  # it stopped before any set-up


def test_k3d_cluster_runs_dorgu(k3d_kubeconfig: str) -> None:
    def kubectl(*args: str) -> str:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={k3d_kubeconfig}", *args], capture_output=True, text=True, check=True
        ).stdout

    pods = json.loads(kubectl("-n", "dorgu-system", "get", "pods", "-o", "json"))["items"]
    ready = [
        p["metadata"]["name"]
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions", []))
    ]
    assert sorted(ready) == ["dorgu-0", "dorgu-1"]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        leases = json.loads(kubectl("-n", "dorgu-system", "get", "leases", "-o", "json"))["items"]
        holders = {ls["metadata"]["name"]: ls["spec"].get("holderIdentity") for ls in leases}
        if all(
            holders.get(f"dorgu-{c}") in ready for c in ("applicationpersona", "clusterpersona", "argocd")
        ):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"controllers without a leader among the pods: {holders}")
    kubectl("apply", "-f", str(ROOT / "deploy/samples"))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        out = kubectl("get", "applicationpersonas", "-A", "-o", "json")
        if all((i.get("status") or {}).get("phase") for i in json.loads(out)["items"]):
            return
        time.sleep(2)
    raise AssertionError("personas never got a status")
