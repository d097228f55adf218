"""WebSocket authorisation against the real control plane: real ServiceAccount tokens (TokenRequest), real
RBAC, a real supervisor with websocket children. Every wait polls with a deadline; no test asserts a time."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli.ws_client import OperatorConnection, RemoteError, WsClientSettings
from dorgu.domain import protocol as p
from dorgu.envtest import ControlPlane, HarnessClient
from tests.ws.kit import Operator

RBAC = "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}"
_n = itertools.count()


@pytest.fixture(scope="module")
def authz(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Operator]:
    """``auth``: TokenReview + SubjectAccessReview."""
    tmp: Path = tmp_path_factory.mktemp("ws-authz")
    op = Operator(control_plane.kubeconfig, {"auth": {"ws_auth": "token", "ws_auth_cache_ttl_s": 0.5}}, tmp)
    try:
        op.ready("auth")
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
