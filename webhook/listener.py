"""A bounded listener for the operator's aiohttp servers (the admission webhook and the WebSocket server).

aiohttp alone bounds neither how long a client may take to send a request nor how many connections it
holds: a connection that sends half a request head, or a TLS client that never sends its hello, stays open
(aiohttp's keep-alive timer waits an hour by default and does not see a half-received head), and every
one of them costs memory and a file descriptor. In enforcing mode (``failurePolicy: Fail``) a webhook
that can no longer accept the API server's calls blocks every Deployment write.

Rules this module keeps (:class:`ListenerLimits`, one per listener):

* **Header timeout.** From the moment a connection is accepted — the TLS handshake included (asyncio's
  ``ssl_handshake_timeout``) — and again from the end of each request, the client has ``header_timeout_s``
  to deliver a complete request head; otherwise the connection is aborted. An idle keep-alive connection
  is a connection waiting for a head, so it is closed after the same time.
* **Body timeout.** From a complete request head, the handler has ``body_timeout_s`` to read the body and
  answer; a client that sends the body slowly, or not at all, is aborted. A WebSocket upgrade is exempt
  (its connection lives as long as the socket; the WebSocket heartbeat bounds a silent peer).
* **Connection limit.** At most ``max_connections`` connections at once, TLS handshakes in progress
  included; the next one is closed as soon as it is accepted, before any byte of it is read (a handshake
  still in progress when the limit is reached finishes its handshake, then is closed).

Timers run on the injected clock (:class:`~dorgu.runtime.clock.Clock`); the TLS handshake timeout is
asyncio's, on the loop's clock (the same time for a real clock).
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from dorgu.runtime.clock import Clock

log = logging.getLogger("dorgu.listener")

_HANDSHAKE_GRACE_S = 5.0
"""How long past the handshake timeout an accepted connection that never completed its handshake is still
counted (asyncio has aborted it by then; it never tells the protocol)."""


@dataclass(frozen=True, kw_only=True)
class ListenerLimits:
    """What one listener allows a client."""

    header_timeout_s: float = 10.0
    """Time to deliver a complete request head: from accept (TLS handshake included), and from the end of
    the previous request on a kept-alive connection."""
    body_timeout_s: float = 10.0
    """Time from a complete request head to the answer, the body's reading included (not for upgrades)."""
    max_connections: int = 512
    """Connections open at once (TLS handshakes included); one more is closed at once."""

    def __post_init__(self) -> None:
        if self.header_timeout_s <= 0 or self.body_timeout_s <= 0:
            raise ValueError("listener timeouts must be positive")
        if self.max_connections < 1:
            raise ValueError(f"max_connections must be at least 1, not {self.max_connections}")


class _Conn:
    """One accepted connection's bookkeeping."""

    def __init__(self, accepted_at: float) -> None:
        self.accepted_at = accepted_at
        self.transport: asyncio.BaseTransport | None = None
        self.timer: asyncio.Task[None] | None = None


class _Guarded(asyncio.Protocol):
    """Forwards every protocol call to aiohttp's request handler, telling the listener when it starts and
    ends."""

    def __init__(self, listener: BoundedListener, inner: Any, conn: _Conn) -> None:
        self._listener = listener
        self._inner = inner
        self._conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._conn.transport = transport
        self._listener._made(self._inner, self._conn)
        self._inner.connection_made(transport)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._listener._lost(self._inner, self._conn)
        self._inner.connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received()  # type: ignore[no-any-return]

    def pause_writing(self) -> None:
        self._inner.pause_writing()

    def resume_writing(self) -> None:
        self._inner.resume_writing()


class _Refused(asyncio.Protocol):
    """A connection beyond the limit: closed as soon as it exists."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()


class BoundedListener:
    """Serves an aiohttp :class:`~aiohttp.web.AppRunner` (set up, with :meth:`middleware` in its app) on a
    socket, within :class:`ListenerLimits`."""

    def __init__(self, limits: ListenerLimits, *, clock: Clock, name: str) -> None:
        self.limits = limits
        self.clock = clock
        self.name = name
        self._conns: dict[int, _Conn] = {}
        """id(aiohttp's handler) → its connection: every connection accepted and not yet lost."""
        self._server: asyncio.AbstractServer | None = None
        self.refused = 0
        """Connections closed because the limit was reached."""
        self.timed_out = 0
        """Connections aborted by a header or body timeout."""

    # -- accounting ---------------------------------------------------------------------------------------

    def open_connections(self) -> int:
        """Connections counted against the limit now (handshakes in progress included)."""
        self._prune()
        return len(self._conns)

    def _prune(self) -> None:
        # A TLS handshake that failed or timed out never reaches the protocol: count it only as long as it
        # could still be in progress.
        horizon = self.clock.monotonic() - (self.limits.header_timeout_s + _HANDSHAKE_GRACE_S)
        for key, c in list(self._conns.items()):
            if c.transport is None and c.accepted_at < horizon:
                del self._conns[key]

    def _factory(self, inner_factory: Callable[[], Any]) -> Callable[[], asyncio.Protocol]:
        def make() -> asyncio.Protocol:
            if self.open_connections() >= self.limits.max_connections:
                self.refused += 1
                log.warning(
                    "connection limit reached; closing a new connection",
                    extra={"listener": self.name, "max_connections": self.limits.max_connections},
                )
                return _Refused()
            inner = inner_factory()
            conn = _Conn(self.clock.monotonic())
            self._conns[id(inner)] = conn
            return _Guarded(self, inner, conn)

        return make

    def _made(self, inner: Any, conn: _Conn) -> None:
        self._arm(conn, self.limits.header_timeout_s, "request head")

    def _lost(self, inner: Any, conn: _Conn) -> None:
        self._conns.pop(id(inner), None)
        self._disarm(conn)

    # -- timers -------------------------------------------------------------------------------------------

    def _arm(self, conn: _Conn, seconds: float, what: str) -> None:
        self._disarm(conn)
        conn.timer = asyncio.ensure_future(self._expire(conn, seconds, what))

    @staticmethod
    def _disarm(conn: _Conn) -> None:
        if conn.timer is not None:
            conn.timer.cancel()
            conn.timer = None

    async def _expire(self, conn: _Conn, seconds: float, what: str) -> None:
        await self.clock.sleep(seconds)
        conn.timer = None
        transport = conn.transport
        if transport is None or transport.is_closing():
            return
        self.timed_out += 1
        log.info("closing a connection that did not send its %s within %.1f s", what, seconds,
                 extra={"listener": self.name})  # fmt: skip
        if isinstance(transport, asyncio.Transport):
            transport.abort()
        else:
            transport.close()

    # -- aiohttp -------------------------------------------------------------------------------------------

    @property
    def middleware(self) -> Callable[[web.Request, Callable[[web.Request], Awaitable[Any]]], Awaitable[Any]]:
        """The app middleware that switches a connection from its header timer to its body timer and back."""

        @web.middleware
        async def bounded(request: web.Request, handler: Callable[[web.Request], Awaitable[Any]]) -> Any:
            conn = self._conns.get(id(request.protocol))
            upgrade = request.headers.get("Upgrade", "").lower() == "websocket"
            if conn is not None:
                if upgrade:
                    self._disarm(conn)  # a WebSocket lives as long as its socket (the heartbeat bounds it)
                else:
                    self._arm(conn, self.limits.body_timeout_s, "request body")
            try:
                return await handler(request)
            finally:
                if conn is not None and conn.transport is not None and not conn.transport.is_closing():
                    self._arm(conn, self.limits.header_timeout_s, "next request head")

        return bounded

    async def start(
        self, runner: web.AppRunner, sock: socket.socket, ssl_context: ssl.SSLContext | None
    ) -> None:
        """Listen on ``sock`` (bound, not yet listening) with ``runner``'s server."""
        server = runner.server
        assert server is not None, "runner.setup() first"
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._factory(server),
            sock=sock,
            ssl=ssl_context,
            ssl_handshake_timeout=self.limits.header_timeout_s if ssl_context is not None else None,
            backlog=1024,
        )

    async def stop(self) -> None:
        """Stop accepting (open connections are the runner's to close: ``runner.cleanup()``)."""
        if self._server is not None:
            # Not wait_closed(): from Python 3.12 it waits for the open connections, which the runner
            # closes after this.
            self._server.close()
            self._server = None
        for conn in list(self._conns.values()):
            self._disarm(conn)


def bound_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to ``host:port`` (IPv6 when the host has a colon), SO_REUSEADDR set."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    return sock
