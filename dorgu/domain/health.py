"""ApplicationPersona health, phase and conditions.

Pure functions from the persona's spec, its matching Deployments (already selected with
:func:`dorgu.domain.rules.matching_deployments`) and the clock's ``now`` to the status fields the
ApplicationPersona controller owns. The one-call entry point is :func:`assess`.

Health of one Deployment, first match wins; ``ready`` = ``status.readyReplicas``,
``total`` = ``status.replicas`` (both 0 when unset):

=========================================  ================  ==============================
case                                       ``health.status``  ``health.message``
=========================================  ================  ==============================
``Available=True`` and ready == total      ``Healthy``        ``<ready>/<total> replicas ready``
``Available=True`` and ready > 0           ``Degraded``       ``<ready>/<total> replicas ready``
``Progressing=True``                       ``Unknown``        ``Deployment is progressing``
otherwise                                  ``Unhealthy``      ``<ready>/<total> replicas ready``
=========================================  ================  ==============================

**Several Deployments** (every matching Deployment counts, not one of them): the status is the
worst one, ranked ``Healthy`` < ``Degraded`` < ``Unknown`` < ``Unhealthy`` (``Unknown`` here means
"not available but still progressing", which is worse than "available with some pods missing");
the message lists every Deployment in order of name as ``<name>: <its message>``, joined with
``"; "`` — e.g. ``api: 2/2 replicas ready; api-canary: Deployment is progressing``. With exactly one
Deployment the message is that Deployment's message unchanged.

Phase, first match wins: ``Healthy`` and no errors → ``Active``; any error → ``Degraded``;
``Unhealthy`` → ``Failed``; otherwise → ``Degraded``. No Deployment → ``Pending`` (the Pending path).

Conditions, ``(status, reason, message)``:

* ``Ready``: phase ``Active`` → ``True``/``Active``/``Deployment is healthy and passes all
  validations``; other phases → ``False``/``Issues``/``Phase: <phase>``; no Deployment →
  ``False``/``NoDeployment``/``No Deployment with label app.kubernetes.io/name=<spec.name>`` (the
  string is kept although the ``app`` label fallback also matches).
* ``Validated``: errors → ``False``/``ValidationFailed``/``<n> validation error(s)
  found``; none → ``True``/``Passed``/``All validations passed``; no Deployment →
  ``True``/``Skipped``/``No Deployment to validate``.

:func:`assess` sets them with :func:`dorgu.runtime.conditions.set_status_conditions` (the rules of
upstream ``meta.SetStatusCondition``): a new type is appended (``Ready`` before ``Validated``); an
existing one gets its reason, message and ``observedGeneration`` refreshed whenever they change,
and its ``lastTransitionTime`` moves only when its ``status`` changes.

Timestamps written are ``now`` converted to UTC and truncated to whole seconds (``metav1.Time``
precision, :func:`dorgu.runtime.conditions.status_time`), so re-reading what the server stored compares
equal.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from datetime import datetime

from dorgu.domain.kube import Deployment
from dorgu.domain.resources import NAME_LABEL
from dorgu.domain.rules import Finding, error_count, evaluate
from dorgu.domain.types import (
    ApplicationPersonaSpec,
    DeploymentTracking,
    HealthStatus,
    ValidationStatus,
)
from dorgu.runtime.conditions import DesiredCondition, set_status_conditions, status_time
from dorgu.runtime.meta import Condition

__all__ = [
    "CONDITION_READY",
    "CONDITION_VALIDATED",
    "HEALTH_DEGRADED",
    "HEALTH_HEALTHY",
    "HEALTH_UNHEALTHY",
    "HEALTH_UNKNOWN",
    "PHASE_ACTIVE",
    "PHASE_DEGRADED",
    "PHASE_FAILED",
    "PHASE_PENDING",
    "Assessment",
    "aggregate_health",
    "assess",
    "deployment_health",
    "derive_phase",
    "pending_conditions",
    "ready_condition",
    "validated_condition",
]

HEALTH_HEALTHY = "Healthy"
HEALTH_DEGRADED = "Degraded"
HEALTH_UNHEALTHY = "Unhealthy"
HEALTH_UNKNOWN = "Unknown"

PHASE_PENDING = "Pending"
PHASE_ACTIVE = "Active"
PHASE_DEGRADED = "Degraded"
PHASE_FAILED = "Failed"

CONDITION_READY = "Ready"
CONDITION_VALIDATED = "Validated"

_NO_DEPLOYMENT_HEALTH = "No matching Deployment found"
# Worst-of ranking for several Deployments (see the module docstring).
_HEALTH_RANK = {HEALTH_HEALTHY: 0, HEALTH_DEGRADED: 1, HEALTH_UNKNOWN: 2, HEALTH_UNHEALTHY: 3}


# --------------------------------------------------------------------------- health


def deployment_health(deployment: Deployment) -> tuple[str, str]:
    """``(health.status, health.message)`` of one Deployment, by the table in the module docstring."""
    status = deployment.status
    conditions = (status.conditions if status is not None else None) or []
    available = any(c.type == "Available" and c.status == "True" for c in conditions)
    progressing = any(c.type == "Progressing" and c.status == "True" for c in conditions)
    ready = (status.ready_replicas if status is not None else None) or 0
    total = (status.replicas if status is not None else None) or 0
    counts = f"{ready}/{total} replicas ready"
    if available and ready == total:  # includes 0/0
        return HEALTH_HEALTHY, counts
    if available and ready > 0:
        return HEALTH_DEGRADED, counts
    if progressing:
        return HEALTH_UNKNOWN, "Deployment is progressing"
    return HEALTH_UNHEALTHY, counts


def aggregate_health(deployments: Sequence[Deployment]) -> tuple[str, str]:
    """Health over several Deployments (given in order of name): the worst status; see the docstring.

    No Deployment gives the Pending path's ``("Unknown", "No matching Deployment found")``; one
    Deployment gives exactly :func:`deployment_health`.
    """
    if not deployments:
        return HEALTH_UNKNOWN, _NO_DEPLOYMENT_HEALTH
    if len(deployments) == 1:
        return deployment_health(deployments[0])
    healths = [(d.metadata.name or "", *deployment_health(d)) for d in deployments]
    worst = max((status for _, status, _ in healths), key=_HEALTH_RANK.__getitem__)
    return worst, "; ".join(f"{name}: {message}" for name, _, message in healths)


# --------------------------------------------------------------------------- phase and conditions


def derive_phase(health_status: str, *, has_errors: bool) -> str:
    """The phase when at least one Deployment was found, first match wins."""
    if health_status == HEALTH_HEALTHY and not has_errors:
        return PHASE_ACTIVE
    if has_errors:
        return PHASE_DEGRADED
    if health_status == HEALTH_UNHEALTHY:
        return PHASE_FAILED
    return PHASE_DEGRADED  # Degraded or Unknown health without errors


def ready_condition(phase: str) -> DesiredCondition:
    """``Ready`` on the Deployment-found path."""
    if phase == PHASE_ACTIVE:
        return DesiredCondition(
            CONDITION_READY, "True", "Active", "Deployment is healthy and passes all validations"
        )
    return DesiredCondition(CONDITION_READY, "False", "Issues", f"Phase: {phase}")


def validated_condition(errors: int) -> DesiredCondition:
    """``Validated`` on the Deployment-found path; ``errors`` = the number of ``error`` issues."""
    if errors:
        return DesiredCondition(
            CONDITION_VALIDATED, "False", "ValidationFailed", f"{errors} validation error(s) found"
        )
    return DesiredCondition(CONDITION_VALIDATED, "True", "Passed", "All validations passed")


def pending_conditions(spec_name: str) -> tuple[DesiredCondition, DesiredCondition]:
    """``Ready`` and ``Validated`` on the no-Deployment (Pending) path."""
    return (
        DesiredCondition(
            CONDITION_READY, "False", "NoDeployment", f"No Deployment with label {NAME_LABEL}={spec_name}"
        ),
        DesiredCondition(CONDITION_VALIDATED, "True", "Skipped", "No Deployment to validate"),
    )


# --------------------------------------------------------------------------- one reconcile's status


@dataclasses.dataclass(frozen=True, slots=True)
class Assessment:
    """The status fields one reconcile computes.

    ``deployments`` is ``None`` on the Pending path, meaning "leave ``status.deployments`` as it
    is"; otherwise it replaces it: ``current`` is the image of the first container of
    the first matching Deployment in order of name (``None``, i.e. absent, when there is none).
    ``validation.passed`` is always written, ``false`` included (never dropped as empty); ``issues`` is absent
    when empty. ``findings`` carries the rule ids and containers (for Events and logs).
    """

    phase: str
    last_updated: datetime
    health: HealthStatus
    validation: ValidationStatus
    deployments: DeploymentTracking | None
    conditions: list[Condition]
    findings: list[Finding]

    @property
    def passed(self) -> bool:
        return bool(self.validation.passed)


def assess(
    spec: ApplicationPersonaSpec,
    deployments: Iterable[Deployment],
    *,
    now: datetime,
    conditions: Sequence[Condition] | None = None,
    generation: int | None = None,
) -> Assessment:
    """Validate, derive health, phase and conditions for a persona and its matching Deployments.

    ``deployments`` must already be the persona's (:func:`~dorgu.domain.rules.matching_deployments`);
    ``conditions`` are the persona's current ``status.conditions``; ``generation`` is its
    ``metadata.generation``, written as each condition's ``observedGeneration``.
    """
    at = status_time(now)
    ordered = sorted(deployments, key=lambda d: d.metadata.name or "")
    if not ordered:
        # Pending path: no Deployment matches the persona.
        new_conditions, _ = set_status_conditions(
            conditions, pending_conditions(spec.name), now=at, observed_generation=generation
        )
        return Assessment(
            phase=PHASE_PENDING,
            last_updated=at,
            health=HealthStatus(status=HEALTH_UNKNOWN, last_check=at, message=_NO_DEPLOYMENT_HEALTH),
            validation=ValidationStatus(passed=True, last_checked=at),
            deployments=None,
            conditions=new_conditions,
            findings=[],
        )

    findings = evaluate(spec, ordered)
    errors = error_count(findings)
    health_status, health_message = aggregate_health(ordered)
    phase = derive_phase(health_status, has_errors=errors > 0)
    new_conditions, _ = set_status_conditions(
        conditions,
        (ready_condition(phase), validated_condition(errors)),
        now=at,
        observed_generation=generation,
    )
    containers = ordered[0].spec.template.spec.containers
    image = containers[0].image if containers else None
    return Assessment(
        phase=phase,
        last_updated=at,
        health=HealthStatus(status=health_status, last_check=at, message=health_message),
        validation=ValidationStatus(
            passed=errors == 0,
            last_checked=at,
            issues=[finding.issue for finding in findings] or None,
        ),
        deployments=DeploymentTracking(current=image or None),
        conditions=new_conditions,
        findings=findings,
    )
