"""The ApplicationPersona controller against the real control plane (tests write Deployment status)."""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from controllers.applicationpersona import ApplicationPersonaReconciler, PersonaSettings
from dorgu.domain.resources import APPLICATION_PERSONAS
from dorgu.domain.types import ApplicationPersona
from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.runtime.client import ApiClient
from dorgu.runtime.controller import Request
from dorgu.runtime.manager import Manager
from dorgu.runtime.resource import DEPLOYMENTS
from tests.builders import deployment
from tests.runtime.kit import LoopThread, bounded_gather, wait_until

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
DEP = "/apis/apps/v1/namespaces/{ns}/deployments"
_ns = itertools.count()


def persona(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": name},
        "spec": {"name": name, "type": "api", **spec},
    }


def set_deployment_status(
    kube: HarnessClient, ns: str, name: str, *, ready: int, total: int, available: bool
) -> None:
    kube.patch(
        f"{DEP.format(ns=ns)}/{name}/status",
        {
            "status": {
                "replicas": total,
                "readyReplicas": ready,
                "availableReplicas": ready,
                "conditions": [
                    {"type": "Available", "status": "True" if available else "False", "reason": "Test"},
                    {"type": "Progressing", "status": "True", "reason": "Test"},
                ],
            }
        },
    )


@pytest.fixture
def ns(kube: HarnessClient) -> Iterator[str]:
    name = f"ap-{next(_ns)}-{int(time.time()) % 100000}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


class Running:
    """The controller running in-process (no leader election) in a LoopThread."""

    def __init__(self, cp: ControlPlane, settings: PersonaSettings) -> None:
        self.loop = LoopThread()
        self.stop = asyncio.Event()

        async def setup() -> None:
            self.manager = Manager(connection=cp.connection(user_agent="ap-test"))
            self.reconciler = ApplicationPersonaReconciler(manager=self.manager, settings=settings)
            self.task = asyncio.ensure_future(self.manager.run(self.stop))

        self.loop.run(setup())

    def close(self) -> None:
        self.loop.call(self.stop.set)
        time.sleep(0.2)
        self.loop.close()


@pytest.fixture
def running(control_plane: ControlPlane) -> Iterator[Running]:
    r = Running(control_plane, PersonaSettings(revalidate_interval_s=1.0, heartbeat_interval_s=3600))
    yield r
    r.close()


def status(kube: HarnessClient, ns: str, name: str) -> dict[str, Any]:
    return kube.get(f"{AP.format(ns=ns)}/{name}").get("status") or {}


def test_original_e2e_expectations(kube: HarnessClient, ns: str, running: Running) -> None:
    limits = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": "500m", "memory": "512Mi"}}
    kube.post(
        AP.format(ns=ns), persona("test-app", resources=limits, scaling={"minReplicas": 1, "maxReplicas": 3})
    )
    wait_until(lambda: status(kube, ns, "test-app").get("phase"), what="test-app to get a phase")
    kube.post(
        AP.format(ns=ns),
        persona("validated-app", resources=limits, scaling={"minReplicas": 1, "maxReplicas": 3}),
    )
    kube.post(DEP.format(ns=ns), deployment("validated-app", replicas=1))
    wait_until(
        lambda: status(kube, ns, "validated-app").get("validation", {}).get("passed") is True,
        what="validated-app to pass",
    )


def test_pending_degraded_active_and_recovery(kube: HarnessClient, ns: str, running: Running) -> None:
    kube.post(AP.format(ns=ns), persona("shop", scaling={"minReplicas": 2}, policies={"security": {}}))
    wait_until(lambda: status(kube, ns, "shop").get("phase") == "Pending", what="Pending")
    st = status(kube, ns, "shop")
    assert st["health"] == {
        "status": "Unknown",
        "lastCheck": st["health"]["lastCheck"],
        "message": "No matching Deployment found",
    }
    ready = {c["type"]: c for c in st["conditions"]}["Ready"]
    assert (ready["status"], ready["reason"]) == ("False", "NoDeployment")
    assert ready["message"] == "No Deployment with label app.kubernetes.io/name=shop"

    kube.post(DEP.format(ns=ns), deployment("shop", replicas=1))
    set_deployment_status(kube, ns, "shop", ready=1, total=1, available=True)

    def degraded() -> bool:
        st = status(kube, ns, "shop")
        issues = st.get("validation", {}).get("issues", [])
        return st.get("phase") == "Degraded" and any(i["field"] == "spec.replicas" for i in issues)

    wait_until(degraded, what="Degraded (replicas below minimum)")
    st = status(kube, ns, "shop")
    assert st["validation"]["passed"] is False  # written, not omitted
    issue = next(i for i in st["validation"]["issues"] if i["field"] == "spec.replicas")
    assert issue == {
        "severity": "error",
        "field": "spec.replicas",
        "message": "Deployment replicas (1) below persona minimum (2)",
        "suggestion": "Set replicas to at least 2",
        "deployment": "shop",
    }
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Validated"]["message"] == "1 validation error(s) found"
    assert st["observedGeneration"] == 1 and conds["Validated"]["observedGeneration"] == 1

    kube.patch(f"{DEP.format(ns=ns)}/shop", {"spec": {"replicas": 2}})
    set_deployment_status(kube, ns, "shop", ready=2, total=2, available=True)
    wait_until(lambda: status(kube, ns, "shop").get("phase") == "Active", what="recovery to Active")
    st = status(kube, ns, "shop")
    assert st["validation"]["passed"] is True and "issues" not in st["validation"]
    assert st["health"]["message"] == "2/2 replicas ready"
    assert st["deployments"] == {"current": "nginx:1.27"}
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["Ready"]["message"] == "Deployment is healthy and passes all validations"


def test_every_matching_deployment_is_validated_by_name(
    kube: HarnessClient, ns: str, running: Running
) -> None:
    kube.post(AP.format(ns=ns), persona("multi", policies={"security": {}}))
    kube.post(DEP.format(ns=ns), deployment("multi-b", app="multi", pod_security={}))
    kube.post(DEP.format(ns=ns), deployment("multi-a", app="multi", label="app", pod_security={}))

    def both() -> bool:
        issues = status(kube, ns, "multi").get("validation", {}).get("issues", [])
        return [i["deployment"] for i in issues if i["field"].endswith("runAsNonRoot")] == [
            "multi-a",
            "multi-b",
        ]

    wait_until(both, what="issues for both Deployments, in name order")


def test_deployment_change_and_foreign_status_survive(kube: HarnessClient, ns: str, running: Running) -> None:
    kube.post(AP.format(ns=ns), persona("web"))
    kube.post(DEP.format(ns=ns), deployment("web"))
    wait_until(
        lambda: status(kube, ns, "web").get("deployments", {}).get("current") == "nginx:1.27", what="image"
    )
    argo = {"syncStatus": "Synced", "healthStatus": "Healthy", "revision": "abc123", "applicationName": "web"}
    kube.patch(
        f"{AP.format(ns=ns)}/web/status",
        {
            "apiVersion": "dorgu.io/v1",
            "kind": "ApplicationPersona",
            "metadata": {"name": "web", "namespace": ns},
            "status": {"argoCD": argo},
        },
        content_type="application/apply-patch+yaml",
        params={"fieldManager": "dorgu-argocd", "force": "true"},
    )
    kube.patch(
        f"{DEP.format(ns=ns)}/web",
        {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}},
        content_type="application/strategic-merge-patch+json",
    )
    wait_until(
        lambda: status(kube, ns, "web").get("deployments", {}).get("current") == "nginx:1.28", what="change"
    )
    time.sleep(1.5)  # a few more reconciles (re-validation every second)
    assert status(kube, ns, "web")["argoCD"] == argo


def test_invalid_quantity_is_an_error_issue_not_a_crash(control_plane: ControlPlane) -> None:
    """The CRD's pattern keeps `lots` out of the cluster; a persona that got in anyway (an older CRD, a
    hand-edited etcd) must still yield an issue. The server cannot be made to store it, so this drives the
    reconciler's status computation directly."""
    import msgspec

    from dorgu.domain.kube import Deployment
    from dorgu.domain.types import ApplicationPersona, ApplicationPersonaStatus

    p = msgspec.convert(
        {
            **persona("bad", resources={"limits": {"cpu": "lots"}}),
            "metadata": {"name": "bad", "namespace": "x"},
        },
        ApplicationPersona,
    )
    d = msgspec.convert(
        {
            **deployment("bad"),
            "metadata": {"name": "bad", "namespace": "x", "labels": {"app.kubernetes.io/name": "bad"}},
        },
        Deployment,
    )
    loop = LoopThread()
    try:

        async def compute() -> Any:
            m = Manager(connection=control_plane.connection())
            r = ApplicationPersonaReconciler(manager=m, settings=PersonaSettings())
            from datetime import UTC, datetime

            out = r.desired_status(p, [d], ApplicationPersonaStatus(), datetime(2026, 1, 1, tzinfo=UTC))
            await m.client.close()
            return out

        st = loop.run(compute())
    finally:
        loop.close()
    assert st.validation.passed is False
    bad = [i for i in st.validation.issues if i.field == "spec.resources.limits.cpu"]
    assert bad and bad[0].severity == "error"


def test_settled_personas_cause_no_write_storm(
    control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    n = 1000
    loop = LoopThread()
    try:

        async def seed() -> None:
            async with ApiClient(control_plane.connection()) as c:
                await bounded_gather(
                    [c.create(APPLICATION_PERSONAS, persona(f"p{i}"), namespace=ns) for i in range(n)]
                )
                await bounded_gather(
                    [
                        c.create(DEPLOYMENTS, deployment(f"p{i}", replicas=1), namespace=ns)
                        for i in range(0, n, 10)
                    ]
                )

        loop.run(seed(), timeout=300)
    finally:
        loop.close()
    r = Running(
        control_plane, PersonaSettings(revalidate_interval_s=0.5, heartbeat_interval_s=3600, workers=8)
    )
    try:
        with_deployment = {f"p{i}" for i in range(0, n, 10)}

        def final(item: dict) -> bool:
            # A persona reconciled before its Deployment reached the cache is first written Pending and
            # rewritten once the Deployment arrives: "settled" means every persona shows its final phase.
            phase = (item.get("status") or {}).get("phase")
            if item["metadata"]["name"] in with_deployment:
                return phase not in (None, "Pending")
            return phase == "Pending"

        def settled() -> bool:
            items = kube.get(AP.format(ns=ns))["items"]
            return len(items) == n and all(final(i) for i in items)

        wait_until(settled, timeout=240, what="1,000 personas to show their final phase")
        rv = kube.get(AP.format(ns=ns))["metadata"]["resourceVersion"]
        writes_before = r.loop.call(lambda: r.reconciler.writes)
        time.sleep(3.0)  # six re-validation periods
        # Count from a watch: every status write would be a MODIFIED event.
        raw = kube.request_raw(
            "GET", AP.format(ns=ns), params={"watch": "1", "resourceVersion": rv, "timeoutSeconds": "1"}
        )
        modified = [json.loads(line) for line in raw.splitlines() if line.strip()]
        reconciles = r.loop.call(lambda: r.reconciler.writes) - writes_before
        print(f"\nsettled: {len(modified)} watch events and {reconciles} writes over 3 s for {n} personas")
        assert modified == [] and reconciles == 0
    finally:
        r.close()


def test_no_second_write_while_the_cache_lags_behind_our_own_write(
    control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    """A re-validation that runs before the persona cache shows the controller's own last status write must
    not write again (under load the cache lags: this was the write the no-write-storm test caught as a
    request that changed nothing at the server). Once the cache shows the write, it is the judge again: a
    status changed by someone else is corrected.

    The cache is driven by hand (the informer is not started) so the lag is exact and deterministic; every
    write goes to the real server."""
    kube.post(AP.format(ns=ns), persona("lag"))
    key = f"{ns}/lag"

    def cached(obj: dict[str, Any]) -> ApplicationPersona:
        return msgspec.json.decode(msgspec.json.encode(obj), type=ApplicationPersona)

    async def scenario() -> list[int]:
        manager = Manager(connection=control_plane.connection(user_agent="ap-lag-test"))
        try:
            r = ApplicationPersonaReconciler(manager=manager, settings=PersonaSettings())
            store = r.personas.store
            writes = []
            store.put(key, cached(kube.get(f"{AP.format(ns=ns)}/lag")))
            await r.reconcile(Request(ns, "lag"))  # first status: Pending
            writes.append(r.writes)
            await r.reconcile(Request(ns, "lag"))  # the cache still shows no status at all
            writes.append(r.writes)
            server = kube.get(f"{AP.format(ns=ns)}/lag")
            assert server["status"]["phase"] == "Pending"
            store.put(key, cached(server))  # the cache catches up
            await r.reconcile(Request(ns, "lag"))
            writes.append(r.writes)
            # Someone else rewrites a field this controller owns; the cache shows it: corrected.
            kube.patch(
                f"{AP.format(ns=ns)}/lag/status",
                {"status": {"phase": "Active"}},
                content_type="application/merge-patch+json",
            )
            store.put(key, cached(kube.get(f"{AP.format(ns=ns)}/lag")))
            await r.reconcile(Request(ns, "lag"))
            writes.append(r.writes)
            return writes
        finally:
            await manager.client.close()

    assert asyncio.run(scenario()) == [1, 1, 1, 2]
    assert status(kube, ns, "lag")["phase"] == "Pending"


def test_status_payload_is_what_the_spec_shows(kube: HarnessClient, ns: str, running: Running) -> None:
    """The worked nginx example: a Deployment whose only problems are pod runAsNonRoot (error) and
    read-only root."""
    kube.post(AP.format(ns=ns), persona("nginx", policies={"security": {}}))
    d = deployment("nginx", container={"securityContext": {}}, pod_security={})
    kube.post(DEP.format(ns=ns), d)
    set_deployment_status(kube, ns, "nginx", ready=2, total=2, available=True)
    wait_until(lambda: status(kube, ns, "nginx").get("phase") == "Degraded", what="Degraded")
    st = copy.deepcopy(status(kube, ns, "nginx"))
    assert [(i["severity"], i["field"]) for i in st["validation"]["issues"]] == [
        ("error", "spec.template.spec.securityContext.runAsNonRoot"),
        ("warning", "containers[app].securityContext.readOnlyRootFilesystem"),
    ]
    assert st["health"]["status"] == "Healthy"
    conds = {c["type"]: c for c in st["conditions"]}
    assert (conds["Ready"]["reason"], conds["Ready"]["message"]) == ("Issues", "Phase: Degraded")
    assert conds["Validated"]["reason"] == "ValidationFailed"


def test_a_relist_of_unchanged_deployments_queues_no_reconcile(
    control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    """A relist hands every cached Deployment to the handlers again; only one whose resourceVersion moved
    queues its persona. The Deployment cache's relist step is run directly (a real LIST against the real
    server): the server cannot be made to break one watch on demand."""
    names = [f"app{i}" for i in range(5)]
    for name in names:
        kube.post(AP.format(ns=ns), persona(name))
        kube.post(DEP.format(ns=ns), deployment(name))
    r = Running(control_plane, PersonaSettings(revalidate_interval_s=3600, heartbeat_interval_s=3600))
    try:
        wait_until(
            lambda: all(status(kube, ns, n).get("deployments", {}).get("current") for n in names),
            what="every persona validated against its Deployment",
        )
        controller = r.reconciler.controller
        inner = controller.reconcile
        seen: list[str] = []

        async def counted(req: Request) -> Any:
            if req.namespace == ns:
                seen.append(req.name)
            return await inner(req)

        r.loop.call(lambda: setattr(controller, "reconcile", counted))
        lists = r.loop.call(lambda: r.reconciler.deployments.lists)
        r.loop.run(r.reconciler.deployments._list())  # the relist, as after a broken watch
        assert r.loop.call(lambda: r.reconciler.deployments.lists) == lists + 1
        # A change after the relist: once its persona has been reconciled, anything the relist queued
        # before it has been too (the queue is first in, first out).
        kube.patch(
            f"{DEP.format(ns=ns)}/app3",
            {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "nginx:1.28"}]}}}},
            content_type="application/strategic-merge-patch+json",
        )
        wait_until(lambda: "app3" in seen, what="the changed Deployment's persona reconciled")
        wait_until(
            lambda: status(kube, ns, "app3").get("deployments", {}).get("current") == "nginx:1.28",
            what="the change in the status",
        )
        assert set(seen) == {"app3"}
    finally:
        r.close()
