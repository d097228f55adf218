"""The WebSocket server's TLS listener and its slow-consumer path, against the real server (a child of a real
supervisor) and the real control plane. Every wait polls with a deadline."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from certs.pki import make_ca, make_serving_cert
from cli.ws_client import ConnectError, OperatorConnection, WsClientSettings
from dorgu.domain import protocol as p
from dorgu.envtest import ControlPlane, HarnessClient
from tests.controllers.test_applicationpersona import persona
from tests.ws.kit import Operator, dorgu

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
QUEUE = 8
"""The slow server's ``ws_queue_size``: tiny, yet room for a reading subscriber's few frames per loop step."""
BIG_LABELS = {f"k{i:02d}": "v" * 60 for i in range(40)}
"""~3 KiB of labels per persona: every event frame carries them, so few changes fill the socket buffers."""
DEADLINE_S = 60.0
"""How long any one wait may take before the test fails: a hang guard, never a speed claim."""


class Servers:
    def __init__(self, op: Operator, ca_file: Path, other_ca_file: Path) -> None:
        self.op = op
        self.ca_file = ca_file
        self.other_ca_file = other_ca_file
        self.wss = f"wss://127.0.0.1:{op.ports['tls']}/ws"
        self.slow = op.url("slow")


@pytest.fixture(scope="module")
def servers(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    """``tls``: ``wss://`` with a serving certificate of a throwaway CA; ``slow``: a tiny per-connection
    queue (heartbeat long enough that a subscriber that does not read is not dropped for it)."""
    tmp: Path = tmp_path_factory.mktemp("ws-tls")
    day = dt.timedelta(days=1)
    ca = make_ca(common_name="dorgu-ws-test-ca", validity=day)
    serving = make_serving_cert(ca=ca, dns_names=["localhost"], ip_addresses=["127.0.0.1"], validity=day)
    other = make_ca(common_name="some-other-ca", validity=day)
    (tmp / "ca.pem").write_bytes(ca.cert_pem)
    (tmp / "other-ca.pem").write_bytes(other.cert_pem)
    (tmp / "tls.crt").write_bytes(serving.cert_pem)
    (tmp / "tls.key").write_bytes(serving.key_pem)
    (tmp / "tls.key").chmod(0o600)
    tls = {
        "ws_auth": "none",
        "ws_tls_cert_file": str(tmp / "tls.crt"),
        "ws_tls_key_file": str(tmp / "tls.key"),
    }
    slow = {"ws_auth": "none", "ws_queue_size": QUEUE, "ws_heartbeat_s": 300.0}
    op = Operator(control_plane.kubeconfig, {"tls": tls, "slow": slow}, tmp)
    try:
        op.ready("tls")
        op.ready("slow")
        yield Servers(op, tmp / "ca.pem", tmp / "other-ca.pem")
    finally:
        op.stop()


def api_state(kube: HarnessClient, ns: str) -> dict[str, str]:
    items = kube.get(AP.format(ns=ns))["items"]
    return {f"{ns}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


# -- TLS -------------------------------------------------------------------------------------------------


def test_wss_with_the_ca_trusted_subscribes_and_requests(
    servers: Servers, kube: HarnessClient, namespace: str
) -> None:
    ns = namespace
    kube.post(AP.format(ns=ns), persona("shop"))
    seen: list[p.Message] = []

    def state() -> dict[str, str]:
        """The subscribed set as the events so far describe it (key → resourceVersion)."""
        out: dict[str, str] = {}
        for m in list(seen):
            if not isinstance(m, p.Event) or not isinstance(m.payload, dict):
                continue
            if m.payload.get("eventType") == p.SNAPSHOT:
                out = {f"{i['namespace']}/{i['name']}": i["resourceVersion"] for i in m.payload["items"]}
            elif m.payload.get("eventType") == p.DELETED:
                out.pop(f"{m.payload['namespace']}/{m.payload['name']}", None)
            else:
                out[f"{m.payload['namespace']}/{m.payload['name']}"] = m.payload["resourceVersion"]
        return out

    async def until(pred: Any, what: str, timeout: float = DEADLINE_S) -> None:
        deadline = time.monotonic() + timeout
        while not pred():
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            await asyncio.sleep(0.05)

    async def main() -> None:
        settings = WsClientSettings(url=servers.wss, ca_file=str(servers.ca_file))
        async with OperatorConnection(settings, on_event=seen.append) as c:
            got = await c.subscribe(p.TOPIC_PERSONAS, p.SubscribeOptions(namespace=ns, resource_version=""))
            assert got["status"] == "subscribed" and got["resume"] == "snapshot", got
            await until(lambda: f"{ns}/shop" in state(), "shop in the subscribed set over wss")
            for _ in range(100):
                listed = await c.request(p.TOPIC_PERSONAS, {"namespace": ns})
                if [i["name"] for i in listed["personas"]] == ["shop"]:
                    break
                await asyncio.sleep(0.1)
            assert [i["name"] for i in listed["personas"]] == ["shop"], listed
            patched = kube.patch(f"{AP.format(ns=ns)}/shop", {"metadata": {"labels": {"over": "tls"}}})
            rv = patched["metadata"]["resourceVersion"]
            await until(lambda: state() == {f"{ns}/shop": rv}, f"the update (rv {rv}) over wss")

        # JSON framing (no subprotocol offered) over TLS, with an aiohttp client that trusts the CA.
        ctx = ssl.create_default_context(cafile=str(servers.ca_file))
        async with aiohttp.ClientSession() as s, s.ws_connect(servers.wss, ssl=ctx) as ws:
            await ws.send_str(json.dumps({"type": "request", "topic": "personas", "requestId": "r1",
                                          "payload": {"namespace": ns}}))  # fmt: skip
            reply = json.loads(await ws.receive_str(timeout=DEADLINE_S))
            assert reply["type"] == "response" and reply["requestId"] == "r1", reply
            assert [i["name"] for i in reply["payload"]["personas"]] == ["shop"]

    asyncio.run(main())
    r = dorgu(
        "persona",
        "list",
        "-n",
        ns,
        "-o",
        "json",
        "--operator-url",
        servers.wss,
        "--ca-file",
        str(servers.ca_file),
    )
    assert r.returncode == 0 and [i["name"] for i in json.loads(r.stdout)] == ["shop"], r


def test_wss_client_that_does_not_trust_the_ca_cannot_connect(servers: Servers) -> None:
    async def refused(settings: WsClientSettings) -> str:
        with pytest.raises(ConnectError) as e:
            await OperatorConnection(settings).open()
        return str(e.value)

    async def main() -> None:
        for settings in (
            WsClientSettings(url=servers.wss),  # the system's CAs only
            WsClientSettings(url=servers.wss, ca_file=str(servers.other_ca_file)),  # the wrong CA
        ):
            msg = await refused(settings)
            assert "certificate verify failed" in msg.lower(), msg
        plain = servers.wss.replace("wss://", "ws://")  # no TLS at all: no handshake either
        await refused(WsClientSettings(url=plain, connect_timeout_s=5.0))
        # ... and the listener is unharmed by the failed handshakes.
        async with OperatorConnection(WsClientSettings(url=servers.wss, ca_file=str(servers.ca_file))) as c:
            await c.subscribe(p.TOPIC_PERSONAS, p.SubscribeOptions(namespace="default"))

    asyncio.run(main())
    r = dorgu("persona", "list", "-n", "default", "--operator-url", servers.wss)
    assert r.returncode == 1 and "cannot connect" in r.stderr, r


def test_a_peer_that_never_answers_the_handshake_fails_within_the_connect_timeout() -> None:
    """TCP accepted (the kernel's backlog), no TLS/HTTP answer: ``connect_timeout_s`` bounds the wait."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]

        async def main() -> None:
            for scheme in ("ws", "wss"):
                settings = WsClientSettings(url=f"{scheme}://127.0.0.1:{port}/ws", connect_timeout_s=0.5)
                # Without the bound the handshake would wait for the session's 5-minute total; the hang
                # guard is far above the 0.5 s bound and far below that.
                try:
                    await asyncio.wait_for(OperatorConnection(settings).open(), DEADLINE_S)
                except ConnectError as e:
                    assert "cannot connect" in str(e), (scheme, str(e))
                except TimeoutError:
                    pytest.fail(f"{scheme}: connect_timeout_s did not end the wait for the handshake")
                else:
                    pytest.fail(f"{scheme}: connected to a peer that never answers the handshake")

        asyncio.run(main())


# -- a slow consumer: lagging + snapshot, and it does not hold back a reading subscriber -------------------


async def _subscribe(ws: aiohttp.ClientWebSocketResponse, ns: str, rid: str) -> None:
    await ws.send_str(json.dumps({"type": "subscribe", "topic": "personas", "requestId": rid,
                                  "payload": {"namespace": ns, "resourceVersion": ""}}))  # fmt: skip


def _apply(state: dict[str, str], msg: dict[str, Any]) -> None:
    body = msg.get("payload") or {}
    if msg.get("type") != "event" or msg.get("topic") != "personas":
        return
    if body.get("eventType") == p.SNAPSHOT:
        state.clear()
        state.update({f"{i['namespace']}/{i['name']}": i["resourceVersion"] for i in body["items"]})
    elif body.get("eventType") == p.DELETED:
        state.pop(f"{body['namespace']}/{body['name']}", None)
    else:
        state[f"{body['namespace']}/{body['name']}"] = body["resourceVersion"]


def test_slow_subscriber_gets_lagging_then_snapshot_and_does_not_block_a_reading_one(
    servers: Servers, kube: HarnessClient, namespace: str
) -> None:
    ns = namespace
    base = AP.format(ns=ns)
    names = [f"s{i:02d}" for i in range(8)]
    for name in names:
        kube.post(base, {**persona(name), "metadata": {"name": name, "labels": dict(BIG_LABELS)}})
    want0 = api_state(kube, ns)
    op = servers.op

    def laggings() -> int:
        return sum(
            1 for r in list(op.records)
            if r.get("component") == "slow" and "lagging" in str(r.get("msg", ""))
        )  # fmt: skip

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with (
            aiohttp.ClientSession() as s,
            s.ws_connect(servers.slow) as slow,
            s.ws_connect(servers.slow) as fast,
        ):
            fast_msgs: list[dict[str, Any]] = []
            fast_state: dict[str, str] = {}

            async def read_fast() -> None:
                async for frame in fast:
                    if frame.type == aiohttp.WSMsgType.TEXT:
                        m = json.loads(frame.data)
                        fast_msgs.append(m)
                        _apply(fast_state, m)

            # Both subscribe (with a snapshot) and have the whole initial set before the slow one pauses.
            await _subscribe(slow, ns, "slow")
            slow_state: dict[str, str] = {}
            slow_msgs: list[dict[str, Any]] = []
            deadline = time.monotonic() + DEADLINE_S
            while slow_state != want0:
                assert time.monotonic() < deadline, f"the slow subscriber never had it all: {slow_state}"
                m = json.loads(await slow.receive_str(timeout=DEADLINE_S))
                slow_msgs.append(m)
                _apply(slow_state, m)
            assert slow_msgs[0]["type"] == "response" and slow_msgs[0]["requestId"] == "slow", slow_msgs[0]
            reader = asyncio.create_task(read_fast())
            await _subscribe(fast, ns, "fast")
            deadline = time.monotonic() + DEADLINE_S
            while fast_state != want0:
                assert time.monotonic() < deadline, f"the reading subscriber never had it all: {fast_state}"
                await asyncio.sleep(0.05)
            before = laggings()

            # The burst, while the slow one reads nothing: a delete and a create first (so the snapshot
            # must drop and add keys), then label changes until the server reports the slow connection
            # lagging, then some more (that overflow its queue again, or trail the snapshot).
            changes: list[tuple[str, str]] = []  # (key, rv) of every create/update, in order
            deleted = names[0]

            def burst() -> int:
                kube.delete(f"{base}/{deleted}")
                obj = kube.post(base, {**persona("late"), "metadata": {"name": "late", "labels": BIG_LABELS}})
                changes.append((f"{ns}/late", obj["metadata"]["resourceVersion"]))
                live = [*names[1:], "late"]
                n, tail = 0, None
                stop_at = time.monotonic() + DEADLINE_S
                while tail is None or n < tail:
                    name = live[n % len(live)]
                    obj = kube.patch(f"{base}/{name}", {"metadata": {"labels": {"round": str(n)}}})
                    changes.append((f"{ns}/{name}", obj["metadata"]["resourceVersion"]))
                    n += 1
                    if tail is None and laggings() > before:
                        tail = n + 3 * QUEUE
                    assert n < 3000 and time.monotonic() < stop_at, f"no lagging after {n} changes"
                return n

            n = await loop.run_in_executor(None, burst)
            want = api_state(kube, ns)
            assert f"{ns}/{deleted}" not in want and f"{ns}/late" in want and len(want) == len(names)

            # The reading subscriber got every change, in order, while the slow one still reads nothing.
            every = [f"{k}@{rv}" for k, rv in changes]
            deadline = time.monotonic() + DEADLINE_S
            while True:
                got = [
                    f"{m['payload']['namespace']}/{m['payload']['name']}@{m['payload']['resourceVersion']}"
                    for m in list(fast_msgs)
                    if m["type"] == "event" and m["payload"]["eventType"] in (p.CREATED, p.UPDATED)
                ]
                if got[-len(every) :] == every and fast_state == want:
                    break
                assert time.monotonic() < deadline, f"the reader never got every change ({len(got)} seen)"
                await asyncio.sleep(0.05)
            assert not [m for m in fast_msgs if m["type"] == "error"], "the reading subscriber lagged"
            assert any(
                m["type"] == "event" and m["payload"]["eventType"] == p.DELETED
                and m["payload"]["name"] == deleted for m in fast_msgs
            )  # fmt: skip

            # The slow one reads again: what its socket held, then `lagging` + a snapshot (maybe more than
            # once), then what trailed the last snapshot; its set ends equal to the API's.
            tail_start = len(slow_msgs)
            deadline = time.monotonic() + DEADLINE_S
            while slow_state != want:
                assert time.monotonic() < deadline, f"the slow one never caught up: {len(slow_state)} items"
                m = json.loads(await slow.receive_str(timeout=DEADLINE_S))
                slow_msgs.append(m)
                _apply(slow_state, m)
            with pytest.raises(asyncio.TimeoutError):  # nothing else was queued for it
                await slow.receive_str(timeout=0.5)
            after = slow_msgs[tail_start:]
            lag = [i for i, m in enumerate(after) if m["type"] == "error"]
            assert lag, f"no lagging error after {n} changes ({len(after)} frames)"
            for i in lag:
                assert after[i]["payload"]["code"] == p.LAGGING, after[i]
                nxt = after[i + 1]
                assert nxt["type"] == "event" and nxt["payload"]["eventType"] == p.SNAPSHOT, nxt
            last = after[lag[-1] + 1]["payload"]
            snap = {f"{i['namespace']}/{i['name']}": i["resourceVersion"] for i in last["items"]}
            assert snap.keys() == want.keys(), (sorted(snap), sorted(want))
            trailing: dict[str, str] = dict(snap)
            for m in after[lag[-1] + 2 :]:
                assert m["type"] == "event" and m["payload"]["eventType"] == p.UPDATED, m
                _apply(trailing, m)
            assert trailing == want
            # Frames were dropped (replaced by the snapshot): the slow one saw fewer updates than happened.
            updates = [m for m in after if m["type"] == "event" and m["payload"]["eventType"] == p.UPDATED]
            assert len(updates) < n
            await fast.close()
            await reader

    asyncio.run(main())
