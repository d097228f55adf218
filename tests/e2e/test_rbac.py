"""deploy/ applies, and its RBAC is exactly what the code uses — proven with the ServiceAccount's own token.

One control plane with the audit log on (Metadata level, every resource request). deploy/ is applied as
kubectl would (server-side dry-run first, then for real); then `dorgu operator` runs with all five components,
configured the in-cluster way: ``KUBERNETES_SERVICE_HOST/PORT``, and a token (TokenRequest API, for the
``dorgu`` ServiceAccount that deploy/ created), the CA and the namespace as files (``DORGU_SA_DIR`` stands for
/var/run/secrets/kubernetes.io/serviceaccount). The test drives every component through its paths:

* applicationpersona (sharded, ``--shards=auto`` as deploy/ runs it): the sharder's label patches, the
  shard's status writes, Events created and (a repeated one) patched;
* clusterpersona: the bootstrap ClusterPersona created, a discovery pass, status;
* argocd: the GitOps loop — the Argo CD Application that ``dorgu generate`` wrote, applied with a status
  set as Argo CD would, shows up in the persona's ``status.argoCD``;
* webhook: its certificate Secret created, then repaired after it is broken (update); the
  ValidatingWebhookConfiguration created, then repaired (update); reviews with kubectl-style warnings;
* websocket: a CLI client (``dorgu persona list``) checked with TokenReview + SubjectAccessReview.

Then the set of (verb, group, resource, subresource) the ServiceAccount used — get/list/watch taken as one
"read" — must equal what its Role and ClusterRole grant, and no request of it was forbidden. What the roles
must never grant (SubjectAccessReviews asked by the admin, so the ServiceAccount itself is never refused):
reading Pods anywhere (their environment values), or any Secret but the webhook's certificate Secret.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes

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
    granted,
    normalise,
    poll,
    rbac_rules,
    render,
    write_with_warnings,
)

CRDS = tuple(sorted((DEPLOY / "crds").glob("*.yaml")))
ARGO_CRD = ROOT / "tests/fixtures/argocd/application-crd.yaml"
APP_NS = "shop"


@pytest.fixture(scope="module")
def plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ControlPlane, Path]]:
    work = tmp_path_factory.mktemp("rbac")
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    settings = ControlPlaneSettings(
        crds=CRDS,
        extra_apiserver_flags=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
    )
    with ControlPlane(settings) as cp:
        yield cp, audit_log


def for_1_20(objs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What deploy/overlays/kube-1.20 changes: the PodDisruptionBudget's version (policy/v1 came in 1.21)."""
    return [{**o, "apiVersion": "policy/v1beta1"} if o["kind"] == "PodDisruptionBudget" else o for o in objs]


def apply(kube: HarnessClient, obj: dict[str, Any], *, dry_run: bool) -> None:
    params = {"fieldManager": "e2e-deploy", "force": "true"}
    if dry_run:
        params["dryRun"] = "All"
    info = kube.resource(obj["apiVersion"], obj["kind"], refresh=True)
    path = kube.path_of(obj)
    assert info.namespaced == ("namespace" in obj["metadata"]), f"{obj['kind']} namespace field"
    kube.request("PATCH", path, body=obj, content_type="application/apply-patch+yaml", params=params)


def test_deploy_applies_and_rbac_is_exactly_what_the_operator_uses(
    plane: tuple[ControlPlane, Path], tmp_path: Path
) -> None:
    cp, audit_log = plane
    kube = cp.client()
    objs = for_1_20(render(DEPLOY))
    kinds = sorted({o["kind"] for o in objs})
    assert kinds == sorted(
        {"Namespace", "CustomResourceDefinition", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
         "Role", "RoleBinding", "ConfigMap", "Service", "StatefulSet", "PodDisruptionBudget"}
    )  # fmt: skip
    # Server-side dry-run of everything (the namespace must exist for the dry-run of what lives in it).
    apply(kube, next(o for o in objs if o["kind"] == "Namespace"), dry_run=False)
    kubectl_checks(cp, objs, tmp_path)
    for o in objs:
        apply(kube, o, dry_run=True)
    for o in objs:
        apply(kube, o, dry_run=False)
    sts = kube.get(f"/apis/apps/v1/namespaces/{NS}/statefulsets/dorgu")
    assert sts["spec"]["podManagementPolicy"] == "Parallel"
    assert sts["spec"]["replicas"] == 2
    print(f"\ndeploy/ applied: {len(objs)} objects, server-side dry-run first")

    # -- the operator, in-cluster style, with the ServiceAccount's own token ------------------------------
    sa_dir = tmp_path / "serviceaccount"
    sa_dir.mkdir()
    (sa_dir / "token").write_text(cp.service_account_token(NS, "dorgu", create=False))
    shutil.copy(cp.ca_file, sa_dir / "ca.crt")
    (sa_dir / "namespace").write_text(NS)
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(cp.apiserver_port),
        "DORGU_SA_DIR": str(sa_dir),
        "KUBECONFIG": "/nonexistent",  # never used: in-cluster config comes first without --kubeconfig
    }
    # The WebSocket as deploy/ runs it (issue 17, item 1): wss:// with the webhook's certificate Secret (the
    # listener is loopback here, so "secret" is asked for), tokens of the audience "dorgu" only.
    options = {
        "lease_duration_s": 15, "webhook_check_interval_s": 2, "webhook_retry_interval_s": 1,
        "crd_poll_interval_s": 1, "ws_auth_cache_ttl_s": 0, "ws_tls": "secret", "ws_token_audiences": "dorgu",
    }  # fmt: skip
    op = Replica(identity="dorgu-0", args=[], env=env, log_dir=tmp_path)
    op.args = [
        "--components=applicationpersona,clusterpersona,argocd,webhook,websocket",
        "--shards=auto",  # as deploy/ runs it: the sharder's label writes are part of what must be granted
        f"--webhook-url=https://127.0.0.1:{op.webhook_port}{WEBHOOK_PATH}",
        "--webhook-ip-addresses=127.0.0.1",
        "--revalidate-interval=2",
        f"--component-options={json.dumps(options)}",
    ]
    if ARGO_CRD is not None:
        kube.request(
            "PATCH",
            "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/applications.argoproj.io",
            body=ARGO_CRD.read_bytes(),
            content_type="application/apply-patch+yaml",
            params={"fieldManager": "e2e", "force": "true"},
        )
    op.start()
    try:
        poll(op.ready, timeout=120, what=f"/readyz of the operator\n{op.log_tail()}", every=0.5)
        n, rss, pss = op.memory()
        print(f"operator (5 components, idle): {n} processes, RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")
        try:
            drive_everything(cp, kube, op, tmp_path)
        except AssertionError:
            print(f"--- operator log (tail) ---\n{op.log_tail(60)}")
            print("--- persona ---", json.dumps(_persona_status(kube, "order-service"), indent=1)[:3000])
            raise
        n, rss, pss = op.memory()
        print(f"operator (5 components, after the run): {n} processes, RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")
    finally:
        rc = op.stop()
    assert rc == 0, op.log_tail()

    rules = rbac_rules(o for o in objs if o["kind"] in ("ClusterRole", "Role"))
    grants = granted(rules)
    if ARGO_CRD is None:
        grants.discard(("read", "argoproj.io", "applications", ""))

    def used() -> set[tuple[str, str, str, str]]:
        return {
            (normalise(e.verb), e.group, e.resource, e.subresource)
            for e in audit_entries(audit_log)
            if e.user == SA_USER
        }

    deadline = time.monotonic() + 20  # the audit log is written asynchronously
    while not used() >= grants and time.monotonic() < deadline:
        time.sleep(0.5)
    got = used()
    forbidden = sorted(
        {(e.verb, e.group, e.resource, e.subresource, e.namespace) for e in audit_entries(audit_log)
         if e.user == SA_USER and e.code == 403}
    )  # fmt: skip
    print("used by the ServiceAccount:", *sorted(got), sep="\n  ")
    assert not forbidden, f"requests of the ServiceAccount were forbidden: {forbidden}"
    assert got - grants == set(), "used but not granted"
    assert grants - got == set(), "granted but never used (the roles are wider than the code)"
    never = [
        ("get", "pods", NS, ""), ("list", "pods", "", ""), ("watch", "pods", APP_NS, ""),
        ("list", "secrets", NS, ""), ("watch", "secrets", NS, ""), ("get", "secrets", NS, "other"),
        ("get", "secrets", APP_NS, "dorgu-webhook-certs"),
    ]  # fmt: skip
    allowed = [n for n in never if may(kube, *n)]
    assert not allowed, f"the ServiceAccount may {allowed}"
    # The one Secret it reads is read by name, a list/watch included (field-selected on metadata.name).
    assert all(may(kube, verb, "secrets", NS, "dorgu-webhook-certs") for verb in ("get", "list", "watch"))


def may(kube: HarnessClient, verb: str, resource: str, namespace: str, name: str) -> bool:
    """Whether the operator's ServiceAccount may ``verb`` core ``resource`` (a SubjectAccessReview)."""
    attrs = {"verb": verb, "resource": resource, "namespace": namespace, "name": name}
    review = {
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": SA_USER, "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}",
                                             "system:authenticated"],
                 "resourceAttributes": {k: v for k, v in attrs.items() if v}},
    }  # fmt: skip
    return bool(kube.post("/apis/authorization.k8s.io/v1/subjectaccessreviews", review)["status"]["allowed"])


def kubectl_checks(cp: ControlPlane, objs: list[dict[str, Any]], tmp_path: Path) -> None:
    """Where kubectl is installed: its kustomize builds the same objects, and it applies the overlay for 1.20
    with a server-side dry-run."""
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("kubectl not installed: deploy/ rendered by the test's own reader only")
        return

    def build(d: Path) -> list[dict[str, Any]]:
        built = subprocess.run([kubectl, "kustomize", str(d)], capture_output=True, check=True)
        return [d for d in yaml.safe_load_all(built.stdout) if d]

    def ids(os_: list[dict[str, Any]]) -> list[tuple[str, str, str, str]]:
        return sorted((o["apiVersion"], o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"])
                      for o in os_)  # fmt: skip

    assert ids(for_1_20(build(DEPLOY))) == ids(objs)
    no_crds = [o for o in objs if o["kind"] != "CustomResourceDefinition"]
    assert ids(build(DEPLOY / "overlays/kube-1.20")) == ids(no_crds)
    kc = tmp_path / "kubeconfig"
    shutil.copy(cp.kubeconfig, kc)
    out = subprocess.run(
        [kubectl, f"--kubeconfig={kc}", "apply", "--server-side", "--dry-run=server",
         "-k", str(DEPLOY / "overlays/kube-1.20")],
        capture_output=True, text=True,
    )  # fmt: skip
    print(f"kubectl apply --server-side --dry-run=server -k deploy/overlays/kube-1.20: rc={out.returncode}")
    assert out.returncode == 0, out.stderr[-2000:]


def viewer_rbac(kube: HarnessClient, ns: str, account: str) -> None:
    """A Role to list and watch ApplicationPersonas in ``ns``, bound to ServiceAccount ``account``."""
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
    kube.post(f"{rbac}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": account},
        "rules": [{"apiGroups": ["dorgu.io"], "resources": ["applicationpersonas"],
                   "verbs": ["list", "watch"]}],
    })  # fmt: skip
    kube.post(f"{rbac}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": account},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    })  # fmt: skip


def _persona_status(kube: HarnessClient, name: str) -> dict[str, Any]:
    return kube.get(f"/apis/dorgu.io/v1/namespaces/{APP_NS}/applicationpersonas/{name}").get("status") or {}


def _set_ready(kube: HarnessClient, name: str, replicas: int) -> None:
    kube.patch(
        f"/apis/apps/v1/namespaces/{APP_NS}/deployments/{name}/status",
        {"status": {"replicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas,
                    "updatedReplicas": replicas, "observedGeneration": 1,
                    "conditions": [{"type": "Available", "status": "True", "reason": "Test"}]}},
    )  # fmt: skip


def drive_everything(cp: ControlPlane, kube: HarnessClient, op: Replica, tmp_path: Path) -> None:
    ensure_namespace(kube, APP_NS, {"dorgu.io/validate": "true"})
    out = tmp_path / "order-service" / "k8s"
    gen = subprocess.run(
        [sys.executable, "-m", "cli.main", "generate", str(DEPLOY / "demo-app"), "-o", str(out),
         "--name", "order-service", "--namespace", APP_NS, "--no-color"],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
    )  # fmt: skip
    assert gen.returncode == 0, gen.stderr
    persona = yaml.safe_load((out / "persona.yaml").read_text())
    dep = yaml.safe_load((out / "deployment.yaml").read_text())
    kube.post(f"/apis/dorgu.io/v1/namespaces/{APP_NS}/applicationpersonas", persona)

    # The webhook (advisory): a Deployment below its persona's minimum replicas (an error) and over its CPU
    # limit (a warning) → admitted with warnings.
    bad = json.loads(json.dumps(dep))
    bad["spec"]["replicas"] = 1
    bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "4"
    path = f"/apis/apps/v1/namespaces/{APP_NS}/deployments"

    def warned_create() -> list[str]:
        _, warnings = write_with_warnings(kube, "POST", path, bad)
        if not warnings:
            kube.delete(f"{path}/order-service")
        return warnings

    warnings = poll(warned_create, timeout=60, what="the webhook's warnings", every=1.0)
    print("webhook warnings:", *warnings, sep="\n  ")
    _set_ready(kube, "order-service", 2)
    poll(lambda: _persona_status(kube, "order-service").get("validation", {}).get("passed") is False,
         timeout=60, what="validation to fail")  # fmt: skip
    # fixed → passes; broken again → the same Event again, which the recorder patches (count 2).
    for replicas, passed in ((2, True), (1, False)):
        cur = kube.get(f"{path}/order-service")
        cur["spec"]["replicas"] = replicas
        kube.put(f"{path}/order-service", cur)
        poll(lambda p=passed: _persona_status(kube, "order-service").get("validation", {}).get("passed") is p,
             timeout=60, what=f"validation passed={passed}")  # fmt: skip

    def patched_event() -> bool:
        evs = kube.get(f"/api/v1/namespaces/{APP_NS}/events")["items"]
        return any(e.get("reason") == "ValidationFailed" and (e.get("count") or 1) >= 2 for e in evs)

    poll(patched_event, timeout=30, what="a repeated Event (patched)")

    # The GitOps loop: the generated Argo CD Application, with a status as Argo CD writes it.
    if ARGO_CRD is not None:
        app = yaml.safe_load((out / "argocd" / "application.yaml").read_text())
        ensure_namespace(kube, app["metadata"]["namespace"])
        apps = f"/apis/argoproj.io/v1alpha1/namespaces/{app['metadata']['namespace']}/applications"
        created = kube.post(apps, app)
        created["status"] = {
            "sync": {"status": "Synced", "revision": "4f1c2d3"},
            "health": {"status": "Healthy"},
            "operationState": {
                "phase": "Succeeded",
                "operation": {"sync": {"revision": "4f1c2d3"}},
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:05Z",
            },
        }
        kube.put(f"{apps}/{app['metadata']['name']}", created)

        def argo_synced() -> dict[str, Any] | None:
            argo = _persona_status(kube, "order-service").get("argoCD") or {}
            return argo if argo.get("syncStatus") == "Synced" else None

        argo = poll(argo_synced, timeout=60, what="status.argoCD to show the Application's status")
        print("persona status.argoCD:", argo)
        assert argo["syncStatus"] == "Synced" and argo["healthStatus"] == "Healthy"

    # The ClusterPersona bootstrap and a discovery pass.
    poll(lambda: any((c.get("status") or {}).get("nodeCount") is not None
                     for c in kube.get("/apis/dorgu.io/v1/clusterpersonas")["items"]),
         timeout=60, what="a discovered ClusterPersona")  # fmt: skip

    # The webhook repairs what it keeps: a broken certificate Secret (update) and a stale configuration.
    secret = f"/api/v1/namespaces/{NS}/secrets/dorgu-webhook-certs"
    before = kube.get(secret)["metadata"]["resourceVersion"]
    broken = "bm90IGEgY2VydGlmaWNhdGU="  # "not a certificate"
    kube.patch(secret, {"data": {"tls.crt": broken}})
    poll(lambda: kube.get(secret)["data"]["tls.crt"] != broken, timeout=60, what="the Secret repaired")
    assert kube.get(secret)["metadata"]["resourceVersion"] != before
    vwc = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/dorgu-deployment-validation"

    # The repair issued a new CA: the configuration trusts it, and no other CA (the old one is gone).
    def cas(b64: str) -> list[bytes]:
        return [
            c.fingerprint(hashes.SHA256()) for c in x509.load_pem_x509_certificates(base64.b64decode(b64))
        ]

    def trusts_the_secret_only() -> bool:
        issued = cas(kube.get(secret)["data"]["ca.crt"])
        return all(cas(w["clientConfig"]["caBundle"]) == issued for w in kube.get(vwc)["webhooks"])

    poll(trusts_the_secret_only, timeout=60, what="the configuration to trust the repaired Secret's CA only")
    cur = kube.get(vwc)
    cur["webhooks"][0]["timeoutSeconds"] = 29
    kube.put(vwc, cur)
    poll(lambda: kube.get(vwc)["webhooks"][0].get("timeoutSeconds") != 29, timeout=60,
         what="the webhook configuration repaired")  # fmt: skip

    # The WebSocket: a CLI client over wss:// (the CA as docs/security.md takes it: the configuration's
    # caBundle) with a TokenRequest token of the audience "dorgu" (TokenReview, then SubjectAccessReviews).
    ca_file = tmp_path / "operator-ca.crt"
    ca_file.write_bytes(base64.b64decode(kube.get(vwc)["webhooks"][0]["clientConfig"]["caBundle"]))
    token = cp.service_account_token(APP_NS, "persona-viewer", audiences=["dorgu"])
    viewer_rbac(kube, APP_NS, "persona-viewer")

    def dorgu_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", "persona", "list", "-n", APP_NS, "--no-color", *args],
            cwd=ROOT, capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)},
        )  # fmt: skip

    wss = [f"--operator-url=wss://127.0.0.1:{op.ws_port}/ws", f"--operator-ca={ca_file}"]
    t0 = time.monotonic()
    listed: list[subprocess.CompletedProcess[str]] = []

    def lists() -> bool:
        listed.append(dorgu_cli(*wss, f"--token={token}"))
        return listed[-1].returncode == 0

    try:
        poll(lists, timeout=60, every=0.5, what="the CLI over wss:// (the viewer's RoleBinding to show)")
    except AssertionError:
        print(f"--- the last attempt ---\n{listed[-1].stderr}")
        raise
    cli = listed[-1]
    print(f"dorgu persona list over wss:// ({time.monotonic() - t0:.1f} s):\n{cli.stdout}")
    assert "order-service" in cli.stdout
    # A token of the API server's own audience is refused; so is cleartext to an address not loopback.
    assert "HTTP 401" in dorgu_cli(*wss, f"--token={cp.admin_token}").stderr
    clear = dorgu_cli(f"--operator-url=ws://192.0.2.1:{op.ws_port}/ws", f"--token={token}")
    assert clear.returncode == 2 and "refusing to send a bearer token in cleartext" in clear.stderr
