"""The local control plane is a real Kubernetes 1.20.2 control plane, and leaves nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dorgu.envtest import ApiError, ControlPlane, ControlPlaneSettings, HarnessClient


def wait_until(pred, *, timeout: float = 60.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_serves_version_1_20_2(kube: HarnessClient) -> None:
    v = kube.get("/version")
    assert v["gitVersion"] == "v1.20.2"
    assert (v["major"], v["minor"]) == ("1", "20")


def test_namespace_finishes_terminating(kube: HarnessClient) -> None:
    ns = f"doomed-{os.getpid()}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.post(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "content"}, "data": {"k": "v"}},
    )
    kube.delete(f"/api/v1/namespaces/{ns}")
    assert kube.get(f"/api/v1/namespaces/{ns}")["status"]["phase"] == "Terminating"

    def gone() -> bool:
        try:
            kube.get(f"/api/v1/namespaces/{ns}")
        except ApiError as e:
            return e.code == 404
        return False

    wait_until(gone, what="the namespace controller to finish deleting the namespace")


def test_owner_reference_garbage_collection(kube: HarnessClient, namespace: str) -> None:
    owner = kube.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}},
    )
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    kube.post(
        f"/api/v1/namespaces/{namespace}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "dependent", "ownerReferences": [ref]},
        },
    )
    kube.delete(f"/api/v1/namespaces/{namespace}/configmaps/owner")

    def collected() -> bool:
        try:
            kube.get(f"/api/v1/namespaces/{namespace}/configmaps/dependent")
        except ApiError as e:
            return e.code == 404
        return False

    wait_until(collected, what="the garbage collector to delete the dependent")


def test_pod_is_accepted_and_stays_pending(kube: HarnessClient, namespace: str) -> None:
    # The serviceaccount controllers must have made the namespace's `default` account and its token
    # Secret, or 1.20's ServiceAccount admission rejects the Pod.
    wait_until(
        lambda: any(
            sa["metadata"]["name"] == "default" and sa.get("secrets")
            for sa in kube.get(f"/api/v1/namespaces/{namespace}/serviceaccounts")["items"]
        ),
        what="the default ServiceAccount and its token",
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "idle"},
        "spec": {"containers": [{"name": "c", "image": "registry.invalid/none:1"}]},
    }
    kube.post(f"/api/v1/namespaces/{namespace}/pods", pod)
    got = kube.get(f"/api/v1/namespaces/{namespace}/pods/idle")
    assert got["status"]["phase"] == "Pending"
    assert "nodeName" not in got["spec"]  # no scheduler, no kubelet


def test_deployments_are_left_to_the_tests(kube: HarnessClient, namespace: str) -> None:
    """No deployment/replicaset controller runs: a Deployment's status is the test's to write."""
    dep = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "labels": {"app": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "nginx:1.27"}]},
            },
        },
    }
    kube.post(f"/apis/apps/v1/namespaces/{namespace}/deployments", dep)
    time.sleep(1.0)  # give a (wrongly running) deployment controller the chance to act
    assert kube.get(f"/apis/apps/v1/namespaces/{namespace}/replicasets")["items"] == []
    kube.patch(
        f"/apis/apps/v1/namespaces/{namespace}/deployments/web/status",
        {"status": {"replicas": 2, "readyReplicas": 2, "availableReplicas": 2}},
    )
    got = kube.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/web")
    assert got["status"]["readyReplicas"] == 2


def test_service_account_token_identity(control_plane: ControlPlane) -> None:
    token = control_plane.service_account_token("sa-test", "robot", expiration_seconds=600)
    robot = control_plane.client(token=token)
    assert robot.get("/version")["gitVersion"] == "v1.20.2"  # authenticated: discovery is allowed
    with pytest.raises(ApiError) as err:
        robot.get("/api/v1/namespaces/sa-test/secrets")  # ... but RBAC grants it nothing else
    assert err.value.code == 403
    assert "system:serviceaccount:sa-test:robot" in err.value.message


def test_kubeconfig_is_usable_by_the_kubernetes_package(control_plane: ControlPlane) -> None:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=str(control_plane.kubeconfig))
    assert client.VersionApi(api).get_code().git_version == "v1.20.2"


class TestDestructive:
    """Faults on a control plane of their own, running beside the shared one."""

    def test_restart_audit_and_clean_stop(self, control_plane: ControlPlane, tmp_path: Path) -> None:
        policy = tmp_path / "audit-policy.yaml"
        policy.write_text("apiVersion: audit.k8s.io/v1\nkind: Policy\nrules:\n- level: Metadata\n")
        audit_log = tmp_path / "audit.log"
        settings = ControlPlaneSettings(
            controllers=(),  # not needed here: a restart test wants the apiserver only
            extra_apiserver_flags=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
        )
        t0 = time.monotonic()
        cp = ControlPlane(settings).start()
        print(f"\nwarm start of a control plane (binaries cached): {time.monotonic() - t0:.1f} s")
        try:
            # Two independent control planes at once.
            assert cp.server != control_plane.server
            assert cp.etcd_url != control_plane.etcd_url
            kube = cp.client()
            kube.post(
                "/api/v1/namespaces/default/configmaps",
                {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "survivor"}},
            )
            with pytest.raises(ApiError):
                control_plane.client().get("/api/v1/namespaces/default/configmaps/survivor")

            # Restart kube-apiserver in place: same port, same etcd, data kept.
            port, old_pid = cp.apiserver_port, cp.pids["kube-apiserver"]
            downtime = cp.restart_apiserver()
            print(f"kube-apiserver restart in place: {downtime:.1f} s")
            assert cp.apiserver_port == port and cp.pids["kube-apiserver"] != old_pid
            assert not alive(old_pid)
            assert cp.client().get("/api/v1/namespaces/default/configmaps/survivor")["metadata"]["name"]

            # Extra flags took effect: the audit log names this request's User-Agent.
            cp.client(user_agent="audit-probe/1.0").get("/api/v1/namespaces/default/configmaps")
            wait_until(
                lambda: audit_log.exists() and "audit-probe/1.0" in audit_log.read_text(), what="audit"
            )
            events = [json.loads(line) for line in audit_log.read_text().splitlines()]
            assert any(e.get("userAgent") == "audit-probe/1.0" and e["verb"] == "list" for e in events)
        finally:
            pids, work_dir = cp.pids, cp.work_dir
            cp.stop()
        assert pids and not any(alive(p) for p in pids.values())
        assert not work_dir.exists()

    def test_kill_9_of_the_owner_leaves_no_process(self) -> None:
        """PR_SET_PDEATHSIG: a control plane whose Python owner is SIGKILLed dies with it."""
        proc = subprocess.Popen(
            [sys.executable, "-m", "dorgu.envtest", "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert proc.stdout is not None
            export = proc.stdout.readline()
            assert export.startswith("export KUBECONFIG=")
            info = proc.stdout.readline()
            pids = json.loads(info.split("# pids ")[1].split(" work_dir ")[0])
            assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager"}
            assert all(alive(p) for p in pids.values())
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        wait_until(lambda: not any(alive(p) for p in pids.values()), what="the orphans to die")

    def test_sigterm_tears_down(self) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-m", "dorgu.envtest", "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        proc.stdout.readline()
        line = proc.stdout.readline()
        pids = json.loads(line.split("# pids ")[1].split(" work_dir ")[0])
        work_dir = Path(line.split(" work_dir ")[1].strip())
        assert work_dir.exists()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0  # a hang guard: the teardown ends
        assert not any(alive(p) for p in pids.values())
        assert not work_dir.exists()
