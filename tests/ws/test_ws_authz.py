"""WebSocket authorisation against the real control plane: real ServiceAccount tokens (TokenRequest), real
RBAC, a real supervisor with websocket children. Every wait polls with a deadline; no test asserts a time."""

from __future__ import annotations

import asyncio
import itertools
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from cli.ws_client import OperatorConnection, RemoteError, WsClientSettings
from dorgu.domain import protocol as p
from dorgu.envtest import ControlPlane, HarnessClient
from tests.ws.kit import Operator, poll

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
_n = itertools.count()


@pytest.fixture(scope="module")
def authz(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """``auth``: TokenReview + SubjectAccessReview, short answer cache, access re-checked every second, a
    rejected token remembered for long, failures never rate-limited in practice; ``limited``: three failures
    per source, then (practically) no more."""
    tmp: Path = tmp_path_factory.mktemp("ws-authz")
    servers: dict[str, dict[str, Any]] = {
        "auth": {"ws_auth": "token", "ws_auth_cache_ttl_s": 0.5, "ws_auth_negative_ttl_s": 3600,
                 "ws_auth_fail_burst": 1000, "ws_reauth_interval_s": 1.0},
        "limited": {"ws_auth": "token", "ws_auth_fail_burst": 3, "ws_auth_fail_per_s": 0.0001},
    }  # fmt: skip
    op = Operator(control_plane.kubeconfig, servers, tmp)
    try:
        op.ready("auth")
        op.ready("limited")
        yield op
    finally:
        op.stop()


@pytest.fixture
def ns(kube: HarnessClient) -> Iterator[str]:
    name = f"wsz-{next(_n)}-{int(time.time() * 1000) % 1000000}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def grant(kube: HarnessClient, ns: str, account: str, *, group: str, resource: str) -> str:
    """A Role allowing get/list/watch of ``resource`` in ``ns``, bound to ServiceAccount ``account``; returns
    the RoleBinding's name."""
    name = f"{account}-{resource}"
    kube.post(f"{RBAC.format(ns=ns)}/roles", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": {"name": name},
        "rules": [{"apiGroups": [group], "resources": [resource], "verbs": ["get", "list", "watch"]}],
    })  # fmt: skip
    kube.post(f"{RBAC.format(ns=ns)}/rolebindings", {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding", "metadata": {"name": name},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": ns}],
    })  # fmt: skip
    return name


async def outcome(url: str, token: str, topic: str, ns: str) -> str:
    """``subscribed`` or the error code a subscription to ``topic`` in ``ns`` gets."""
    async with OperatorConnection(WsClientSettings(url=url, token=token)) as c:
        try:
            reply: Any = await c.subscribe(topic, p.SubscribeOptions(namespace=ns))
        except RemoteError as e:
            return e.code
        return str(reply["status"])


def test_events_topic_is_authorised_against_events_not_personas(
    authz: Operator, control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    url = authz.url("auth")
    personas_only = control_plane.service_account_token(ns, "personas-only")
    events_only = control_plane.service_account_token(ns, "events-only")
    grant(kube, ns, "personas-only", group="dorgu.io", resource="applicationpersonas")
    grant(kube, ns, "events-only", group="", resource="events")

    async def main() -> None:
        # RBAC reaches the authorizer's cache shortly after it is written: wait for the grants to show.
        deadline = time.monotonic() + 60
        want = {
            (personas_only, p.TOPIC_PERSONAS): "subscribed",
            (personas_only, p.TOPIC_EVENTS): p.FORBIDDEN,
            (events_only, p.TOPIC_EVENTS): "subscribed",
            (events_only, p.TOPIC_PERSONAS): p.FORBIDDEN,
        }
        while True:
            got = {k: await outcome(url, k[0], k[1], ns) for k in want}
            if got == want or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        names = {personas_only: "personas-only", events_only: "events-only"}
        assert {(names[t], topic): v for (t, topic), v in got.items()} == {
            (names[t], topic): v for (t, topic), v in want.items()
        }

    asyncio.run(main())


def token_reviews(op: Operator, result: str) -> float:
    """``dorgu_ws_token_reviews_total{result=…}`` summed over the supervisor's children (its ``/metrics``)."""
    port = next(r["port"] for r in list(op.records) if r.get("msg") == "serving health and metrics")
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    pat = re.compile(rf'^dorgu_ws_token_reviews_total{{[^}}]*result="{result}"[^}}]*}} (\S+)$', re.M)
    return sum(float(v) for v in pat.findall(text))


async def handshake(url: str, token: str) -> int:
    """The HTTP status of a WebSocket handshake with ``token`` (101 when it upgraded)."""
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(url, headers={"Authorization": f"Bearer {token}"}):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


def test_a_bad_token_costs_one_token_review_and_a_source_is_rate_limited(authz: Operator) -> None:
    poll(lambda: any(r.get("msg") == "serving health and metrics" for r in list(authz.records)), "metrics")
    bad = f"not-a-token-{time.time_ns()}"
    before = token_reviews(authz, "rejected")
    statuses = [asyncio.run(handshake(authz.url("auth"), bad)) for _ in range(20)]
    assert statuses == [401] * 20
    # The counter is written by the child before it answers: no wait needed to read it.
    assert token_reviews(authz, "rejected") - before == 1

    # ``limited`` allows three failures from one source (this test's 127.0.0.1), then answers 429.
    statuses = [asyncio.run(handshake(authz.url("limited"), f"{bad}-{i}")) for i in range(8)]
    assert statuses == [401] * 3 + [429] * 5, statuses


def test_revoked_rbac_closes_the_subscription_with_a_message_and_the_connection_stays(
    authz: Operator, control_plane: ControlPlane, kube: HarnessClient, ns: str
) -> None:
    url = authz.url("auth")
    reader = control_plane.service_account_token(ns, "reader")
    binding = grant(kube, ns, "reader", group="dorgu.io", resource="applicationpersonas")
    unsolicited: list[p.Message] = []

    async def main() -> None:
        async with OperatorConnection(
            WsClientSettings(url=url, token=reader), on_event=unsolicited.append
        ) as c:
            deadline = time.monotonic() + 60
            while True:  # the grant reaches the authorizer shortly after it is written
                try:
                    await c.subscribe(p.TOPIC_PERSONAS, p.SubscribeOptions(namespace=ns))
                    break
                except RemoteError as e:
                    assert e.code == p.FORBIDDEN and time.monotonic() < deadline, e
                    await asyncio.sleep(0.5)
            kube.delete(f"{RBAC.format(ns=ns)}/rolebindings/{binding}")

            def closed() -> list[p.Message]:
                return [m for m in unsolicited if isinstance(m, p.Error) and m.topic == p.TOPIC_PERSONAS]

            deadline = time.monotonic() + 60  # a hang guard, never a speed claim
            while not closed():
                assert time.monotonic() < deadline, f"the subscription was not closed: {unsolicited}"
                await asyncio.sleep(0.1)
            err = closed()[0]
            assert err.request_id is None and isinstance(err.payload, dict)
            assert err.payload["code"] == p.FORBIDDEN, err
            assert "subscription to 'personas' closed" in err.payload["message"], err
            assert "applicationpersonas" in err.payload["message"], err
            # The connection stays: it answers the next request (no longer allowed).
            with pytest.raises(RemoteError) as e:
                await c.request(p.TOPIC_PERSONAS, {"namespace": ns})
            assert e.value.code == p.FORBIDDEN

    asyncio.run(main())
