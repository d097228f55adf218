"""The persona rules: the one implementation shared by the controller and the webhook.

:func:`evaluate` checks Deployments against an ``ApplicationPersonaSpec`` and returns
:class:`Finding` s (the :class:`~dorgu.domain.types.ValidationIssue` plus the rule id and the
container it concerns); :func:`validate` returns just the issues, as ``status.validation.issues``
stores them. The webhook calls the same functions and prefixes container-scoped findings with
``[<deployment>/<container>]``.

Rules, with exact severities and ``field``/``message``/``suggestion`` strings (see the
``_R1`` … ``_P3`` templates below): R-1, R-2, R-3 (resources, per container), S-1, S-2 (replicas,
once), H-1 or H-2, then H-3 (probes, per container), P-1 (pod security context, once), P-2, P-3
(per container). Only ``spec.template.spec.containers`` are checked (not init or ephemeral
containers).

Order, for each Deployment: resources (R-1, R-2, R-3 for container 1, then container 2, …), then
replicas (S-1, S-2), then probes (H-1/H-2, H-3 per container), then security (P-1, then P-2, P-3
per container).

Rules for what is validated:

* **Every matching Deployment is validated** (not an arbitrary first one), in order of name, and
  every issue names its Deployment in ``issues[].deployment`` (the message strings do not name it).
  ``validate(spec, ds)`` is the concatenation of ``validate(spec, [d])`` over ``ds`` sorted by name.
* **An unparseable persona quantity** (``spec.resources.limits.cpu`` / ``.memory``; the CRD does
  not validate them) never stops validation: it gives one ``error`` issue per Deployment, first in
  that Deployment's list, and only the rule that needed that value (R-1 or R-2) is skipped; all the
  others still run::

      severity:   error
      field:      spec.resources.limits.cpu            (or spec.resources.limits.memory)
      message:    Persona CPU limit (<raw>) is not a valid Kubernetes quantity
                  (Persona memory limit (<raw>) is not a valid Kubernetes quantity)
      suggestion: Set spec.resources.limits.cpu to a Kubernetes quantity such as 500m or 2
                  (Set spec.resources.limits.memory to a Kubernetes quantity such as 512Mi or 1Gi)

* **Matching** (:func:`matching_deployments`) falls back to the ``app`` label for a Deployment without
  ``app.kubernetes.io/name`` (the specific label wins).

Other decisions:

* Quantities in messages are canonical (:mod:`dorgu.domain.quantity`); the R-1/R-2 suggestions
  repeat the persona's raw value (an ``int`` is written as its decimal digits).
* Security defaults: a present ``policies.security`` whose fields are unset is read with the CRD's
  defaults (``runAsNonRoot: true``, ``readOnlyRootFilesystem: true``,
  ``allowPrivilegeEscalation: false``), as the API server would have stored it. For objects that
  came from the API server this changes nothing.
* A container quantity that does not parse (impossible for objects the API server accepted) is
  treated as absent: R-1/R-2 skip it and R-3 counts it as unset.

Pure functions: no I/O, no clock, no Kubernetes client.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from dorgu.domain.kube import Container, Deployment
from dorgu.domain.quantity import Quantity, QuantityError, parse_quantity
from dorgu.domain.resources import APP_LABEL, NAME_LABEL
from dorgu.domain.types import ApplicationPersonaSpec, ValidationIssue

__all__ = [
    "SEVERITY_ERROR",
    "SEVERITY_INFO",
    "SEVERITY_WARNING",
    "Finding",
    "deployment_app_name",
    "error_count",
    "evaluate",
    "has_errors",
    "matching_deployments",
    "validate",
]

SEVERITY_ERROR = "error"
SEVERITY_WARNING = "warning"
SEVERITY_INFO = "info"


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    """One rule violation: the issue as stored in the status, plus what the webhook needs.

    ``rule`` is the rule id (``"R-1"`` … ``"P-3"``, or ``"R-CPU"`` / ``"R-MEM"`` for an
    unparseable persona limit); ``container`` is the container's name for per-container rules and
    ``None`` for Deployment-level ones (S-1, S-2, P-1 and the persona-limit errors).
    """

    rule: str
    issue: ValidationIssue
    container: str | None = None

    @property
    def deployment(self) -> str | None:
        return self.issue.deployment

    @property
    def severity(self) -> str:
        return self.issue.severity


# --------------------------------------------------------------------------- matching


def deployment_app_name(deployment: Deployment) -> str | None:
    """The persona ``spec.name`` a Deployment belongs to, or ``None``.

    Its metadata label ``app.kubernetes.io/name`` when that is present and non-empty; otherwise
    its ``app`` label when non-empty; otherwise ``None``. (Pod-template labels are not read.) This
    is the key the controller indexes Deployments by.
    """
    labels = deployment.metadata.labels or {}
    return labels.get(NAME_LABEL) or labels.get(APP_LABEL) or None


def matching_deployments(persona_spec_name: str, deployments: Iterable[Deployment]) -> list[Deployment]:
    """The Deployments that belong to the persona named ``persona_spec_name``, sorted by name.

    A Deployment matches when its metadata label ``app.kubernetes.io/name`` equals the name, or —
    the fallback — when it has no (or an empty) ``app.kubernetes.io/name`` label and its ``app``
    label equals the name. So a Deployment labelled ``app.kubernetes.io/name=other, app=<name>``
    does **not** match: the specific label wins. An empty name matches nothing. The caller passes
    the Deployments of the persona's namespace.
    """
    if not persona_spec_name:
        return []
    return sorted(
        (d for d in deployments if deployment_app_name(d) == persona_spec_name),
        key=_deployment_sort_key,
    )


def _deployment_sort_key(deployment: Deployment) -> str:
    return deployment.metadata.name or ""


# --------------------------------------------------------------------------- evaluation


def evaluate(spec: ApplicationPersonaSpec, deployments: Iterable[Deployment]) -> list[Finding]:
    """Run every rule on every Deployment given (sorted by name; no label matching is done here).

    Use :func:`matching_deployments` first to pick the persona's Deployments.
    """
    limits = _PersonaLimits.read(spec)
    findings: list[Finding] = []
    for deployment in sorted(deployments, key=_deployment_sort_key):
        findings.extend(_evaluate_one(spec, limits, deployment))
    return findings


def validate(spec: ApplicationPersonaSpec, deployments: Iterable[Deployment]) -> list[ValidationIssue]:
    """The issues of :func:`evaluate`, as ``status.validation.issues`` stores them."""
    return [finding.issue for finding in evaluate(spec, deployments)]


def has_errors(issues: Iterable[ValidationIssue | Finding]) -> bool:
    """Whether any issue has severity ``error`` (``status.validation.passed`` is the negation)."""
    return error_count(issues) > 0


def error_count(issues: Iterable[ValidationIssue | Finding]) -> int:
    """The number of ``error`` issues (the ``Validated`` condition's ``<n>``)."""
    return sum(1 for issue in issues if issue.severity == SEVERITY_ERROR)


@dataclasses.dataclass(frozen=True, slots=True)
class _Limit:
    """A persona limit: enabled when the raw value is non-empty; ``quantity`` None if unparseable."""

    raw: str
    quantity: Quantity | None


@dataclasses.dataclass(frozen=True, slots=True)
class _PersonaLimits:
    cpu: _Limit | None
    memory: _Limit | None

    @classmethod
    def read(cls, spec: ApplicationPersonaSpec) -> _PersonaLimits:
        limits = spec.resources.limits if spec.resources is not None else None
        if limits is None:
            return cls(cpu=None, memory=None)
        return cls(cpu=_read_limit(limits.cpu), memory=_read_limit(limits.memory))


def _read_limit(value: int | str | None) -> _Limit | None:
    # are enabled when the persona value is non-empty (an int is never empty).
    if value is None or value == "":
        return None
    raw = str(value)
    try:
        return _Limit(raw=raw, quantity=parse_quantity(value))
    except QuantityError:
        return _Limit(raw=raw, quantity=None)


def _evaluate_one(
    spec: ApplicationPersonaSpec, limits: _PersonaLimits, deployment: Deployment
) -> list[Finding]:
    out = _Collector(deployment.metadata.name)
    containers = deployment.spec.template.spec.containers

    # Resources, preceded by the persona-limit parse errors.
    if spec.resources is not None:
        if limits.cpu is not None and limits.cpu.quantity is None:
            out.add("R-CPU", *_INVALID_CPU, raw=limits.cpu.raw)
        if limits.memory is not None and limits.memory.quantity is None:
            out.add("R-MEM", *_INVALID_MEMORY, raw=limits.memory.raw)
        for container in containers:
            _resource_rules(out, limits, container)

    # Replicas (S-1, S-2): once per Deployment; an unset spec.replicas means 1.
    scaling = spec.scaling
    if scaling is not None:
        replicas = 1 if deployment.spec.replicas is None else deployment.spec.replicas
        if scaling.min_replicas is not None and replicas < scaling.min_replicas:
            out.add("S-1", *_S1, r=replicas, min=scaling.min_replicas)
        if scaling.max_replicas is not None and replicas > scaling.max_replicas:
            out.add("S-2", *_S2, r=replicas, max=scaling.max_replicas)

    # Probes (H-1 or H-2, then H-3), per container.
    health = spec.health
    if health is not None:
        for container in containers:
            _probe_rules(out, health.liveness_path or "", health.readiness_path or "", container)

    # Security (P-1 once, then P-2, P-3 per container); unset fields read as the CRD defaults.
    security = spec.policies.security if spec.policies is not None else None
    if security is not None:
        run_as_non_root = security.run_as_non_root is not False  # default true
        read_only_root = security.read_only_root_filesystem is not False  # default true
        forbid_escalation = security.allow_privilege_escalation is not True  # default false
        if run_as_non_root:
            pod_context = deployment.spec.template.spec.security_context
            # P-1: only the pod-level field counts; nil is "not true"; container-level is ignored.
            if pod_context is None or pod_context.run_as_non_root is not True:
                out.add("P-1", *_P1)
        for container in containers:
            context = container.security_context
            # P-2: the container must set readOnlyRootFilesystem: true (unset fails).
            if read_only_root and (context is None or context.read_only_root_filesystem is not True):
                out.add("P-2", *_P2, container=container.name, c=container.name)
            # P-3: only an explicit allowPrivilegeEscalation: true fails (unset passes).
            if forbid_escalation and context is not None and context.allow_privilege_escalation is True:
                out.add("P-3", *_P3, container=container.name, c=container.name)
    return out.findings


def _resource_rules(out: _Collector, limits: _PersonaLimits, container: Container) -> None:
    resources = container.resources
    container_limits = (resources.limits if resources is not None else None) or {}
    container_requests = (resources.requests if resources is not None else None) or {}
    c = container.name

    # a set, non-zero container limit greater than the persona limit.
    for rule, template, persona, key in (
        ("R-1", _R1, limits.cpu, "cpu"),
        ("R-2", _R2, limits.memory, "memory"),
    ):
        if persona is None or persona.quantity is None:
            continue
        actual = _container_quantity(container_limits, key)
        if actual is not None and not actual.is_zero() and actual > persona.quantity:
            out.add(
                rule,
                *template,
                container=c,
                c=c,
                container_qty=actual.canonical(),
                persona_qty=persona.quantity.canonical(),
                raw=persona.raw,
            )

    # neither a CPU nor a memory request (zero counts as unset).
    if _unset_or_zero(container_requests, "cpu") and _unset_or_zero(container_requests, "memory"):
        out.add("R-3", *_R3, container=c, c=c)


def _probe_rules(out: _Collector, liveness_path: str, readiness_path: str, container: Container) -> None:
    c = container.name
    if liveness_path:
        probe = container.liveness_probe
        if probe is None or probe.http_get is None:
            # H-1: no liveness probe, or one that is not an HTTP GET.
            out.add("H-1", *_H1, container=c, c=c, path=liveness_path)
        elif (probe.http_get.path or "") != liveness_path:
            # H-2: an HTTP liveness probe on another path (exact string comparison).
            out.add("H-2", *_H2, container=c, c=c, actual=probe.http_get.path or "", expected=liveness_path)
    if readiness_path and container.readiness_probe is None:
        # H-3: no readiness probe at all (any probe type passes; the path is not compared).
        out.add("H-3", *_H3, container=c, c=c, path=readiness_path)


def _container_quantity(values: Mapping[str, int | str], key: str) -> Quantity | None:
    value = values.get(key)
    if value is None:
        return None
    try:
        return parse_quantity(value)
    except QuantityError:
        return None  # cannot happen for objects the API server accepted; treated as absent


def _unset_or_zero(values: Mapping[str, int | str], key: str) -> bool:
    quantity = _container_quantity(values, key)
    return quantity is None or quantity.is_zero()


class _Collector:
    """Accumulates one Deployment's findings, formatting the templates."""

    def __init__(self, deployment: str | None) -> None:
        self.deployment = deployment
        self.findings: list[Finding] = []

    def add(
        self,
        rule: str,
        severity: str,
        field: str,
        message: str,
        suggestion: str,
        *,
        container: str | None = None,
        **values: object,
    ) -> None:
        issue = ValidationIssue(
            severity=severity,
            field=field.format(**values),
            message=message.format(**values),
            suggestion=suggestion.format(**values),
            deployment=self.deployment,
        )
        self.findings.append(Finding(rule=rule, issue=issue, container=container))


# --------------------------------------------------------------------------- the exact strings
# They are part of the status API (the CLI and the webhook's warnings show them): never reworded.
# (severity, field, message, suggestion); str.format placeholders.

_Template = tuple[str, str, str, str]

_R1: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].resources.limits.cpu",
    "Container CPU limit ({container_qty}) exceeds persona limit ({persona_qty})",
    "Set CPU limit to at most {raw}",
)
_R2: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].resources.limits.memory",
    "Container memory limit ({container_qty}) exceeds persona limit ({persona_qty})",
    "Set memory limit to at most {raw}",
)
_R3: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].resources.requests",
    "No resource requests set on container",
    "Set resource requests for predictable scheduling",
)
_S1: _Template = (
    SEVERITY_ERROR,
    "spec.replicas",
    "Deployment replicas ({r}) below persona minimum ({min})",
    "Set replicas to at least {min}",
)
_S2: _Template = (
    SEVERITY_WARNING,
    "spec.replicas",
    "Deployment replicas ({r}) above persona maximum ({max})",
    "Set replicas to at most {max}",
)
_H1: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].livenessProbe",
    "Persona specifies livenessPath but container has no HTTP liveness probe",
    "Add a liveness probe at {path}",
)
_H2: _Template = (
    SEVERITY_INFO,
    "containers[{c}].livenessProbe.httpGet.path",
    "Liveness path ({actual}) differs from persona ({expected})",
    "Consider aligning to persona path: {expected}",
)
_H3: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].readinessProbe",
    "Persona specifies readinessPath but container has no readiness probe",
    "Add a readiness probe at {path}",
)
_P1: _Template = (
    SEVERITY_ERROR,
    "spec.template.spec.securityContext.runAsNonRoot",
    "Persona requires runAsNonRoot but Deployment does not enforce it",
    "Set spec.template.spec.securityContext.runAsNonRoot: true",
)
_P2: _Template = (
    SEVERITY_WARNING,
    "containers[{c}].securityContext.readOnlyRootFilesystem",
    "Persona requires readOnlyRootFilesystem but container does not set it",
    "Set readOnlyRootFilesystem: true on the container security context",
)
_P3: _Template = (
    SEVERITY_ERROR,
    "containers[{c}].securityContext.allowPrivilegeEscalation",
    "Persona forbids privilege escalation but container allows it",
    "Set allowPrivilegeEscalation: false",
)
# An unparseable persona limit (the CRD does not validate it).
_INVALID_CPU: _Template = (
    SEVERITY_ERROR,
    "spec.resources.limits.cpu",
    "Persona CPU limit ({raw}) is not a valid Kubernetes quantity",
    "Set spec.resources.limits.cpu to a Kubernetes quantity such as 500m or 2",
)
_INVALID_MEMORY: _Template = (
    SEVERITY_ERROR,
    "spec.resources.limits.memory",
    "Persona memory limit ({raw}) is not a valid Kubernetes quantity",
    "Set spec.resources.limits.memory to a Kubernetes quantity such as 512Mi or 1Gi",
)
