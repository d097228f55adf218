"""The CLI's side of the operator WebSocket protocol (:mod:`dorgu.domain.protocol`): requests and resumable
subscriptions over one connection.

Rules this client keeps:

* It offers the ``dorgu.v1.msgpack`` subprotocol (binary frames) and falls back to JSON if the server
  chooses none (an older operator).
* Replies are matched by ``requestId`` (a fresh one per message); an ``error`` with it fails that request
  at once; a request with no answer fails after ``request_timeout_s``.
* A :class:`Follower` keeps the subscribed set whole across drops: it remembers the last resourceVersion
  and server id it saw, and on reconnect subscribes with them — the server replays what was missed or sends
  a snapshot, which *replaces* the set (an object missing from it is reported deleted). Reconnects back off
  from ``reconnect_initial_s`` doubling to ``reconnect_max_s``.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import msgspec

from dorgu.domain import protocol as p


class RemoteError(Exception):
    """The operator answered with an ``error``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class ConnectError(Exception):
    """The operator could not be reached, or refused the connection (HTTP status in ``status``)."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Disconnected(Exception):
    """The connection ended."""


@dataclass(frozen=True, kw_only=True)
class WsClientSettings:
    """How the CLI reaches the operator."""

    url: str = "ws://localhost:9090/ws"
    """The operator's WebSocket URL (``ws://`` or ``wss://``)."""
    token: str | None = None
    """Bearer token sent at the handshake (None: none)."""
    msgpack: bool = True
    """Offer binary msgpack framing (False: JSON text frames, as a client that offers no subprotocol gets)."""
    ca_file: str | None = None
    """PEM CA bundle to verify a ``wss://`` server with (None: the system's)."""
    insecure: bool = False
    """Do not verify a ``wss://`` server's certificate."""
    server_hostname: str | None = None
    """The name the ``wss://`` server's certificate must carry, when it differs from the URL's host
    (through ``kubectl port-forward``: ``dorgu-websocket.dorgu-system.svc``)."""
    connect_timeout_s: float = 10.0
    """Handshake timeout."""
    request_timeout_s: float = 30.0
    """How long a request waits for its reply."""
    reconnect_initial_s: float = 0.2
    """First wait before reconnecting after a drop."""
    reconnect_max_s: float = 5.0
    """Longest wait between reconnects."""


_ids = itertools.count(1)


def _request_id() -> str:
    # Decimal UnixNano, plus a counter suffix that keeps ids unique within a process.
    return f"{time.time_ns()}-{next(_ids)}"


class OperatorConnection:
    """One WebSocket connection: ``request``/``subscribe`` calls; events go to ``on_event``."""

    def __init__(
        self, settings: WsClientSettings, *, on_event: Callable[[p.Message], None] | None = None
    ) -> None:
        self.s = settings
        self.on_event = on_event or (lambda m: None)
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._codec = p.Codec(msgpack=False)
        self._pending: dict[str, asyncio.Future[p.Message]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    async def open(self) -> OperatorConnection:
        ssl_ctx: ssl.SSLContext | bool = True  # aiohttp's default verification (ssl=None is deprecated)
        if self.s.url.startswith("wss"):
            if self.s.insecure:
                ssl_ctx = False
            elif self.s.ca_file:
                ssl_ctx = ssl.create_default_context(cafile=self.s.ca_file)
        headers = {"Authorization": f"Bearer {self.s.token}"} if self.s.token else {}
        self._session = aiohttp.ClientSession()
        try:
            connect = self._session.ws_connect(
                self.s.url,
                protocols=(p.SUBPROTOCOL_MSGPACK,) if self.s.msgpack else (),
                headers=headers,
                heartbeat=30.0,
                max_msg_size=0,
                ssl=ssl_ctx,
                server_hostname=self.s.server_hostname if self.s.url.startswith("wss") else None,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=5.0),
                autoclose=True,
            )
            # The whole handshake (TCP, TLS, HTTP upgrade) is bounded: a peer that accepts and never
            # answers must not hang the CLI (the session's default is a 5-minute total).
            self._ws = await asyncio.wait_for(connect, self.s.connect_timeout_s)
        except aiohttp.WSServerHandshakeError as e:
            await self._session.close()
            hint = {401: " (no token or the token is not accepted: --token, or a kubeconfig with one)"}
            raise ConnectError(
                f"the operator at {self.s.url} refused the connection: HTTP {e.status} {e.message}"
                + hint.get(e.status, ""),
                status=e.status,
            ) from None
        except (aiohttp.ClientError, OSError, TimeoutError) as e:
            await self._session.close()
            raise ConnectError(
                f"cannot connect to the operator at {self.s.url}: {str(e) or type(e).__name__}"
            ) from None
        self._codec = p.Codec(msgpack=self._ws.protocol == p.SUBPROTOCOL_MSGPACK)
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aenter__(self) -> OperatorConnection:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        assert self._ws is not None
        try:
            async for frame in self._ws:
                if frame.type not in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
                    continue
                data = frame.data.encode() if isinstance(frame.data, str) else frame.data
                try:
                    msg = self._codec.decode(data, binary=frame.type == aiohttp.WSMsgType.BINARY)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    continue  # an undecodable frame is skipped: the connection and the other replies go on
                fut = self._pending.pop(msg.request_id, None) if msg.request_id else None
                if fut is not None:
                    if not fut.done():
                        fut.set_result(msg)
                else:
                    self.on_event(msg)
        finally:
            self.closed.set()
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(Disconnected("the connection to the operator was lost"))
            self._pending.clear()

    async def send(self, msg: p.Message) -> p.Message:
        """Send ``msg`` (its requestId is set here) and wait for the reply; ``error`` raises RemoteError."""
        if self._ws is None or self._ws.closed:
            raise Disconnected("not connected")
        rid = _request_id()
        msg = msgspec.structs.replace(msg, request_id=rid, timestamp=p.rfc3339_now())
        fut: asyncio.Future[p.Message] = asyncio.get_running_loop().create_future()
        self._pending[rid] = fut
        data = self._codec.encode(msg)
        if self._codec.msgpack:
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data.decode())
        try:
            reply = await asyncio.wait_for(fut, self.s.request_timeout_s)
        except TimeoutError:
            self._pending.pop(rid, None)
            raise RemoteError("timeout", f"no reply within {self.s.request_timeout_s:.0f} s") from None
        if isinstance(reply, p.Error):
            body = reply.payload if isinstance(reply.payload, dict) else {}
            raise RemoteError(str(body.get("code", "error")), str(body.get("message", "")))
        return reply

    async def request(self, topic: str, payload: Any = None) -> Any:
        return (await self.send(p.Request(topic=topic, payload=payload or {}))).payload

    async def subscribe(self, topic: str, options: p.SubscribeOptions | None = None) -> Any:
        return (await self.send(p.Subscribe(topic=topic, payload=options))).payload

    async def send_raw(self, data: bytes, *, binary: bool) -> None:
        """Send bytes as they are (tests and fuzzing)."""
        assert self._ws is not None
        if binary:
            await self._ws.send_bytes(data)
        else:
            await self._ws.send_str(data.decode(errors="replace"))

    async def close(self) -> None:
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await self._reader
        if self._session is not None:
            await self._session.close()


def item_key(item: dict[str, Any]) -> str:
    ns = item.get("namespace")
    return f"{ns}/{item.get('name', '')}" if ns else str(item.get("name", ""))


Emit = Callable[[str, dict[str, Any]], None]
"""``emit(event_type, item)``: one change of the followed set (``created``/``updated``/``deleted``/...)."""


class Follower:
    """Follows one topic's filtered set across reconnects, never missing a change.

    ``state`` is the set as the server last described it (key → item). Every change is passed to ``emit``;
    a snapshot is turned into the changes it implies (new, changed and vanished items), so ``emit`` sees a
    gap-free stream either way.
    """

    def __init__(
        self,
        settings: WsClientSettings,
        topic: str,
        *,
        namespace: str | None = None,
        name: str | None = None,
        label_selector: str | None = None,
        emit: Emit,
        status: Callable[[str, str], None] | None = None,
    ) -> None:
        self.s = settings
        self.topic = topic
        self.filters = {"namespace": namespace, "name": name, "label_selector": label_selector}
        self.emit = emit
        self.status = status or (lambda kind, msg: None)
        self.state: dict[str, dict[str, Any]] = {}
        self.rv = ""
        self.server_id: str | None = None
        self.connects = 0
        self.snapshots = 0
        self.synced = asyncio.Event()
        """Set once the first snapshot has been applied."""

    def _on_message(self, msg: p.Message) -> None:
        if isinstance(msg, p.Error):
            body = msg.payload if isinstance(msg.payload, dict) else {}
            self.status("warning", f"operator: {body.get('code')}: {body.get('message')}")
            return
        if not isinstance(msg, p.Event) or msg.topic != self.topic or not isinstance(msg.payload, dict):
            return
        payload: dict[str, Any] = msg.payload
        if payload.get("eventType") == p.SNAPSHOT:
            self._apply_snapshot(payload)
            return
        key = item_key(payload)
        kind = str(payload.get("eventType", p.UPDATED))
        item = {k: v for k, v in payload.items() if k != "eventType"}
        if kind == p.DELETED:
            self.state.pop(key, None)
        else:
            self.state[key] = item
        if payload.get("resourceVersion"):
            self.rv = str(payload["resourceVersion"])
        self.emit(kind, item)

    def _apply_snapshot(self, snap: dict[str, Any]) -> None:
        self.snapshots += 1
        new = {item_key(i): i for i in snap.get("items") or [] if isinstance(i, dict)}
        old = self.state
        self.state = new
        self.rv = str(snap.get("resourceVersion") or "")
        self.server_id = str(snap.get("serverId") or "") or self.server_id
        for key in sorted(old.keys() - new.keys()):
            self.emit(p.DELETED, old[key])
        for key in sorted(new):
            if key not in old:
                self.emit(p.CREATED, new[key])
            elif old[key] != new[key]:
                self.emit(p.UPDATED, new[key])
        self.synced.set()

    async def run(self, stop: asyncio.Event | None = None, *, first_connect_fails: bool = True) -> None:
        """Follow until ``stop`` is set. The first connection failure raises ConnectError (when asked to)."""
        stop = stop or asyncio.Event()
        delay = self.s.reconnect_initial_s
        while not stop.is_set():
            conn = OperatorConnection(self.s, on_event=self._on_message)
            try:
                await conn.open()
            except ConnectError as e:
                if self.connects == 0 and first_connect_fails:
                    raise
                if e.status in (401, 403):
                    raise
                self.status("warning", f"reconnecting: {e}")
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, self.s.reconnect_max_s)
                continue
            try:
                opts = p.SubscribeOptions(
                    namespace=self.filters["namespace"], name=self.filters["name"],
                    label_selector=self.filters["label_selector"], resource_version=self.rv,
                    server_id=self.server_id,
                )  # fmt: skip
                reply = await conn.subscribe(self.topic, opts)
                if isinstance(reply, dict) and reply.get("serverId"):
                    self.server_id = str(reply["serverId"])
                self.connects += 1
                delay = self.s.reconnect_initial_s
                if self.connects > 1:
                    self.status("info", f"reconnected ({(reply or {}).get('resume') or 'live'})")
                await _wait_any(stop.wait(), conn.closed.wait())
            except Disconnected:
                pass
            finally:
                await conn.close()
            if not stop.is_set():
                self.status("warning", "connection to the operator lost; reconnecting")
                await _sleep_or_stop(stop, delay)
                delay = min(delay * 2, self.s.reconnect_max_s)


async def _sleep_or_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def _wait_any(*aws: Awaitable[Any]) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
