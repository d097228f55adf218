"""The ClusterPersona controller: heuristics (pure) and discovery against a real API server.

Nodes are created through the API and their ``status`` written by the test (there is no kubelet); they
are deleted at the end so other tests see no nodes. Add-on workloads get their status the same way.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest

from controllers.clusterpersona import ClusterPersonaReconciler, ClusterPersonaSettings
from dorgu.domain import discovery as d
from dorgu.domain.kube import Node
from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.envtest.http import ApiError
from dorgu.runtime.conditions import DesiredCondition, set_status_conditions
from tests.controllers import cp_kit
from tests.controllers.cp_kit import running

_n = itertools.count()
DEADLINE_S = 90.0
"""How long a wait on the control plane may take before the test fails: a hang guard, never a speed claim
(how fast a node change reaches the status is ``bench/controller_latency.py``'s figure)."""

R = TypeVar("R")


def poll(fn: Callable[[], R], pred: Callable[[R], bool], *, timeout: float = DEADLINE_S, what: str) -> R:
    return cp_kit.poll(fn, pred, timeout=timeout, what=what)


def node(
    name: str, *, labels: dict[str, str] | None = None, provider_id: str | None = None, **status: Any
) -> Node:
    return msgspec.convert(
        {
            "metadata": {"name": name, "labels": labels or {}},
            "spec": {"providerID": provider_id},
            "status": status,
        },
        type=Node,
    )


# --------------------------------------------------------------------------- pure


@pytest.mark.parametrize(
    ("labels", "provider_id", "platform"),
    [
        ({"eks.amazonaws.com/nodegroup": "ng"}, "aws:///eu-west-1a/i-1", "EKS"),
        ({"cloud.google.com/gke-nodepool": "p"}, None, "GKE"),
        ({"kubernetes.azure.com/cluster": "c"}, None, "AKS"),
        ({"node.openshift.io/os_id": "rhcos"}, "aws:///eu-west-1a/i-1", "OpenShift"),  # not EKS: labels first
        ({"minikube.k8s.io/name": "minikube"}, None, "Minikube"),
        ({"kind.x-k8s.io/cluster": "kind"}, None, "Kind"),
        ({"k3s.io/hostname": "n"}, None, "K3s"),
        ({}, "aws:///x/i-1", "EKS"),
        ({}, "gce://p/z/n", "GKE"),
        ({}, "azure:///subscriptions/x", "AKS"),
        ({}, "kind://docker/kind/kind-control-plane", "Kind"),
        ({}, "k3s://node-1", "K3s"),
        ({"kubernetes.io/os": "linux"}, "openstack:///x", "Generic"),
    ],
)
def test_platform(labels: dict[str, str], provider_id: str | None, platform: str) -> None:
    assert d.detect_platform([node("n1", labels=labels, provider_id=provider_id)]) == platform


def test_platform_without_nodes_is_unknown() -> None:
    assert d.detect_platform([]) == "Unknown"


def test_node_info_and_summary() -> None:
    n = node(
        "a",
        labels={"node-role.kubernetes.io/control-plane": "", "kubernetes.azure.com/role": "agent", "x": "y"},
        capacity={"cpu": "4", "memory": "16374648Ki", "pods": "110", "ephemeral-storage": "100Gi"},
        allocatable={"cpu": "3900m", "memory": "16000000Ki", "pods": 110},
        conditions=[{"type": "Ready", "status": "True"}],
        nodeInfo={"kubeletVersion": "v1.20.2", "containerRuntimeVersion": "containerd://1.7.18"},
    )
    n = msgspec.structs.replace(
        n, spec=msgspec.convert({"taints": [{"key": "k", "effect": "NoSchedule"}]}, type=type(n.spec))
    )
    info = d.node_info(n)
    assert info.role == "control-plane" and info.ready and info.taints == ["k=:NoSchedule"]
    assert info.labels == {"node-role.kubernetes.io/control-plane": "", "kubernetes.azure.com/role": "agent"}
    assert info.capacity is not None and info.capacity.ephemeral_storage == "100Gi"
    assert info.allocatable is not None and info.allocatable.ephemeral_storage == "0"
    other = d.node_info(node("b", capacity={"cpu": "2000m", "memory": "1Gi", "pods": "10"}))
    assert other.role == "worker" and not other.ready
    s = d.resource_summary([info, other])
    # Running Pods are not counted: that would need cluster-wide Pod reads.
    assert (s.total_cpu, s.total_memory, s.total_pods, s.running_pods) == ("6", "17423224Ki", 120, None)
    assert d.resource_summary([]).total_cpu == "0"
    assert d.quantity_sum(["0", "500m", "1"]) == "1500m"


def test_image_tags() -> None:
    assert d.image_tag("quay.io/argoproj/argocd:v2.13.1") == "v2.13.1"
    assert d.image_tag("registry:5000/img") is None
    assert d.image_tag("registry:5000/img:1.2@sha256:abc") == "1.2"
    assert d.image_tag("img@sha256:abc") is None


def _w(
    kind: str,
    ns: str,
    name: str,
    labels: dict[str, str],
    containers: list[tuple[str, str]],
    healthy: bool = True,
) -> d.Workload:
    return d.Workload(
        kind=kind, namespace=ns, name=name, labels=labels, containers=tuple(containers), healthy=healthy
    )


def test_addons_version_from_own_container_and_health() -> None:
    found = {
        a.name: a
        for a in d.detect_addons(
            [
                _w(
                    "StatefulSet",
                    "obs",
                    "prometheus-k8s",
                    {"app.kubernetes.io/name": "prometheus"},
                    [
                        ("config-reloader", "quay.io/prometheus-operator/prometheus-config-reloader:v0.75.0"),
                        ("prometheus", "quay.io/prometheus/prometheus:v2.54.1"),
                    ],
                ),
                _w(
                    "Deployment",
                    "gitops",
                    "argocd-repo-server",
                    {"app.kubernetes.io/name": "argocd-repo-server"},
                    [("repo-server", "quay.io/argoproj/argocd:v2.13.1")],
                    healthy=False,
                ),
                _w(
                    "Deployment",
                    "gitops",
                    "argocd-server",
                    {"app.kubernetes.io/name": "argocd-server", "app.kubernetes.io/version": "v2.13.0"},
                    [("argocd-server", "quay.io/argoproj/argocd:v2.13.1")],
                ),
                _w(
                    "StatefulSet",
                    "dash",
                    "grafana",
                    {"app": "grafana"},
                    [("grafana", "grafana/grafana:11.1.0"), ("sidecar", "kiwigrid/k8s-sidecar:1.27.4")],
                ),
            ]
        )
    }
    assert (found["prometheus"].version, found["prometheus"].namespace) == ("v2.54.1", "obs")
    assert (found["argocd"].version, found["argocd"].healthy) == ("v2.13.0", False)  # repo-server not ready
    assert found["grafana"].installed and found["grafana"].version == "11.1.0"
    assert not found["cert-manager"].installed and found["cert-manager"].healthy is None
    assert "traefik" not in found  # optional add-ons are listed only when found
    assert [a.name for a in d.detect_addons([])][:7] == [
        "argocd",
        "prometheus",
        "grafana",
        "cert-manager",
        "ingress-nginx-controller",
        "external-secrets",
        "istiod",
    ]


def test_phase_and_conditions() -> None:
    ready, not_ready = d.NodeInfo(name="a", ready=True), d.NodeInfo(name="b", ready=False)
    assert d.phase_and_conditions([ready], {})[0] == "Ready"
    phase, conds = d.phase_and_conditions([ready, not_ready], {})
    assert (
        phase == "Degraded"
        and conds[1][:3] == ("Healthy", "False", "NodesNotReady")
        and conds[1][3] == "1/2 nodes ready"
    )
    assert d.phase_and_conditions([not_ready], {})[0] == "Unknown"
    phase, conds = d.phase_and_conditions([ready], {"namespaces": "Forbidden: no"})
    assert phase == "Degraded" and conds[0][:3] == ("Discovered", "False", "DiscoveryIncomplete")
    phase, conds = d.phase_and_conditions([], {"nodes": "boom"})
    assert phase == "Degraded" and conds[0][1:4] == ("False", "NodeDiscoveryFailed", "boom")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    first, _ = set_status_conditions(
        None, [DesiredCondition("Healthy", "True", "AllNodesReady", "1/1")], now=t0, observed_generation=1
    )
    later, _ = set_status_conditions(
        first,
        [DesiredCondition("Healthy", "True", "AllNodesReady", "2/2")],
        now=t0 + timedelta(1),
        observed_generation=1,
    )
    assert later[0].message == "2/2" and later[0].last_transition_time == t0
    flipped, _ = set_status_conditions(
        later,
        [DesiredCondition("Healthy", "False", "NodesNotReady", "1/2")],
        now=t0 + timedelta(2),
        observed_generation=2,
    )
    assert flipped[0].last_transition_time == t0 + timedelta(2)


# --------------------------------------------------------------------------- real API server

CP = "/apis/dorgu.io/v1/clusterpersonas"


def make_node(
    kube: HarnessClient,
    name: str,
    *,
    ready: bool,
    labels: dict[str, str] | None = None,
    provider_id: str | None = None,
) -> None:
    spec = {"providerID": provider_id} if provider_id else {}
    kube.post(
        "/api/v1/nodes",
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": labels or {}},
            "spec": spec,
        },
    )
    set_ready(kube, name, ready)


def set_ready(kube: HarnessClient, name: str, ready: bool) -> None:
    obj = kube.get(f"/api/v1/nodes/{name}")
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj["status"] = {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
        "conditions": [
            {
                "type": "Ready",
                "status": "True" if ready else "False",
                "reason": "Test",
                "lastHeartbeatTime": now,
                "lastTransitionTime": now,
            }
        ],
        "nodeInfo": {
            "kubeletVersion": "v1.20.2",
            "containerRuntimeVersion": "containerd://1.7.18",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": "",
            "osImage": "",
            "operatingSystem": "linux",
            "architecture": "amd64",
            "kubeProxyVersion": "",
        },
    }
    kube.put(f"/api/v1/nodes/{name}/status", obj)


def delete_node(kube: HarnessClient, name: str) -> None:
    try:
        kube.delete(f"/api/v1/nodes/{name}")
    except ApiError as e:
        if e.code != 404:
            raise


def cluster_status(kube: HarnessClient, name: str) -> dict[str, Any]:
    return kube.get(f"{CP}/{name}").get("status") or {}


@pytest.fixture
def nodes(kube: HarnessClient) -> Iterator[list[str]]:
    """Names of the nodes a test creates; all deleted afterwards."""
    made: list[str] = []
    yield made
    for name in made:
        delete_node(kube, name)


@pytest.fixture
def cluster_persona(kube: HarnessClient) -> Iterator[str]:
    name = f"cp-{os.getpid()}-{next(_n)}"
    kube.post(
        CP,
        {
            "apiVersion": "dorgu.io/v1",
            "kind": "ClusterPersona",
            "metadata": {"name": name},
            "spec": {"name": name},
        },
    )
    yield name
    kube.delete(f"{CP}/{name}")


FAST = ClusterPersonaSettings(discovery_interval_s=300, node_debounce_s=0.2, bootstrap=False)


def test_node_events_health_and_platforms(
    control_plane: ControlPlane, kube: HarnessClient, cluster_persona: str, nodes: list[str]
) -> None:
    pid = os.getpid()
    a, b = f"cpa-{pid}", f"cpb-{pid}"
    with running(control_plane, lambda m: ClusterPersonaReconciler(manager=m, settings=FAST)) as r:
        first = poll(
            lambda: cluster_status(kube, cluster_persona), lambda s: "phase" in s, what="first discovery"
        )
        assert first["kubernetesVersion"].startswith("v1.20")
        assert first["namespaces"]["total"] >= 4

        nodes.append(a)
        make_node(kube, a, ready=True, labels={"kind.x-k8s.io/cluster": "kind"})
        s = poll(
            lambda: cluster_status(kube, cluster_persona),
            lambda s: s.get("nodeCount") == 1 and s["phase"] == "Ready",
            what="discovery after a node was added (nodeCount 1, Ready)",
        )
        assert s["platform"] == "Kind" and s["resourceSummary"]["totalCPU"] == "4"
        healthy = {c["type"]: c for c in s["conditions"]}["Healthy"]
        assert (healthy["status"], healthy["message"]) == ("True", "1/1 nodes ready")
        table = kube.table("dorgu.io/v1", "ClusterPersona")
        row = next(row["cells"] for row in table["rows"] if row["cells"][0] == cluster_persona)
        nodes_col = [c["name"] for c in table["columnDefinitions"]].index("Nodes")
        assert row[nodes_col] == 1

        # Two nodes, one NotReady → Degraded, Healthy=False (the node's status update alone triggers it).
        nodes.append(b)
        make_node(kube, b, ready=False)
        s = poll(
            lambda: cluster_status(kube, cluster_persona),
            lambda s: s.get("nodeCount") == 2 and s["phase"] == "Degraded",
            what="Degraded with one NotReady node",
        )
        healthy = {c["type"]: c for c in s["conditions"]}["Healthy"]
        assert (healthy["status"], healthy["reason"], healthy["message"]) == (
            "False",
            "NodesNotReady",
            "1/2 nodes ready",
        )
        assert s["resourceSummary"]["totalMemory"] == "16Gi"

        # A single NotReady node: none Ready gives phase Unknown.
        delete_node(kube, b)
        set_ready(kube, a, False)
        poll(
            lambda: cluster_status(kube, cluster_persona),
            lambda s: s.get("nodeCount") == 1 and s["phase"] == "Unknown",
            what="Unknown with a single NotReady node",
        )

        # Platform by raw labels (a label change re-discovers).
        for labels, platform in [
            ({"eks.amazonaws.com/nodegroup": "ng"}, "EKS"),
            ({"cloud.google.com/gke-nodepool": "p"}, "GKE"),
            ({"kubernetes.azure.com/cluster": "c"}, "AKS"),
            ({"node.openshift.io/os_id": "rhcos"}, "OpenShift"),
            ({"minikube.k8s.io/name": "m"}, "Minikube"),
            ({"k3s.io/hostname": "h"}, "K3s"),
            ({}, "Generic"),
        ]:
            obj = kube.get(f"/api/v1/nodes/{a}")
            obj["metadata"]["labels"] = {"kubernetes.io/os": "linux", **labels}
            kube.put(f"/api/v1/nodes/{a}", obj)
            poll(
                lambda: cluster_status(kube, cluster_persona),
                lambda s, p=platform: s.get("platform") == p,
                what=f"platform {platform}",
            )
        # Platform by providerID (immutable: a node each; node a has none and no platform labels).
        for provider_id, platform in [
            ("aws:///eu-west-1a/i-1", "EKS"),
            ("k3s://h", "K3s"),
            ("gce://p/z/n", "GKE"),
        ]:
            name = f"cpz-{pid}-{platform.lower()}"
            nodes.append(name)
            make_node(kube, name, ready=True, provider_id=provider_id)
            poll(
                lambda: cluster_status(kube, cluster_persona),
                lambda s, p=platform: s.get("platform") == p,
                what=f"platform {platform} from providerID",
            )
            delete_node(kube, name)
        assert r.passes >= 10


def _deployment(
    ns: str, name: str, labels: dict[str, str], containers: list[tuple[str, str]]
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": ns, "labels": labels},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"x": name}},
            "template": {
                "metadata": {"labels": {"x": name}},
                "spec": {"containers": [{"name": c, "image": i} for c, i in containers]},
            },
        },
    }


def test_addons_in_any_namespace_and_bootstrap(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str
) -> None:
    ns = namespace
    kube.post(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        _deployment(
            ns,
            "argocd-server",
            {"app.kubernetes.io/name": "argocd-server", "app.kubernetes.io/part-of": "argocd"},
            [("argocd-server", "quay.io/argoproj/argocd:v2.13.1")],
        ),
    )
    kube.post(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        _deployment(
            ns,
            "certs",
            {"app.kubernetes.io/name": "cert-manager", "app.kubernetes.io/version": "v1.16.2"},
            [("cert-manager-controller", "quay.io/jetstack/cert-manager-controller:v1.16.2")],
        ),
    )
    obj = kube.get(f"/apis/apps/v1/namespaces/{ns}/deployments/argocd-server")
    obj["status"] = {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 1}
    kube.put(f"/apis/apps/v1/namespaces/{ns}/deployments/argocd-server/status", obj)
    kube.post(
        f"/apis/apps/v1/namespaces/{ns}/deployments",
        _deployment(
            ns,
            "grafana",
            {"app.kubernetes.io/name": "grafana"},
            [("grafana", "grafana/grafana:11.1.0"), ("sidecar", "kiwigrid/k8s-sidecar:1.27.4")],
        ),
    )
    # A bare Pod is never read (Pods are not listed at all): its add-on label finds nothing.
    kube.post(
        f"/api/v1/namespaces/{ns}/pods",
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "traefik-0", "labels": {"app.kubernetes.io/name": "traefik"}},
            "spec": {"containers": [{"name": "traefik", "image": "traefik:v3.1"}]},
        },
    )

    # Bootstrap: with no ClusterPersona, one is created at start-up (others' leftovers removed first).
    for item in kube.get(CP)["items"]:
        kube.delete(f"{CP}/{item['metadata']['name']}")
    poll(lambda: kube.get(CP)["items"], lambda items: not items, what="no ClusterPersonas")
    name = f"boot-{os.getpid()}"
    settings = ClusterPersonaSettings(discovery_interval_s=300, node_debounce_s=0.2, bootstrap_name=name)
    try:
        with running(control_plane, lambda m: ClusterPersonaReconciler(manager=m, settings=settings)):
            s = poll(
                lambda: cluster_status(kube, name),
                lambda s: "addons" in s,
                what="bootstrapped ClusterPersona",
            )
            addons = {a["name"]: a for a in s["addons"]}
            assert addons["argocd"] == {
                "name": "argocd",
                "type": "gitops",
                "installed": True,
                "version": "v2.13.1",
                "namespace": ns,
                "healthy": True,
            }
            assert (
                addons["cert-manager"]["version"] == "v1.16.2" and addons["cert-manager"]["healthy"] is False
            )
            assert addons["grafana"]["version"] == "11.1.0" and addons["grafana"]["namespace"] == ns
            assert addons["prometheus"]["installed"] is False
            assert "traefik" not in addons
            assert s["nodeCount"] == 0 and s["phase"] == "Unknown" and s["platform"] == "Unknown"
            assert kube.get(f"{CP}/{name}")["spec"]["name"] == name
    finally:
        kube.delete(f"{CP}/{name}")


RBAC = "/apis/rbac.authorization.k8s.io/v1"


class _As:
    """A control plane whose ``connection()`` authenticates with ``token`` (for :func:`running`)."""

    def __init__(self, cp: ControlPlane, token: str) -> None:
        self.cp, self.token = cp, token

    def connection(self, *, user_agent: str = "dorgu-test") -> Any:
        return self.cp.connection(token=self.token, user_agent=user_agent)


def _discovery_rules(*, namespaces: bool) -> list[dict[str, Any]]:
    """What the ClusterPersona controller needs (no events, no bootstrap), ``list namespaces`` optional. No
    Pods: a full discovery never reads one."""
    core = ["nodes", *(["namespaces"] if namespaces else [])]
    return [
        {"apiGroups": ["dorgu.io"], "resources": ["clusterpersonas", "applicationpersonas"],
         "verbs": ["get", "list", "watch"]},
        {"apiGroups": ["dorgu.io"], "resources": ["clusterpersonas/status"], "verbs": ["patch"]},
        {"apiGroups": ["apps"], "resources": ["deployments", "statefulsets", "daemonsets"],
         "verbs": ["list"]},
        {"apiGroups": [""], "resources": core, "verbs": ["list", "watch"]},
    ]  # fmt: skip


def test_failed_discovery_step_keeps_old_value_and_recovers(
    control_plane: ControlPlane,
    kube: HarnessClient,
    namespace: str,
    cluster_persona: str,
    nodes: list[str],
) -> None:
    """A real Forbidden on one step (LIST namespaces): Discovered=False/DiscoveryIncomplete naming it, the
    step's old value and the other steps' values kept, Ready → Degraded; granted back, it recovers."""
    role = f"cp-discovery-{os.getpid()}-{next(_n)}"
    token = control_plane.service_account_token(namespace, "discoverer")
    nodes.append(f"cpr-{os.getpid()}")
    make_node(kube, nodes[0], ready=True)

    def set_rules(*, namespaces: bool) -> None:
        obj = kube.get(f"{RBAC}/clusterroles/{role}")
        obj["rules"] = _discovery_rules(namespaces=namespaces)
        kube.put(f"{RBAC}/clusterroles/{role}", obj)

    def discovered(s: dict[str, Any]) -> dict[str, Any]:
        return {c["type"]: c for c in s.get("conditions") or []}.get("Discovered") or {}

    kube.post(f"{RBAC}/clusterroles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": role}, "rules": _discovery_rules(namespaces=True),
    })  # fmt: skip
    kube.post(f"{RBAC}/clusterrolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": role},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
        "subjects": [{"kind": "ServiceAccount", "name": "discoverer", "namespace": namespace}],
    })  # fmt: skip
    settings = ClusterPersonaSettings(discovery_interval_s=0.3, node_debounce_s=0.1, bootstrap=False)
    cp = _As(control_plane, token)
    try:
        with running(cp, lambda m: ClusterPersonaReconciler(manager=m, settings=settings)) as r:  # type: ignore[arg-type]
            ok = poll(
                lambda: cluster_status(kube, cluster_persona),
                lambda s: s.get("phase") == "Ready" and discovered(s).get("status") == "True",
                what="a full discovery with every permission",
            )
            assert ok["namespaces"]["total"] >= 4

            # Take away LIST namespaces: that step fails for real (403), the others still run.
            set_rules(namespaces=False)
            s = poll(
                lambda: cluster_status(kube, cluster_persona),
                lambda s: discovered(s).get("status") == "False",
                what="Discovered=False without list namespaces",
            )
            cond = discovered(s)
            assert cond["reason"] == "DiscoveryIncomplete", cond
            assert "namespaces: Forbidden" in cond["message"], cond
            assert not any(f"{step}:" in cond["message"] for step in ("applicationPersonas", "addons")), cond
            assert s["phase"] == "Degraded"  # Ready (every node ready) becomes Degraded
            healthy = {c["type"]: c for c in s["conditions"]}["Healthy"]
            assert (healthy["status"], healthy["reason"]) == ("True", "AllNodesReady")
            assert s["nodeCount"] == 1 and s["kubernetesVersion"].startswith("v1.20")
            assert s["resourceSummary"]["totalCPU"] == "4" and s["resourceSummary"]["totalPods"] == 110
            assert {a["name"] for a in s["addons"]} >= {"argocd", "prometheus"}
            assert "applicationCount" in s

            # The failed step's old value stays, pass after pass, although a namespace is added meanwhile.
            kept = s["namespaces"]
            assert kept["total"] >= 4
            extra = f"{namespace}-x"
            kube.post(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": extra}}
            )
            try:
                seen = r.passes
                poll(lambda: r.passes, lambda n: n >= seen + 3, what="three more passes")
                s = cluster_status(kube, cluster_persona)
                assert discovered(s)["status"] == "False" and s["namespaces"] == kept

                # Grant it back: the next periodic discovery recovers.
                set_rules(namespaces=True)
                s = poll(
                    lambda: cluster_status(kube, cluster_persona),
                    lambda s: discovered(s).get("status") == "True",
                    what="Discovered=True after list namespaces is granted again",
                )
                assert discovered(s)["reason"] == "DiscoveryComplete" and s["phase"] == "Ready"
                assert s["namespaces"]["total"] >= 5
            finally:
                kube.delete(f"/api/v1/namespaces/{extra}")
    finally:
        for kind in ("clusterrolebindings", "clusterroles"):
            try:
                kube.delete(f"{RBAC}/{kind}/{role}")
            except ApiError as e:
                if e.code != 404:
                    raise
