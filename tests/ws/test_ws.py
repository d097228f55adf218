"""The WebSocket server as a real child process of a real supervisor, the real CLI as real processes, and
the real control plane. Every wait polls with a deadline."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from cli.ws_client import Follower, OperatorConnection, RemoteError, WsClientSettings
from controllers.applicationpersona import PersonaSettings
from dorgu.domain import protocol as p
from dorgu.envtest import ApiError, ControlPlane, HarnessClient
from tests.controllers.test_applicationpersona import Running, deployment, persona, set_deployment_status
from tests.runtime.programs.tcpproxy import TcpProxy
from tests.ws.kit import CliStream, Operator, dorgu, poll

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
DEP = "/apis/apps/v1/namespaces/{ns}/deployments"
_n = itertools.count()
DEADLINE_S = 60.0
"""How long any one wait may take before the test fails: a hang guard, never a speed claim."""


@pytest.fixture
def ns(kube: HarnessClient) -> Iterator[str]:
    name = f"ws-{next(_n)}-{int(time.time() * 1000) % 1000000}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def api_state(kube: HarnessClient, ns: str) -> dict[str, str]:
    items = kube.get(AP.format(ns=ns))["items"]
    return {f"{ns}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


# -- Go CLI compatibility: JSON frames, the fixed envelope, requestId on errors --------------------------


def test_json_client_without_subprotocol_and_errors_echo_request_id(operator: Operator) -> None:
    """How fast the server answers is ``bench/ws.py``'s figure (error round trip); here, what it answers."""

    async def main() -> None:
        async with aiohttp.ClientSession() as s, s.ws_connect(operator.url("open")) as ws:
            assert ws.protocol is None
            await ws.send_str(json.dumps({"type": "subscribe", "topic": "personas", "requestId": "s1",
                                          "timestamp": "2026-02-15T10:00:00Z"}))  # fmt: skip
            reply = json.loads(await ws.receive_str(timeout=DEADLINE_S))
            assert reply["type"] == "response" and reply["requestId"] == "s1"
            assert reply["payload"]["status"] == "subscribed" and reply["payload"]["topic"] == "personas"
            assert reply["timestamp"].endswith("Z")
            for i, (msg, code) in enumerate(
                [
                    ({"type": "request", "topic": "deployments"}, "unknown_topic"),
                    ({"type": "ping"}, "unknown_message_type"),
                    ({"type": "request", "topic": "cluster", "payload": {"name": "nope"}}, "not_found"),
                    (
                        {"type": "request", "topic": "personas", "payload": {"labelSelector": "a=("}},
                        "invalid_request",
                    ),
                ]
                * 3
            ):
                await ws.send_str(json.dumps({**msg, "requestId": f"r{i}"}))
                err = json.loads(await ws.receive_str(timeout=DEADLINE_S))
                assert err["type"] == "error" and err["requestId"] == f"r{i}", err
                assert err["payload"]["code"] == code, err

    asyncio.run(main())


# -- persona watch: Pending -> Active -> Degraded -------------------------------------------------------


def test_persona_watch_shows_pending_active_degraded(
    operator: Operator, control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    ctl = Running(control_plane, PersonaSettings(revalidate_interval_s=2.0, heartbeat_interval_s=3600))
    cli = CliStream(
        "persona", "watch", "shop", "-n", ns, "-o", "json", "--operator-url", operator.url("open")
    )
    try:

        def phases() -> list[str]:
            out: list[str] = []
            for ev in cli.json_lines():
                ph = ev.get("phase")
                if ph and (not out or out[-1] != ph):
                    out.append(ph)
            return out

        kube.post(AP.format(ns=ns), persona("shop", scaling={"minReplicas": 2}))
        poll(lambda: "Pending" in phases(), f"Pending in the watch (stderr: {cli.err})", DEADLINE_S)
        kube.post(DEP.format(ns=ns), deployment("shop", replicas=2))
        set_deployment_status(kube, ns, "shop", ready=2, total=2, available=True)
        poll(lambda: "Active" in phases(), f"Active in the watch: {phases()}", DEADLINE_S)
        kube.patch(f"{DEP.format(ns=ns)}/shop", {"spec": {"replicas": 1}})
        set_deployment_status(kube, ns, "shop", ready=1, total=1, available=True)
        poll(lambda: "Degraded" in phases(), f"Degraded in the watch: {phases()}", DEADLINE_S)
        seq = phases()
        assert seq.index("Pending") < seq.index("Active") < seq.index("Degraded"), seq
        last = [e for e in cli.json_lines() if e.get("name") == "shop"][-1]
        assert last["validation"]["passed"] is False and last["validation"]["errorCount"] >= 1
    finally:
        assert cli.stop() == 0
        ctl.close()


# -- no missed changes: server killed mid-stream; connection cut (replay) ----------------------------------


def _churn(kube: HarnessClient, ns: str, names: list[str], rounds: int, stop: threading.Event) -> None:
    for r in range(rounds):
        for name in names:
            if stop.is_set():
                return
            try:
                kube.patch(f"{AP.format(ns=ns)}/{name}", {"metadata": {"labels": {"round": str(r)}}})
            except ApiError as e:
                if e.code != 404:  # the test deletes some personas while this churns: those are gone
                    raise


def _cli_state(cli: CliStream) -> dict[str, str]:
    state: dict[str, str] = {}
    for ev in cli.json_lines():
        key = f"{ev['namespace']}/{ev['name']}"
        if ev["eventType"] == "deleted":
            state.pop(key, None)
        else:
            state[key] = ev["resourceVersion"]
    return state


def test_kill_server_mid_stream_client_ends_with_every_change(
    operator: Operator, kube: HarnessClient, ns: str
) -> None:
    names = [f"p{i:03d}" for i in range(200)]
    for name in names:
        kube.post(AP.format(ns=ns), persona(name))
    cli = CliStream("persona", "watch", "-n", ns, "-o", "json", "--operator-url", operator.url("open"))
    stop = threading.Event()
    try:
        poll(lambda: len(_cli_state(cli)) == 200, f"the initial 200 (stderr: {cli.err[-5:]})", DEADLINE_S)
        churn = threading.Thread(target=_churn, args=(kube, ns, names, 3, stop))
        churn.start()
        time.sleep(1.0)
        starts = len(operator.pids("open"))
        operator.kill_child("open")  # SIGKILL mid-stream; the supervisor restarts it
        for name in names[:20]:  # deletions while it is down: implied by the snapshot
            kube.delete(f"{AP.format(ns=ns)}/{name}")
        churn.join(120)
        operator.ready("open", after=starts)
        want = api_state(kube, ns)
        poll(lambda: _cli_state(cli) == want, "the CLI's set to equal the API's", DEADLINE_S)
        assert any("reconnect" in line for line in cli.err), cli.err
    finally:
        stop.set()
        cli.stop()


def test_connection_cut_resumes_by_replay_without_gaps(
    operator: Operator, kube: HarnessClient, ns: str
) -> None:
    port = int(operator.url("open").split(":")[2].split("/")[0])
    proxy = TcpProxy(target_port=port).start()
    names = [f"q{i:02d}" for i in range(30)]
    for name in names:
        kube.post(AP.format(ns=ns), persona(name))
    events: list[tuple[str, dict[str, Any]]] = []

    def emit(kind: str, item: dict[str, Any]) -> None:
        events.append((kind, item))
        if len(events) == 30 + 25:  # the snapshot's 30, then 25 live ones: cut mid-churn
            proxy.cut()

    async def main() -> Follower:
        settings = WsClientSettings(url=f"ws://127.0.0.1:{proxy.port}/ws", reconnect_initial_s=0.1)
        f = Follower(settings, p.TOPIC_PERSONAS, namespace=ns, emit=emit)
        stop = asyncio.Event()
        task = asyncio.create_task(f.run(stop))
        await asyncio.wait_for(f.synced.wait(), DEADLINE_S)

        def churn() -> None:
            _churn(kube, ns, names, 3, threading.Event())
            for name in names[:5]:
                kube.delete(f"{AP.format(ns=ns)}/{name}")

        await asyncio.get_running_loop().run_in_executor(None, churn)
        want = api_state(kube, ns)
        deadline = time.monotonic() + DEADLINE_S
        while f.connects < 2 or {k: v["resourceVersion"] for k, v in f.state.items()} != want:
            assert time.monotonic() < deadline, f"follower did not converge (connects={f.connects})"
            await asyncio.sleep(0.1)
        stop.set()
        await task
        return f

    try:
        f = asyncio.run(main())
    finally:
        proxy.stop()
    assert f.connects >= 2 and f.snapshots == 1  # resumed by replay, not by another snapshot


# -- auth ------------------------------------------------------------------------------------------------


def test_auth_no_token_bad_token_no_rbac_and_namespace_scoped_rbac(
    operator: Operator, control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    url = operator.url("auth")
    other = f"{ns}-b"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    try:
        kube.post(AP.format(ns=ns), persona("mine"))
        kube.post(AP.format(ns=other), persona("theirs"))
        r = dorgu("persona", "list", "-n", ns, "--operator-url", url, "--kubeconfig", "/nonexistent")
        assert r.returncode == 1 and "401" in r.stderr, r.stderr
        r = dorgu("persona", "list", "-n", ns, "--operator-url", url, "--token", "not-a-token")
        assert r.returncode == 1 and "401" in r.stderr, r.stderr
        nobody = control_plane.service_account_token(ns, "nobody")
        r = dorgu("persona", "list", "-n", ns, "--operator-url", url, "--token", nobody)
        assert r.returncode == 1 and "forbidden" in r.stderr, r.stderr
        reader = control_plane.service_account_token(ns, "reader")
        kube.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
            "metadata": {"name": "persona-reader"},
            "rules": [{"apiGroups": ["dorgu.io"], "resources": ["applicationpersonas"],
                       "verbs": ["get", "list", "watch"]}],
        })  # fmt: skip
        kube.post(f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings", {
            "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
            "metadata": {"name": "reader"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "persona-reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "reader", "namespace": ns}],
        })  # fmt: skip

        def listed() -> bool:
            r = dorgu("persona", "list", "-n", ns, "-o", "json", "--operator-url", url, "--token", reader)
            return r.returncode == 0 and [i["name"] for i in json.loads(r.stdout)] == ["mine"]

        poll(listed, "the reader to list its namespace", DEADLINE_S, every=0.5)
        for args in (["-n", other], ["-A"]):
            r = dorgu("persona", "list", *args, "--operator-url", url, "--token", reader)
            assert r.returncode == 1 and "forbidden" in r.stderr, (args, r.stderr)

        async def subscribe_other() -> None:
            async with OperatorConnection(WsClientSettings(url=url, token=reader)) as c:
                with pytest.raises(RemoteError) as e:
                    await c.subscribe(p.TOPIC_PERSONAS, p.SubscribeOptions(namespace=other))
                assert e.value.code == p.FORBIDDEN
                await c.subscribe(p.TOPIC_PERSONAS, p.SubscribeOptions(namespace=ns, resource_version=""))

        asyncio.run(subscribe_other())
    finally:
        kube.delete(f"/api/v1/namespaces/{other}")


# -- requests: get, validate, cluster; CLI exit codes -------------------------------------------------------


def test_requests_and_cli_one_shots(operator: Operator, kube: HarnessClient, ns: str) -> None:
    url = operator.url("open")
    kube.post(AP.format(ns=ns), persona("shop", scaling={"minReplicas": 3}))

    async def main() -> None:
        async with OperatorConnection(WsClientSettings(url=url)) as c:

            async def ready() -> Any:
                for _ in range(100):
                    try:
                        return await c.request(p.TOPIC_PERSONAS, {"namespace": ns, "name": "shop"})
                    except RemoteError:
                        await asyncio.sleep(0.1)
                raise AssertionError("persona never showed up")

            got = await ready()
            assert got["persona"]["spec"]["name"] == "shop"
            query = {"action": "validate", "namespace": ns, "deployment": deployment("shop", replicas=1)}
            res = await c.request(p.TOPIC_PERSONAS, query)
            assert res["results"][0]["persona"] == "shop" and res["results"][0]["passed"] is False
            assert any(i["field"] == "spec.replicas" for i in res["results"][0]["issues"])
            assert kube.get(DEP.format(ns=ns))["items"] == []  # a dry run: nothing written

    asyncio.run(main())
    r = dorgu("persona", "status", "shop", "-n", ns, "--operator-url", url)
    assert r.returncode == 0 and "ApplicationPersona: shop" in r.stdout, r
    r = dorgu("persona", "status", "nope", "-n", ns, "--operator-url", url)
    assert r.returncode == 1 and "not found" in r.stderr
    r = dorgu("sync", "pull", "-n", ns, "--operator-url", url)
    assert r.returncode == 0 and "Pulled 1 personas" in r.stdout, r
    r = dorgu("sync", "status", "--operator-url", "ws://127.0.0.1:1/ws")
    assert r.returncode == 1 and "cannot connect" in r.stderr
