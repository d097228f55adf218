"""The operator's WebSocket server (component ``websocket``): live persona/cluster/event streams and queries.

Protocol: :mod:`dorgu.domain.protocol` (versioned; its wire shape is fixed, changes are additive). Rules this
server keeps:

* **Every replica runs it** (no leader election) and answers from its **own informer caches** of
  ApplicationPersonas, ClusterPersonas and the Kubernetes Events about ApplicationPersonas; it never writes
  to the cluster (``validate`` is a dry run on the manifest the client sends).
* Routes: ``GET /ws`` (upgrade; 405 for other methods, 400 without upgrade headers, 401 without an accepted
  token, 429 with ``Retry-After`` when its address failed to authenticate too often — see
  :mod:`webhook.ws.auth`), ``/health`` → ``ok`` for any method, anything else 404.
* Heartbeat: a ping every ``heartbeat_s``; a peer that does not answer within half of that is dropped.
* The listener bounds the time to send the upgrade request (TLS handshake included) and the number of
  connections (:mod:`webhook.listener`, ``limits``).
* Inbound messages over 512 KiB close the connection with 1009; WebSocket protocol violations close it with
  1002 (aiohttp); a message that does not decode — deep nesting included (decoding depth is bounded, see
  :meth:`dorgu.domain.protocol.Codec.decode`) — gets an ``error`` (``invalid_message``, or
  ``unknown_message_type`` for an unknown ``type``) and the connection stays open.
* Messages of one connection are handled in arrival order; replies and events share the connection's
  bounded queue (:mod:`webhook.ws.hub`), so a reply is never overtaken by an event queued after it.
* **A client that does not read is not read either.** Before reading the next message the read loop waits
  until the connection's queue holds fewer than ``max_buffered_bytes`` (:meth:`Connection.room`): the
  replies to a client that sends requests and never reads stop growing at that cap, and its requests wait
  in the socket buffers (aiohttp stops reading the socket once 64 KiB are unread).
* Every ``error`` echoes the ``requestId`` of the message it answers.
* **Access is re-checked.** Every ``reauth_interval_s`` each subscription of a connection is checked again:
  its token (TokenReview) and its topic's SubjectAccessReviews, through the authenticator's caches (so a
  change shows within ``reauth_interval_s + auth_cache_ttl_s``). A subscription that lost access is
  closed and the client gets an ``error`` with the subscription's ``topic`` (no ``requestId``: nothing
  asked for it) and code ``forbidden`` (RBAC) or ``unauthorized`` (the token is no longer accepted; every
  later message of that connection is then answered ``unauthorized``). The connection stays open. When
  the API server cannot answer, the subscription stays until the next check.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import ssl
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import WSMsgType, web

from certs.rotation import ServingMaterial
from dorgu.domain import protocol as p
from dorgu.domain.kube import Deployment
from dorgu.domain.resources import APPLICATION_PERSONAS, CLUSTER_PERSONAS
from dorgu.domain.rules import deployment_app_name, error_count, validate
from dorgu.domain.types import ApplicationPersona, ClusterPersona
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.errors import ApiError
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import EVENTS, SECRETS
from dorgu.runtime.store import NAMESPACE_INDEX, object_key
from webhook.certificates import Secret, TlsReloader, material_of
from webhook.listener import BoundedListener, ListenerLimits, bound_socket
from webhook.ws.auth import Authenticator, AuthSettings, RateLimited, Unauthenticated, User
from webhook.ws.hub import Change, Connection, Filter, HubSettings, Subscription, Topic, make_change
from webhook.ws.settings import WebSocketOptions, is_loopback

log = logging.getLogger("dorgu.websocket")

EVENTS_FIELD_SELECTOR = f"involvedObject.kind={APPLICATION_PERSONAS.kind}"


@dataclass(frozen=True, kw_only=True)
class WebSocketSettings:
    """How the WebSocket server listens and behaves."""

    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = 9090
    """Port to listen on (9090: the CLI's default ``ws://localhost:9090/ws``)."""
    auth: str = "token"
    """``token``: TokenReview + SubjectAccessReview; ``none``: no checks (local development only)."""
    heartbeat_s: float = 30.0
    """Ping interval; a peer silent for half of it after a ping is disconnected."""
    sync_wait_s: float = 10.0
    """How long a subscribe/request waits for the caches to sync before answering ``not_ready``."""
    tls: str = "auto"
    """``auto`` (``wss://`` unless ``host`` is loopback), ``secret`` or ``off``: see :attr:`tls_mode`."""
    tls_secret_name: str = "dorgu-webhook-certs"
    """The certificate Secret whose pair is served (the webhook component issues and rotates it)."""
    tls_secret_namespace: str = "dorgu-system"
    """Its namespace."""
    tls_cert_file: str | None = None
    """PEM serving certificate file (e.g. from ``certs.pki.make_serving_cert``) instead of the Secret's."""
    tls_key_file: str | None = None
    """PEM private key of ``tls_cert_file``."""
    token_audiences: tuple[str, ...] = ()
    """Audiences a token must be issued for (empty: any the API server accepts)."""
    hub: HubSettings = field(default_factory=HubSettings)
    """Ring and queue sizes."""
    auth_cache_ttl_s: float = 30.0
    """How long TokenReview/SubjectAccessReview answers are reused."""
    reauth_interval_s: float = 60.0
    """How often each subscription's access (token and RBAC) is checked again."""
    auth_negative_ttl_s: float = 10.0
    """How long a rejected token is refused without another TokenReview."""
    auth_fail_burst: int = 10
    """Failed authentications one source may have in a burst before it gets HTTP 429."""
    auth_fail_per_s: float = 0.5
    """Rate at which a source's failure allowance refills (failures per second)."""
    limits: ListenerLimits = field(default_factory=lambda: ListenerLimits(max_connections=1024))
    """Header and body timeouts and the connection limit of the listener."""
    scope: tuple[str, ...] | None = None
    """The namespaces whose personas and Events are cached and served (``--namespaces``); None: every one.
    A subscription or request naming another namespace is refused (``invalid_request``)."""

    def __post_init__(self) -> None:
        # The rule of WebSocketOptions, kept for settings built directly (bench, tests): no open listener.
        if self.auth == "none" and not is_loopback(self.host):
            raise ValueError(f"auth 'none' needs a loopback listener, not {self.host!r}")

    @property
    def tls_mode(self) -> str:
        """``files`` (``tls_cert_file``), ``secret`` (the certificate Secret's pair) or ``off`` (``ws://``):
        bearer tokens cross the network only inside TLS unless told otherwise (``tls="off"``)."""
        if self.tls_cert_file:
            return "files"
        if self.tls == "secret" or (self.tls == "auto" and not is_loopback(self.host)):
            return "secret"
        return "off"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> WebSocketSettings:
        """The component's settings from its options (``ctx.options``, converted to
        :class:`~webhook.ws.settings.WebSocketOptions`); a bad key or value raises ``msgspec.ValidationError``
        (a ``ValueError``) naming it."""
        o = msgspec.convert(dict(options), type=WebSocketOptions)
        return cls(
            host=o.host,
            port=o.port,
            auth=o.ws_auth,
            heartbeat_s=o.ws_heartbeat_s,
            tls=o.ws_tls,
            tls_secret_name=o.ws_tls_secret_name,
            tls_secret_namespace=o.ws_tls_secret_namespace or o.lease_namespace or "dorgu-system",
            tls_cert_file=o.ws_tls_cert_file,
            tls_key_file=o.ws_tls_key_file,
            token_audiences=o.audiences,
            hub=HubSettings(
                ring_size=o.ws_ring_size,
                queue_size=o.ws_queue_size,
                max_buffered_bytes=o.ws_max_buffered_bytes,
            ),
            auth_cache_ttl_s=o.ws_auth_cache_ttl_s,
            reauth_interval_s=o.ws_reauth_interval_s,
            auth_negative_ttl_s=o.ws_auth_negative_ttl_s,
            auth_fail_burst=o.ws_auth_fail_burst,
            auth_fail_per_s=o.ws_auth_fail_per_s,
            limits=ListenerLimits(
                header_timeout_s=o.ws_header_timeout_s,
                body_timeout_s=o.ws_body_timeout_s,
                max_connections=o.ws_max_connections,
            ),
            scope=namespace_scope(o.namespaces),
        )


# --------------------------------------------------------------------------- cached types


class _InvolvedObject(msgspec.Struct, rename="camel", kw_only=True):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class KubeEvent(msgspec.Struct, rename="camel", kw_only=True):
    """Partial core/v1 Event (what the ``events`` topic shows)."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    involved_object: _InvolvedObject = msgspec.field(default_factory=_InvolvedObject)
    reason: str | None = None
    message: str | None = None
    type: str | None = None
    count: int | None = None
    last_timestamp: str | None = None
    event_time: str | None = None


def _slim(obj: Any) -> Any:
    """Drop managedFields from cached objects (never read here)."""
    if obj.metadata.managed_fields is None:
        return obj
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(obj.metadata, managed_fields=None))


# --------------------------------------------------------------------------- summaries


def persona_state(ap: ApplicationPersona, cls: type[Any] = p.PersonaState, **extra: Any) -> Any:
    st = ap.status
    v = st.validation if st else None
    summary = None
    if v is not None:
        issues = v.issues or []
        summary = p.ValidationSummary(
            passed=v.passed, issue_count=len(issues), error_count=error_count(issues)
        )
    return cls(
        namespace=ap.metadata.namespace or "",
        name=ap.metadata.name or "",
        resource_version=ap.metadata.resource_version,
        app_name=ap.spec.name,
        type=ap.spec.type,
        tier=ap.spec.tier,
        phase=st.phase if st else None,
        health=st.health.status if st and st.health else None,
        health_message=st.health.message if st and st.health else None,
        validation=summary,
        observed_generation=st.observed_generation if st else None,
        labels=ap.metadata.labels,
        **extra,
    )


def persona_summary(ap: ApplicationPersona) -> p.PersonaSummary:
    st = ap.status
    return p.PersonaSummary(
        namespace=ap.metadata.namespace or "",
        name=ap.metadata.name or "",
        app_name=ap.spec.name or "",
        type=ap.spec.type or "",
        tier=ap.spec.tier or "",
        phase=(st.phase if st else None) or "",
        health=(st.health.status if st and st.health else None) or "",
    )


def _node_names(cp: ClusterPersona) -> list[str]:
    return sorted(n.name for n in ((cp.status.nodes if cp.status else None) or []))


def cluster_state(cp: ClusterPersona, cls: type[Any] = p.ClusterState, **extra: Any) -> Any:
    st = cp.status
    nodes = _node_names(cp)
    return cls(
        name=cp.metadata.name or "",
        resource_version=cp.metadata.resource_version,
        phase=st.phase if st else None,
        node_count=len(nodes) if st and st.nodes is not None else (st.node_count if st else None),
        application_count=st.application_count if st else None,
        nodes=nodes,
        **extra,
    )


def cluster_summary(cp: ClusterPersona) -> p.ClusterSummary:
    st = cp.status
    addons = [a.name for a in ((st.addons if st else None) or []) if a.installed]
    return p.ClusterSummary(
        name=cp.spec.name or "",
        environment=cp.spec.environment or "",
        phase=(st.phase if st else None) or "",
        kubernetes_version=(st.kubernetes_version if st else None) or "",
        platform=(st.platform if st else None) or "",
        node_count=len(_node_names(cp)),
        application_count=(st.application_count if st else None) or 0,
        addons=addons or None,
    )


def event_state(ev: KubeEvent, cls: type[Any] = p.KubeEventState, **extra: Any) -> Any:
    return cls(
        namespace=ev.metadata.namespace or "",
        name=ev.metadata.name or "",
        resource_version=ev.metadata.resource_version,
        persona=ev.involved_object.name,
        reason=ev.reason,
        message=ev.message,
        type=ev.type,
        count=ev.count,
        last_timestamp=ev.last_timestamp or ev.event_time,
        **extra,
    )


# --------------------------------------------------------------------------- the server


class _Fail(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(kw_only=True)
class _Session:
    """Who is on one connection, as the latest re-check found."""

    user: User
    """The token's user (refreshed by each re-check)."""
    authorization: str | None
    """The handshake's ``Authorization`` header (what is re-checked)."""
    revoked: str | None = None
    """Why the token is no longer accepted; None while it is."""


class WebSocketServer:
    """Informers → topics → connections; plus the request handlers. Build inside a running loop.

    It wires itself onto ``manager``: its three informers, and :meth:`serve` in the servers group (it
    listens at once, on every replica) with :attr:`listening` gating readiness — so the replica is ready once
    it listens and its caches have synced. Time is ``manager``'s clock."""

    def __init__(self, manager: Manager, settings: WebSocketSettings) -> None:
        self.s = settings
        self.m = manager
        self.clock = manager.clock
        self.server_id = f"{uuid.uuid4().hex[:12]}-{os.getpid()}"
        """This instance; a client resuming from another instance gets a snapshot."""
        self.auth = Authenticator(
            manager.client,
            AuthSettings(
                mode=settings.auth,
                cache_ttl_s=settings.auth_cache_ttl_s,
                negative_ttl_s=settings.auth_negative_ttl_s,
                fail_burst=settings.auth_fail_burst,
                fail_per_s=settings.auth_fail_per_s,
                audiences=settings.token_audiences,
            ),
            clock=manager.clock,
        )
        self.personas: Informer[ApplicationPersona] = manager.informer(
            APPLICATION_PERSONAS, ApplicationPersona, namespace=settings.scope, transform=_slim
        )
        self.clusters: Informer[ClusterPersona] = manager.informer(
            CLUSTER_PERSONAS, ClusterPersona, transform=_slim
        )
        self.events: Informer[KubeEvent] = manager.informer(
            EVENTS, KubeEvent, namespace=settings.scope, field_selector=EVENTS_FIELD_SELECTOR, transform=_slim
        )
        self.informers: dict[str, Informer[Any]] = {
            p.TOPIC_PERSONAS: self.personas,
            p.TOPIC_CLUSTER: self.clusters,
            p.TOPIC_EVENTS: self.events,
        }
        self.topics: dict[str, Topic] = {
            p.TOPIC_PERSONAS: self._topic(p.TOPIC_PERSONAS, self.personas, persona_state, _ns_filter),
            p.TOPIC_CLUSTER: self._topic(p.TOPIC_CLUSTER, self.clusters, cluster_state, _ns_filter),
            p.TOPIC_EVENTS: self._topic(p.TOPIC_EVENTS, self.events, event_state, _event_filter),
        }
        self.personas.add_handlers(self._handlers(p.TOPIC_PERSONAS, self._persona_change))
        self.clusters.add_handlers(self._handlers(p.TOPIC_CLUSTER, self._cluster_change))
        self.events.add_handlers(self._handlers(p.TOPIC_EVENTS, self._event_change))
        self.connections: set[Connection] = set()
        self.port: int | None = None
        """The port listened on (when ``settings.port`` is 0, the one the OS chose)."""
        self.listening = asyncio.Event()
        """Set once the server listens."""
        self.listener = BoundedListener(settings.limits, clock=manager.clock, name="websocket")
        self.tls: TlsReloader | None = None
        """The live TLS context when the Secret's pair is served."""
        self.secrets: Informer[Secret] | None = None
        self._secret_changed = asyncio.Event()
        if settings.tls_mode == "secret":
            # The same field-selected watch of one Secret as the webhook's: RBAC grants that name only.
            self.secrets = manager.informer(
                SECRETS, Secret, namespace=settings.tls_secret_namespace,
                field_selector=f"metadata.name={settings.tls_secret_name}",
            )  # fmt: skip
            self.secrets.add_handlers(
                Handlers(
                    on_add=lambda _: self._secret_changed.set(),
                    on_update=lambda _old, _new: self._secret_changed.set(),
                    on_delete=lambda _: self._secret_changed.set(),
                )
            )
        manager.add_runnable(self.serve, group=RunnableGroup.SERVERS, ready=self.listening, name="websocket")

    def _topic(self, name: str, inf: Informer[Any], state: Any, flt: Any) -> Topic:
        def source(f: Filter) -> list[tuple[str, Any]]:
            # A namespace filter reads only that namespace's index entry (cost ~ the answer, not the cache).
            objs = inf.store.by_index(NAMESPACE_INDEX, f.namespace) if f.namespace else inf.store.list()
            return [(object_key(o), state(o)) for o in objs if flt(f, o)]

        return Topic(
            name, settings=self.s.hub, server_id=self.server_id,
            snapshot_source=source, current_rv=lambda: inf.last_sync_rv,
        )  # fmt: skip

    # -- informer → topic -----------------------------------------------------------------------------------

    def _handlers(self, topic: str, change: Any) -> Handlers[Any]:
        inf = self.informers[topic]

        def on_add(obj: Any) -> None:
            if inf.has_synced():  # the initial LIST is the base state, not changes
                change(None, obj, p.CREATED)

        def on_update(old: Any, new: Any) -> None:
            if old.metadata.resource_version != new.metadata.resource_version:
                change(old, new, p.UPDATED)

        def on_delete(obj: Any) -> None:
            change(None, obj, p.DELETED)

        return Handlers(on_add=on_add, on_update=on_update, on_delete=on_delete)

    def _publish(self, topic: str, obj: Any, payload: Any, *, name: str | None = None) -> None:
        meta = obj.metadata
        change = make_change(
            rv=meta.resource_version or "", namespace=meta.namespace, name=name or meta.name or "",
            labels=meta.labels, payload=payload,
        )  # fmt: skip
        self.topics[topic].publish(change)

    def _persona_change(self, old: Any, obj: ApplicationPersona, kind: str) -> None:
        self._publish(p.TOPIC_PERSONAS, obj, persona_state(obj, p.PersonaEvent, event_type=kind))

    def _cluster_change(self, old: ClusterPersona | None, obj: ClusterPersona, kind: str) -> None:
        if kind == p.UPDATED and old is not None:
            before, after = set(_node_names(old)), set(_node_names(obj))
            if before != after:
                # Node events first (nodeAdded / nodeRemoved, one per direction), then the plain update below.
                if after - before:
                    self._publish(
                        p.TOPIC_CLUSTER, obj, cluster_state(obj, p.ClusterEvent, event_type=p.NODE_ADDED)
                    )
                if before - after:
                    self._publish(
                        p.TOPIC_CLUSTER, obj, cluster_state(obj, p.ClusterEvent, event_type=p.NODE_REMOVED)
                    )
                return
        self._publish(p.TOPIC_CLUSTER, obj, cluster_state(obj, p.ClusterEvent, event_type=kind))

    def _event_change(self, old: Any, obj: KubeEvent, kind: str) -> None:
        self._publish(
            p.TOPIC_EVENTS, obj, event_state(obj, p.KubeEventEvent, event_type=kind),
            name=obj.involved_object.name or "",
        )  # fmt: skip

    # -- HTTP -----------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=p.MAX_MESSAGE_BYTES, middlewares=[self.listener.middleware])
        app.router.add_get("/ws", self._ws)
        app.router.add_route("*", "/health", self._health)
        return app

    async def _health(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _ws(self, request: web.Request) -> web.StreamResponse:
        try:
            user = await self.auth.authenticate(
                request.headers.get("Authorization"), source=str(request.remote)
            )
        except Unauthenticated as e:
            return web.json_response({"code": p.UNAUTHORIZED, "message": str(e)}, status=401)
        except RateLimited as e:
            return web.json_response(
                {"code": p.RATE_LIMITED, "message": str(e)}, status=429,
                headers={"Retry-After": str(max(1, math.ceil(e.retry_after_s)))},
            )  # fmt: skip
        except (ApiError, OSError, TimeoutError) as e:
            log.warning("TokenReview failed: %s", e)
            return web.json_response(
                {"code": p.UNAUTHORIZED, "message": f"TokenReview failed: {e}"}, status=503
            )
        session = _Session(user=user, authorization=request.headers.get("Authorization"))
        ws = web.WebSocketResponse(
            protocols=(p.SUBPROTOCOL_MSGPACK,), max_msg_size=p.MAX_MESSAGE_BYTES,
            heartbeat=self.s.heartbeat_s, compress=False, decode_text=False,
        )  # fmt: skip
        await ws.prepare(request)
        msgpack = ws.ws_protocol == p.SUBPROTOCOL_MSGPACK
        opcode = WSMsgType.BINARY if msgpack else WSMsgType.TEXT

        async def send(frame: bytes) -> None:
            await ws.send_frame(frame, opcode)

        conn = Connection(
            codec=p.Codec(msgpack=msgpack), send=send, settings=self.s.hub, peer=str(request.remote)
        )
        self.connections.add(conn)
        writer = asyncio.create_task(conn.writer())

        closers: set[asyncio.Future[Any]] = set()

        def writer_done(t: asyncio.Task[None]) -> None:
            if not t.cancelled() and t.exception() is not None:  # a failed send ends the connection
                conn.close()  # releases a read loop waiting for room
                closers.add(asyncio.ensure_future(ws.close()))

        writer.add_done_callback(writer_done)
        reauth = asyncio.create_task(self._reauthorize(conn, session))
        try:
            while True:
                await conn.room()  # the brake: no reading while the client's replies are not taken
                if conn.closed:
                    break
                msg = await ws.receive()
                if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                    break
                if msg.type in (WSMsgType.TEXT, WSMsgType.BINARY):
                    await self.handle(
                        conn,
                        session.user,
                        msg.data,
                        binary=msg.type == WSMsgType.BINARY,
                        revoked=session.revoked,
                    )
                elif msg.type == WSMsgType.ERROR:
                    break
        finally:
            conn.close()
            self.connections.discard(conn)
            for task in (reauth, writer):
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            await ws.close()
        return ws

    # -- messages -------------------------------------------------------------------------------------------

    def _reply(self, conn: Connection, msg: p.Message) -> None:
        conn.push_frame(conn.codec.encode(msg))

    def _error(
        self, conn: Connection, request_id: str | None, topic: str | None, code: str, message: str
    ) -> None:
        self._reply(
            conn,
            p.Error(
                topic=topic, request_id=request_id, payload=p.ErrorBody(code=code, message=message),
                timestamp=p.rfc3339_now(),
            ),
        )  # fmt: skip

    async def handle(
        self, conn: Connection, user: User, data: bytes, *, binary: bool, revoked: str | None = None
    ) -> None:
        """Answer one inbound message; ``revoked`` (why the connection's token is no longer accepted) answers
        every decodable message ``unauthorized``."""
        try:
            msg = conn.codec.decode(data, binary=binary)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            loose = conn.codec.salvage(data, binary=binary)
            rid = loose.request_id if loose and isinstance(loose.request_id, str) else None
            topic = loose.topic if loose and isinstance(loose.topic, str) else None
            if loose and isinstance(loose.type, str) and loose.type not in _TYPES:
                self._error(conn, rid, topic, p.UNKNOWN_MESSAGE_TYPE, f"Unknown message type: {loose.type}")
            else:
                self._error(conn, rid, topic, p.INVALID_MESSAGE, f"message does not decode: {e}")
            return
        if revoked is not None:
            self._error(conn, msg.request_id, msg.topic, p.UNAUTHORIZED, revoked)
            return
        try:
            if isinstance(msg, p.Subscribe):
                await self._subscribe(conn, user, msg)
            elif isinstance(msg, p.Unsubscribe):
                self._unsubscribe(conn, msg)
            elif isinstance(msg, p.Request):
                await self._request(conn, user, msg)
            else:
                self._error(conn, msg.request_id, msg.topic, p.UNKNOWN_MESSAGE_TYPE,
                            f"Unknown message type: {_type_of(msg)}")  # fmt: skip
        except _Fail as f:
            self._error(conn, msg.request_id, msg.topic, f.code, str(f))
        except msgspec.ValidationError as e:
            self._error(conn, msg.request_id, msg.topic, p.INVALID_REQUEST, f"invalid payload: {e}")
        except (ApiError, OSError, TimeoutError) as e:
            self._error(conn, msg.request_id, msg.topic, p.LIST_FAILED, f"API server: {e}")
        except Exception as e:  # a bug must not cost the client its connection: answer, log, go on
            log.exception("handling a %s message failed", _type_of(msg))
            self._error(conn, msg.request_id, msg.topic, p.INTERNAL_ERROR, f"internal error: {e}")

    async def _synced(self, topic: str) -> None:
        inf = self.informers[topic]
        if inf.has_synced():
            return
        try:
            await self.clock.wait_for(inf.wait_for_sync(), self.s.sync_wait_s)
        except TimeoutError:
            raise _Fail(p.NOT_READY, f"the server's {topic} cache has not synced yet; retry") from None

    async def _authorize(self, user: User, topic: str, namespace: str | None) -> None:
        # Each topic is authorised against the resource it shows: the events topic shows core/v1 Events
        # (about personas), so it needs list+watch of ``events``, not of ``applicationpersonas``.
        where = f"{'namespace ' + namespace if namespace else 'all namespaces'}"
        if topic == p.TOPIC_CLUSTER:
            ok = await self.auth.may(user, resource="clusterpersonas", namespace=None)
            what = "clusterpersonas"
        elif topic == p.TOPIC_EVENTS:
            ok = await self.auth.may(user, resource="events", namespace=namespace, group="")
            what = f"events in {where}"
        else:
            ok = await self.auth.may(user, resource="applicationpersonas", namespace=namespace)
            what = f"applicationpersonas in {where}"
        if not ok:
            raise _Fail(p.FORBIDDEN, f"user {user.username!r} may not list and watch {what}")
        scope = self.s.scope
        if topic != p.TOPIC_CLUSTER and namespace and scope is not None and namespace not in scope:
            raise _Fail(
                p.INVALID_REQUEST,
                f"namespace {namespace!r} is outside the operator's namespaces ({', '.join(scope)})",
            )

    async def _subscribe(self, conn: Connection, user: User, msg: p.Subscribe) -> None:
        topic = msg.topic or ""
        if topic not in self.topics:
            raise _Fail(p.UNKNOWN_TOPIC, f"Unknown topic: {topic}")
        opts: p.SubscribeOptions = p.payload_as(msg.payload, p.SubscribeOptions)
        flt = _filter(opts)
        await self._authorize(user, topic, opts.namespace)
        await self._synced(topic)
        t = self.topics[topic]
        # From here to the end: no await, so no change can fall between the response and the live stream.
        old = conn.subs.pop(topic, None)
        if old is not None:
            t.unsubscribe(old)
        sub = Subscription(conn, t, flt)
        conn.subs[topic] = sub
        mode = None
        if opts.resource_version is not None:
            known = opts.server_id == self.server_id and t.ring.after(opts.resource_version) is not None
            mode = "replay" if known else "snapshot"
        self._reply(
            conn,
            p.Response(
                topic=topic, request_id=msg.request_id, timestamp=p.rfc3339_now(),
                payload=p.Subscribed(status="subscribed", topic=topic, server_id=self.server_id,
                                     protocol_version=p.PROTOCOL_VERSION, resume=mode),
            ),
        )  # fmt: skip
        t.subscribe(sub, resume_rv=opts.resource_version, server_id=opts.server_id)

    async def _reauthorize(self, conn: Connection, session: _Session) -> None:
        """Every ``reauth_interval_s`` until the connection ends: check the token and each subscription's
        access again; close what lost it, with an ``error`` naming the topic and why."""
        while not conn.closed:
            await self.clock.sleep(self.s.reauth_interval_s)
            if not conn.subs or session.user.trusted or session.revoked is not None:
                continue
            try:
                session.user = await self.auth.verify(session.authorization)
            except Unauthenticated as e:
                session.revoked = f"the connection's token is no longer accepted: {e}"
                for topic in list(conn.subs):
                    self._close_subscription(conn, topic, p.UNAUTHORIZED, session.revoked)
                continue
            except (ApiError, OSError, TimeoutError) as e:
                log.warning("re-checking a connection's token failed (subscriptions kept): %s", e)
                continue
            for topic, sub in list(conn.subs.items()):
                try:
                    await self._authorize(session.user, topic, sub.filter.namespace)
                except _Fail as f:
                    # Only the subscription that was checked: a newer one of the topic was just authorised.
                    if conn.subs.get(topic) is sub:
                        self._close_subscription(conn, topic, f.code, str(f))
                except (ApiError, OSError, TimeoutError) as e:
                    log.warning("re-authorising a %s subscription failed (kept): %s", topic, e)

    def _close_subscription(self, conn: Connection, topic: str, code: str, why: str) -> None:
        sub = conn.subs.pop(topic, None)
        if sub is None:
            return
        sub.topic.unsubscribe(sub)
        self._error(conn, None, topic, code, f"subscription to {topic!r} closed: {why}")

    def _unsubscribe(self, conn: Connection, msg: p.Unsubscribe) -> None:
        topic = msg.topic or ""
        sub = conn.subs.pop(topic, None)
        if sub is not None:
            sub.topic.unsubscribe(sub)
        self._reply(
            conn,
            p.Response(
                topic=topic, request_id=msg.request_id, timestamp=p.rfc3339_now(),
                payload=p.Subscribed(status="unsubscribed", topic=topic, server_id=self.server_id,
                                     protocol_version=p.PROTOCOL_VERSION),
            ),
        )  # fmt: skip

    async def _request(self, conn: Connection, user: User, msg: p.Request) -> None:
        topic = msg.topic or ""
        if topic == p.TOPIC_PERSONAS:
            payload = await self._persona_request(user, msg.payload)
        elif topic == p.TOPIC_CLUSTER:
            payload = await self._cluster_request(user, msg.payload)
        else:
            raise _Fail(p.UNKNOWN_TOPIC, f"Unknown topic: {topic}")
        self._reply(
            conn,
            p.Response(topic=topic, request_id=msg.request_id, payload=payload, timestamp=p.rfc3339_now()),
        )

    async def _persona_request(self, user: User, raw: Any) -> Any:
        # A payload that is not an object is an empty query ("all namespaces"), never an error.
        q: p.PersonaQuery = p.payload_as(raw if isinstance(raw, dict) else None, p.PersonaQuery)
        action = q.action or ("get" if q.name else "list")
        if action == "validate":
            return await self._validate(user, q)
        if action not in ("list", "get"):
            raise _Fail(p.INVALID_REQUEST, f"unknown action {action!r} (list, get or validate)")
        await self._authorize(user, p.TOPIC_PERSONAS, q.namespace)
        await self._synced(p.TOPIC_PERSONAS)
        if action == "get":
            if not q.namespace or not q.name:
                raise _Fail(p.INVALID_REQUEST, "get needs namespace and name")
            ap = self.personas.store.get(f"{q.namespace}/{q.name}")
            if ap is None:
                raise _Fail(
                    p.NOT_FOUND, f"ApplicationPersona '{q.name}' not found in namespace '{q.namespace}'"
                )
            return {"persona": msgspec.to_builtins(ap), "summary": persona_state(ap)}
        flt = Filter(namespace=q.namespace or None, selector=_selector(q.label_selector))
        items = sorted(
            (ap for ap in self.personas.store.list() if _ns_filter(flt, ap)),
            key=lambda ap: (ap.metadata.namespace or "", ap.metadata.name or ""),
        )
        return {"personas": [persona_summary(ap) for ap in items]}

    async def _validate(self, user: User, q: p.PersonaQuery) -> Any:
        if not isinstance(q.deployment, dict):
            raise _Fail(p.INVALID_REQUEST, "validate needs 'deployment': a Deployment manifest (a mapping)")
        try:
            dep = msgspec.convert(q.deployment, Deployment)
        except msgspec.ValidationError as e:
            raise _Fail(p.INVALID_REQUEST, f"the Deployment manifest is invalid: {e}") from None
        ns = q.namespace or dep.metadata.namespace or "default"
        await self._authorize(user, p.TOPIC_PERSONAS, ns)
        await self._synced(p.TOPIC_PERSONAS)
        if q.name:
            ap = self.personas.store.get(f"{ns}/{q.name}")
            if ap is None:
                raise _Fail(p.NOT_FOUND, f"ApplicationPersona '{q.name}' not found in namespace '{ns}'")
            personas = [ap]
        else:
            app = deployment_app_name(dep)
            personas = sorted(
                (x for x in self.personas.store.by_index(NAMESPACE_INDEX, ns) if app and x.spec.name == app),
                key=lambda x: x.metadata.name or "",
            )
        results = []
        for ap in personas:
            issues = validate(ap.spec, [dep])
            results.append(
                p.ValidationResult(
                    namespace=ns,
                    persona=ap.metadata.name or "",
                    passed=error_count(issues) == 0,
                    issue_count=len(issues),
                    issues=msgspec.to_builtins(issues),
                )
            )
        return {"appName": deployment_app_name(dep) or "", "namespace": ns, "results": results}

    async def _cluster_request(self, user: User, raw: Any) -> Any:
        q: p.ClusterQuery = p.payload_as(raw if isinstance(raw, dict) else None, p.ClusterQuery)
        await self._authorize(user, p.TOPIC_CLUSTER, None)
        await self._synced(p.TOPIC_CLUSTER)
        items = sorted(self.clusters.store.list(), key=lambda c: c.metadata.name or "")
        if not items:
            raise _Fail(p.NOT_FOUND, "No ClusterPersona found")
        if q.name:
            found = [c for c in items if c.metadata.name == q.name]
            if not found:
                raise _Fail(p.NOT_FOUND, f"ClusterPersona '{q.name}' not found")
            return cluster_summary(found[0])
        return cluster_summary(items[0])

    # -- serving --------------------------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        """The files' context (``files``); None otherwise (the Secret's context comes from
        :meth:`_secret_context`)."""
        if self.s.tls_mode != "files" or not self.s.tls_cert_file:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(self.s.tls_cert_file, self.s.tls_key_file)
        return ctx

    def _secret_material(self) -> ServingMaterial | None:
        assert self.secrets is not None
        secret = self.secrets.store.get(f"{self.s.tls_secret_namespace}/{self.s.tls_secret_name}")
        return material_of(secret) if secret is not None else None

    async def _secret_context(self) -> ssl.SSLContext:
        """Wait until the certificate Secret holds a pair (the webhook component issues it), load it."""
        assert self.secrets is not None
        await self.secrets.wait_for_sync()
        self.tls = TlsReloader()
        waiting_logged = False
        while True:
            self._secret_changed.clear()  # before reading: a change from here on wakes the wait below
            if self._load_secret_pair():
                break
            if not waiting_logged:
                log.warning(
                    "waiting for the certificate Secret %s/%s (issued by the webhook component) to serve wss://",
                    self.s.tls_secret_namespace, self.s.tls_secret_name,
                )  # fmt: skip
                waiting_logged = True
            await self._secret_changed.wait()
        return self.tls.context

    def _load_secret_pair(self) -> bool:
        """Serve the Secret's pair if it holds a usable one; False when it is missing, incomplete or does not
        load (a broken Secret the webhook is about to repair: the pair served so far stays)."""
        assert self.tls is not None
        material = self._secret_material()
        if material is None:
            return False
        try:
            if self.tls.load(material):
                fp = (self.tls.fingerprint or b"").hex()[:16]
                log.info("serving a new certificate", extra={"fingerprint": fp})
        except Exception as e:  # any parse or load error: keep what is served, wait for the next change
            log.warning("the certificate Secret's pair does not load (kept the one served): %s", e)
            return False
        return True

    async def _keep_certificate(self) -> None:
        """Reload the Secret's pair whenever it changes (a rotation, a repair): new handshakes get it."""
        while True:
            await self._secret_changed.wait()
            self._secret_changed.clear()  # before reading: a change from here on wakes the next wait
            self._load_secret_pair()

    async def serve(self) -> None:
        """Listen until cancelled (the manager's servers group); then close every connection."""
        mode = self.s.tls_mode
        if mode == "off" and not is_loopback(self.s.host):
            log.warning(
                "serving plain ws:// on %r: bearer tokens cross the network in cleartext", self.s.host
            )
        keeper: asyncio.Task[None] | None = None
        runner: web.AppRunner | None = None
        try:
            ctx = await self._secret_context() if mode == "secret" else self.ssl_context()
            if mode == "secret":
                keeper = asyncio.create_task(self._keep_certificate())
            runner = web.AppRunner(self.app(), handle_signals=False, access_log=None)
            await runner.setup()
            sock = bound_socket(self.s.host, self.s.port)
            self.port = int(sock.getsockname()[1])
            await self.listener.start(runner, sock, ctx)
            self.listening.set()
            log.info(
                "serving websocket",
                extra={"port": self.port, "auth": self.s.auth, "tls": mode, "server_id": self.server_id},
            )
            await asyncio.Event().wait()  # serve until cancelled
        finally:
            if keeper is not None:
                keeper.cancel()
                with contextlib.suppress(BaseException):
                    await keeper
            await self.listener.stop()
            for c in list(self.connections):
                c.close()
            if runner is not None:
                await runner.cleanup()
            if self.tls is not None:
                self.tls.close()  # the pair's temporary files (the live context needs them no more)
                self.tls = None


_TYPES = ("subscribe", "unsubscribe", "request", "response", "event", "error")


def _type_of(msg: p.Message) -> str:
    return {p.Response: "response", p.Event: "event", p.Error: "error"}.get(type(msg), type(msg).__name__)


def _selector(text: str | None) -> p.Selector | None:
    if not text:
        return None
    try:
        return p.Selector(text)
    except ValueError as e:
        raise _Fail(p.INVALID_REQUEST, str(e)) from None


def _filter(opts: p.SubscribeOptions) -> Filter:
    return Filter(
        namespace=opts.namespace or None, name=opts.name or None, selector=_selector(opts.label_selector)
    )


def _ns_filter(f: Filter, obj: Any) -> bool:
    m = obj.metadata
    return f.matches(m.namespace, m.name or "", m.labels)


def _event_filter(f: Filter, ev: KubeEvent) -> bool:
    return f.matches(ev.metadata.namespace, ev.involved_object.name or "", ev.metadata.labels)


async def run(ctx: ComponentContext) -> None:
    """The component's entry point (a child process of the supervisor); not leader-gated."""
    settings = WebSocketSettings.from_options(ctx.options)
    connection = msgspec.structs.replace(ctx.connection, user_agent=f"{ctx.connection.user_agent} websocket")
    # No leader election: every replica serves. Ready once it listens and its caches have synced.
    manager = Manager(connection=connection, set_ready=ctx.set_ready)
    WebSocketServer(manager, settings)
    started = manager.clock.monotonic()
    try:
        await manager.run(ctx.stopping)
    finally:
        log.info("websocket stopped", extra={"uptime_s": round(manager.clock.monotonic() - started, 1)})


__all__ = ["Change", "WebSocketServer", "WebSocketSettings", "run"]
