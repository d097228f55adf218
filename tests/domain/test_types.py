"""Unit tests for the wire types (no cluster needed)."""

import json
import re
from pathlib import Path
from typing import Any

import msgspec
import pytest
import yaml

from dorgu.domain import kube
from dorgu.domain.types import (
    ApplicationPersona,
    ApplicationPersonaList,
    ApplicationPersonaSpec,
    ClusterPersona,
    ClusterPersonaList,
    PersonaPolicies,
    ResourceQuantities,
    SecurityPolicy,
    ValidationStatus,
    apply_defaults,
)
from dorgu.runtime.meta import MetadataView, ObjectMeta, Status, decode_list, decode_list_page

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "deploy" / "samples"
CRDS = ROOT / "deploy" / "crds"

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?"
    r"(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def load_yaml(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


def round_trip(doc: dict[str, Any], typ: type) -> tuple[Any, dict[str, Any]]:
    obj = msgspec.json.decode(json.dumps(doc).encode(), type=typ)
    return obj, json.loads(msgspec.json.encode(obj))


SERVER_META = {
    "name": "order-service",
    "namespace": "default",
    "uid": "6f1c3a52-8a1e-4a4e-9a37-0d3c7e1f2b11",
    "resourceVersion": "4711",
    "generation": 3,
    "creationTimestamp": "2026-02-15T09:59:00Z",
    "labels": {"app.kubernetes.io/name": "order-service"},
    "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "{}"},
    "finalizers": ["example.com/keep"],
    "ownerReferences": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "name": "owner",
            "uid": "1b2c",
            "controller": False,
            "blockOwnerDeletion": True,
        }
    ],
    "managedFields": [
        {
            "manager": "kubectl-client-side-apply",
            "operation": "Update",
            "apiVersion": "dorgu.io/v1",
            "time": "2026-02-15T09:59:00Z",
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:spec": {".": {}, "f:name": {}}},
        }
    ],
}

# A worked example: an nginx persona's status, Degraded by one error and one warning, as JSON (with a
# condition's observedGeneration and an issue's deployment).
APPENDIX_A_AP_STATUS: dict[str, Any] = {
    "phase": "Degraded",
    "lastUpdated": "2026-02-15T10:00:00Z",
    "deployments": {"current": "nginx:1.27"},
    "health": {"status": "Healthy", "lastCheck": "2026-02-15T10:00:00Z", "message": "2/2 replicas ready"},
    "validation": {
        "lastChecked": "2026-02-15T10:00:00Z",
        "issues": [
            {
                "severity": "error",
                "field": "spec.template.spec.securityContext.runAsNonRoot",
                "message": "Persona requires runAsNonRoot but Deployment does not enforce it",
                "suggestion": "Set spec.template.spec.securityContext.runAsNonRoot: true",
            },
            {
                "severity": "warning",
                "deployment": "app",
                "field": "containers[app].securityContext.readOnlyRootFilesystem",
                "message": "Persona requires readOnlyRootFilesystem but container does not set it",
                "suggestion": "Set readOnlyRootFilesystem: true on the container security context",
            },
        ],
    },
    "conditions": [
        {
            "type": "Ready",
            "status": "False",
            "reason": "Issues",
            "message": "Phase: Degraded",
            "lastTransitionTime": "2026-02-15T10:00:00Z",
        },
        {
            "type": "Validated",
            "status": "False",
            "reason": "ValidationFailed",
            "message": "1 validation error(s) found",
            "lastTransitionTime": "2026-02-15T10:00:00Z",
            "observedGeneration": 3,
        },
    ],
}

FULL_AP_STATUS: dict[str, Any] = {
    **APPENDIX_A_AP_STATUS,
    "observedGeneration": 3,
    "deployments": {
        "current": "nginx:1.27",
        "lastSuccessful": "nginx:1.26",
        "lastFailed": "",
        "history": [{"version": "1.26", "timestamp": "t", "status": "ok", "triggeredBy": "argocd"}],
    },
    "learned": {
        "resourceBaseline": {
            "avgCPU": "120m",
            "avgMemory": "256Mi",
            "peakCPU": "480m",
            "peakMemory": "1.2Gi",
        },
        "incidentCount": 0,
        "lastIncident": "none",
        "patterns": [{"type": "daily", "description": "peak at noon", "confidence": "0.92"}],
    },
    "recommendations": [{"type": "cost", "priority": "low", "message": "m", "action": "a"}],
    "argoCD": {
        "syncStatus": "Synced",
        "healthStatus": "Healthy",
        "lastSyncTime": "2026-02-15T09:58:00Z",
        "revision": "abc123",
        "applicationName": "order-service",
        "applicationNamespace": "argocd",
    },
}

APPENDIX_A_CP_STATUS: dict[str, Any] = {
    "phase": "Ready",
    "observedGeneration": 1,
    "lastDiscovery": "2026-02-15T10:00:00Z",
    "kubernetesVersion": "v1.31.0",
    "platform": "Kind",
    "nodeCount": 1,
    "nodes": [
        {
            "name": "kind-control-plane",
            "role": "control-plane",
            "ready": True,
            "kubeletVersion": "v1.31.0",
            "containerRuntime": "containerd://1.7.18",
            "labels": {
                "kubernetes.io/arch": "amd64",
                "kubernetes.io/os": "linux",
                "node-role.kubernetes.io/control-plane": "",
            },
            "taints": ["node-role.kubernetes.io/control-plane=:NoSchedule"],
            "capacity": {
                "cpu": "8",
                "memory": "16374648Ki",
                "pods": "110",
                "ephemeralStorage": "102626232Ki",
            },
            "allocatable": {
                "cpu": "8",
                "memory": "16374648Ki",
                "pods": "110",
                "ephemeralStorage": "102626232Ki",
            },
        },
        {"name": "worker-down", "ready": False},
    ],
    "resourceSummary": {
        "totalCPU": "8",
        "totalMemory": "16374648Ki",
        "allocatableCPU": "8",
        "allocatableMemory": "16374648Ki",
        "totalPods": 110,
        "runningPods": 9,
    },
    "addons": [
        {"name": "argocd", "type": "gitops", "installed": False, "namespace": "argocd"},
        {
            "name": "cert-manager",
            "type": "cert-management",
            "installed": True,
            "namespace": "cert-manager",
            "version": "v1.19.2",
            "healthy": False,
        },
    ],
    "namespaces": {"total": 5, "active": 5},
    "applicationCount": 2,
    "conditions": [
        {
            "type": "Discovered",
            "status": "True",
            "reason": "DiscoveryComplete",
            "message": "Cluster state discovered successfully",
            "lastTransitionTime": "2026-02-15T10:00:00Z",
        },
        {
            "type": "Healthy",
            "status": "True",
            "reason": "AllNodesReady",
            "message": "1/1 nodes ready",
            "lastTransitionTime": "2026-02-15T10:00:00Z",
        },
    ],
}


# --------------------------------------------------------------------------- samples


def test_application_persona_sample_round_trips() -> None:
    doc = load_yaml(SAMPLES / "applicationpersona-order-service.yaml")
    persona, out = round_trip(doc, ApplicationPersona)
    assert out == doc
    assert persona.spec.name == "order-service"
    assert persona.spec.tier == "critical"
    assert persona.spec.resources.limits.cpu == "2000m"
    assert persona.spec.scaling.target_cpu == 70
    assert persona.spec.dependencies[1].required is False
    assert persona.spec.policies.security.allow_privilege_escalation is False
    assert persona.metadata.labels == {
        "app.kubernetes.io/name": "order-service",
        "app.kubernetes.io/managed-by": "dorgu",
    }


def test_cluster_persona_sample_round_trips() -> None:
    doc = load_yaml(SAMPLES / "clusterpersona.yaml")
    cp, out = round_trip(doc, ClusterPersona)
    assert out == doc
    assert cp.spec.environment == "development"
    assert cp.spec.policies.networking.default_deny_ingress is False
    assert cp.metadata.namespace is None


def test_deployment_sample_decodes_and_matches_persona() -> None:
    dep = msgspec.json.decode(
        json.dumps(load_yaml(SAMPLES / "deployment-order-service.yaml")).encode(), type=kube.Deployment
    )
    persona = msgspec.json.decode(
        json.dumps(load_yaml(SAMPLES / "applicationpersona-order-service.yaml")).encode(),
        type=ApplicationPersona,
    )
    assert dep.metadata.labels["app.kubernetes.io/name"] == persona.spec.name
    assert dep.metadata.namespace == persona.metadata.namespace
    assert persona.spec.scaling.min_replicas <= dep.spec.replicas <= persona.spec.scaling.max_replicas
    pod = dep.spec.template.spec
    assert pod.security_context.run_as_non_root is True
    (c,) = pod.containers
    assert c.image == "ghcr.io/example/order-service:1.4.2"
    assert c.resources.requests == {"cpu": "500m", "memory": "1Gi"}
    assert c.resources.limits == {"cpu": "2", "memory": "2Gi"}
    assert c.liveness_probe.http_get.path == persona.spec.health.liveness_path
    assert c.liveness_probe.http_get.port == 8080
    assert c.readiness_probe.http_get.path == persona.spec.health.readiness_path
    assert c.security_context.read_only_root_filesystem is True
    assert c.security_context.allow_privilege_escalation is False
    assert c.ports[0].container_port == 8080
    with pytest.raises(AttributeError):
        dep.spec = kube.DeploymentSpec()  # type: ignore[misc]  # frozen


# --------------------------------------------------------------------------- status round trips


@pytest.mark.parametrize("status", [APPENDIX_A_AP_STATUS, FULL_AP_STATUS], ids=["appendix-a", "full"])
def test_application_persona_status_round_trips(status: dict[str, Any]) -> None:
    doc = {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": SERVER_META,
        "spec": {"name": "order-service", "type": "api", "tier": "standard", "policies": {"security": {}}},
        "status": status,
    }
    persona, out = round_trip(doc, ApplicationPersona)
    assert out == doc
    assert "passed" not in out["status"]["validation"]
    assert persona.status.validation.issues[1].deployment == "app"
    assert persona.status.conditions[1].observed_generation == 3


def test_full_status_keeps_zero_and_empty_values() -> None:
    doc = {"metadata": {"name": "x"}, "spec": {"name": "x", "type": "api"}, "status": FULL_AP_STATUS}
    _, out = round_trip(doc, ApplicationPersona)
    assert out["status"]["learned"]["incidentCount"] == 0
    assert out["status"]["deployments"]["lastFailed"] == ""


def test_cluster_persona_status_round_trips() -> None:
    doc = {
        "apiVersion": "dorgu.io/v1",
        "kind": "ClusterPersona",
        "metadata": {**SERVER_META, "namespace": None} | {"name": "local"},
        "spec": {"name": "local", "environment": "development"},
        "status": APPENDIX_A_CP_STATUS,
    }
    del doc["metadata"]["namespace"]
    cp, out = round_trip(doc, ClusterPersona)
    assert out == doc
    assert cp.status.nodes[1].ready is False
    assert out["status"]["nodes"][1] == {"name": "worker-down", "ready": False}
    assert out["status"]["addons"][0]["installed"] is False
    assert cp.status.node_count == 1


def test_passed_false_is_kept() -> None:
    assert json.loads(msgspec.json.encode(ValidationStatus(passed=False))) == {"passed": False}
    _, out = round_trip(
        {"metadata": {}, "spec": {"name": "a", "type": "api"}, "status": {"validation": {"passed": False}}},
        ApplicationPersona,
    )
    assert out["status"]["validation"] == {"passed": False}


def test_absent_optional_fields_stay_absent() -> None:
    persona = ApplicationPersona(
        metadata=ObjectMeta(name="a"), spec=ApplicationPersonaSpec(name="a", type="api")
    )
    assert json.loads(msgspec.json.encode(persona)) == {
        "metadata": {"name": "a"},
        "spec": {"name": "a", "type": "api"},
    }
    # present falsy values are written
    sec = SecurityPolicy(run_as_non_root=False, allow_privilege_escalation=False)
    assert json.loads(msgspec.json.encode(sec)) == {"runAsNonRoot": False, "allowPrivilegeEscalation": False}
    assert json.loads(msgspec.json.encode(PersonaPolicies())) == {}


def test_required_fields_are_enforced() -> None:
    with pytest.raises(msgspec.ValidationError, match="type"):
        msgspec.json.decode(b'{"spec": {"name": "a"}}', type=ApplicationPersona)
    with pytest.raises(msgspec.ValidationError, match="spec"):
        msgspec.json.decode(b'{"metadata": {}}', type=ApplicationPersona)


# --------------------------------------------------------------------------- quantities


def test_int_or_string_quantities() -> None:
    doc = {
        "spec": {
            "name": "a",
            "type": "api",
            "resources": {
                "limits": {"cpu": 2, "memory": "2Gi"},
                "requests": {"cpu": "500m", "memory": 1073741824},
            },
        }
    }
    persona, out = round_trip(doc, ApplicationPersona)
    assert persona.spec.resources.limits == ResourceQuantities(cpu=2, memory="2Gi")
    assert persona.spec.resources.requests.memory == 1073741824
    assert out["spec"] == doc["spec"]
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(
            b'{"spec":{"name":"a","type":"api","resources":{"limits":{"cpu":0.5}}}}', type=ApplicationPersona
        )

    cp = msgspec.json.decode(
        b'{"spec":{"name":"c","resourceQuotas":{"maxCPUPerNamespace":16,"maxMemoryPerNamespace":"64Gi",'
        b'"maxPodsPerNamespace":0,"maxPVCsPerNamespace":3},'
        b'"defaults":{"resources":{"limits":{"cpu":"1"}},"scaling":{"targetCPU":50}}}}',
        type=ClusterPersona,
    )
    assert cp.spec.resource_quotas.max_cpu_per_namespace == 16
    assert cp.spec.resource_quotas.max_memory_per_namespace == "64Gi"
    assert cp.spec.resource_quotas.max_pods_per_namespace == 0
    assert cp.spec.resource_quotas.max_pvcs_per_namespace == 3
    assert cp.spec.defaults.scaling.target_cpu == 50


def test_kube_partials_accept_int_or_string_and_ignore_unknown_fields() -> None:
    dep = msgspec.json.decode(
        json.dumps(
            {
                "metadata": {"name": "d", "creationTimestamp": "2026-02-15T10:00:00Z"},
                "spec": {
                    "replicas": 3,
                    "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": "25%"}},
                    "template": {
                        "spec": {
                            "containers": [
                                {
                                    "name": "c",
                                    "livenessProbe": {"httpGet": {"path": "/h", "port": "http"}},
                                    "readinessProbe": {"exec": {"command": ["true"]}},
                                    "resources": {"limits": {"cpu": 1}},
                                    "unknownField": {"x": 1},
                                }
                            ]
                        }
                    },
                },
                "status": {
                    "replicas": 3,
                    "readyReplicas": 2,
                    "conditions": [{"type": "Available", "status": "True"}],
                },
            }
        ).encode(),
        type=kube.Deployment,
    )
    c = dep.spec.template.spec.containers[0]
    assert c.liveness_probe.http_get.port == "http"
    assert c.readiness_probe.http_get is None
    assert msgspec.json.decode(c.readiness_probe.exec) == {"command": ["true"]}
    assert c.liveness_probe.exec == msgspec.Raw()  # absent
    assert c.resources.limits == {"cpu": 1}
    assert dep.spec.strategy.rolling_update.max_surge == 1
    assert dep.status.ready_replicas == 2


def test_node_pod_namespace_and_argo_partials() -> None:
    node = msgspec.json.decode(
        b'{"metadata":{"name":"n","labels":{"kubernetes.io/os":"linux"}},'
        b'"spec":{"providerID":"kind://docker/c/n","taints":[{"key":"k","effect":"NoSchedule"}]},'
        b'"status":{"capacity":{"cpu":"4","memory":"8Gi","pods":"110"},"allocatable":{"cpu":"3800m"},'
        b'"conditions":[{"type":"Ready","status":"True"}],'
        b'"nodeInfo":{"kubeletVersion":"v1.28.0","containerRuntimeVersion":"containerd://1.7.18"}}}',
        type=kube.Node,
    )
    assert node.spec.provider_id == "kind://docker/c/n"
    assert node.spec.taints[0].value is None
    assert node.status.node_info.container_runtime_version == "containerd://1.7.18"

    pod = msgspec.json.decode(
        b'{"metadata":{"name":"argocd-server-1"},"spec":{"containers":[{"name":"s","image":"quay.io/argo:v2"}]},'
        b'"status":{"phase":"Running"}}',
        type=kube.Pod,
    )
    assert pod.spec.containers[0].image == "quay.io/argo:v2"
    assert pod.status.phase == "Running"

    ns = msgspec.json.decode(
        b'{"metadata":{"name":"default"},"status":{"phase":"Active"}}', type=kube.Namespace
    )
    assert ns.status.phase == "Active"

    app = msgspec.json.decode(
        b'{"apiVersion":"argoproj.io/v1alpha1","kind":"Application",'
        b'"metadata":{"name":"order-service","namespace":"argocd","labels":{"app":"x"}},'
        b'"spec":{"project":"default","destination":{"server":"https://kubernetes.default.svc","namespace":"default"},'
        b'"sources":[{"repoURL":"https://git/x","path":"k8s","targetRevision":"HEAD"}]},'
        b'"status":{"sync":{"status":"Synced","revisions":["a","b"]},"health":{"status":"Healthy"},'
        b'"operationState":{"phase":"Succeeded","startedAt":"2026-02-15T09:00:00Z","finishedAt":"not-a-time"}}}',
        type=kube.ArgoApplication,
    )
    assert app.spec.destination.namespace == "default"
    assert app.spec.sources[0].repo_url == "https://git/x"
    assert app.status.sync.revisions == ["a", "b"]
    assert app.status.sync.revision is None
    assert app.status.health.status == "Healthy"
    assert app.status.operation_state.finished_at == "not-a-time"


# --------------------------------------------------------------------------- lists and Status


def test_decode_list_keeps_good_items_and_reports_bad_one() -> None:
    good = {"apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "spec": {"name": "a", "type": "api"}}
    body = {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersonaList",
        "metadata": {"resourceVersion": "99", "continue": "tok"},
        "items": [
            {**good, "metadata": {"name": "a", "namespace": "default"}},
            {**good, "metadata": {"name": "bad", "namespace": "team"}, "spec": {"name": "b", "type": 7}},
            {**good, "metadata": {"name": "c", "namespace": "default"}},
        ],
    }
    items, errors = decode_list(json.dumps(body).encode(), ApplicationPersona)
    assert [p.metadata.name for p in items] == ["a", "c"]
    assert len(errors) == 1
    err = errors[0]
    assert (err.index, err.name, err.namespace) == (1, "bad", "team")
    assert "spec.type" in err.message

    page = decode_list_page(json.dumps(body).encode(), ApplicationPersona)
    assert page.metadata.resource_version == "99"
    assert page.metadata.continue_ == "tok"

    # the full List type still round-trips a clean list
    clean = {**body, "items": [body["items"][0], body["items"][2]]}
    _, out = round_trip(clean, ApplicationPersonaList)
    assert out == clean


def test_decode_list_edge_cases() -> None:
    assert decode_list(b'{"kind":"ClusterPersonaList","items":null}', ClusterPersona) == ([], [])
    items, errors = decode_list(b'{"items":[42,{"metadata":"x"}]}', ClusterPersona)
    assert items == []
    assert [(e.index, e.name) for e in errors] == [(0, None), (1, None)]
    with pytest.raises(msgspec.DecodeError):
        decode_list(b'{"items": {}}', ClusterPersona)
    _, out = round_trip({"kind": "ClusterPersonaList", "metadata": {}, "items": []}, ClusterPersonaList)
    assert out == {"kind": "ClusterPersonaList", "metadata": {}, "items": []}


def test_status_object_round_trips() -> None:
    doc = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": 'applicationpersonas.dorgu.io "x" not found',
        "reason": "NotFound",
        "details": {"name": "x", "group": "dorgu.io", "kind": "applicationpersonas"},
        "code": 404,
    }
    status, out = round_trip(doc, Status)
    assert out == doc
    assert status.code == 404
    _, out = round_trip({"kind": "Status", "code": 409}, Status)
    assert out == {"kind": "Status", "code": 409}


# --------------------------------------------------------------------------- structural defaults


def test_apply_defaults_follows_parent_presence() -> None:
    p = ApplicationPersona(
        spec=ApplicationPersonaSpec(name="a", type="api", policies=PersonaPolicies(security=SecurityPolicy()))
    )
    d = apply_defaults(p)
    assert d.spec.tier == "standard"
    assert d.spec.policies.security == SecurityPolicy(
        run_as_non_root=True, read_only_root_filesystem=True, allow_privilege_escalation=False
    )
    assert d.spec.policies.deployment is None
    assert d.spec.scaling is None
    assert p.spec.tier is None  # input untouched
    bare = apply_defaults(
        ApplicationPersona(spec=ApplicationPersonaSpec(name="a", type="api", policies=PersonaPolicies()))
    )
    assert bare.spec.policies.security is None

    doc = load_yaml(SAMPLES / "applicationpersona-order-service.yaml")
    sample = msgspec.json.decode(json.dumps(doc).encode(), type=ApplicationPersona)
    assert json.loads(msgspec.json.encode(apply_defaults(sample))) == doc  # sample is fully specified

    cp = msgspec.json.decode(
        json.dumps(load_yaml(SAMPLES / "clusterpersona.yaml")).encode(), type=ClusterPersona
    )
    dcp = apply_defaults(cp)
    assert dcp.spec.policies.security.enforce_read_only_root is False
    assert dcp.spec.policies.networking.default_deny_egress is False
    assert dcp.spec.defaults.scaling is None


# --------------------------------------------------------------------------- CRD manifests


def crd(name: str) -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((CRDS / f"dorgu.io_{name}.yaml").read_text()) if d]
    assert len(docs) == 1
    return docs[0]


def schema_of(doc: dict[str, Any]) -> dict[str, Any]:
    (version,) = doc["spec"]["versions"]
    return version["schema"]["openAPIV3Schema"]


def at(schema: dict[str, Any], path: str) -> dict[str, Any]:
    node = schema
    for part in path.split("."):
        node = node["items"] if part == "[]" else node["properties"][part]
    return node


def walk(node: dict[str, Any], path: str = "") -> Any:
    yield path, node
    for key, child in node.get("properties", {}).items():
        yield from walk(child, f"{path}.{key}" if path else key)
    if "items" in node:
        yield from walk(node["items"], f"{path}.[]")
    if isinstance(node.get("additionalProperties"), dict):
        yield from walk(node["additionalProperties"], f"{path}.*")


@pytest.mark.parametrize(
    ("name", "kind", "scope", "columns"),
    [
        (
            "applicationpersonas",
            "ApplicationPersona",
            "Namespaced",
            [
                ("Type", "string", ".spec.type"),
                ("Tier", "string", ".spec.tier"),
                ("Phase", "string", ".status.phase"),
                ("Health", "string", ".status.health.status"),
                ("Shard", "string", ".metadata.labels.shard\\.dorgu\\.io/applicationpersona"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
        (
            "clusterpersonas",
            "ClusterPersona",
            "Cluster",
            [
                ("Environment", "string", ".spec.environment"),
                ("Phase", "string", ".status.phase"),
                ("Nodes", "integer", ".status.nodeCount"),
                ("Apps", "integer", ".status.applicationCount"),
                ("Age", "date", ".metadata.creationTimestamp"),
            ],
        ),
    ],
)
def test_crd_shape(name: str, kind: str, scope: str, columns: list[tuple[str, str, str]]) -> None:
    doc = crd(name)
    assert doc["apiVersion"] == "apiextensions.k8s.io/v1"
    assert doc["metadata"]["name"] == f"{name}.dorgu.io"
    spec = doc["spec"]
    assert spec["group"] == "dorgu.io"
    assert spec["scope"] == scope
    assert spec["names"] == {
        "kind": kind,
        "listKind": f"{kind}List",
        "plural": name,
        "singular": kind.lower(),
    }
    (version,) = spec["versions"]
    assert (version["name"], version["served"], version["storage"]) == ("v1", True, True)
    assert version["subresources"] == {"status": {}}
    got = [(c["name"], c["type"], c["jsonPath"]) for c in version["additionalPrinterColumns"]]
    assert got == columns
    schema = schema_of(doc)
    assert schema["type"] == "object"
    assert schema["required"] == ["spec"]
    text = (CRDS / f"dorgu.io_{name}.yaml").read_text()
    assert "x-kubernetes-validations" not in text  # kube-apiserver 1.20 has no CEL


@pytest.mark.parametrize("name", ["applicationpersonas", "clusterpersonas"])
def test_crd_schema_is_structural_and_described(name: str) -> None:
    schema = schema_of(crd(name))
    for path, node in walk(schema):
        if (
            path in ("", "metadata")
            or path.endswith(".*")
            or (path.endswith(".[]") and node.get("type") == "string")
        ):
            continue
        assert node.get("description"), f"{path} has no description"
        if node.get("x-kubernetes-int-or-string"):
            assert "type" not in node
            assert node["anyOf"] == [{"type": "integer"}, {"type": "string"}]
        else:
            assert node.get("type") in {"object", "array", "string", "integer", "boolean"}, path
        for req in node.get("required", []):
            assert req in node["properties"], f"{path} requires unknown {req}"


QUANTITY_PATHS = {
    "applicationpersonas": [
        f"spec.resources.{kind}.{res}" for kind in ("requests", "limits") for res in ("cpu", "memory")
    ],
    "clusterpersonas": [
        *(
            f"spec.defaults.resources.{kind}.{res}"
            for kind in ("requests", "limits")
            for res in ("cpu", "memory")
        ),
        "spec.resourceQuotas.maxCPUPerNamespace",
        "spec.resourceQuotas.maxMemoryPerNamespace",
    ],
}


@pytest.mark.parametrize("name", ["applicationpersonas", "clusterpersonas"])
def test_crd_quantities_are_int_or_string_with_pattern(name: str) -> None:
    schema = schema_of(crd(name))
    found = sorted(p for p, n in walk(schema) if n.get("x-kubernetes-int-or-string"))
    assert found == sorted(QUANTITY_PATHS[name])
    for path in QUANTITY_PATHS[name]:
        node = at(schema, path)
        assert node["pattern"] == QUANTITY_PATTERN
    pattern = re.compile(QUANTITY_PATTERN)
    for ok in ["2", "500m", "2000m", "1Gi", "1.5Gi", "0.5", ".5", "1e3", "100M", "+1k", "-1"]:
        assert pattern.match(ok), ok
    for bad in ["lots", "1GB", "", "1 Gi", "2cores", "1gi"]:
        assert not pattern.match(bad), bad


def test_application_persona_crd_fields() -> None:
    s = schema_of(crd("applicationpersonas"))
    assert at(s, "spec")["required"] == ["name", "type"]
    assert at(s, "spec.type")["enum"] == ["api", "web", "worker", "cron", "daemon"]
    defaults = {p: n["default"] for p, n in walk(s) if "default" in n}
    assert defaults == {
        "spec.tier": "standard",
        "spec.scaling.behavior": "balanced",
        "spec.health.startupGracePeriod": "30s",
        "spec.dependencies.[].required": True,
        "spec.networking.ports.[].protocol": "TCP",
        "spec.policies.security.runAsNonRoot": True,
        "spec.policies.security.readOnlyRootFilesystem": True,
        "spec.policies.security.allowPrivilegeEscalation": False,
        "spec.policies.deployment.strategy": "RollingUpdate",
        "spec.policies.deployment.maxSurge": "25%",
        "spec.policies.deployment.maxUnavailable": "25%",
        "spec.policies.maintenance.autoRestart": False,
    }
    assert at(s, "spec.scaling.minReplicas")["minimum"] == 0
    assert at(s, "spec.scaling.maxReplicas")["minimum"] == 1
    assert (at(s, "spec.scaling.targetCPU")["minimum"], at(s, "spec.scaling.targetCPU")["maximum"]) == (
        1,
        100,
    )
    assert at(s, "status.observedGeneration")["format"] == "int64"
    assert at(s, "status.validation.issues.[].deployment")["type"] == "string"
    assert at(s, "status.validation.issues.[]")["required"] == ["message", "severity"]
    assert at(s, "status.argoCD.healthStatus")["enum"] == [
        "Healthy",
        "Degraded",
        "Progressing",
        "Suspended",
        "Missing",
        "Unknown",
    ]


def test_cluster_persona_crd_fields() -> None:
    s = schema_of(crd("clusterpersonas"))
    assert at(s, "spec")["required"] == ["name"]
    defaults = {p: n["default"] for p, n in walk(s) if "default" in n}
    assert defaults == {
        "spec.environment": "development",
        "spec.policies.security.enforceNonRoot": True,
        "spec.policies.security.enforceReadOnlyRoot": False,
        "spec.policies.security.disallowPrivileged": True,
        "spec.policies.security.podSecurityStandard": "baseline",
        "spec.policies.networking.defaultDenyIngress": False,
        "spec.policies.networking.defaultDenyEgress": False,
        "spec.defaults.scaling.behavior": "balanced",
    }
    assert at(s, "status.nodeCount") == {
        "description": "Number of nodes discovered.",
        "type": "integer",
        "format": "int32",
    }
    assert at(s, "status.nodes.[]")["required"] == ["name", "ready"]
    assert at(s, "status.addons.[]")["required"] == ["installed", "name"]
    assert at(s, "status.namespaces")["required"] == ["total"]
    assert at(s, "status.nodes.[].labels")["additionalProperties"] == {"type": "string"}


@pytest.mark.parametrize("name", ["applicationpersonas", "clusterpersonas"])
def test_crd_conditions_are_list_maps(name: str) -> None:
    cond = at(schema_of(crd(name)), "status.conditions")
    assert cond["type"] == "array"
    assert cond["x-kubernetes-list-type"] == "map"
    assert cond["x-kubernetes-list-map-keys"] == ["type"]
    item = cond["items"]
    assert sorted(item["required"]) == ["lastTransitionTime", "message", "reason", "status", "type"]
    assert item["properties"]["status"]["enum"] == ["True", "False", "Unknown"]
    assert item["properties"]["observedGeneration"]["format"] == "int64"
    assert item["properties"]["lastTransitionTime"]["format"] == "date-time"


# --------------------------------------------------------------------------- CRD <-> Struct agreement


def struct_tree(t: Any) -> dict[str, Any] | None:
    """Wire names of a Struct type, recursively: {name: subtree or None}."""
    info = msgspec.inspect.type_info(t) if not isinstance(t, msgspec.inspect.Type) else t
    if isinstance(info, msgspec.inspect.UnionType):
        inner = [x for x in info.types if not isinstance(x, msgspec.inspect.NoneType)]
        structs = [x for x in inner if isinstance(x, (msgspec.inspect.StructType, msgspec.inspect.ListType))]
        return struct_tree(structs[0]) if len(structs) == 1 else None
    if isinstance(info, msgspec.inspect.ListType):
        sub = struct_tree(info.item_type)
        return {"[]": sub} if sub is not None else None
    if isinstance(info, msgspec.inspect.StructType):
        return {f.encode_name: struct_tree(f.type) for f in info.fields}
    return None


def schema_tree(node: dict[str, Any]) -> dict[str, Any] | None:
    if node.get("type") == "array":
        sub = schema_tree(node["items"])
        return {"[]": sub} if sub is not None else None
    if "properties" in node:
        return {k: schema_tree(v) for k, v in node["properties"].items()}
    return None


@pytest.mark.parametrize(
    ("name", "typ"), [("applicationpersonas", ApplicationPersona), ("clusterpersonas", ClusterPersona)]
)
def test_structs_match_crd_field_trees(name: str, typ: type) -> None:
    schema = schema_of(crd(name))
    structs = struct_tree(typ)
    for part in ("spec", "status"):
        assert structs[part] == schema_tree(schema["properties"][part]), part


def test_a_list_filter_judges_metadata_before_the_item_is_decoded() -> None:
    """``keep`` sees only metadata: a rejected item is never decoded whole (an undecodable one is not even
    reported), a kept one is, and an item whose metadata does not decode is reported, not filtered."""
    body = {
        "metadata": {"resourceVersion": "7"},
        "items": [
            {
                "metadata": {"name": "mine", "namespace": "t", "labels": {"app": "x"}},
                "spec": {"name": "a", "type": "api"},
            },
            {"metadata": {"name": "other", "namespace": "t", "labels": {"app": "y"}}, "spec": {"type": 42}},
            {"metadata": {"name": "bad", "namespace": "t", "labels": {"app": "x"}}, "spec": {"type": 42}},
            {"metadata": "garbage"},
        ],
    }
    seen: list[str | None] = []

    def keep(view: MetadataView) -> bool:
        seen.append(view.metadata.name)
        return (view.metadata.labels or {}).get("app") == "x"

    page = decode_list_page(json.dumps(body).encode(), ApplicationPersona, keep=keep)
    assert [i.metadata.name for i in page.items] == ["mine"]
    assert [(e.index, e.name) for e in page.errors] == [(2, "bad"), (3, None)]
    assert seen == ["mine", "other", "bad"]
