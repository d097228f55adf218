"""Pure cluster-discovery heuristics of the ClusterPersona status (no I/O; unit-testable).

The ClusterPersona controller (:mod:`controllers.clusterpersona`) reads the API; this module turns what it
read into the status fields:

* **Nodes**: each Node's readiness, role, capacity, taints and the labels worth keeping.
* **Platform**: the label check runs on the **raw** node labels (not the filtered copy the status keeps,
  which would hide most platform labels); then the first ``spec.providerID``; then ``Generic``; ``Unknown``
  without nodes. Nodes are looked at in name order, rules in table order, so the result never depends on
  map iteration order.
* **Add-ons**: found by their well-known labels on Deployments, StatefulSets and DaemonSets in **any**
  namespace — never on Pods: reading Pods cluster-wide would expose every Pod's environment values, and an
  add-on runs from one of these workloads. The version comes from ``app.kubernetes.io/version`` or from the
  image tag of the add-on's own container (never a sidecar's); health from the workload's ready replicas
  (all of the add-on's workloads in the namespace where it was found).
* **Resource summary**: node capacity and allocatable only. Running Pods are not counted
  (``runningPods`` stays unset): counting them would need the same cluster-wide Pod reads.
* **Phase and conditions**: the desired ``Discovered`` and ``Healthy`` conditions (the caller sets them with
  :func:`~dorgu.runtime.conditions.set_status_conditions`). A failed discovery step makes
  ``Discovered=False`` and the phase at least ``Degraded``; it never hides behind a ``Ready``.
* **Quantities** are summed and printed with :mod:`dorgu.domain.quantity`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

import msgspec

from dorgu.domain.kube import Node
from dorgu.domain.quantity import Format, Quantity, QuantityError, parse_quantity
from dorgu.domain.resources import APP_LABEL, NAME_LABEL
from dorgu.domain.types import AddonInfo, NodeInfo, NodeResources, ResourceSummary
from dorgu.runtime.conditions import DesiredCondition
from dorgu.runtime.meta import ObjectMeta

# --------------------------------------------------------------------------- nodes

_KEPT_PREFIXES = (
    "node.kubernetes.io/",
    "topology.kubernetes.io/",
    "kubernetes.io/arch",
    "kubernetes.io/os",
    "node-role.kubernetes.io/",
)
CONTROL_PLANE_LABELS = ("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master")


def filter_labels(labels: Mapping[str, str] | None) -> dict[str, str] | None:
    """The node labels the status keeps (well-known prefixes, or any key containing ``role``)."""
    kept = {k: v for k, v in (labels or {}).items() if k.startswith(_KEPT_PREFIXES) or "role" in k}
    return kept or None


def node_ready(node: Node) -> bool:
    conditions = (node.status.conditions if node.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def _canonical_or_zero(resources: Mapping[str, int | str] | None, key: str) -> str:
    value = (resources or {}).get(key)
    if value is None:
        return "0"
    try:
        return parse_quantity(value).canonical()
    except QuantityError:
        return "0"


def _node_resources(resources: Mapping[str, int | str] | None) -> NodeResources:
    return NodeResources(
        cpu=_canonical_or_zero(resources, "cpu"),
        memory=_canonical_or_zero(resources, "memory"),
        pods=_canonical_or_zero(resources, "pods"),
        ephemeral_storage=_canonical_or_zero(resources, "ephemeral-storage"),
    )


def node_info(node: Node) -> NodeInfo:
    labels = node.metadata.labels or {}
    status = node.status
    info = status.node_info if status else None
    taints = [
        f"{t.key}={t.value or ''}:{t.effect}" for t in ((node.spec.taints if node.spec else None) or [])
    ]
    return NodeInfo(
        name=node.metadata.name or "",
        ready=node_ready(node),
        role="control-plane" if any(k in labels for k in CONTROL_PLANE_LABELS) else "worker",
        capacity=_node_resources(status.capacity if status else None),
        allocatable=_node_resources(status.allocatable if status else None),
        taints=taints or None,
        labels=filter_labels(labels),
        kubelet_version=(info.kubelet_version or None) if info else None,
        container_runtime=(info.container_runtime_version or None) if info else None,
    )


def node_fingerprint(node: Node) -> tuple[object, ...]:
    """What of a Node the cluster picture depends on (no heartbeat times): a change re-discovers."""
    status = node.status
    return (
        node_ready(node),
        tuple(sorted((node.metadata.labels or {}).items())),
        node.spec.provider_id if node.spec else None,
        tuple((t.key, t.value, t.effect) for t in ((node.spec.taints if node.spec else None) or [])),
        tuple(sorted(((status.capacity if status else None) or {}).items(), key=lambda kv: kv[0])),
        tuple(sorted(((status.allocatable if status else None) or {}).items(), key=lambda kv: kv[0])),
        msgspec.to_builtins(status.node_info) if status and status.node_info else None,
    )


# --------------------------------------------------------------------------- resource summary


def quantity_sum(values: Iterable[int | str | None]) -> str:
    """Exact sum, printed canonically in the format of the first non-zero addend; ``"0"`` when empty."""
    total = Decimal(0)
    fmt: Format | None = None
    for v in values:
        if v is None:
            continue
        try:
            q = parse_quantity(v)
        except QuantityError:
            continue
        if fmt is None and not q.is_zero():
            fmt = q.format
        total += q.value
    return Quantity(total, fmt or Format.DECIMAL_SI).canonical()


def resource_summary(nodes: Sequence[NodeInfo]) -> ResourceSummary:
    """Capacity and allocatable summed over ``nodes`` (``runningPods`` is never set: see the module doc)."""
    cap = [n.capacity or NodeResources() for n in nodes]
    alloc = [n.allocatable or NodeResources() for n in nodes]
    pods = 0
    for c in cap:
        with contextlib.suppress(QuantityError):
            pods += int(parse_quantity(c.pods or "0").value)
    return ResourceSummary(
        total_cpu=quantity_sum(c.cpu for c in cap),
        total_memory=quantity_sum(c.memory for c in cap),
        allocatable_cpu=quantity_sum(a.cpu for a in alloc),
        allocatable_memory=quantity_sum(a.memory for a in alloc),
        total_pods=pods or None,
    )


# --------------------------------------------------------------------------- platform

PLATFORM_LABELS: tuple[tuple[str, str], ...] = (
    ("eks.amazonaws.com", "EKS"),
    ("cloud.google.com/gke", "GKE"),
    ("kubernetes.azure.com", "AKS"),
    ("node.openshift.io", "OpenShift"),
    ("minikube.k8s.io", "Minikube"),
    ("kind.x-k8s.io", "Kind"),
    ("k3s.io", "K3s"),
)
"""A raw node label key containing the token → platform (table order is the precedence)."""
PLATFORM_PROVIDER_IDS: tuple[tuple[str, str], ...] = (
    ("aws://", "EKS"),
    ("gce://", "GKE"),
    ("azure://", "AKS"),
    ("kind://", "Kind"),
    ("k3s://", "K3s"),
)
"""A ``spec.providerID`` prefix → platform."""


def detect_platform(nodes: Sequence[Node]) -> str:
    """Raw labels (nodes by name, rules in table order), then the first providerID, else Generic."""
    if not nodes:
        return "Unknown"
    ordered = sorted(nodes, key=lambda n: n.metadata.name or "")
    for node in ordered:
        keys = list((node.metadata.labels or {}).keys())
        for token, platform in PLATFORM_LABELS:
            if any(token in k for k in keys):
                return platform
    for node in ordered:
        pid = node.spec.provider_id if node.spec else None
        if pid:
            for prefix, platform in PLATFORM_PROVIDER_IDS:
                if pid.startswith(prefix):
                    return platform
            break  # the first node with a providerID decides
    return "Generic"


# --------------------------------------------------------------------------- add-ons


@dataclass(frozen=True, kw_only=True)
class AddonRule:
    """How to recognise one add-on."""

    name: str
    """``status.addons[].name``."""
    type: str
    """``status.addons[].type`` (the CRD enum)."""
    selectors: tuple[Mapping[str, str], ...]
    """Label sets (all must match) on a workload's or its pod template's labels; earlier = more central."""
    containers: tuple[str, ...] = ()
    """Names of the add-on's own container, for the image-tag version (sidecars never count)."""
    always: bool = False
    """Listed (``installed: false``) even when absent: the seven add-ons every status reports on."""


N, APP = NAME_LABEL, APP_LABEL  # short names: the catalogue below repeats them on every line
ADDONS: tuple[AddonRule, ...] = (
    AddonRule(
        name="argocd",
        type="gitops",
        always=True,
        selectors=(
            {N: "argocd-server"},
            {N: "argocd-application-controller"},
            {N: "argocd-repo-server"},
            {APP: "argocd-server"},
        ),
        containers=("argocd-server", "server", "argocd-application-controller", "application-controller"),
    ),
    AddonRule(
        name="prometheus",
        type="monitoring",
        always=True,
        selectors=({N: "prometheus"}, {APP: "prometheus"}),
        containers=("prometheus", "prometheus-server"),
    ),
    AddonRule(
        name="grafana",
        type="monitoring",
        always=True,
        selectors=({N: "grafana"}, {APP: "grafana"}),
        containers=("grafana",),
    ),
    AddonRule(
        name="cert-manager",
        type="cert-management",
        always=True,
        selectors=({N: "cert-manager"}, {APP: "cert-manager"}),
        containers=("cert-manager-controller", "cert-manager"),
    ),
    AddonRule(
        name="ingress-nginx-controller",
        type="ingress",
        always=True,
        selectors=(
            {N: "ingress-nginx", "app.kubernetes.io/component": "controller"},
            {N: "ingress-nginx"},
            {APP: "ingress-nginx"},
            {APP: "nginx-ingress"},
        ),
        containers=("controller", "ingress-nginx-controller", "nginx-ingress-controller"),
    ),
    AddonRule(
        name="external-secrets",
        type="secrets",
        always=True,
        selectors=({N: "external-secrets"}, {APP: "external-secrets"}),
        containers=("external-secrets",),
    ),
    AddonRule(
        name="istiod",
        type="service-mesh",
        always=True,
        selectors=({APP: "istiod"}, {"istio": "pilot"}, {N: "istiod"}),
        containers=("discovery",),
    ),
    AddonRule(
        name="flux",
        type="gitops",
        selectors=({APP: "source-controller"}, {N: "source-controller"}, {APP: "kustomize-controller"}),
        containers=("manager",),
    ),
    AddonRule(
        name="linkerd",
        type="service-mesh",
        selectors=(
            {"linkerd.io/control-plane-component": "destination"},
            {"linkerd.io/control-plane-component": "identity"},
        ),
        containers=("destination", "identity"),
    ),
    AddonRule(
        name="traefik", type="ingress", selectors=({N: "traefik"}, {APP: "traefik"}), containers=("traefik",)
    ),
    AddonRule(name="loki", type="logging", selectors=({N: "loki"}, {APP: "loki"}), containers=("loki",)),
    AddonRule(
        name="fluent-bit",
        type="logging",
        selectors=({N: "fluent-bit"}, {APP: "fluent-bit"}),
        containers=("fluent-bit",),
    ),
    AddonRule(
        name="sealed-secrets",
        type="secrets",
        selectors=({N: "sealed-secrets"}, {"name": "sealed-secrets-controller"}),
        containers=("sealed-secrets-controller", "controller"),
    ),
    AddonRule(
        name="metrics-server",
        type="monitoring",
        selectors=({N: "metrics-server"}, {"k8s-app": "metrics-server"}),
        containers=("metrics-server",),
    ),
)
"""The catalogue: seven add-ons always listed (installed or not) plus common ones listed when found."""


def selector_queries(rules: Sequence[AddonRule] = ADDONS) -> list[str]:
    """Label selectors (``key in (v1,v2)``, one per label key) whose union holds every candidate workload."""
    by_key: dict[str, set[str]] = {}
    for rule in rules:
        for sel in rule.selectors:
            key, value = next(iter(sel.items()))
            by_key.setdefault(key, set()).add(value)
    return [f"{k} in ({','.join(sorted(v))})" for k, v in sorted(by_key.items())]


# Workload partials (read-only; only what add-on detection looks at).


class _P(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True, kw_only=True):
    pass


class _Container(_P):
    name: str
    image: str | None = None


class _TemplateSpec(_P):
    containers: list[_Container] = msgspec.field(default_factory=list)


class _TemplateMeta(_P):
    labels: dict[str, str] | None = None


class _Template(_P):
    metadata: _TemplateMeta | None = None
    spec: _TemplateSpec = msgspec.field(default_factory=_TemplateSpec)


class _WorkloadSpec(_P):
    replicas: int | None = None
    template: _Template = msgspec.field(default_factory=_Template)


class _WorkloadStatus(_P):
    replicas: int | None = None
    ready_replicas: int | None = None
    number_ready: int | None = None
    desired_number_scheduled: int | None = None


class RawWorkload(_P):
    """A Deployment, StatefulSet or DaemonSet, decoded to the little add-on detection needs."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: _WorkloadSpec = msgspec.field(default_factory=_WorkloadSpec)
    status: _WorkloadStatus | None = None


@dataclass(frozen=True, kw_only=True)
class Workload:
    """A candidate add-on workload, normalised."""

    kind: str
    namespace: str
    name: str
    labels: Mapping[str, str]
    containers: tuple[tuple[str, str], ...]
    """``(name, image)`` of each container."""
    healthy: bool
    template_labels: Mapping[str, str] = field(default_factory=dict)


def workload_of(kind: str, raw: RawWorkload) -> Workload:
    """Normalise; health: Deployment/StatefulSet ``readyReplicas >= spec.replicas`` (default 1, and > 0),
    DaemonSet ``numberReady >= desiredNumberScheduled > 0``."""
    st = raw.status or _WorkloadStatus()
    containers = raw.spec.template.spec.containers
    if kind == "DaemonSet":
        desired = st.desired_number_scheduled or 0
        healthy = desired > 0 and (st.number_ready or 0) >= desired
    else:
        desired = 1 if raw.spec.replicas is None else raw.spec.replicas
        healthy = desired > 0 and (st.ready_replicas or 0) >= desired
    tmeta = raw.spec.template.metadata
    return Workload(
        kind=kind,
        namespace=raw.metadata.namespace or "",
        name=raw.metadata.name or "",
        labels=raw.metadata.labels or {},
        template_labels=(tmeta.labels if tmeta else None) or {},
        containers=tuple((c.name, c.image or "") for c in containers),
        healthy=healthy,
    )


def image_tag(image: str) -> str | None:
    """The tag of an image reference (``repo:5000/img:1.2@sha256:…`` → ``1.2``); None without one."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        return None
    tag = last.rsplit(":", 1)[1]
    return tag or None


def _matches(rule: AddonRule, w: Workload) -> int | None:
    """The index of the first selector ``w`` matches (metadata or pod-template labels), else None."""
    for i, sel in enumerate(rule.selectors):
        for labels in (w.labels, w.template_labels):
            if labels and all(labels.get(k) == v for k, v in sel.items()):
                return i
    return None


def _version(rule: AddonRule, w: Workload) -> str | None:
    v = w.labels.get("app.kubernetes.io/version") or w.template_labels.get("app.kubernetes.io/version")
    if v:
        return v
    own = [img for name, img in w.containers if name in rule.containers]
    if not own and len(w.containers) == 1:
        own = [w.containers[0][1]]
    for img in own:
        tag = image_tag(img)
        if tag:
            return tag
    return None


_KIND_ORDER = {"Deployment": 0, "StatefulSet": 1, "DaemonSet": 2}


def detect_addons(workloads: Sequence[Workload], rules: Sequence[AddonRule] = ADDONS) -> list[AddonInfo]:
    """One entry per add-on found (and per ``always`` rule): where the most central workload lives."""
    out: list[AddonInfo] = []
    for rule in rules:
        found = [(i, w) for w in workloads if (i := _matches(rule, w)) is not None]
        if not found:
            if rule.always:
                out.append(AddonInfo(name=rule.name, type=rule.type, installed=False))
            continue
        found.sort(key=lambda iw: (iw[0], _KIND_ORDER.get(iw[1].kind, 9), iw[1].namespace, iw[1].name))
        primary = found[0][1]
        in_ns = [w for _, w in found if w.namespace == primary.namespace]
        version = _version(rule, primary) or next((v for w in in_ns if (v := _version(rule, w))), None)
        out.append(
            AddonInfo(
                name=rule.name,
                type=rule.type,
                installed=True,
                version=version,
                namespace=primary.namespace,
                healthy=all(w.healthy for w in in_ns),
            )
        )
    return out


# --------------------------------------------------------------------------- phase and conditions


def node_phase(nodes: Sequence[NodeInfo]) -> str:
    """No nodes → Unknown; all Ready → Ready; some → Degraded; none Ready → Unknown."""
    ready = sum(1 for n in nodes if n.ready)
    if not nodes or ready == 0:
        return "Unknown"
    return "Ready" if ready == len(nodes) else "Degraded"


def phase_and_conditions(
    nodes: Sequence[NodeInfo], failures: Mapping[str, str]
) -> tuple[str, list[DesiredCondition]]:
    """The phase and the desired ``Discovered`` and ``Healthy`` conditions, in that order.

    ``failures`` maps a failed step (``nodes``, ``namespaces``, …) to its error text. A failed node
    discovery gives phase ``Degraded`` (an empty node list read as "no nodes" would be a lie); any failure
    makes ``Discovered=False`` and a ``Ready`` phase ``Degraded``.
    """
    ready = sum(1 for n in nodes if n.ready)
    counts = f"{ready}/{len(nodes)} nodes ready"
    if "nodes" in failures:
        return "Degraded", [
            DesiredCondition("Discovered", "False", "NodeDiscoveryFailed", failures["nodes"]),
            DesiredCondition("Healthy", "Unknown", "NodeDiscoveryFailed", "Nodes could not be listed"),
        ]
    phase = node_phase(nodes)
    if not nodes:
        healthy = DesiredCondition("Healthy", "Unknown", "NoNodes", "No nodes found")
    elif phase == "Ready":
        healthy = DesiredCondition("Healthy", "True", "AllNodesReady", counts)
    else:
        healthy = DesiredCondition("Healthy", "False", "NodesNotReady", counts)
    if failures:
        text = "; ".join(f"{step}: {err}" for step, err in sorted(failures.items()))
        discovered = DesiredCondition(
            "Discovered", "False", "DiscoveryIncomplete", f"Cluster state discovered with errors: {text}"
        )
        if phase == "Ready":
            phase = "Degraded"
    elif phase == "Ready":
        discovered = DesiredCondition(
            "Discovered", "True", "DiscoveryComplete", "Cluster state discovered successfully"
        )
    else:
        discovered = DesiredCondition(
            "Discovered", "True", "DiscoveryComplete", "Cluster state discovered with issues"
        )
    return phase, [discovered, healthy]
