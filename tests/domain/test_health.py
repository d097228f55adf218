"""Health, phase and conditions, the Pending path (no Deployment) and setting conditions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from dorgu.domain.health import (
    Assessment,
    aggregate_health,
    assess,
    deployment_health,
    derive_phase,
    pending_conditions,
    ready_condition,
    validated_condition,
)
from dorgu.domain.kube import Deployment
from dorgu.domain.types import ApplicationPersonaSpec, ApplicationPersonaStatus
from dorgu.runtime.conditions import (
    DesiredCondition,
    set_status_condition,
    set_status_conditions,
)
from dorgu.runtime.meta import Condition

T0 = datetime(2026, 2, 15, 10, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 2, 15, 10, 1, 0, 123456, tzinfo=UTC)
T1_WHOLE = T1.replace(microsecond=0)


def cond(type_: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": "",
        "lastUpdateTime": "2026-02-15T09:00:00Z",
        "lastTransitionTime": "2026-02-15T09:00:00Z",
    }


def deployment(
    name: str = "web",
    *,
    ready: int | None = 2,
    total: int | None = 2,
    available: bool | None = True,
    progressing: bool | None = True,
    image: str | None = "nginx:1.27",
    status: bool = True,
) -> Deployment:
    """A Deployment whose status the test writes (no kubelet runs), as in the e2e tests."""
    conditions = []
    if available is not None:
        conditions.append(cond("Available", "True" if available else "False", "MinimumReplicasAvailable"))
    if progressing is not None:
        conditions.append(cond("Progressing", "True" if progressing else "False", "NewReplicaSetAvailable"))
    container: dict[str, Any] = {"name": "app"}
    if image is not None:
        container["image"] = image
    doc: dict[str, Any] = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default", "labels": {"app.kubernetes.io/name": "web"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [container]}},
        },
    }
    if status:
        doc["status"] = {"observedGeneration": 1, "conditions": conditions}
        if ready is not None:
            doc["status"]["readyReplicas"] = ready
        if total is not None:
            doc["status"]["replicas"] = total
    return msgspec.convert(doc, Deployment)


# --------------------------------------------------------------------------- health of one Deployment


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        ({"ready": 2, "total": 2}, ("Healthy", "2/2 replicas ready")),
        ({"ready": None, "total": None}, ("Healthy", "0/0 replicas ready")),  # includes 0/0
        ({"ready": 0, "total": 0, "progressing": False}, ("Healthy", "0/0 replicas ready")),
        ({"ready": 1, "total": 3}, ("Degraded", "1/3 replicas ready")),  # e.g. a rolling update
        ({"ready": 0, "total": 2}, ("Unknown", "Deployment is progressing")),  # available, none ready
        ({"ready": 1, "total": 2, "available": False}, ("Unknown", "Deployment is progressing")),
        ({"ready": 1, "total": 2, "available": False, "progressing": False},
         ("Unhealthy", "1/2 replicas ready")),
        ({"ready": 0, "total": 2, "available": None, "progressing": None},
         ("Unhealthy", "0/2 replicas ready")),
        ({"ready": 0, "total": 2, "progressing": False}, ("Unhealthy", "0/2 replicas ready")),
        ({"status": False}, ("Unhealthy", "0/0 replicas ready")),  # no status yet
    ],
)  # fmt: skip
def test_deployment_health_table(kwargs: dict[str, Any], expected: tuple[str, str]) -> None:
    assert deployment_health(deployment(**kwargs)) == expected


def test_aggregate_health() -> None:
    assert aggregate_health([]) == ("Unknown", "No matching Deployment found")
    assert aggregate_health([deployment(ready=1, total=3)]) == ("Degraded", "1/3 replicas ready")
    healthy = deployment("web")
    degraded = deployment("web-canary", ready=1, total=2)
    progressing = deployment("web-next", ready=0, total=1, available=False)
    unhealthy = deployment("web-old", ready=0, total=1, available=False, progressing=False)
    assert aggregate_health([healthy, degraded]) == (
        "Degraded",
        "web: 2/2 replicas ready; web-canary: 1/2 replicas ready",
    )
    assert aggregate_health([healthy, degraded, progressing])[0] == "Unknown"
    assert aggregate_health([healthy, progressing, unhealthy]) == (
        "Unhealthy",
        "web: 2/2 replicas ready; web-next: Deployment is progressing; web-old: 0/1 replicas ready",
    )
    assert aggregate_health([healthy, deployment("web-2")]) == (
        "Healthy",
        "web: 2/2 replicas ready; web-2: 2/2 replicas ready",
    )


# --------------------------------------------------------------------------- phase and conditions


@pytest.mark.parametrize(
    ("health", "errors", "phase"),
    [
        ("Healthy", False, "Active"),
        ("Healthy", True, "Degraded"),
        ("Unhealthy", True, "Degraded"),  # errors win over Unhealthy
        ("Unhealthy", False, "Failed"),
        ("Degraded", False, "Degraded"),
        ("Unknown", False, "Degraded"),
        ("Unknown", True, "Degraded"),
    ],
)
def test_derive_phase(health: str, errors: bool, phase: str) -> None:
    assert derive_phase(health, has_errors=errors) == phase


def test_condition_strings() -> None:
    assert ready_condition("Active") == DesiredCondition(
        "Ready", "True", "Active", "Deployment is healthy and passes all validations"
    )
    assert ready_condition("Degraded") == DesiredCondition("Ready", "False", "Issues", "Phase: Degraded")
    assert ready_condition("Failed") == DesiredCondition("Ready", "False", "Issues", "Phase: Failed")
    assert validated_condition(0) == DesiredCondition("Validated", "True", "Passed", "All validations passed")
    assert validated_condition(3) == DesiredCondition(
        "Validated", "False", "ValidationFailed", "3 validation error(s) found"
    )
    assert pending_conditions("order-service") == (
        DesiredCondition(
            "Ready", "False", "NoDeployment", "No Deployment with label app.kubernetes.io/name=order-service"
        ),
        DesiredCondition("Validated", "True", "Skipped", "No Deployment to validate"),
    )


# --------------------------------------------------------------------------- setting the conditions


def test_set_condition_appends_in_order() -> None:
    conditions, changed = set_status_conditions(
        None, [ready_condition("Active"), validated_condition(0)], now=T1
    )
    assert changed
    assert [c.type for c in conditions] == ["Ready", "Validated"]
    assert conditions[0] == Condition(
        type="Ready",
        status="True",
        reason="Active",
        message="Deployment is healthy and passes all validations",
        last_transition_time=T1_WHOLE,  # truncated to whole seconds
    )


def test_set_condition_refreshes_the_message_without_a_transition() -> None:
    """The message changes, the status does not: the message is refreshed, lastTransitionTime stays."""
    before, _ = set_status_condition([], validated_condition(2), now=T0, observed_generation=1)
    after, changed = set_status_condition(before, validated_condition(3), now=T1, observed_generation=1)
    assert changed
    assert after[0].message == "3 validation error(s) found"
    assert after[0].last_transition_time == T0
    assert before[0].message == "2 validation error(s) found"  # the input is not modified


def test_set_condition_reason_change_without_status_change() -> None:
    before, _ = set_status_condition([], DesiredCondition("Ready", "False", "NoDeployment", "x"), now=T0)
    after, changed = set_status_condition(before, ready_condition("Degraded"), now=T1)
    assert changed
    assert (after[0].reason, after[0].message, after[0].last_transition_time) == (
        "Issues",
        "Phase: Degraded",
        T0,
    )


def test_set_condition_status_change_moves_the_transition_time() -> None:
    before, _ = set_status_condition([], ready_condition("Degraded"), now=T0)
    after, changed = set_status_condition(before, ready_condition("Active"), now=T1)
    assert changed
    assert after[0].status == "True"
    assert after[0].last_transition_time == T1_WHOLE


def test_set_condition_no_change() -> None:
    before, _ = set_status_conditions(
        [], [ready_condition("Active"), validated_condition(0)], now=T0, observed_generation=2
    )
    after, changed = set_status_conditions(
        before, [ready_condition("Active"), validated_condition(0)], now=T1, observed_generation=2
    )
    assert not changed
    assert after == before


def test_set_condition_observed_generation() -> None:
    before, _ = set_status_condition([], validated_condition(0), now=T0, observed_generation=1)
    assert before[0].observed_generation == 1
    after, changed = set_status_condition(before, validated_condition(0), now=T1, observed_generation=2)
    assert changed
    assert after[0].observed_generation == 2
    assert after[0].last_transition_time == T0


def test_set_condition_keeps_other_conditions() -> None:
    foreign = Condition(
        type="BaselineLearned", status="True", reason="Learned", message="ok", last_transition_time=T0
    )
    conditions, _ = set_status_conditions(
        [foreign], [ready_condition("Active"), validated_condition(0)], now=T1
    )
    assert [c.type for c in conditions] == ["BaselineLearned", "Ready", "Validated"]
    assert conditions[0] is foreign


# --------------------------------------------------------------------------- assess


def spec(doc: dict[str, Any] | None = None) -> ApplicationPersonaSpec:
    return msgspec.convert(doc or {"name": "web", "type": "web"}, ApplicationPersonaSpec)


def status_json(result: Assessment) -> dict[str, Any]:
    status = ApplicationPersonaStatus(
        phase=result.phase,
        last_updated=result.last_updated,
        health=result.health,
        validation=result.validation,
        deployments=result.deployments,
        conditions=result.conditions,
    )
    return msgspec.json.decode(msgspec.json.encode(status))


def test_pending_path() -> None:
    result = assess(spec({"name": "test-app", "type": "api"}), [], now=T1, generation=1)
    assert result.phase == "Pending"
    assert result.deployments is None  # left as it was
    assert result.findings == []
    assert status_json(result) == {
        "phase": "Pending",
        "lastUpdated": "2026-02-15T10:01:00Z",
        "health": {
            "status": "Unknown",
            "lastCheck": "2026-02-15T10:01:00Z",
            "message": "No matching Deployment found",
        },
        "validation": {"passed": True, "lastChecked": "2026-02-15T10:01:00Z"},
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-02-15T10:01:00Z",
                "reason": "NoDeployment",
                "message": "No Deployment with label app.kubernetes.io/name=test-app",
            },
            {
                "type": "Validated",
                "status": "True",
                "observedGeneration": 1,
                "lastTransitionTime": "2026-02-15T10:01:00Z",
                "reason": "Skipped",
                "message": "No Deployment to validate",
            },
        ],
    }  # fmt: skip


def test_active_path() -> None:
    result = assess(spec({"name": "validated-app", "type": "web"}), [deployment()], now=T1, generation=3)
    assert result.phase == "Active"
    assert result.passed
    assert result.validation.passed is True
    assert result.validation.issues is None
    assert result.deployments is not None and result.deployments.current == "nginx:1.27"
    assert [(c.type, c.status, c.reason, c.message) for c in result.conditions] == [
        ("Ready", "True", "Active", "Deployment is healthy and passes all validations"),
        ("Validated", "True", "Passed", "All validations passed"),
    ]
    assert all(c.observed_generation == 3 for c in result.conditions)


def test_degraded_with_errors_writes_passed_false() -> None:
    """The worked nginx example: validation.passed: false is written, never omitted."""
    persona = spec({"name": "web", "type": "web", "policies": {"security": {}}})
    result = assess(persona, [deployment()], now=T0)
    doc = status_json(result)
    assert doc["phase"] == "Degraded"
    assert doc["health"] == {
        "status": "Healthy",
        "lastCheck": "2026-02-15T10:00:00Z",
        "message": "2/2 replicas ready",
    }
    assert doc["deployments"] == {"current": "nginx:1.27"}
    assert doc["validation"]["passed"] is False
    assert [i["field"] for i in doc["validation"]["issues"]] == [
        "spec.template.spec.securityContext.runAsNonRoot",
        "containers[app].securityContext.readOnlyRootFilesystem",
    ]
    assert all(i["deployment"] == "web" for i in doc["validation"]["issues"])
    assert [(c["type"], c["status"], c["reason"], c["message"]) for c in doc["conditions"]] == [
        ("Ready", "False", "Issues", "Phase: Degraded"),
        ("Validated", "False", "ValidationFailed", "1 validation error(s) found"),
    ]


def test_failed_and_degraded_without_errors() -> None:
    unhealthy = deployment(ready=0, total=2, available=False, progressing=False)
    assert assess(spec(), [unhealthy], now=T0).phase == "Failed"
    below = deployment(ready=1, total=3)
    assert assess(spec(), [below], now=T0).phase == "Degraded"
    rolling = deployment(ready=0, total=2, available=False)
    assert assess(spec(), [rolling], now=T0).phase == "Degraded"


def test_recovery_moves_the_transition_times() -> None:
    persona = spec({"name": "web", "type": "web", "scaling": {"minReplicas": 3}})
    bad = assess(persona, [deployment()], now=T0, generation=1)  # spec.replicas 2 < 3: S-1
    assert bad.phase == "Degraded"
    assert bad.validation.issues is not None and bad.validation.issues[0].field == "spec.replicas"
    fixed_doc = msgspec.to_builtins(deployment())
    fixed_doc["spec"]["replicas"] = 3
    fixed = msgspec.convert(fixed_doc, Deployment)
    good = assess(persona, [fixed], now=T1, conditions=bad.conditions, generation=1)
    assert good.phase == "Active"
    assert [(c.status, c.last_transition_time) for c in good.conditions] == [
        ("True", T1_WHOLE),
        ("True", T1_WHOLE),
    ]
    again = assess(persona, [fixed], now=T1 + timedelta(minutes=5), conditions=good.conditions, generation=1)
    assert again.conditions == good.conditions  # settled: nothing but timestamps elsewhere change


def test_several_deployments() -> None:
    result = assess(
        spec(), [deployment("web-b", image="b:2"), deployment("web-a", image="a:1", ready=1)], now=T0
    )
    assert result.deployments is not None and result.deployments.current == "a:1"  # first by name
    assert result.health.status == "Degraded"
    assert result.health.message == "web-a: 1/2 replicas ready; web-b: 2/2 replicas ready"
    assert result.phase == "Degraded"


def test_no_image_leaves_current_absent() -> None:
    result = assess(spec(), [deployment(image=None)], now=T0)
    assert status_json(result)["deployments"] == {}
