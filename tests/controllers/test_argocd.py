"""The Argo CD controller against a real API server with the real Argo CD Application CRD.

Argo CD's own CRD (``tests/fixtures/argocd/application-crd.yaml``) is installed with server-side apply
*after* the controller started; it has no status subresource, so Applications get their ``status`` by a
plain update.
The ApplicationPersona controller's writes are played by the test under its field manager
(``dorgu-applicationpersona``): neither manager may clobber the other's fields.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from controllers import argocd
from controllers.argocd import ArgoCDReconciler, ArgoCDSettings, app_name, argo_status
from dorgu.domain.kube import ArgoApplication
from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.envtest.http import ApiError
from tests.controllers import cp_kit
from tests.controllers.cp_kit import running

ROOT = Path(__file__).resolve().parents[2]
ARGO_CRD = ROOT / "tests/fixtures/argocd/application-crd.yaml"
"""The real Argo CD Application CRD (upstream's manifest, kept in the repository for the tests)."""
CRD_NAME = "applications.argoproj.io"
CRD_PATH = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD_NAME}"
AP_MANAGER = "dorgu-applicationpersona"
_n = itertools.count()
DEADLINE_S = 90.0
"""How long a wait on the control plane may take before the test fails: a hang guard, never a speed claim
(how fast the controller mirrors a status is ``bench/controller_latency.py``'s figure)."""

R = TypeVar("R")


def poll(fn: Callable[[], R], pred: Callable[[R], bool], *, timeout: float = DEADLINE_S, what: str) -> R:
    return cp_kit.poll(fn, pred, timeout=timeout, what=what)


# --------------------------------------------------------------------------- pure


def _app(**kw: Any) -> ArgoApplication:
    import msgspec

    return msgspec.convert(kw, type=ArgoApplication)


def test_status_extraction_enums_revisions_and_times() -> None:
    a = _app(
        metadata={"name": "web", "namespace": "argocd"},
        status={
            "sync": {"status": "Synced", "revisions": ["abc", "def"], "revision": "ignored"},
            "health": {"status": "Healthy"},
            "operationState": {"finishedAt": "2026-02-15T10:00:00Z"},
        },
    )
    s = argo_status(a)
    assert (s.sync_status, s.health_status, s.revision) == ("Synced", "Healthy", "abc,def")
    assert s.last_sync_time is not None and s.last_sync_time.isoformat() == "2026-02-15T10:00:00+00:00"
    assert (s.application_name, s.application_namespace) == ("web", "argocd")
    odd = argo_status(
        _app(
            metadata={"name": "x"},
            status={
                "sync": {"status": "Weird", "revision": "r1"},
                "operationState": {"finishedAt": "yesterday"},
            },
        )
    )
    assert (odd.sync_status, odd.health_status, odd.revision, odd.last_sync_time) == (
        "Unknown",
        "Unknown",
        "r1",
        None,
    )
    assert argo_status(_app(metadata={"name": "x"})).sync_status == "Unknown"


def test_app_name_skips_empty_labels() -> None:
    assert (
        app_name(_app(metadata={"name": "n", "labels": {"app.kubernetes.io/name": "a", "app": "b"}})) == "a"
    )
    assert app_name(_app(metadata={"name": "n", "labels": {"app.kubernetes.io/name": "", "app": "b"}})) == "b"
    assert app_name(_app(metadata={"name": "n", "labels": {"app": ""}})) == "n"


# --------------------------------------------------------------------------- real API server


def install_argo_crd(kube: HarnessClient) -> None:
    kube.patch(
        CRD_PATH,
        ARGO_CRD.read_bytes(),
        content_type="application/apply-patch+yaml",
        params={"fieldManager": "dorgu-test", "force": "true"},
    )
    poll(
        lambda: kube.get(CRD_PATH),
        lambda c: any(
            x["type"] == "Established" and x["status"] == "True"
            for x in c.get("status", {}).get("conditions", [])
        ),
        what="Argo CD CRD established",
    )


def crd_installed(kube: HarnessClient) -> bool:
    try:
        kube.get(CRD_PATH)
        return True
    except ApiError as e:
        if e.code == 404:
            return False
        raise


@pytest.fixture
def ns2(kube: HarnessClient) -> Iterator[str]:
    name = f"argo-{os.getpid()}-{next(_n)}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def persona(kube: HarnessClient, ns: str, name: str, spec_name: str | None = None) -> None:
    kube.post(
        f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas",
        {
            "apiVersion": "dorgu.io/v1",
            "kind": "ApplicationPersona",
            "metadata": {"name": name},
            "spec": {"name": spec_name or name, "type": "api"},
        },
    )


def ap_controller_writes(kube: HarnessClient, ns: str, name: str, phase: str) -> None:
    """What the ApplicationPersona controller owns, applied under its field manager (without argoCD)."""
    kube.patch(
        f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/{name}/status",
        {
            "apiVersion": "dorgu.io/v1",
            "kind": "ApplicationPersona",
            "metadata": {"name": name, "namespace": ns},
            "status": {
                "phase": phase,
                "health": {"status": "Healthy", "message": "1/1 replicas ready"},
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "Active",
                        "message": "ok",
                        "lastTransitionTime": "2026-01-01T00:00:00Z",
                    }
                ],
            },
        },
        content_type="application/apply-patch+yaml",
        params={"fieldManager": AP_MANAGER, "force": "true"},
    )


def status_of(kube: HarnessClient, ns: str, name: str) -> dict[str, Any]:
    return kube.get(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/{name}").get("status") or {}


def app_path(ns: str, name: str = "") -> str:
    return f"/apis/argoproj.io/v1alpha1/namespaces/{ns}/applications" + (f"/{name}" if name else "")


def create_app(
    kube: HarnessClient, ns: str, name: str, *, dest: str, labels: dict[str, str] | None = None
) -> None:
    kube.post(
        app_path(ns),
        {
            "apiVersion": "argoproj.io/v1alpha1",
            "kind": "Application",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {
                "project": "default",
                "destination": {"server": "https://kubernetes.default.svc", "namespace": dest},
                "source": {"repoURL": "https://example.com/repo.git", "path": ".", "targetRevision": "HEAD"},
            },
        },
    )


def set_app_status(kube: HarnessClient, ns: str, name: str, status: dict[str, Any]) -> None:
    """A plain update (the CRD has no status subresource)."""
    for _ in range(10):
        obj = kube.get(app_path(ns, name))
        obj["status"] = status
        try:
            kube.put(app_path(ns, name), obj)
            return
        except ApiError as e:
            if e.code != 409:
                raise
    raise AssertionError("could not update the Application")


def argo_of(kube: HarnessClient, ns: str, name: str) -> dict[str, Any] | None:
    return status_of(kube, ns, name).get("argoCD")


def test_follows_application_installed_later_and_never_clobbers(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str, ns2: str
) -> None:
    if crd_installed(kube):  # installed earlier in this session: remove it, the test installs it mid-run
        kube.delete(CRD_PATH)
        poll(lambda: crd_installed(kube), lambda x: not x, what="Argo CD CRD removed")
    persona(kube, namespace, "web")
    ap_controller_writes(kube, namespace, "web", "Active")
    settings = ArgoCDSettings(crd_poll_interval_s=0.2)
    with running(control_plane, lambda m: ArgoCDReconciler(manager=m, settings=settings)) as r:
        time.sleep(0.6)  # a few discovery polls without the CRD: no crash
        assert r.apps is None
        install_argo_crd(kube)
        poll(lambda: r.apps is not None and r.apps.has_synced(), bool, what="Application informer started")

        create_app(kube, ns2, "web-prod", dest=namespace, labels={"app.kubernetes.io/name": "web"})
        set_app_status(
            kube,
            ns2,
            "web-prod",
            {
                "sync": {"status": "Synced", "revision": "aaa111"},
                "health": {"status": "Progressing"},
                "operationState": {
                    "phase": "Succeeded",
                    "operation": {"sync": {}},
                    "startedAt": "2026-02-15T09:59:00Z",
                    "finishedAt": "2026-02-15T10:00:00Z",
                },
            },
        )
        # The Application exists (with no status) a moment before the test sets its status: the controller may
        # first mirror "Unknown"; wait for the status the test set.
        got = poll(
            lambda: argo_of(kube, namespace, "web"),
            lambda a: bool(a) and a.get("syncStatus") == "Synced",
            what="status.argoCD to mirror the Application's Synced status",
        )
        assert got == {
            "syncStatus": "Synced",
            "healthStatus": "Progressing",
            "revision": "aaa111",
            "lastSyncTime": "2026-02-15T10:00:00Z",
            "applicationName": "web-prod",
            "applicationNamespace": ns2,
        }

        # Sync/health/revision changes follow (multi-source revisions joined).
        set_app_status(
            kube,
            ns2,
            "web-prod",
            {
                "sync": {"status": "OutOfSync", "revisions": ["bbb222", "ccc333"]},
                "health": {"status": "Degraded"},
                "operationState": {
                    "phase": "Succeeded",
                    "operation": {"sync": {}},
                    "startedAt": "2026-02-15T10:04:00Z",
                    "finishedAt": "2026-02-15T10:05:00Z",
                },
            },
        )
        poll(
            lambda: argo_of(kube, namespace, "web"),
            lambda a: (
                a is not None
                and a["syncStatus"] == "OutOfSync"
                and a["healthStatus"] == "Degraded"
                and a["revision"] == "bbb222,ccc333"
                and a["lastSyncTime"] == "2026-02-15T10:05:00Z"
            ),
            what="status.argoCD to follow the Application's OutOfSync/Degraded status",
        )

        # The ApplicationPersona controller's fields survived; its next write leaves argoCD alone.
        st = status_of(kube, namespace, "web")
        assert st["phase"] == "Active" and st["health"]["status"] == "Healthy"
        ap_controller_writes(kube, namespace, "web", "Degraded")
        st = status_of(kube, namespace, "web")
        assert st["phase"] == "Degraded" and st["argoCD"]["syncStatus"] == "OutOfSync"
        managers = {
            m["manager"]
            for m in kube.get(f"/apis/dorgu.io/v1/namespaces/{namespace}/applicationpersonas/web")[
                "metadata"
            ]["managedFields"]
        }
        assert {AP_MANAGER, argocd.FIELD_MANAGER} <= managers

        # Argo CD touching the Application without changing what we report: no write.
        writes = r.writes
        obj = kube.get(app_path(ns2, "web-prod"))
        obj["status"]["reconciledAt"] = "2026-02-15T10:06:00Z"
        obj["metadata"].setdefault("annotations", {})["touched"] = "1"
        kube.put(app_path(ns2, "web-prod"), obj)
        time.sleep(1.0)
        assert r.writes == writes

        # Deleting the Application clears status.argoCD; the AP controller's fields stay.
        kube.delete(app_path(ns2, "web-prod"))
        poll(lambda: status_of(kube, namespace, "web"), lambda s: "argoCD" not in s, what="argoCD cleared")
        st = status_of(kube, namespace, "web")
        assert st["phase"] == "Degraded" and st["conditions"][0]["type"] == "Ready"


def test_binding_fallback_only_when_unambiguous(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str, ns2: str
) -> None:
    if not crd_installed(kube):
        install_argo_crd(kube)
    apps_ns = f"{ns2}"
    other = f"{namespace}-b"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        persona(kube, namespace, "api")
        persona(kube, other, "api-b", spec_name="api")
        persona(kube, other, "solo")
        synced = {"sync": {"status": "Synced", "revision": "r1"}, "health": {"status": "Healthy"}}
        settings = ArgoCDSettings(crd_poll_interval_s=0.2)
        with running(control_plane, lambda m: ArgoCDReconciler(manager=m, settings=settings)) as r:
            # Destination without a persona, two personas named "api" elsewhere: ambiguous, no binding.
            create_app(kube, apps_ns, "api-x", dest="nowhere", labels={"app": "api"})
            set_app_status(kube, apps_ns, "api-x", synced)
            # Unique across namespaces: the fallback binds (name from metadata.name, empty label skipped).
            create_app(kube, apps_ns, "solo", dest="nowhere", labels={"app.kubernetes.io/name": ""})
            set_app_status(kube, apps_ns, "solo", synced)
            poll(lambda: argo_of(kube, other, "solo"), bool, what="fallback binding of solo")
            time.sleep(0.5)
            assert argo_of(kube, namespace, "api") is None and argo_of(kube, other, "api-b") is None
            # Pointing the Application at a persona's namespace binds it there (and only there).
            obj = kube.get(app_path(apps_ns, "api-x"))
            obj["spec"]["destination"]["namespace"] = other
            kube.put(app_path(apps_ns, "api-x"), obj)
            poll(lambda: argo_of(kube, other, "api-b"), bool, what="binding in the destination namespace")
            assert argo_of(kube, namespace, "api") is None
            # A second persona named "solo" makes the fallback ambiguous: the binding is withdrawn.
            persona(kube, namespace, "solo")
            poll(
                lambda: argo_of(kube, other, "solo"), lambda a: a is None, what="ambiguous binding withdrawn"
            )
            assert r.writes >= 3
    finally:
        kube.delete(f"/api/v1/namespaces/{other}")
