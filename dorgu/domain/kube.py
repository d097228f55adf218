"""Read-only partial views of the foreign objects dorgu reads.

These Structs decode only the fields the operator looks at (operator spec sections 2, 5 and 6):
apps/v1 Deployment, core/v1 Node, Pod and Namespace, and argoproj.io/v1alpha1 Application.
Unknown fields are ignored (msgspec's default), so they are **never written back**: encoding one
of these would drop everything not modelled here. They are ``frozen`` and keyword-only.

Int-or-string fields (probe ports, quantities, ``maxSurge``) are ``int | str``. Timestamps that
dorgu only passes through or parses itself (Argo CD's ``finishedAt``) stay ``str`` so that an odd
value cannot make the whole object fail to decode.
"""

from typing import TypeAlias

import msgspec

from dorgu.runtime.meta import ObjectMeta

__all__ = [
    "ArgoApplication",
    "ArgoApplicationSpec",
    "ArgoApplicationStatus",
    "ArgoDestination",
    "ArgoHealth",
    "ArgoOperationState",
    "ArgoSource",
    "ArgoSync",
    "Container",
    "ContainerPort",
    "ContainerSecurityContext",
    "Deployment",
    "DeploymentCondition",
    "DeploymentSpec",
    "DeploymentStatus",
    "DeploymentStrategy",
    "HTTPGetAction",
    "IntOrString",
    "LabelSelector",
    "LabelSelectorRequirement",
    "Namespace",
    "NamespaceStatus",
    "Node",
    "NodeCondition",
    "NodeSpec",
    "NodeStatus",
    "NodeSystemInfo",
    "Pod",
    "PodContainer",
    "PodSecurityContext",
    "PodSpec",
    "PodStatus",
    "PodTemplateMetadata",
    "PodTemplateSpec",
    "PodTemplateSpecBody",
    "Probe",
    "ResourceRequirements",
    "RollingUpdateDeployment",
    "Taint",
]

IntOrString: TypeAlias = int | str


class _Partial(msgspec.Struct, rename="camel", omit_defaults=True, frozen=True):
    """Base of the read-only partials (``kw_only`` is set per class; it is not inherited)."""


# --------------------------------------------------------------------------- shared


class LabelSelectorRequirement(_Partial, kw_only=True):
    key: str
    operator: str
    values: list[str] | None = None


class LabelSelector(_Partial, kw_only=True):
    match_labels: dict[str, str] | None = None
    match_expressions: list[LabelSelectorRequirement] | None = None


# --------------------------------------------------------------------------- apps/v1 Deployment


class HTTPGetAction(_Partial, kw_only=True):
    path: str | None = None
    port: IntOrString | None = None
    host: str | None = None
    scheme: str | None = None


class Probe(_Partial, kw_only=True):
    """A probe; ``exec``/``tcp_socket``/``grpc`` are kept raw, only their presence matters."""

    http_get: HTTPGetAction | None = None
    exec: msgspec.Raw = msgspec.Raw()
    tcp_socket: msgspec.Raw = msgspec.Raw()
    grpc: msgspec.Raw = msgspec.Raw()
    initial_delay_seconds: int | None = None
    period_seconds: int | None = None
    timeout_seconds: int | None = None
    success_threshold: int | None = None
    failure_threshold: int | None = None


class ResourceRequirements(_Partial, kw_only=True):
    limits: dict[str, IntOrString] | None = None
    requests: dict[str, IntOrString] | None = None


class ContainerSecurityContext(_Partial, kw_only=True):
    run_as_non_root: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    read_only_root_filesystem: bool | None = None
    allow_privilege_escalation: bool | None = None
    privileged: bool | None = None


class ContainerPort(_Partial, kw_only=True):
    container_port: int
    name: str | None = None
    protocol: str | None = None


class Container(_Partial, kw_only=True):
    name: str
    image: str | None = None
    ports: list[ContainerPort] | None = None
    resources: ResourceRequirements | None = None
    liveness_probe: Probe | None = None
    readiness_probe: Probe | None = None
    startup_probe: Probe | None = None
    security_context: ContainerSecurityContext | None = None


class PodSecurityContext(_Partial, kw_only=True):
    run_as_non_root: bool | None = None
    run_as_user: int | None = None
    run_as_group: int | None = None
    fs_group: int | None = None


class PodTemplateMetadata(_Partial, kw_only=True):
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class PodTemplateSpecBody(_Partial, kw_only=True):
    containers: list[Container] = msgspec.field(default_factory=list)
    security_context: PodSecurityContext | None = None
    service_account_name: str | None = None


class PodTemplateSpec(_Partial, kw_only=True):
    metadata: PodTemplateMetadata | None = None
    spec: PodTemplateSpecBody = msgspec.field(default_factory=PodTemplateSpecBody)


class RollingUpdateDeployment(_Partial, kw_only=True):
    max_surge: IntOrString | None = None
    max_unavailable: IntOrString | None = None


class DeploymentStrategy(_Partial, kw_only=True):
    type: str | None = None
    rolling_update: RollingUpdateDeployment | None = None


class DeploymentSpec(_Partial, kw_only=True):
    replicas: int | None = None
    selector: LabelSelector | None = None
    template: PodTemplateSpec = msgspec.field(default_factory=PodTemplateSpec)
    strategy: DeploymentStrategy | None = None


class DeploymentCondition(_Partial, kw_only=True):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_update_time: str | None = None
    last_transition_time: str | None = None


class DeploymentStatus(_Partial, kw_only=True):
    observed_generation: int | None = None
    replicas: int | None = None
    updated_replicas: int | None = None
    ready_replicas: int | None = None
    available_replicas: int | None = None
    unavailable_replicas: int | None = None
    conditions: list[DeploymentCondition] | None = None


class Deployment(_Partial, kw_only=True):
    """Partial ``apps/v1 Deployment``."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: DeploymentSpec = msgspec.field(default_factory=DeploymentSpec)
    status: DeploymentStatus | None = None


# --------------------------------------------------------------------------- core/v1 Node


class Taint(_Partial, kw_only=True):
    key: str
    effect: str
    value: str | None = None
    time_added: str | None = None


class NodeSpec(_Partial, kw_only=True):
    provider_id: str | None = msgspec.field(default=None, name="providerID")
    pod_cidr: str | None = msgspec.field(default=None, name="podCIDR")
    unschedulable: bool | None = None
    taints: list[Taint] | None = None


class NodeCondition(_Partial, kw_only=True):
    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_heartbeat_time: str | None = None
    last_transition_time: str | None = None


class NodeSystemInfo(_Partial, kw_only=True):
    kubelet_version: str | None = None
    kube_proxy_version: str | None = None
    container_runtime_version: str | None = None
    kernel_version: str | None = None
    os_image: str | None = None
    operating_system: str | None = None
    architecture: str | None = None


class NodeStatus(_Partial, kw_only=True):
    capacity: dict[str, IntOrString] | None = None
    allocatable: dict[str, IntOrString] | None = None
    conditions: list[NodeCondition] | None = None
    node_info: NodeSystemInfo | None = None


class Node(_Partial, kw_only=True):
    """Partial ``v1 Node``."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: NodeSpec | None = None
    status: NodeStatus | None = None


# --------------------------------------------------------------------------- core/v1 Pod, Namespace


class PodContainer(_Partial, kw_only=True):
    name: str
    image: str | None = None


class PodSpec(_Partial, kw_only=True):
    containers: list[PodContainer] = msgspec.field(default_factory=list)
    node_name: str | None = None


class PodStatus(_Partial, kw_only=True):
    phase: str | None = None


class Pod(_Partial, kw_only=True):
    """Partial ``v1 Pod``."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: PodSpec | None = None
    status: PodStatus | None = None


class NamespaceStatus(_Partial, kw_only=True):
    phase: str | None = None


class Namespace(_Partial, kw_only=True):
    """Partial ``v1 Namespace`` (ClusterPersona namespace summary and add-on detection)."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    status: NamespaceStatus | None = None


# --------------------------------------------------------------------------- argoproj.io/v1alpha1 Application


class ArgoDestination(_Partial, kw_only=True):
    server: str | None = None
    namespace: str | None = None
    name: str | None = None


class ArgoSource(_Partial, kw_only=True):
    repo_url: str | None = msgspec.field(default=None, name="repoURL")
    path: str | None = None
    target_revision: str | None = None
    chart: str | None = None
    ref: str | None = None
    name: str | None = None


class ArgoApplicationSpec(_Partial, kw_only=True):
    project: str | None = None
    destination: ArgoDestination | None = None
    source: ArgoSource | None = None
    sources: list[ArgoSource] | None = None


class ArgoSync(_Partial, kw_only=True):
    status: str | None = None
    revision: str | None = None
    revisions: list[str] | None = None


class ArgoHealth(_Partial, kw_only=True):
    status: str | None = None
    message: str | None = None


class ArgoOperationState(_Partial, kw_only=True):
    phase: str | None = None
    message: str | None = None
    started_at: str | None = None
    finished_at: str | None = None  # RFC 3339; parsed by the watcher, unset if unparsable


class ArgoApplicationStatus(_Partial, kw_only=True):
    sync: ArgoSync | None = None
    health: ArgoHealth | None = None
    operation_state: ArgoOperationState | None = None


class ArgoApplication(_Partial, kw_only=True):
    """Partial ``argoproj.io/v1alpha1 Application``."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ArgoApplicationSpec | None = None
    status: ArgoApplicationStatus | None = None
