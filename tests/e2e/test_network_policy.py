"""Issue 17, item 4: the optional NetworkPolicy overlay (``deploy/overlays/network-policy``).

The local control plane has no network plugin, so nothing enforces the policy here: the test renders the
overlay, checks what the policy lets in (the webhook from the API server's range only, metrics and the
WebSocket from the named clients only, on the ports the StatefulSet serves) and has the real API server
validate it with a server-side dry run (in a test namespace: nothing is created). Where kubectl is
installed, its kustomize must build the same policy.
"""

from __future__ import annotations

import shutil
import subprocess
from typing import Any

import yaml

from dorgu.envtest import HarnessClient
from tests.e2e.kit import ROOT, render

OVERLAY = ROOT / "deploy" / "overlays" / "network-policy"


def _policy(objs: list[dict[str, Any]]) -> dict[str, Any]:
    found = [o for o in objs if o.get("kind") == "NetworkPolicy"]
    assert len(found) == 1, [o.get("kind") for o in objs]
    return found[0]


def _container_ports(objs: list[dict[str, Any]]) -> dict[str, int]:
    sts = next(o for o in objs if o.get("kind") == "StatefulSet")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    return {p["name"]: p["containerPort"] for p in container["ports"]}


def test_the_overlay_adds_one_ingress_policy_over_the_operator() -> None:
    objs = render(OVERLAY)
    base = render(ROOT / "deploy" / "operator")
    assert [o for o in objs if o.get("kind") != "NetworkPolicy"] == base  # the operator, unchanged
    pol = _policy(objs)
    ports = _container_ports(objs)
    spec = pol["spec"]
    assert pol["metadata"]["namespace"] == "dorgu-system"
    assert spec["podSelector"] == {"matchLabels": {"app.kubernetes.io/name": "dorgu"}}
    assert spec["policyTypes"] == ["Ingress"]
    by_port = {r["ports"][0]["port"]: r["from"] for r in spec["ingress"]}
    assert all(len(r["ports"]) == 1 for r in spec["ingress"])
    assert set(by_port) == {ports["webhook"], ports["metrics"], ports["websocket"]}
    # The webhook: an address range only (the API server), no namespace or pod may call it.
    assert [list(f) for f in by_port[ports["webhook"]]] == [["ipBlock"]]
    assert [list(f) for f in by_port[ports["metrics"]]] == [["namespaceSelector"]]
    assert sorted(next(iter(f)) for f in by_port[ports["websocket"]]) == ["ipBlock", "namespaceSelector"]


def test_the_api_server_accepts_the_policy(kube: HarnessClient, namespace: str) -> None:
    pol = _policy(render(OVERLAY))
    pol["metadata"]["namespace"] = namespace
    made = kube.post(
        f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies", pol, params={"dryRun": "All"}
    )
    assert made["spec"]["ingress"] == pol["spec"]["ingress"]  # nothing dropped or defaulted away
    listed = kube.get(f"/apis/networking.k8s.io/v1/namespaces/{namespace}/networkpolicies")
    assert listed["items"] == []  # a dry run: nothing was created


def test_kubectl_builds_the_same_policy() -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        print("kubectl not installed: the overlay was rendered by the test's own reader only")
        return
    built = subprocess.run([kubectl, "kustomize", str(OVERLAY)], capture_output=True, check=True, text=True)
    assert _policy([d for d in yaml.safe_load_all(built.stdout) if d]) == _policy(render(OVERLAY))
