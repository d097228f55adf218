"""Issue 17, item 4 (WebSocket listener): a header timeout and a connection limit, against raw-socket clients
that stop half-way or never speak (:mod:`webhook.listener`). (A slow body matters where a handler reads one:
the webhook, ``tests/webhook/test_listener.py``; here aiohttp's lingering close already ends it.)

A server in this process with short limits (1 s timeouts, 4 connections); every wait is a poll with a
generous deadline, never a claim about how fast the server closes.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from dorgu.envtest import ControlPlane
from tests.runtime.kit import wait_until
from tests.ws import raw
from tests.ws.kit import InProcess, in_process
from webhook.listener import ListenerLimits
from webhook.ws.server import WebSocketSettings

MAX = 4


@pytest.fixture(scope="module")
def served(control_plane: ControlPlane) -> Iterator[InProcess]:
    limits = ListenerLimits(header_timeout_s=1.0, body_timeout_s=1.0, max_connections=MAX)
    settings = WebSocketSettings(host="127.0.0.1", port=0, auth="none", limits=limits)
    with in_process(control_plane, settings) as s:
        yield s


def _open(served: InProcess) -> int:
    return served.lt.call(served.server.listener.open_connections)


def test_a_client_that_never_sends_is_closed(served: InProcess) -> None:
    s = raw.connect("127.0.0.1", served.port)
    try:
        assert raw.closed_by_peer(s), "a connection that sent nothing stayed open"
    finally:
        s.close()


def test_a_half_sent_request_head_is_closed(served: InProcess) -> None:
    s = raw.connect("127.0.0.1", served.port)
    try:
        s.sendall(raw.handshake_bytes("127.0.0.1", served.port)[:40])  # the request line and a bit
        assert raw.closed_by_peer(s), "a connection with half a request head stayed open"
    finally:
        s.close()


def test_an_upgraded_connection_is_not_timed_out(served: InProcess) -> None:
    s = raw.connect("127.0.0.1", served.port)
    try:
        assert raw.upgrade(s, "127.0.0.1", served.port).startswith(b"HTTP/1.1 101")
        s.settimeout(3.0)  # three header timeouts: a timer still armed would have closed it
        with pytest.raises(TimeoutError):
            s.recv(1)
    finally:
        s.close()


def test_connections_beyond_the_limit_are_closed_at_once(served: InProcess) -> None:
    wait_until(lambda: _open(served) == 0, what="earlier connections to be gone")
    held: list[socket.socket] = []
    try:
        for _ in range(MAX):
            s = raw.connect("127.0.0.1", served.port)
            assert raw.upgrade(s, "127.0.0.1", served.port).startswith(b"HTTP/1.1 101")
            held.append(s)
        wait_until(lambda: _open(served) == MAX, what="the held connections to count")
        extra = raw.connect("127.0.0.1", served.port)
        try:
            extra.sendall(raw.handshake_bytes("127.0.0.1", served.port))
            assert raw.closed_by_peer(extra), "a connection beyond the limit was served"
        finally:
            extra.close()
        assert served.server.listener.refused >= 1
        held.pop().close()
        wait_until(lambda: _open(served) < MAX, what="a freed slot")
        again = raw.connect("127.0.0.1", served.port)
        try:
            assert raw.upgrade(again, "127.0.0.1", served.port).startswith(b"HTTP/1.1 101")
        finally:
            again.close()
    finally:
        for s in held:
            s.close()
