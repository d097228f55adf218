"""The CRDs on a real API server: they install, validate, default, print, and round-trip through msgspec."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import yaml

from dorgu.domain.kube import Deployment
from dorgu.domain.types import (
    ApplicationPersona,
    ApplicationPersonaList,
    ApplicationPersonaStatus,
    ClusterPersona,
    ClusterPersonaList,
)
from dorgu.envtest import ApiError, ControlPlane, HarnessClient, format_table
from dorgu.runtime.meta import decode_list
from tests.conftest import SAMPLES

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
CP = "/apis/dorgu.io/v1/clusterpersonas"


def minimal_persona(name: str = "app", **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": name},
        "spec": {"name": name, "type": "api", **spec},
    }


def load_sample(kind: str) -> dict[str, Any]:
    for path in SAMPLES:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc["kind"] == kind:
                return dict(doc)
    raise LookupError(kind)


@pytest.fixture(scope="module")
def applied(control_plane: ControlPlane) -> Iterator[list[dict[str, Any]]]:
    objs = control_plane.apply_manifests(SAMPLES)
    yield objs


def test_both_crds_are_established(kube: HarnessClient) -> None:
    for name in ("applicationpersonas.dorgu.io", "clusterpersonas.dorgu.io"):
        crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conds = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conds["Established"] == "True"
        assert conds["NamesAccepted"] == "True"


def test_samples_apply(applied: list[dict[str, Any]]) -> None:
    assert sorted(o["kind"] for o in applied) == ["ApplicationPersona", "ClusterPersona", "Deployment"]
    assert all(o["metadata"]["uid"] for o in applied)


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda p: p["spec"].update(type="banana"), "spec.type"),
        (lambda p: p["spec"].update(resources={"limits": {"cpu": "lots"}}), "spec.resources.limits.cpu"),
        (lambda p: p["spec"].pop("name"), "spec.name"),
        (
            lambda p: p["spec"].update(resources={"requests": {"memory": "1GB"}}),
            "spec.resources.requests.memory",
        ),
        (lambda p: p["spec"].update(scaling={"maxReplicas": 0}), "spec.scaling.maxReplicas"),
        (lambda p: p["spec"].update(tier="gold"), "spec.tier"),
    ],
    ids=["type-banana", "cpu-lots", "no-spec-name", "memory-1GB", "maxReplicas-0", "tier-gold"],
)
def test_invalid_persona_is_rejected_naming_the_field(
    kube: HarnessClient, namespace: str, mutate, field
) -> None:
    persona = minimal_persona()
    mutate(persona)
    with pytest.raises(ApiError) as err:
        kube.post(AP.format(ns=namespace), persona)
    assert err.value.code == 422
    assert err.value.reason == "Invalid"
    causes = [c.get("field") for c in err.value.status["details"]["causes"]]
    assert field in causes, err.value.message
    assert field in err.value.message


@pytest.mark.parametrize("cpu", [2, "2", "500m", "0.5", "1.5Gi", "1e3"])
def test_quantities_accept_integers_and_strings(kube: HarnessClient, namespace: str, cpu: Any) -> None:
    name = f"q-{str(cpu).replace('.', '-').lower()}"
    got = kube.post(AP.format(ns=namespace), minimal_persona(name, resources={"limits": {"cpu": cpu}}))
    assert got["spec"]["resources"]["limits"]["cpu"] == cpu


def test_fractional_number_quantity_is_rejected_readably(kube: HarnessClient, namespace: str) -> None:
    """A YAML float (`cpu: 1.5`) cannot be int-or-string; the server says so for that field (use "1500m")."""
    with pytest.raises(ApiError) as err:
        kube.post(AP.format(ns=namespace), minimal_persona("f", resources={"limits": {"cpu": 1.5}}))
    assert err.value.code == 422
    assert "spec.resources.limits.cpu" in err.value.message


def test_server_applies_defaults(kube: HarnessClient, namespace: str) -> None:
    got = kube.post(
        AP.format(ns=namespace),
        minimal_persona("defaults", policies={"security": {}}, scaling={"minReplicas": 1}),
    )
    spec = got["spec"]
    assert spec["tier"] == "standard"
    assert spec["policies"]["security"] == {
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
    }
    assert spec["scaling"]["behavior"] == "balanced"
    bare = kube.post(AP.format(ns=namespace), minimal_persona("bare"))
    assert "policies" not in bare["spec"]  # defaults apply only where the parent object exists
    cluster = kube.post(
        CP,
        {
            "apiVersion": "dorgu.io/v1",
            "kind": "ClusterPersona",
            "metadata": {"name": "d"},
            "spec": {"name": "d"},
        },
    )
    try:
        assert cluster["spec"]["environment"] == "development"
    finally:
        kube.delete(f"{CP}/d")


def test_table_shows_printer_columns(kube: HarnessClient, applied: list[dict[str, Any]]) -> None:
    table = kube.table("dorgu.io/v1", "ApplicationPersona", namespace="default")
    assert [c["name"] for c in table["columnDefinitions"]] == [
        "Name",
        "Type",
        "Tier",
        "Phase",
        "Health",
        "Shard",
        "Age",
    ]
    row = next(r for r in table["rows"] if r["cells"][0] == "order-service")
    assert row["cells"][1:3] == ["api", "critical"]
    printed = format_table(table)
    # The shard is a wide column (priority 1: empty unless sharded): `kubectl get -o wide` shows it.
    assert printed.splitlines()[0].split() == ["NAME", "TYPE", "TIER", "PHASE", "HEALTH", "AGE"]
    wide = format_table(table, wide=True)
    assert wide.splitlines()[0].split() == ["NAME", "TYPE", "TIER", "PHASE", "HEALTH", "SHARD", "AGE"]

    ctable = kube.table("dorgu.io/v1", "ClusterPersona")
    assert [c["name"] for c in ctable["columnDefinitions"]] == [
        "Name",
        "Environment",
        "Phase",
        "Nodes",
        "Apps",
        "Age",
    ]
    nodes = next(c for c in ctable["columnDefinitions"] if c["name"] == "Nodes")
    assert nodes["type"] == "integer"


def test_nodes_column_is_the_node_count(kube: HarnessClient, applied: list[dict[str, Any]]) -> None:
    """The Nodes column prints `.status.nodeCount`, never `.status.resourceSummary.totalPods`."""
    cp = kube.get(f"{CP}/local")
    cp["status"] = {"phase": "Ready", "nodeCount": 3, "resourceSummary": {"totalPods": 330}}
    kube.put(f"{CP}/local/status", cp)
    table = kube.table("dorgu.io/v1", "ClusterPersona")
    cols = [c["name"] for c in table["columnDefinitions"]]
    row = next(r for r in table["rows"] if r["cells"][0] == "local")
    assert row["cells"][cols.index("Nodes")] == 3


def _roundtrip(raw: bytes, typ: type) -> tuple[Any, Any]:
    obj = msgspec.json.decode(raw, type=typ)
    return json.loads(raw), json.loads(msgspec.json.encode(obj))


def test_structs_round_trip_the_servers_json(kube: HarnessClient, applied: list[dict[str, Any]]) -> None:
    ap = kube.request_raw("GET", AP.format(ns="default") + "/order-service")
    want, got = _roundtrip(ap, ApplicationPersona)
    assert got == want
    assert "managedFields" in want["metadata"]  # the server's own bookkeeping survives too

    cp = kube.request_raw("GET", f"{CP}/local")
    want, got = _roundtrip(cp, ClusterPersona)
    assert got == want

    for path, typ in ((AP.format(ns="default"), ApplicationPersonaList), (CP, ClusterPersonaList)):
        want, got = _roundtrip(kube.request_raw("GET", path), typ)
        assert got == want

    dep = msgspec.json.decode(
        kube.request_raw("GET", "/apis/apps/v1/namespaces/default/deployments/order-service"), type=Deployment
    )
    assert dep.metadata.labels is not None
    assert dep.metadata.labels["app.kubernetes.io/name"] == "order-service"
    assert dep.spec is not None and dep.spec.replicas == 2


def test_status_with_false_and_zero_survives_the_server(kube: HarnessClient, namespace: str) -> None:
    """`validation.passed: false` and `incidentCount: 0` are written and read back, not omitted."""
    created = kube.post(AP.format(ns=namespace), minimal_persona("st"))
    persona = msgspec.json.decode(json.dumps(created).encode(), type=ApplicationPersona)
    status = {
        "phase": "Degraded",
        "validation": {
            "passed": False,
            "lastChecked": "2026-02-15T10:00:00Z",
            "issues": [
                {
                    "severity": "error",
                    "field": "spec.replicas",
                    "message": "Deployment replicas (1) below persona minimum (2)",
                    "deployment": "st",
                }
            ],
        },
        "learned": {"incidentCount": 0},
    }
    persona = msgspec.structs.replace(persona, status=msgspec.convert(status, type=ApplicationPersonaStatus))
    body = msgspec.json.encode(persona)
    stored = kube.put(f"{AP.format(ns=namespace)}/st/status", json.loads(body))
    assert stored["status"]["validation"]["passed"] is False
    assert stored["status"]["learned"]["incidentCount"] == 0
    assert stored["status"]["validation"]["issues"][0]["deployment"] == "st"
    again = msgspec.json.decode(json.dumps(stored).encode(), type=ApplicationPersona)
    assert again.status is not None and again.status.validation is not None
    assert again.status.validation.passed is False


def test_one_odd_item_does_not_fail_a_list(kube: HarnessClient, namespace: str) -> None:
    kube.post(AP.format(ns=namespace), minimal_persona("good"))
    raw = json.loads(kube.request_raw("GET", AP.format(ns=namespace)))
    odd = copy.deepcopy(raw["items"][0])
    odd["metadata"]["name"] = "odd"
    odd["spec"]["scaling"] = {"minReplicas": "many"}  # not what the CRD would store, e.g. a future version
    raw["items"].append(odd)
    items, errors = decode_list(json.dumps(raw).encode(), ApplicationPersona)
    assert [i.metadata.name for i in items] == ["good"]
    assert len(errors) == 1 and errors[0].name == "odd"
