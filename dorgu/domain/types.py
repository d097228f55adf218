"""The dorgu.io/v1 API: ApplicationPersona and ClusterPersona as msgspec Structs.

The field trees mirror ``deploy/crds/dorgu.io_*.yaml`` exactly; the wire names are camelCase
(``rename="camel"``, with explicit names where Go's acronym casing differs, e.g. ``avgCPU``).

Serialisation rules (no value is lost as "empty"):

* every optional field defaults to ``None`` and every Struct uses ``omit_defaults=True``, so a
  present value -- including ``False``, ``0``, ``""`` and ``[]`` -- is always written and an
  absent one stays absent (``validation.passed: false`` survives);
* fields the CRD marks as required are required here too (no default);
* persona quantities are ``int | str`` (the CRD declares them int-or-string);
* timestamps are timezone-aware ``datetime``. Writers should use UTC truncated to whole seconds
  (``metav1.Time`` precision) so that re-encoding is stable.

The API server applies the CRD's structural defaults; :func:`apply_defaults` does the same for
objects that never went through an API server (tests, dry runs).
"""

from datetime import datetime
from typing import TypeAlias, TypeVar

import msgspec

from dorgu.runtime.meta import Condition, ListMeta, ObjectMeta

__all__ = [
    "API_VERSION",
    "GROUP",
    "VERSION",
    "AddonInfo",
    "ApplicationPersona",
    "ApplicationPersonaList",
    "ApplicationPersonaSpec",
    "ApplicationPersonaStatus",
    "ArgoCDStatus",
    "ClusterConventions",
    "ClusterDefaults",
    "ClusterNetworkingPolicy",
    "ClusterPersona",
    "ClusterPersonaList",
    "ClusterPersonaSpec",
    "ClusterPersonaStatus",
    "ClusterPolicies",
    "ClusterSecurityPolicy",
    "Condition",
    "Dependency",
    "DeploymentPolicy",
    "DeploymentRecord",
    "DeploymentTracking",
    "HealthSpec",
    "HealthStatus",
    "IngressSpec",
    "LearnedPattern",
    "LearnedState",
    "MaintenancePolicy",
    "NamespaceSummary",
    "NetworkingSpec",
    "NodeInfo",
    "NodeResources",
    "OwnershipSpec",
    "PersonaPolicies",
    "PortSpec",
    "Quantity",
    "Recommendation",
    "ResourceBaseline",
    "ResourceQuantities",
    "ResourceQuotaSpec",
    "ResourceSpec",
    "ResourceSummary",
    "ScalingSpec",
    "SecurityPolicy",
    "TechnicalSpec",
    "ValidationIssue",
    "ValidationStatus",
    "apply_defaults",
]

GROUP = "dorgu.io"
VERSION = "v1"
API_VERSION = f"{GROUP}/{VERSION}"

Quantity: TypeAlias = int | str
"""A Kubernetes quantity as the CRD accepts it: ``2`` or ``"500m"``."""


class _Wire(msgspec.Struct, rename="camel", omit_defaults=True):
    """Base of every dorgu.io Struct (the config is inherited; ``kw_only`` is set per class)."""


# --------------------------------------------------------------------------- shared spec parts


class ResourceQuantities(_Wire, kw_only=True):
    """``{cpu, memory}`` quantities."""

    cpu: Quantity | None = None
    memory: Quantity | None = None


class ResourceSpec(_Wire, kw_only=True):
    """``spec.resources`` (also ClusterPersona ``spec.defaults.resources``)."""

    requests: ResourceQuantities | None = None
    limits: ResourceQuantities | None = None
    profile: str | None = None  # minimal | standard | compute-heavy | memory-heavy


class ScalingSpec(_Wire, kw_only=True):
    """``spec.scaling`` (also ClusterPersona ``spec.defaults.scaling``)."""

    min_replicas: int | None = None
    max_replicas: int | None = None
    target_cpu: int | None = msgspec.field(default=None, name="targetCPU")
    target_memory: int | None = None
    behavior: str | None = None  # conservative | balanced (default) | aggressive


# --------------------------------------------------------------------------- ApplicationPersona spec


class TechnicalSpec(_Wire, kw_only=True):
    language: str | None = None
    framework: str | None = None
    description: str | None = None


class HealthSpec(_Wire, kw_only=True):
    liveness_path: str | None = None
    readiness_path: str | None = None
    port: int | None = None
    startup_grace_period: str | None = None  # default "30s"


class Dependency(_Wire, kw_only=True):
    name: str
    type: str | None = None  # database | cache | queue | service | external
    required: bool | None = None  # default true
    health_check: str | None = None


class PortSpec(_Wire, kw_only=True):
    port: int
    protocol: str | None = None  # default "TCP"
    purpose: str | None = None


class IngressSpec(_Wire, kw_only=True):
    enabled: bool | None = None
    host: str | None = None
    paths: list[str] | None = None
    tls_enabled: bool | None = None


class NetworkingSpec(_Wire, kw_only=True):
    ports: list[PortSpec] | None = None
    ingress: IngressSpec | None = None


class OwnershipSpec(_Wire, kw_only=True):
    team: str | None = None
    owner: str | None = None
    repository: str | None = None
    oncall: str | None = None
    runbook: str | None = None


class SecurityPolicy(_Wire, kw_only=True):
    run_as_non_root: bool | None = None  # default true
    read_only_root_filesystem: bool | None = None  # default true
    allow_privilege_escalation: bool | None = None  # default false


class DeploymentPolicy(_Wire, kw_only=True):
    strategy: str | None = None  # RollingUpdate (default) | Recreate | BlueGreen | Canary
    max_surge: str | None = None  # default "25%"
    max_unavailable: str | None = None  # default "25%"


class MaintenancePolicy(_Wire, kw_only=True):
    window: str | None = None
    auto_restart: bool | None = None  # default false


class PersonaPolicies(_Wire, kw_only=True):
    security: SecurityPolicy | None = None
    deployment: DeploymentPolicy | None = None
    maintenance: MaintenancePolicy | None = None


class ApplicationPersonaSpec(_Wire, kw_only=True):
    name: str
    type: str  # api | web | worker | cron | daemon
    version: str | None = None
    tier: str | None = None  # critical | standard (default) | best-effort
    technical: TechnicalSpec | None = None
    resources: ResourceSpec | None = None
    scaling: ScalingSpec | None = None
    health: HealthSpec | None = None
    dependencies: list[Dependency] | None = None
    networking: NetworkingSpec | None = None
    ownership: OwnershipSpec | None = None
    policies: PersonaPolicies | None = None


# --------------------------------------------------------------------------- ApplicationPersona status


class DeploymentRecord(_Wire, kw_only=True):
    version: str
    timestamp: str
    status: str
    triggered_by: str | None = None


class DeploymentTracking(_Wire, kw_only=True):
    current: str | None = None
    last_successful: str | None = None
    last_failed: str | None = None
    history: list[DeploymentRecord] | None = None


class HealthStatus(_Wire, kw_only=True):
    status: str | None = None  # Healthy | Degraded | Unhealthy | Unknown
    last_check: datetime | None = None
    message: str | None = None


class ValidationIssue(_Wire, kw_only=True):
    severity: str  # error | warning | info
    message: str
    deployment: str | None = None
    field: str | None = None
    suggestion: str | None = None


class ValidationStatus(_Wire, kw_only=True):
    passed: bool | None = None
    last_checked: datetime | None = None
    issues: list[ValidationIssue] | None = None


class ResourceBaseline(_Wire, kw_only=True):
    avg_cpu: str | None = msgspec.field(default=None, name="avgCPU")
    avg_memory: str | None = None
    peak_cpu: str | None = msgspec.field(default=None, name="peakCPU")
    peak_memory: str | None = None


class LearnedPattern(_Wire, kw_only=True):
    type: str
    description: str
    confidence: str | None = None


class LearnedState(_Wire, kw_only=True):
    resource_baseline: ResourceBaseline | None = None
    incident_count: int | None = None
    last_incident: str | None = None
    patterns: list[LearnedPattern] | None = None


class Recommendation(_Wire, kw_only=True):
    type: str  # resource | scaling | security | cost | performance
    priority: str  # high | medium | low
    message: str
    action: str | None = None


class ArgoCDStatus(_Wire, kw_only=True):
    sync_status: str | None = None  # Synced | OutOfSync | Unknown
    health_status: str | None = None  # Healthy | Degraded | Progressing | Suspended | Missing | Unknown
    last_sync_time: datetime | None = None
    revision: str | None = None
    application_name: str | None = None
    application_namespace: str | None = None


class ApplicationPersonaStatus(_Wire, kw_only=True):
    observed_generation: int | None = None
    phase: str | None = None  # Pending | Active | Degraded | Failed
    last_updated: datetime | None = None
    deployments: DeploymentTracking | None = None
    health: HealthStatus | None = None
    validation: ValidationStatus | None = None
    learned: LearnedState | None = None
    recommendations: list[Recommendation] | None = None
    argo_cd: ArgoCDStatus | None = msgspec.field(default=None, name="argoCD")
    conditions: list[Condition] | None = None


class ApplicationPersona(_Wire, kw_only=True):
    """``dorgu.io/v1 ApplicationPersona`` (namespaced)."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ApplicationPersonaSpec
    status: ApplicationPersonaStatus | None = None


class ApplicationPersonaList(_Wire, kw_only=True):
    api_version: str | None = None
    kind: str | None = None
    metadata: ListMeta | None = None
    items: list[ApplicationPersona] | None = None


# --------------------------------------------------------------------------- ClusterPersona spec


class ClusterSecurityPolicy(_Wire, kw_only=True):
    enforce_non_root: bool | None = None  # default true
    enforce_read_only_root: bool | None = None  # default false
    disallow_privileged: bool | None = None  # default true
    allowed_registries: list[str] | None = None
    pod_security_standard: str | None = None  # privileged | baseline (default) | restricted


class ClusterNetworkingPolicy(_Wire, kw_only=True):
    default_deny_ingress: bool | None = None  # default false
    default_deny_egress: bool | None = None  # default false
    allowed_external_cidrs: list[str] | None = msgspec.field(default=None, name="allowedExternalCIDRs")


class ClusterPolicies(_Wire, kw_only=True):
    security: ClusterSecurityPolicy | None = None
    networking: ClusterNetworkingPolicy | None = None
    compliance: list[str] | None = None


class ClusterConventions(_Wire, kw_only=True):
    naming_pattern: str | None = None
    required_labels: list[str] | None = None
    required_annotations: list[str] | None = None
    namespace_prefix: str | None = None


class ClusterDefaults(_Wire, kw_only=True):
    namespace: str | None = None
    registry: str | None = None
    resources: ResourceSpec | None = None
    scaling: ScalingSpec | None = None


class ResourceQuotaSpec(_Wire, kw_only=True):
    max_pods_per_namespace: int | None = None
    max_cpu_per_namespace: Quantity | None = msgspec.field(default=None, name="maxCPUPerNamespace")
    max_memory_per_namespace: Quantity | None = None
    max_pvcs_per_namespace: int | None = msgspec.field(default=None, name="maxPVCsPerNamespace")


class ClusterPersonaSpec(_Wire, kw_only=True):
    name: str
    description: str | None = None
    environment: str | None = None  # development (default) | staging | production | sandbox
    policies: ClusterPolicies | None = None
    conventions: ClusterConventions | None = None
    defaults: ClusterDefaults | None = None
    resource_quotas: ResourceQuotaSpec | None = None


# --------------------------------------------------------------------------- ClusterPersona status


class NodeResources(_Wire, kw_only=True):
    cpu: str | None = None
    memory: str | None = None
    pods: str | None = None
    ephemeral_storage: str | None = None


class NodeInfo(_Wire, kw_only=True):
    name: str
    ready: bool
    role: str | None = None  # control-plane | worker
    capacity: NodeResources | None = None
    allocatable: NodeResources | None = None
    taints: list[str] | None = None
    labels: dict[str, str] | None = None
    kubelet_version: str | None = None
    container_runtime: str | None = None


class ResourceSummary(_Wire, kw_only=True):
    total_cpu: str | None = msgspec.field(default=None, name="totalCPU")
    total_memory: str | None = None
    allocatable_cpu: str | None = msgspec.field(default=None, name="allocatableCPU")
    allocatable_memory: str | None = None
    used_cpu: str | None = msgspec.field(default=None, name="usedCPU")
    used_memory: str | None = None
    cpu_utilization: str | None = None
    memory_utilization: str | None = None
    total_pods: int | None = None
    running_pods: int | None = None


class AddonInfo(_Wire, kw_only=True):
    name: str
    installed: bool
    type: str | None = None
    version: str | None = None
    namespace: str | None = None
    healthy: bool | None = None


class NamespaceSummary(_Wire, kw_only=True):
    total: int
    active: int | None = None
    with_personas: int | None = None


class ClusterPersonaStatus(_Wire, kw_only=True):
    observed_generation: int | None = None
    phase: str | None = None  # Discovering | Ready | Degraded | Unknown
    last_discovery: datetime | None = None
    node_count: int | None = None
    nodes: list[NodeInfo] | None = None
    resource_summary: ResourceSummary | None = None
    addons: list[AddonInfo] | None = None
    namespaces: NamespaceSummary | None = None
    kubernetes_version: str | None = None
    platform: str | None = None
    application_count: int | None = None
    conditions: list[Condition] | None = None


class ClusterPersona(_Wire, kw_only=True):
    """``dorgu.io/v1 ClusterPersona`` (cluster-scoped)."""

    api_version: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    spec: ClusterPersonaSpec
    status: ClusterPersonaStatus | None = None


class ClusterPersonaList(_Wire, kw_only=True):
    api_version: str | None = None
    kind: str | None = None
    metadata: ListMeta | None = None
    items: list[ClusterPersona] | None = None


# --------------------------------------------------------------------------- structural defaults


_T = TypeVar("_T")
_P = TypeVar("_P", ApplicationPersona, ClusterPersona)


def _default(value: _T | None, fallback: _T) -> _T:
    return fallback if value is None else value


def _default_scaling(scaling: ScalingSpec | None) -> ScalingSpec | None:
    if scaling is None:
        return None
    return msgspec.structs.replace(scaling, behavior=_default(scaling.behavior, "balanced"))


def _default_ap_spec(spec: ApplicationPersonaSpec) -> ApplicationPersonaSpec:
    health = spec.health
    if health is not None:
        health = msgspec.structs.replace(
            health, startup_grace_period=_default(health.startup_grace_period, "30s")
        )
    dependencies = spec.dependencies
    if dependencies is not None:
        dependencies = [msgspec.structs.replace(d, required=_default(d.required, True)) for d in dependencies]
    networking = spec.networking
    if networking is not None and networking.ports is not None:
        networking = msgspec.structs.replace(
            networking,
            ports=[
                msgspec.structs.replace(p, protocol=_default(p.protocol, "TCP")) for p in networking.ports
            ],
        )
    policies = spec.policies
    if policies is not None:
        security = policies.security
        if security is not None:
            security = SecurityPolicy(
                run_as_non_root=_default(security.run_as_non_root, True),
                read_only_root_filesystem=_default(security.read_only_root_filesystem, True),
                allow_privilege_escalation=_default(security.allow_privilege_escalation, False),
            )
        deployment = policies.deployment
        if deployment is not None:
            deployment = DeploymentPolicy(
                strategy=_default(deployment.strategy, "RollingUpdate"),
                max_surge=_default(deployment.max_surge, "25%"),
                max_unavailable=_default(deployment.max_unavailable, "25%"),
            )
        maintenance = policies.maintenance
        if maintenance is not None:
            maintenance = msgspec.structs.replace(
                maintenance, auto_restart=_default(maintenance.auto_restart, False)
            )
        policies = PersonaPolicies(security=security, deployment=deployment, maintenance=maintenance)
    return msgspec.structs.replace(
        spec,
        tier=_default(spec.tier, "standard"),
        scaling=_default_scaling(spec.scaling),
        health=health,
        dependencies=dependencies,
        networking=networking,
        policies=policies,
    )


def _default_cp_spec(spec: ClusterPersonaSpec) -> ClusterPersonaSpec:
    policies = spec.policies
    if policies is not None:
        security = policies.security
        if security is not None:
            security = msgspec.structs.replace(
                security,
                enforce_non_root=_default(security.enforce_non_root, True),
                enforce_read_only_root=_default(security.enforce_read_only_root, False),
                disallow_privileged=_default(security.disallow_privileged, True),
                pod_security_standard=_default(security.pod_security_standard, "baseline"),
            )
        networking = policies.networking
        if networking is not None:
            networking = msgspec.structs.replace(
                networking,
                default_deny_ingress=_default(networking.default_deny_ingress, False),
                default_deny_egress=_default(networking.default_deny_egress, False),
            )
        policies = msgspec.structs.replace(policies, security=security, networking=networking)
    defaults = spec.defaults
    if defaults is not None:
        defaults = msgspec.structs.replace(defaults, scaling=_default_scaling(defaults.scaling))
    return msgspec.structs.replace(
        spec,
        environment=_default(spec.environment, "development"),
        policies=policies,
        defaults=defaults,
    )


def apply_defaults(obj: _P) -> _P:
    """Return a copy of ``obj`` with the CRD's structural defaults applied, as the API server does.

    As with the API server, a default is applied only where its parent object exists: for example
    ``policies: {security: {}}`` gets all three security defaults, ``policies: {}`` gets none.
    """
    if isinstance(obj, ApplicationPersona):
        return msgspec.structs.replace(obj, spec=_default_ap_spec(obj.spec))
    return msgspec.structs.replace(obj, spec=_default_cp_spec(obj.spec))
