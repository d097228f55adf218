"""Issue 17, item 4 (admission webhook): header and body timeouts and a connection limit on the HTTPS
listener, against raw-socket clients that never start TLS, stop half-way through a request head, send a
body that never ends, or hold connections (:mod:`webhook.listener`).

Two replicas run ``webhook.server.run`` in-process against the session's control plane (they manage no
ValidatingWebhookConfiguration: nothing cluster-wide changes): ``short`` with 1 s timeouts, ``few`` with
long timeouts and room for four connections. Every wait is a poll with a generous deadline.
"""

from __future__ import annotations

import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from dorgu.envtest import ControlPlane, HarnessClient
from tests.runtime.kit import wait_until
from tests.webhook import kit
from tests.webhook.test_admission import review
from tests.ws import raw

MAX = 4


@dataclass
class Listeners:
    short: kit.Replica
    few: kit.Replica
    replicas: kit.Replicas
    context: ssl.SSLContext

    def port(self, rep: kit.Replica) -> int:
        assert rep.server is not None and rep.server.port is not None
        return rep.server.port


@pytest.fixture(scope="module")
def listeners(control_plane: ControlPlane, kube: HarnessClient) -> Iterator[Listeners]:
    ns = kit.namespace(kube, prefix="wh-listener")
    common = {"webhook_namespace": ns, "webhook_manage_configuration": False}
    short = kit.options(kit.free_port(), webhook_header_timeout_s=1.0, webhook_body_timeout_s=1.0, **common)
    few = kit.options(
        kit.free_port(), webhook_header_timeout_s=600.0, webhook_body_timeout_s=600.0,
        webhook_max_connections=MAX, **common,
    )  # fmt: skip
    with kit.replicas(control_plane) as reps:
        a, b = reps.start(short, few)
        assert a.server is not None and a.server.material is not None
        context = ssl.create_default_context()
        context.load_verify_locations(cadata=a.server.material.ca_bundle_pem.decode())
        yield Listeners(short=a, few=b, replicas=reps, context=context)


def _tls(ls: Listeners, rep: kit.Replica) -> socket.socket:
    return raw.connect("127.0.0.1", ls.port(rep), context=ls.context)


def _review_body() -> bytes:
    return review(kit.deployment("shop"))


def test_a_client_that_never_starts_tls_is_closed(listeners: Listeners) -> None:
    s = raw.connect("127.0.0.1", listeners.port(listeners.short))  # TCP only: no ClientHello ever
    try:
        assert raw.closed_by_peer(s), "a connection that never started its TLS handshake stayed open"
    finally:
        s.close()


def test_a_half_sent_request_head_is_closed(listeners: Listeners) -> None:
    s = _tls(listeners, listeners.short)
    try:
        s.sendall(b"POST /validate-deployment HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # and no more
        assert raw.closed_by_peer(s), "a connection with half a request head stayed open"
    finally:
        s.close()


def test_a_body_that_never_ends_is_closed(listeners: Listeners) -> None:
    body = _review_body()
    s = _tls(listeners, listeners.short)
    try:
        head = (
            "POST /validate-deployment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        s.sendall(head.encode() + body[:10])
        assert raw.closed_by_peer(s), "a connection whose body never ended stayed open"
    finally:
        s.close()


def test_a_whole_request_is_answered_and_the_connection_kept_for_the_next(listeners: Listeners) -> None:
    body = _review_body()
    s = _tls(listeners, listeners.short)
    try:
        for _ in range(2):
            s.sendall(
                b"POST /validate-deployment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                + f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            answer = b""
            while b"\r\n\r\n" not in answer:
                chunk = s.recv(65536)
                assert chunk, "closed before answering"
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200"), answer[:100]
            head, _, rest = answer.partition(b"\r\n\r\n")
            length = int(next(v for k, _, v in (h.partition(b": ") for h in head.split(b"\r\n"))
                              if k.lower() == b"content-length"))  # fmt: skip
            while len(rest) < length:
                rest += s.recv(65536)
            assert json.loads(rest)["response"]["allowed"] is True
    finally:
        s.close()


def _refused(ls: Listeners) -> bool:
    """Whether a new connection to ``few`` is closed without being served."""
    try:
        s = _tls(ls, ls.few)
    except (OSError, ssl.SSLError):
        return True  # closed during the handshake
    try:
        s.sendall(b"GET /validate-deployment HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        return raw.closed_by_peer(s)
    except (OSError, ssl.SSLError):
        return True
    finally:
        s.close()


def test_connections_beyond_the_limit_are_closed_at_once(listeners: Listeners) -> None:
    rep = listeners.few
    assert rep.server is not None
    count = lambda: listeners.replicas.call(rep.server.listener.open_connections)  # noqa: E731
    held = []
    try:
        for _ in range(MAX):
            held.append(_tls(listeners, rep))
        wait_until(lambda: count() == MAX, what="the held connections to count")
        assert _refused(listeners), "a connection beyond the limit was served"
        assert rep.server.listener.refused >= 1
        held.pop().close()
        wait_until(lambda: count() < MAX, what="a freed slot")
        s = _tls(listeners, rep)
        try:
            s.sendall(b"GET /validate-deployment HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            assert s.recv(12).startswith(b"HTTP/1.1 405")  # served again (GET is not allowed: 405)
        finally:
            s.close()
    finally:
        for s in held:
            s.close()
