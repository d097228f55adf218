"""`make e2e-k3d`: without Docker or k3d it stops at once with a clear message; with them (and
``DORGU_E2E_KUBECONFIG`` set by the Makefile) the installed system is checked on the k3d cluster."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from tests.e2e.kit import ROOT

KUBECONFIG = os.environ.get("DORGU_E2E_KUBECONFIG")


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


@pytest.mark.skipif(not KUBECONFIG, reason="runs only from `make e2e-k3d` (DORGU_E2E_KUBECONFIG)")
def test_k3d_cluster_runs_dorgu() -> None:
    def kubectl(*args: str) -> str:
        return subprocess.run(
            ["kubectl", f"--kubeconfig={KUBECONFIG}", *args], capture_output=True, text=True, check=True
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
