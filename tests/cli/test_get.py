"""`persona status|list` and `cluster status` read from the API server with the kubeconfig (no operator
running), as `kubectl get` does; and against an operator that answers in another shape (the Go operator's),
a clear error instead of a traceback."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.envtest.controlplane import free_port

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
CP = "/apis/dorgu.io/v1/clusterpersonas"


@pytest.fixture
def kubeconfig(control_plane: ControlPlane, monkeypatch: pytest.MonkeyPatch, cli_env: Path) -> Path:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig))
    monkeypatch.delenv("DORGU_OPERATOR_URL", raising=False)
    return control_plane.kubeconfig


def persona(ns: str, name: str, *, tier: str = "critical") -> dict[str, Any]:
    return {
        "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
        "metadata": {"name": name, "namespace": ns, "labels": {"tier": tier}},
        "spec": {"name": name, "type": "api", "tier": tier},
    }  # fmt: skip


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.strip().splitlines()]


def test_persona_status_shows_the_printer_columns_without_an_operator(
    run_cli, kube: HarnessClient, namespace: str, kubeconfig
) -> None:
    kube.post(AP.format(ns=namespace), persona(namespace, "orders"))
    r = run_cli("persona", "status", "orders", "-n", namespace)
    assert r.code == 0, r.err
    table = lines(r.out)
    # The CRD's additionalPrinterColumns, as the server's Table gives them (kubectl's columns).
    assert table[0] == ["NAME", "TYPE", "TIER", "PHASE", "HEALTH", "AGE"]
    assert table[1][:5] == ["orders", "api", "critical", "<none>", "<none>"]
    # A status written later shows in its columns (read from the server, not computed here).
    obj = kube.get(f"{AP.format(ns=namespace)}/orders")
    obj["status"] = {
        "phase": "Degraded", "health": {"status": "Healthy"},
        "validation": {"passed": False, "issues": [
            {"severity": "error", "field": "spec.replicas", "message": "1 replica is below the minimum of 2"}
        ]},
    }  # fmt: skip
    kube.put(f"{AP.format(ns=namespace)}/orders/status", obj)
    r = run_cli("persona", "status", "orders", "-n", namespace)
    assert r.code == 0, r.err
    assert lines(r.out)[1][:5] == ["orders", "api", "critical", "Degraded", "Healthy"]
    # Below the columns, what a table cannot show: the validation issues.
    assert "Validation issues (1)" in r.out and "1 replica is below the minimum of 2" in r.out


def test_persona_status_json_and_yaml_are_the_servers_object(
    run_cli, kube: HarnessClient, namespace: str, kubeconfig
) -> None:
    kube.post(AP.format(ns=namespace), persona(namespace, "orders"))
    held = kube.get(f"{AP.format(ns=namespace)}/orders")
    r = run_cli("persona", "status", "orders", "-n", namespace, "-o", "json")
    assert r.code == 0, r.err
    assert json.loads(r.out) == held
    r = run_cli("persona", "status", "orders", "-n", namespace, "-o", "yaml")
    assert r.code == 0, r.err
    assert yaml.safe_load(r.out) == held


def test_persona_status_not_found_is_kubectls_message(run_cli, namespace: str, kubeconfig) -> None:
    r = run_cli("persona", "status", "nope", "-n", namespace)
    assert r.code == 1
    assert r.err == 'Error from server (NotFound): applicationpersonas.dorgu.io "nope" not found\n'
    assert r.out == ""


def test_persona_list_in_a_namespace_and_in_all(
    run_cli, kube: HarnessClient, namespace: str, kubeconfig
) -> None:
    kube.post(AP.format(ns=namespace), persona(namespace, "a", tier="critical"))
    kube.post(AP.format(ns=namespace), persona(namespace, "b", tier="standard"))
    r = run_cli("persona", "list", "-n", namespace)
    assert r.code == 0, r.err
    table = lines(r.out)
    assert table[0][0] == "NAME" and [row[0] for row in table[1:]] == ["a", "b"]
    r = run_cli("persona", "list", "-n", namespace, "-l", "tier=standard", "-o", "json")
    assert r.code == 0, r.err
    listed = json.loads(r.out)
    assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == ["b"]
    r = run_cli("persona", "list", "-A")
    assert r.code == 0, r.err
    table = lines(r.out)
    assert table[0][:2] == ["NAMESPACE", "NAME"]
    assert [namespace, "a"] in [row[:2] for row in table[1:]]
    r = run_cli("persona", "list", "-n", f"{namespace}-empty")
    assert r.code == 0 and r.out == "" and r.err == f"No resources found in {namespace}-empty namespace.\n"


@pytest.fixture
def cluster_persona(kube: HarnessClient) -> Iterator[str]:
    name = f"cp-{threading.get_ident() % 100000}"
    kube.post(CP, {"apiVersion": "dorgu.io/v1", "kind": "ClusterPersona", "metadata": {"name": name},
                   "spec": {"name": name, "environment": "staging"}})  # fmt: skip
    yield name
    kube.delete(f"{CP}/{name}")


def test_cluster_status_reads_the_api_server(
    run_cli, kube: HarnessClient, cluster_persona: str, kubeconfig
) -> None:
    r = run_cli("cluster", "status", cluster_persona)
    assert r.code == 0, r.err
    table = lines(r.out)
    assert table[0] == ["NAME", "ENVIRONMENT", "PHASE", "NODES", "APPS", "AGE"]
    assert table[1][:2] == [cluster_persona, "staging"]
    held = kube.get(f"{CP}/{cluster_persona}")
    r = run_cli("cluster", "status", cluster_persona, "-o", "json")
    assert r.code == 0 and json.loads(r.out) == held
    r = run_cli("cluster", "status", "--name", cluster_persona, "-o", "yaml")
    assert r.code == 0 and yaml.safe_load(r.out) == held
    r = run_cli("cluster", "status")  # no name: every ClusterPersona
    assert r.code == 0 and cluster_persona in [row[0] for row in lines(r.out)[1:]]
    r = run_cli("cluster", "status", "nope")
    assert r.code == 1
    assert r.err == 'Error from server (NotFound): clusterpersonas.dorgu.io "nope" not found\n'


# --------------------------------------------------------------------------- an operator of another shape


class GoShapedOperator:
    """A stand-in for the Go dorgu-operator's WebSocket server (spec: JSON envelopes, no subprotocol; a
    ``personas`` request is always answered with a list, whatever its payload asks). A stand-in because
    the real one is a Go program this repository does not build; its answers are copied from its protocol
    description (requests ``personas`` and ``cluster``)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.started = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    async def _ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()  # offers no subprotocol: the client falls back to JSON
        await ws.prepare(request)
        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(frame.data)
            if msg.get("topic") == "personas":
                payload: Any = {"personas": [{"namespace": "default", "name": "orders", "appName": "orders",
                                              "type": "api", "tier": "critical", "phase": "Active",
                                              "health": "Healthy"}]}  # fmt: skip
            else:
                payload = {"name": "prod", "environment": "production", "phase": "Ready",
                           "kubernetesVersion": "v1.31.0", "platform": "EKS", "nodeCount": 3,
                           "applicationCount": 12, "addons": ["argocd"]}  # fmt: skip
            await ws.send_str(json.dumps({"type": "response", "topic": msg.get("topic"),
                                          "requestId": msg.get("requestId"), "payload": payload,
                                          "timestamp": "2026-02-15T10:00:00Z"}))  # fmt: skip
        return ws

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        app = web.Application()
        app.router.add_get("/ws", self._ws)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        self.loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self.started.set()
        self.loop.run_forever()
        self.loop.run_until_complete(runner.cleanup())

    def __enter__(self) -> GoShapedOperator:
        self.thread.start()
        assert self.started.wait(30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(30)


def test_an_operator_answering_in_the_go_shape_gets_an_error_not_a_traceback(run_cli) -> None:
    with GoShapedOperator() as op:
        r = run_cli("persona", "status", "orders", "-n", "default", "--operator-url", op.url)
        assert r.code == 1
        assert "Traceback" not in r.err and "KeyError" not in r.err
        assert r.err.startswith(
            f"Error: the operator at {op.url} answered the persona get request in a shape"
        )
        assert "`persona`" in r.err and "--operator-url" in r.err
        # What the two protocols share still works: a list, and the cluster summary.
        r = run_cli("persona", "list", "--operator-url", op.url, "-o", "json")
        assert r.code == 0, r.err
        assert json.loads(r.out)[0]["appName"] == "orders"
        r = run_cli("cluster", "status", "--operator-url", op.url)
        assert r.code == 0, r.err
        assert "prod" in r.out and "argocd" in r.out
