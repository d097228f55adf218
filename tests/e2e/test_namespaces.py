"""`dorgu operator --namespaces=a` with namespaced RBAC (deploy/overlays/namespaced): every component works
in `a` and nowhere else.

A control plane of its own (the webhook registers a cluster-wide ValidatingWebhookConfiguration; the audit
log is on). The overlay's RBAC is applied with its example namespace renamed to `a`, as its comment tells a
user to, and `dorgu operator` runs with all five components as the `dorgu` ServiceAccount, configured the
in-cluster way. Namespaces `a` and `b` both opt in to the webhook and both hold a persona and a Deployment.

* Readiness means every cache synced: with Roles only in `a` (and dorgu-system), a LIST or WATCH of a
  namespaced kind across all namespaces would be refused and that cache would never sync. The audit log must
  show no refused request of the ServiceAccount and no cluster-wide LIST/WATCH of a namespaced kind.
* The controller reconciles the persona in `a` (status written) and leaves the one in `b` untouched (no
  status, same resourceVersion).
* The webhook warns about a bad Deployment in `a` (through the API server) and admits the same Deployment in
  `b` unchecked (also asked directly: its review names the reason).
* The WebSocket lists only `a`'s persona, a subscription to all namespaces gets only `a`'s, and a request
  or subscription naming `b` is refused.
"""

from __future__ import annotations

import json
import shutil
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from dorgu.envtest import ControlPlane, ControlPlaneSettings, HarnessClient
from tests.e2e.kit import (
    AUDIT_POLICY,
    DEPLOY,
    NS,
    ROOT,
    SA_USER,
    WEBHOOK_PATH,
    Replica,
    audit_entries,
    ensure_namespace,
    poll,
    render,
    write_with_warnings,
)

OVERLAY = DEPLOY / "overlays" / "namespaced"
EXAMPLE_NS = "apps"
CRDS = tuple(sorted((DEPLOY / "crds").glob("*.yaml")))
SAMPLES = DEPLOY / "samples"
NAMESPACED_KINDS = {
    ("dorgu.io", "applicationpersonas"), ("apps", "deployments"), ("apps", "statefulsets"),
    ("apps", "daemonsets"), ("", "events"), ("argoproj.io", "applications"),
}  # fmt: skip
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


def _pointer(doc: Any, path: str) -> tuple[Any, str]:
    parts = path.lstrip("/").split("/")
    for p in parts[:-1]:
        doc = doc[int(p)] if isinstance(doc, list) else doc[p]
    return doc, parts[-1]


def render_overlay(directory: Path) -> list[dict[str, Any]]:
    """``render`` plus the overlay's JSON 6902 patches (``replace``/``add`` by target kind and name) — what
    this overlay uses; test_kubectl_builds_the_same_objects holds it to kubectl's kustomize."""
    objs = render(directory)
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    for entry in k.get("patches") or []:
        target = entry["target"]
        hits = [o for o in objs if o["kind"] == target["kind"] and o["metadata"]["name"] == target["name"]]
        assert len(hits) == 1, target
        for op in yaml.safe_load(entry["patch"]):
            assert op["op"] in ("replace", "add"), op
            parent, key = _pointer(hits[0], op["path"])
            parent[key] = op["value"]
    return objs


def test_kubectl_builds_the_same_objects() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("kubectl not installed: the overlay was rendered by the test's own reader only")
        return
    built = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, check=True, text=True)

    def ids(objs: list[dict[str, Any]]) -> dict[tuple[str, str, str], Any]:
        return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]): o for o in objs}

    ours, theirs = ids(render_overlay(OVERLAY)), ids([d for d in yaml.safe_load_all(built.stdout) if d])
    assert ours.keys() == theirs.keys()
    for key in ours:
        if key[0] in (*RBAC_KINDS, "ConfigMap"):
            assert ours[key] == theirs[key], key


def test_the_overlay_grants_no_namespaced_kind_cluster_wide() -> None:
    objs = render_overlay(OVERLAY)
    (cluster_role,) = [o for o in objs if o["kind"] == "ClusterRole"]
    granted = {(g, r.split("/")[0]) for rule in cluster_role["rules"] for g in rule["apiGroups"]
               for r in rule["resources"]}  # fmt: skip
    assert not granted & NAMESPACED_KINDS, granted & NAMESPACED_KINDS
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert cm["data"]["namespaces"] == EXAMPLE_NS
    roles = [o for o in objs if o["kind"] in ("Role", "RoleBinding") and o["metadata"]["namespace"] != NS]
    assert sorted(o["metadata"]["namespace"] for o in roles) == [EXAMPLE_NS, EXAMPLE_NS, "default", "default"]
    (default,) = [o for o in roles if o["kind"] == "Role" and o["metadata"]["namespace"] == "default"]
    assert default["rules"] == [{"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]}]


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Path]]:
    work = tmp_path_factory.mktemp("namespaces")
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    settings = ControlPlaneSettings(
        crds=CRDS,
        extra_apiserver_flags=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
    )
    with ControlPlane(settings) as cp:
        yield cp, audit_log


def _as_namespace(obj: dict[str, Any], ns: str) -> dict[str, Any]:
    obj = json.loads(json.dumps(obj))
    obj["metadata"]["namespace"] = ns
    return obj


def _apply(kube: HarnessClient, obj: dict[str, Any]) -> None:
    params = {"fieldManager": "e2e-deploy", "force": "true"}
    kube.request(
        "PATCH", kube.path_of(obj), body=obj, content_type="application/apply-patch+yaml", params=params
    )


def _review(port: int, deployment: dict[str, Any]) -> dict[str, Any]:
    """An AdmissionReview sent straight to the webhook (as the API server would send it)."""
    body = {
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u1", "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "namespace": deployment["metadata"]["namespace"], "name": deployment["metadata"]["name"],
            "operation": "CREATE", "object": deployment, "userInfo": {"username": "test"},
        },
    }  # fmt: skip
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE  # the serving certificate's CA is not what is tested here
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}{WEBHOOK_PATH}", data=json.dumps(body).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(req, context=ctx, timeout=30) as resp:
        return json.loads(resp.read())["response"]


def test_operator_limited_to_one_namespace(plane: tuple[ControlPlane, Path], tmp_path: Path) -> None:
    cp, audit_log = plane
    kube = cp.client()
    ensure_namespace(kube, NS)
    for ns in ("a", "b"):
        ensure_namespace(kube, ns, {"dorgu.io/validate": "true"})
    # The overlay's RBAC, its example namespace renamed to `a` (as a user copies roles.yaml).
    objs = render_overlay(OVERLAY)
    for o in objs:
        if o["kind"] in RBAC_KINDS:
            if o["metadata"].get("namespace") == EXAMPLE_NS:
                o = _as_namespace(o, "a")
            _apply(kube, o)
    (cm,) = [o for o in objs if o["kind"] == "ConfigMap"]
    assert cm["data"]["namespaces"] == EXAMPLE_NS

    persona = yaml.safe_load((SAMPLES / "applicationpersona-order-service.yaml").read_text())
    deployment = yaml.safe_load((SAMPLES / "deployment-order-service.yaml").read_text())
    made = {
        ns: kube.post(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas", _as_namespace(persona, ns))
        for ns in ("a", "b")
    }

    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(cp.service_account_token(NS, "dorgu", create=False))
    shutil.copy(cp.ca_file, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(NS)
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": str(cp.apiserver_port),
        "DORGU_SA_DIR": str(sa_dir), "KUBECONFIG": "/nonexistent",
    }  # fmt: skip
    options = {"webhook_check_interval_s": 2, "webhook_retry_interval_s": 1, "crd_poll_interval_s": 1}
    op = Replica(identity="dorgu-0", args=[], env=env, log_dir=tmp_path)
    op.args = [
        "--components=applicationpersona,clusterpersona,argocd,webhook,websocket",
        "--namespaces=a", "--leader-elect=false", "--revalidate-interval=2", "--ws-auth=none",
        f"--webhook-url=https://127.0.0.1:{op.webhook_port}{WEBHOOK_PATH}",
        "--webhook-ip-addresses=127.0.0.1",
        f"--component-options={json.dumps(options)}",
    ]  # fmt: skip
    op.start()
    started = time.time()
    try:
        poll(op.ready, timeout=120, what=f"/readyz of the operator\n{op.log_tail()}", every=0.5)
        try:
            drive(cp, kube, op, made, deployment)
        except AssertionError:
            print(f"--- operator log (tail) ---\n{op.log_tail(60)}")
            raise
    finally:
        rc = op.stop()
    assert rc == 0, op.log_tail()

    time.sleep(2)  # the audit log is written asynchronously
    mine = [e for e in audit_entries(audit_log) if e.user == SA_USER and e.time >= started - 1]
    forbidden = sorted({(e.verb, e.group, e.resource, e.namespace) for e in mine if e.code == 403})
    assert not forbidden, f"requests of the ServiceAccount were forbidden: {forbidden}"
    wide = sorted(
        {(e.verb, e.group, e.resource) for e in mine
         if e.verb in ("list", "watch") and not e.namespace and (e.group, e.resource) in NAMESPACED_KINDS}
    )  # fmt: skip
    assert not wide, f"cluster-wide reads of namespaced kinds: {wide}"
    assert {e.namespace for e in mine if (e.group, e.resource) == ("dorgu.io", "applicationpersonas")} == {
        "a"
    }


def drive(
    cp: ControlPlane, kube: HarnessClient, op: Replica, made: dict[str, dict[str, Any]], deployment: Any
) -> None:
    ap = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/order-service"
    # The controller: `a`'s persona gets a status (Pending: no Deployment yet) ...
    poll(lambda: (kube.get(ap.format(ns="a")).get("status") or {}).get("phase"), timeout=90,
         what="the persona in a reconciled")  # fmt: skip

    # The webhook (advisory): one replica where the persona wants at least two → warnings in `a` ...
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["replicas"] = 1

    def warned_create() -> list[str]:
        path = "/apis/apps/v1/namespaces/a/deployments"
        _, warnings = write_with_warnings(kube, "POST", path, _as_namespace(bad, "a"))
        if not warnings:
            kube.delete(f"{path}/order-service")
        return warnings

    warnings = poll(warned_create, timeout=90, what="the webhook's warnings in a", every=1.0)
    assert any("replicas" in w.lower() for w in warnings), warnings
    # ... and none in `b`, which opted in too: the webhook admits it unchecked.
    _, warnings_b = write_with_warnings(
        kube, "POST", "/apis/apps/v1/namespaces/b/deployments", _as_namespace(bad, "b")
    )
    assert warnings_b == []
    review = _review(op.webhook_port, _as_namespace(bad, "b"))
    assert review["allowed"] is True and not review.get("warnings")
    assert review["status"]["message"] == "namespace is outside the operator's --namespaces; not checked"
    assert _review(op.webhook_port, _as_namespace(bad, "a")).get("warnings")

    # `a`'s persona now validates its Deployment; `b`'s was never written to (the Deployment there changed
    # nothing either).
    def validated() -> bool:
        return (kube.get(ap.format(ns="a")).get("status") or {}).get("validation", {}).get("passed") is False

    poll(validated, timeout=90, what="a's persona validated its Deployment")
    b_now = kube.get(ap.format(ns="b"))
    assert "status" not in b_now
    assert b_now["metadata"]["resourceVersion"] == made["b"]["metadata"]["resourceVersion"]

    # The WebSocket: all namespaces = `a` only; `b` asked by name is refused.
    url = f"--operator-url=ws://127.0.0.1:{op.ws_port}/ws"

    def dorgu(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "persona", "list", url, "--no-color", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"},
        )  # fmt: skip

    listed = dorgu("-A", "-o", "json")
    assert listed.returncode == 0, listed.stderr
    assert [(i["namespace"], i["name"]) for i in json.loads(listed.stdout)] == [("a", "order-service")]
    refused = dorgu("-n", "b")
    assert refused.returncode == 1
    assert "outside the operator's namespaces (a)" in refused.stderr and "Traceback" not in refused.stderr

    # A subscription to every namespace: its snapshot holds `a`'s persona only; one to `b` is refused.
    watch = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "persona", "watch", "-A", "-o", "json", url, "--no-color"],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"},
    )  # fmt: skip
    guard = threading.Timer(90, watch.kill)  # a watch that never prints ends the read (and fails the test)
    guard.start()
    try:
        assert watch.stdout is not None
        seen = [json.loads(watch.stdout.readline())]  # the snapshot's first item, as a "created" change
        # A change in `b`, then one in `a`: everything printed up to `a`'s is the snapshot and what followed.
        labels = {"metadata": {"labels": {"touched": "yes"}}}
        kube.patch(ap.format(ns="b"), labels)
        kube.patch(ap.format(ns="a"), labels)
        while seen[-1]["eventType"] != "updated":
            seen.append(json.loads(watch.stdout.readline()))
    finally:
        guard.cancel()
        watch.terminate()
        watch.wait(30)
    assert [(e["eventType"], e["namespace"]) for e in seen] == [("created", "a"), ("updated", "a")], seen
    refused = subprocess.run(
        [sys.executable, "-m", "cli.main", "persona", "watch", "-n", "b", url, "--no-color"],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "HOME": "/nonexistent"},
    )  # fmt: skip
    assert refused.returncode == 1 and "outside the operator's namespaces (a)" in refused.stderr
