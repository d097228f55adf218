"""`dorgu operator` as it runs for real: a supervisor process, one child per controller, Leases, /metrics."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from dorgu.envtest import ApiError, ControlPlane, HarnessClient
from tests.controllers.test_applicationpersona import AP, DEP, deployment, persona, set_deployment_status
from tests.runtime.kit import wait_until

ROOT = Path(__file__).resolve().parents[2]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> tuple[int, str]:
    try:
        # A slow answer is no failure: only a refusal or an error status is (a busy machine answers late).
        with urllib.request.urlopen(url, timeout=30) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def test_operator_runs_all_controllers_as_processes(control_plane: ControlPlane, kube: HarnessClient) -> None:
    for ns in ("dorgu-system", "op-e2e"):
        try:
            kube.post(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
        except ApiError as e:
            assert e.code == 409
    port = _port()
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "cli.main", "operator",
            f"--kubeconfig={control_plane.kubeconfig}",
            "--components=applicationpersona,clusterpersona,argocd",
            "--lease-namespace=dorgu-system",
            f"--metrics-bind-address=127.0.0.1:{port}",
            "--revalidate-interval=2",
            "--identity=e2e-0",
        ],
        cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        wait_until(lambda: _get(f"http://127.0.0.1:{port}/readyz")[0] == 200, timeout=90, what="/readyz")
        kube.post(AP.format(ns="op-e2e"), persona("shop", scaling={"minReplicas": 1}))
        kube.post(DEP.format(ns="op-e2e"), deployment("shop", replicas=1))
        set_deployment_status(kube, "op-e2e", "shop", ready=1, total=1, available=True)

        def phase() -> str | None:
            return (kube.get(f"{AP.format(ns='op-e2e')}/shop").get("status") or {}).get("phase")

        wait_until(lambda: phase() == "Active", timeout=60, what="the persona to become Active")
        leases = kube.get("/apis/coordination.k8s.io/v1/namespaces/dorgu-system/leases")["items"]
        holders = {ls["metadata"]["name"]: ls["spec"].get("holderIdentity") for ls in leases}
        assert holders.get("dorgu-applicationpersona") == "e2e-0"
        wait_until(
            lambda: any(
                (cp.get("status") or {}).get("nodeCount") is not None
                for cp in kube.get("/apis/dorgu.io/v1/clusterpersonas")["items"]
            ),
            timeout=60,
            what="a discovered ClusterPersona",
        )
        code, text = _get(f"http://127.0.0.1:{port}/metrics")
        assert code == 200
        assert (
            'controller_runtime_reconcile_total{controller="applicationpersona",result="requeue_after"}'
            in text
        )
        assert 'leader_election_master_status{name="dorgu-applicationpersona"} 1.0' in text
        assert "workqueue_adds_total" in text
    finally:
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc: int | None = None
        try:
            rc = proc.wait(60)  # a hang guard: a graceful stop releases the leases and ends
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        took = time.monotonic() - t0
        err = proc.stderr.read().decode() if proc.stderr else ""
    print(f"\nSIGTERM → operator gone in {took:.1f} s")
    assert rc is not None, "the operator did not exit after SIGTERM: " + err[-3000:]
    assert rc == 0, err[-3000:]
    leases = kube.get("/apis/coordination.k8s.io/v1/namespaces/dorgu-system/leases")["items"]
    released = {ls["metadata"]["name"]: ls["spec"].get("holderIdentity") for ls in leases}
    assert released.get("dorgu-applicationpersona") in (None, "")  # released on a graceful stop
