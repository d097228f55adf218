"""The persona rules: each fires and stays silent on the right inputs, with the exact strings."""

from __future__ import annotations

import copy
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from dorgu.domain.kube import Deployment
from dorgu.domain.quantity import QuantityError, parse_quantity
from dorgu.domain.rules import (
    Finding,
    deployment_app_name,
    error_count,
    evaluate,
    has_errors,
    matching_deployments,
    validate,
)
from dorgu.domain.types import ApplicationPersonaSpec, ValidationIssue

# --------------------------------------------------------------------------- builders

PERSONA: dict[str, Any] = {
    "name": "order-service",
    "type": "api",
    "tier": "critical",
    "resources": {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2000m", "memory": "2Gi"},
        "profile": "standard",
    },
    "scaling": {"minReplicas": 2, "maxReplicas": 10, "targetCPU": 70, "behavior": "balanced"},
    "health": {
        "livenessPath": "/actuator/health/liveness",
        "readinessPath": "/actuator/health/readiness",
        "port": 8080,
        "startupGracePeriod": "30s",
    },
    "policies": {
        "security": {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    },
}


def persona(**overrides: Any) -> ApplicationPersonaSpec:
    """The shipped sample persona (deploy/samples/), with top-level keys replaced (None removes one)."""
    doc = copy.deepcopy(PERSONA)
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return msgspec.convert(doc, ApplicationPersonaSpec)


def container(name: str = "app", **overrides: Any) -> dict[str, Any]:
    """A container that satisfies the sample persona; keys replaced (None removes one)."""
    doc: dict[str, Any] = {
        "name": name,
        "image": "registry.example.com/order-service:1.4.2",
        "ports": [{"containerPort": 8080, "name": "http", "protocol": "TCP"}],
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
        "livenessProbe": {
            "httpGet": {"path": "/actuator/health/liveness", "port": 8080, "scheme": "HTTP"},
            "initialDelaySeconds": 30,
            "periodSeconds": 10,
        },
        "readinessProbe": {"httpGet": {"path": "/actuator/health/readiness", "port": "http"}},
        "securityContext": {
            "readOnlyRootFilesystem": True,
            "allowPrivilegeEscalation": False,
            "runAsUser": 1000,
        },
    }
    for key, value in overrides.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return doc


def deployment(
    name: str = "order-service",
    *,
    containers: list[dict[str, Any]] | None = None,
    replicas: int | None = 3,
    labels: dict[str, str] | None = None,
    pod_security: dict[str, Any] | None = None,
) -> Deployment:
    """A realistic apps/v1 Deployment as the API server returns it.

    Built through JSON rather than ``msgspec.convert``: the probe handlers ``exec``/``tcpSocket``/
    ``grpc`` are ``msgspec.Raw`` in ``kube.Probe``, which only JSON decoding can fill.
    """
    if labels is None:
        labels = {"app.kubernetes.io/name": "order-service", "app.kubernetes.io/managed-by": "dorgu"}
    spec: dict[str, Any] = {
        "selector": {"matchLabels": {"app": name}},
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
        "template": {
            "metadata": {"labels": {"app": name}},
            "spec": {
                "containers": containers if containers is not None else [container()],
                "securityContext": pod_security if pod_security is not None else {"runAsNonRoot": True},
                "serviceAccountName": "default",
            },
        },
    }
    if replicas is not None:
        spec["replicas"] = replicas
    doc = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": name,
            "namespace": "shop",
            "uid": "8d3b2f9e-1c4a-4d6e-9f2b-7a5c3e1d0b42",
            "resourceVersion": "12345",
            "generation": 4,
            "labels": labels,
        },
        "spec": spec,
        "status": {"replicas": 3, "readyReplicas": 3, "availableReplicas": 3, "observedGeneration": 4},
    }
    return msgspec.json.decode(msgspec.json.encode(doc), type=Deployment)


def issue(
    severity: str, field: str, message: str, suggestion: str, deployment: str = "order-service"
) -> ValidationIssue:
    return ValidationIssue(
        severity=severity, field=field, message=message, suggestion=suggestion, deployment=deployment
    )


def only(findings: list[Finding]) -> Finding:
    assert len(findings) == 1, findings
    return findings[0]


# --------------------------------------------------------------------------- the baseline


def test_compliant_deployment_has_no_issues() -> None:
    assert validate(persona(), [deployment()]) == []


def test_empty_persona_checks_nothing() -> None:
    bare = msgspec.convert({"name": "order-service", "type": "api"}, ApplicationPersonaSpec)
    worst = deployment(containers=[{"name": "app"}], replicas=None, pod_security={})
    assert validate(bare, [worst]) == []


# ---------------------------------------------------------------------------


def test_r1_cpu_limit_above_persona() -> None:
    d = deployment(containers=[container(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "3"}})])
    finding = only(evaluate(persona(), [d]))
    assert finding.rule == "R-1"
    assert finding.container == "app"
    assert finding.issue == issue(
        "warning",
        "containers[app].resources.limits.cpu",
        "Container CPU limit (3) exceeds persona limit (2)",  # persona 2000m printed canonically
        "Set CPU limit to at most 2000m",  # the persona's raw string
    )


def test_r1_compares_numbers_not_strings() -> None:
    p = persona(resources={"limits": {"cpu": "9"}})
    d = deployment(containers=[container(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "10"}})])
    assert [f.issue.message for f in evaluate(p, [d])] == [
        "Container CPU limit (10) exceeds persona limit (9)"
    ]


def test_r1_int_persona_value() -> None:
    p = persona(resources={"limits": {"cpu": 2}})
    d = deployment(containers=[container(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "2500m"}})])
    finding = only(evaluate(p, [d]))
    assert finding.issue.message == "Container CPU limit (2500m) exceeds persona limit (2)"
    assert finding.issue.suggestion == "Set CPU limit to at most 2"


@pytest.mark.parametrize(
    "limits",
    [
        {"cpu": "2"},  # equal
        {"cpu": "2000m"},  # equal, other spelling
        {"cpu": "1999m"},
        {"cpu": "0"},  # zero is never flagged
        {},  # absent is never flagged
    ],
)
def test_r1_silent(limits: dict[str, str]) -> None:
    d = deployment(containers=[container(resources={"requests": {"cpu": "1"}, "limits": limits})])
    assert validate(persona(), [d]) == []


def test_r1_disabled_without_persona_cpu_limit() -> None:
    for resources in ({"limits": {"memory": "2Gi"}}, {"limits": {"cpu": ""}}, {"requests": {"cpu": "1"}}):
        p = persona(resources=resources)
        d = deployment(containers=[container(resources={"requests": {"cpu": "1"}, "limits": {"cpu": "64"}})])
        assert validate(p, [d]) == [], resources


def test_r2_memory_limit_above_persona() -> None:
    d = deployment(
        containers=[container(resources={"requests": {"memory": "1Gi"}, "limits": {"memory": "2049Mi"}})]
    )
    finding = only(evaluate(persona(), [d]))
    assert finding.rule == "R-2"
    assert finding.issue == issue(
        "warning",
        "containers[app].resources.limits.memory",
        "Container memory limit (2049Mi) exceeds persona limit (2Gi)",
        "Set memory limit to at most 2Gi",
    )


@pytest.mark.parametrize(
    ("persona_limit", "container_limit", "fires"),
    [
        ("1000Mi", "1Gi", True),  # 1Gi > 1000Mi
        ("1Gi", "1G", False),  # 1G < 1Gi
        ("1Gi", "1073741824", False),  # equal
        ("1Gi", "1073741825", True),
        ("1.5Gi", "1536Mi", False),
    ],
)
def test_r2_exact_comparison(persona_limit: str, container_limit: str, fires: bool) -> None:
    p = persona(resources={"limits": {"memory": persona_limit}})
    d = deployment(
        containers=[container(resources={"requests": {"memory": "1"}, "limits": {"memory": container_limit}})]
    )
    issues = validate(p, [d])
    assert bool(issues) is fires
    if fires:
        expected = (
            f"Container memory limit ({parse_quantity(container_limit)}) exceeds persona limit "
            f"({parse_quantity(persona_limit)})"
        )
        assert issues[0].message == expected


def test_r3_no_requests() -> None:
    d = deployment(containers=[container(resources={"limits": {"cpu": "1"}})])
    finding = only(evaluate(persona(), [d]))
    assert finding.rule == "R-3"
    assert finding.issue == issue(
        "warning",
        "containers[app].resources.requests",
        "No resource requests set on container",
        "Set resource requests for predictable scheduling",
    )


@pytest.mark.parametrize(
    ("resources", "fires"),
    [
        (None, True),  # no resources at all
        ({}, True),
        ({"requests": {"cpu": "0", "memory": "0"}}, True),  # zero counts as unset
        ({"requests": {"cpu": "0"}}, True),
        ({"requests": {"cpu": "100m"}}, False),  # one of the two is enough
        ({"requests": {"memory": "64Mi"}}, False),
        ({"requests": {"ephemeral-storage": "1Gi"}}, True),
    ],
)
def test_r3_requests(resources: dict[str, Any] | None, fires: bool) -> None:
    d = deployment(containers=[container(resources=resources)])
    assert [f.rule for f in evaluate(persona(), [d])] == (["R-3"] if fires else [])


def test_r3_enabled_by_resources_without_limits() -> None:
    d = deployment(containers=[container(resources=None)])
    assert [f.rule for f in evaluate(persona(resources={}), [d])] == ["R-3"]
    assert evaluate(persona(resources=None), [d]) == []


# --------------------------------------------------------------------------- S-1, S-2


def test_s1_below_minimum() -> None:
    finding = only(evaluate(persona(), [deployment(replicas=1)]))
    assert finding.rule == "S-1"
    assert finding.container is None
    assert finding.issue == issue(
        "error",
        "spec.replicas",
        "Deployment replicas (1) below persona minimum (2)",
        "Set replicas to at least 2",
    )


def test_s1_unset_replicas_count_as_one() -> None:
    finding = only(evaluate(persona(), [deployment(replicas=None)]))
    assert finding.issue.message == "Deployment replicas (1) below persona minimum (2)"


def test_s1_zero_replicas() -> None:
    assert [f.rule for f in evaluate(persona(), [deployment(replicas=0)])] == ["S-1"]
    zero_min = persona(scaling={"minReplicas": 0, "maxReplicas": 3})
    assert validate(zero_min, [deployment(replicas=0)]) == []


def test_s2_above_maximum() -> None:
    finding = only(evaluate(persona(), [deployment(replicas=11)]))
    assert finding.rule == "S-2"
    assert finding.issue == issue(
        "warning",
        "spec.replicas",
        "Deployment replicas (11) above persona maximum (10)",
        "Set replicas to at most 10",
    )


@pytest.mark.parametrize("replicas", [2, 5, 10])
def test_s_silent_in_range(replicas: int) -> None:
    assert validate(persona(), [deployment(replicas=replicas)]) == []


def test_s_each_bound_is_optional() -> None:
    assert validate(persona(scaling={"maxReplicas": 10}), [deployment(replicas=1)]) == []
    assert validate(persona(scaling={"minReplicas": 2}), [deployment(replicas=50)]) == []
    assert validate(persona(scaling=None), [deployment(replicas=50)]) == []


# --------------------------------------------------------------------------- H-1, H-2, H-3


def test_h1_no_liveness_probe() -> None:
    finding = only(evaluate(persona(), [deployment(containers=[container(livenessProbe=None)])]))
    assert finding.rule == "H-1"
    assert finding.issue == issue(
        "warning",
        "containers[app].livenessProbe",
        "Persona specifies livenessPath but container has no HTTP liveness probe",
        "Add a liveness probe at /actuator/health/liveness",
    )


@pytest.mark.parametrize(
    "probe", [{"tcpSocket": {"port": 8080}}, {"exec": {"command": ["true"]}}, {"grpc": {"port": 9090}}]
)
def test_h1_non_http_liveness_probe(probe: dict[str, Any]) -> None:
    d = deployment(containers=[container(livenessProbe=probe)])
    assert [f.rule for f in evaluate(persona(), [d])] == ["H-1"]


def test_h2_liveness_path_differs() -> None:
    d = deployment(containers=[container(livenessProbe={"httpGet": {"path": "/healthz", "port": 8080}})])
    finding = only(evaluate(persona(), [d]))
    assert finding.rule == "H-2"
    assert finding.issue == issue(
        "info",
        "containers[app].livenessProbe.httpGet.path",
        "Liveness path (/healthz) differs from persona (/actuator/health/liveness)",
        "Consider aligning to persona path: /actuator/health/liveness",
    )


def test_h2_exact_string_comparison() -> None:
    d = deployment(
        containers=[container(livenessProbe={"httpGet": {"path": "/actuator/health/liveness/", "port": 80}})]
    )
    assert [f.rule for f in evaluate(persona(), [d])] == ["H-2"]
    no_path = deployment(containers=[container(livenessProbe={"httpGet": {"port": 80}})])
    assert only(evaluate(persona(), [no_path])).issue.message == (
        "Liveness path () differs from persona (/actuator/health/liveness)"
    )


def test_h3_no_readiness_probe() -> None:
    finding = only(evaluate(persona(), [deployment(containers=[container(readinessProbe=None)])]))
    assert finding.rule == "H-3"
    assert finding.issue == issue(
        "warning",
        "containers[app].readinessProbe",
        "Persona specifies readinessPath but container has no readiness probe",
        "Add a readiness probe at /actuator/health/readiness",
    )


def test_h3_any_probe_type_and_path_passes() -> None:
    for probe in ({"tcpSocket": {"port": 8080}}, {"httpGet": {"path": "/elsewhere", "port": 8080}}):
        assert validate(persona(), [deployment(containers=[container(readinessProbe=probe)])]) == []


def test_h_paths_enable_their_rules() -> None:
    d = deployment(containers=[container(livenessProbe=None, readinessProbe=None)])
    assert [f.rule for f in evaluate(persona(health={"livenessPath": "/live"}), [d])] == ["H-1"]
    assert [f.rule for f in evaluate(persona(health={"readinessPath": "/ready"}), [d])] == ["H-3"]
    assert evaluate(persona(health={"livenessPath": "", "port": 8080}), [d]) == []
    assert evaluate(persona(health=None), [d]) == []


# --------------------------------------------------------------------------- P-1, P-2, P-3


def test_p1_pod_security_context_missing() -> None:
    finding = only(evaluate(persona(), [deployment(pod_security={})]))
    assert finding.rule == "P-1"
    assert finding.container is None
    assert finding.issue == issue(
        "error",
        "spec.template.spec.securityContext.runAsNonRoot",
        "Persona requires runAsNonRoot but Deployment does not enforce it",
        "Set spec.template.spec.securityContext.runAsNonRoot: true",
    )


def test_p1_container_level_run_as_non_root_is_ignored() -> None:
    c = container(securityContext={"runAsNonRoot": True, "readOnlyRootFilesystem": True})
    d = deployment(containers=[c], pod_security={"runAsNonRoot": False})
    assert [f.rule for f in evaluate(persona(), [d])] == ["P-1"]


def test_p1_once_per_deployment() -> None:
    d = deployment(containers=[container("a"), container("b")], pod_security={"fsGroup": 2000})
    assert [f.rule for f in evaluate(persona(), [d])] == ["P-1"]


def test_p2_read_only_root_filesystem() -> None:
    c = container(securityContext={"allowPrivilegeEscalation": False})
    finding = only(evaluate(persona(), [deployment(containers=[c])]))
    assert finding.rule == "P-2"
    assert finding.issue == issue(
        "warning",
        "containers[app].securityContext.readOnlyRootFilesystem",
        "Persona requires readOnlyRootFilesystem but container does not set it",
        "Set readOnlyRootFilesystem: true on the container security context",
    )
    explicit_false = container(securityContext={"readOnlyRootFilesystem": False})
    assert [f.rule for f in evaluate(persona(), [deployment(containers=[explicit_false])])] == ["P-2"]


def test_p3_privilege_escalation() -> None:
    c = container(securityContext={"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": True})
    finding = only(evaluate(persona(), [deployment(containers=[c])]))
    assert finding.rule == "P-3"
    assert finding.issue == issue(
        "error",
        "containers[app].securityContext.allowPrivilegeEscalation",
        "Persona forbids privilege escalation but container allows it",
        "Set allowPrivilegeEscalation: false",
    )


def test_p3_unset_passes() -> None:
    c = container(securityContext={"readOnlyRootFilesystem": True})
    assert validate(persona(), [deployment(containers=[c])]) == []


def test_security_policy_switches() -> None:
    worst = deployment(
        containers=[container(securityContext={"allowPrivilegeEscalation": True})], pod_security={}
    )
    lax = {
        "security": {"runAsNonRoot": False, "readOnlyRootFilesystem": False, "allowPrivilegeEscalation": True}
    }
    assert evaluate(persona(policies=lax), [worst]) == []
    assert evaluate(persona(policies={}), [worst]) == []  # no security object: no checks
    # An empty security object means all three CRD defaults (as the API server stores it).
    assert [f.rule for f in evaluate(persona(policies={"security": {}}), [worst])] == ["P-1", "P-2", "P-3"]


def test_appendix_a_example() -> None:
    """A worked example — an nginx persona with the default security policies and a plain nginx Deployment:
    only a missing pod-level runAsNonRoot and readOnlyRootFilesystem."""
    p = msgspec.convert(
        {"name": "nginx", "type": "web", "policies": {"security": {}}}, ApplicationPersonaSpec
    )
    d = deployment(
        "nginx",
        containers=[{"name": "app", "image": "nginx:1.27"}],
        pod_security={},
        labels={"app.kubernetes.io/name": "nginx"},
    )
    assert validate(p, [d]) == [
        issue(
            "error",
            "spec.template.spec.securityContext.runAsNonRoot",
            "Persona requires runAsNonRoot but Deployment does not enforce it",
            "Set spec.template.spec.securityContext.runAsNonRoot: true",
            deployment="nginx",
        ),
        issue(
            "warning",
            "containers[app].securityContext.readOnlyRootFilesystem",
            "Persona requires readOnlyRootFilesystem but container does not set it",
            "Set readOnlyRootFilesystem: true on the container security context",
            deployment="nginx",
        ),
    ]


# --------------------------------------------------------------------------- ordering


def test_order_of_all_rules() -> None:
    """Resources per container, replicas, probes per container, then P-1 and security per container."""
    p = persona(scaling={"minReplicas": 5, "maxReplicas": 3})  # 4 replicas: both S-1 and S-2
    bad_web = container(
        "web",
        resources={"limits": {"cpu": "4", "memory": "4Gi"}},
        livenessProbe=None,
        readinessProbe=None,
        securityContext={"allowPrivilegeEscalation": True},
    )
    bad_sidecar = container(
        "sidecar",
        resources={"limits": {"cpu": "3"}},
        livenessProbe={"httpGet": {"path": "/live", "port": 9000}},
        readinessProbe=None,
        securityContext={"allowPrivilegeEscalation": True},
    )
    d = deployment(containers=[bad_web, bad_sidecar], replicas=4, pod_security={})
    findings = evaluate(p, [d])
    assert [(f.rule, f.container) for f in findings] == [
        ("R-1", "web"),
        ("R-2", "web"),
        ("R-3", "web"),
        ("R-1", "sidecar"),
        ("R-3", "sidecar"),
        ("S-1", None),
        ("S-2", None),
        ("H-1", "web"),
        ("H-3", "web"),
        ("H-2", "sidecar"),
        ("H-3", "sidecar"),
        ("P-1", None),
        ("P-2", "web"),
        ("P-3", "web"),
        ("P-2", "sidecar"),
        ("P-3", "sidecar"),
    ]
    assert [f.severity for f in findings] == [
        "warning", "warning", "warning", "warning", "warning", "error", "warning", "warning", "warning",
        "info", "warning", "error", "warning", "error", "warning", "error",
    ]  # fmt: skip
    assert error_count(findings) == 4
    assert has_errors(findings)
    assert all(f.deployment == "order-service" for f in findings)


def test_init_containers_are_ignored() -> None:
    d = deployment()
    doc = msgspec.to_builtins(d)
    doc["spec"]["template"]["spec"]["initContainers"] = [{"name": "migrate", "image": "flyway:10"}]
    assert validate(persona(), [msgspec.json.decode(msgspec.json.encode(doc), type=Deployment)]) == []


# --------------------------------------------------------------------------- several Deployments


def test_every_deployment_sorted_by_name_with_its_name() -> None:
    canary = deployment("order-service-canary", replicas=1)
    main = deployment("order-service", containers=[container(readinessProbe=None)])
    issues = validate(persona(), [canary, main])
    assert issues == [
        issue(
            "warning",
            "containers[app].readinessProbe",
            "Persona specifies readinessPath but container has no readiness probe",
            "Add a readiness probe at /actuator/health/readiness",
            deployment="order-service",
        ),
        issue(
            "error",
            "spec.replicas",
            "Deployment replicas (1) below persona minimum (2)",
            "Set replicas to at least 2",
            deployment="order-service-canary",
        ),
    ]
    # The concatenation of the single-Deployment results, in order of name.
    assert issues == validate(persona(), [main]) + validate(persona(), [canary])
    assert b'"deployment":"order-service-canary"' in msgspec.json.encode(issues[1])


def test_no_deployments_no_issues() -> None:
    assert validate(persona(), []) == []
    assert not has_errors([])


# --------------------------------------------------------------------------- invalid persona quantities


def test_invalid_persona_cpu_gives_an_error_and_the_rest_still_runs() -> None:
    p = persona(resources={"limits": {"cpu": "lots", "memory": "1Gi"}})
    d = deployment(containers=[container(resources={"limits": {"cpu": "64", "memory": "2Gi"}})], replicas=1)
    findings = evaluate(p, [d])
    assert [f.rule for f in findings] == ["R-CPU", "R-2", "R-3", "S-1"]
    assert findings[0].container is None
    assert findings[0].issue == issue(
        "error",
        "spec.resources.limits.cpu",
        "Persona CPU limit (lots) is not a valid Kubernetes quantity",
        "Set spec.resources.limits.cpu to a Kubernetes quantity such as 500m or 2",
    )
    assert findings[1].issue.message == "Container memory limit (2Gi) exceeds persona limit (1Gi)"


def test_invalid_persona_memory() -> None:
    p = persona(resources={"limits": {"cpu": "2", "memory": "2 GB"}})
    findings = evaluate(p, [deployment()])
    assert [f.rule for f in findings] == ["R-MEM"]
    assert findings[0].issue == issue(
        "error",
        "spec.resources.limits.memory",
        "Persona memory limit (2 GB) is not a valid Kubernetes quantity",
        "Set spec.resources.limits.memory to a Kubernetes quantity such as 512Mi or 1Gi",
    )


def test_invalid_persona_quantity_once_per_deployment() -> None:
    p = persona(resources={"limits": {"cpu": "1.5 cores", "memory": "lots"}})
    issues = validate(p, [deployment("b"), deployment("a")])
    assert [(i.deployment, i.field) for i in issues] == [
        ("a", "spec.resources.limits.cpu"),
        ("a", "spec.resources.limits.memory"),
        ("b", "spec.resources.limits.cpu"),
        ("b", "spec.resources.limits.memory"),
    ]


@given(st.text(max_size=12))
def test_any_persona_cpu_value_never_raises(text: str) -> None:
    p = persona(resources={"limits": {"cpu": text}})
    issues = validate(p, [deployment()])
    try:
        parse_quantity(text)
    except QuantityError:
        if text:  # an empty value disables R-1 instead
            assert issues[0].field == "spec.resources.limits.cpu"
            assert issues[0].severity == "error"
            return
    assert all(i.field != "spec.resources.limits.cpu" for i in issues)


def test_unparseable_container_quantity_is_treated_as_absent() -> None:
    d = deployment(containers=[container(resources={"requests": {"cpu": "??"}, "limits": {"cpu": "??"}})])
    assert [f.rule for f in evaluate(persona(), [d])] == ["R-3"]


# --------------------------------------------------------------------------- matching


def labelled(name: str, labels: dict[str, str]) -> Deployment:
    return deployment(name, labels=labels)


def test_matching_by_name_label_then_app_label() -> None:
    by_name = labelled("a-name", {"app.kubernetes.io/name": "order-service"})
    by_app = labelled("b-app", {"app": "order-service"})
    empty_name = labelled("c-empty", {"app.kubernetes.io/name": "", "app": "order-service"})
    other_name = labelled("d-other", {"app.kubernetes.io/name": "billing", "app": "order-service"})
    unlabelled = labelled("e-none", {})
    template_only = labelled("f-wrong-place", {"team": "shop"})  # pod-template labels do not count
    both = labelled("0-both", {"app.kubernetes.io/name": "order-service", "app": "order-service"})
    found = matching_deployments(
        "order-service", [other_name, by_app, unlabelled, empty_name, by_name, template_only, both]
    )
    assert [d.metadata.name for d in found] == ["0-both", "a-name", "b-app", "c-empty"]
    assert matching_deployments("", [unlabelled, labelled("x", {"app": ""})]) == []


def test_deployment_app_name() -> None:
    assert deployment_app_name(labelled("x", {"app.kubernetes.io/name": "a", "app": "b"})) == "a"
    assert deployment_app_name(labelled("x", {"app.kubernetes.io/name": "", "app": "b"})) == "b"
    assert deployment_app_name(labelled("x", {"app": ""})) is None
    assert deployment_app_name(labelled("x", {})) is None
