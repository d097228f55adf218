"""The operator's WebSocket protocol, version 1: one connection carries subscriptions and request/response.

The envelope (``type``, ``topic``, ``requestId``, ``payload``, ``timestamp``), the topic names, the first
four error codes and the payload keys are fixed: clients written against them (JSON-only ones included) keep
working, so every change is additive — extra payload keys and new error codes, never renamed or removed ones.
Rules this module keeps:

* **Framing.** A client that offers no subprotocol gets JSON text frames. A client that offers
  :data:`SUBPROTOCOL_MSGPACK` gets binary msgpack frames with the very same structure (dorgu's CLI).
  The subprotocol name carries the protocol version; a future incompatible version gets a new name, so a
  client and server always agree on the version at the handshake.
* **Envelope** is a tagged union on ``type``. ``timestamp`` is always set by the server (RFC 3339, UTC,
  nanoseconds with trailing zeros trimmed); in client messages it is optional and not checked (a message
  is never dropped for its timestamp).
* **Every error echoes the request's ``requestId``**, so a client's failed request ends at once instead of
  waiting for its timeout.
* **Resume.** Events of ``personas``/``cluster``/``events`` carry the object's ``resourceVersion``. A
  subscriber that passes ``resourceVersion`` (the last one it saw; ``""`` for none) and the ``serverId`` it
  saw gets exactly the events after it, or — when the server no longer has them or is another instance —
  a ``snapshot`` event (``eventType: "snapshot"``) whose ``items`` are the authoritative subscribed set
  (anything not in it is gone) followed by live events. Without ``resourceVersion`` a subscription is
  live-only.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any

import msgspec

PROTOCOL_VERSION = 1
"""Version of this protocol; bumped (with a new subprotocol name) on any incompatible change."""
SUBPROTOCOL_MSGPACK = f"dorgu.v{PROTOCOL_VERSION}.msgpack"
"""The WebSocket subprotocol that selects binary msgpack frames."""
MAX_MESSAGE_BYTES = 512 * 1024
"""Largest inbound message; a larger one closes the connection with 1009 (message too big)."""

TOPIC_PERSONAS = "personas"
TOPIC_CLUSTER = "cluster"
TOPIC_EVENTS = "events"
TOPIC_DEPLOYMENTS = "deployments"
TOPICS = (TOPIC_PERSONAS, TOPIC_CLUSTER, TOPIC_EVENTS, TOPIC_DEPLOYMENTS)
"""Every topic name of the protocol (``deployments`` is reserved: no server serves it, and subscribing to
it answers ``unknown_topic``)."""
SERVED_TOPICS = (TOPIC_PERSONAS, TOPIC_CLUSTER, TOPIC_EVENTS)
"""Topics a server publishes events on."""

# Error codes. The first four are fixed (every client knows them); the rest are additions.
UNKNOWN_MESSAGE_TYPE = "unknown_message_type"
UNKNOWN_TOPIC = "unknown_topic"
LIST_FAILED = "list_failed"
NOT_FOUND = "not_found"
INVALID_MESSAGE = "invalid_message"
"""The frame does not decode (not JSON/msgpack, or a field of the wrong type); the connection stays open."""
INVALID_REQUEST = "invalid_request"
"""The message decodes but its payload cannot be used (bad label selector, bad manifest)."""
UNAUTHORIZED = "unauthorized"
"""No or an invalid bearer token (also the HTTP 401 at the handshake)."""
FORBIDDEN = "forbidden"
"""The token's user may not list/watch what was asked for (SubjectAccessReview said no)."""
LAGGING = "lagging"
"""The connection fell behind; its queue was replaced by a fresh ``snapshot`` of every subscription."""
NOT_READY = "not_ready"
"""The server's caches have not synced yet."""
INTERNAL_ERROR = "internal_error"
"""A bug in the server; the connection stays open."""
RATE_LIMITED = "rate_limited"
"""Too many failed authentications from the client's address (the HTTP 429 at the handshake)."""

# Persona event types (fixed) and the snapshot marker.
CREATED = "created"
UPDATED = "updated"
DELETED = "deleted"
SNAPSHOT = "snapshot"
NODE_ADDED = "nodeAdded"
NODE_REMOVED = "nodeRemoved"


def rfc3339_now(ns: int | None = None) -> str:
    """Server time as Go's RFC3339Nano: ``2026-02-15T10:00:00.123456789Z`` (trailing zeros trimmed)."""
    ns = time.time_ns() if ns is None else ns
    secs, frac = divmod(ns, 1_000_000_000)
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs))
    if frac:
        return f"{base}.{f'{frac:09d}'.rstrip('0')}Z"
    return f"{base}Z"


# --------------------------------------------------------------------------- envelope


class _Envelope(msgspec.Struct, tag_field="type", rename="camel", omit_defaults=True, kw_only=True):
    topic: str | None = None
    """Topic the message is about (omitted when empty)."""
    request_id: str | None = None
    """Chosen by the client; echoed on the ``response`` or ``error`` that answers it."""
    payload: Any = None
    """Operation-specific body (omitted when absent)."""
    timestamp: str | None = None
    """RFC 3339; always present in server messages."""


class Subscribe(_Envelope, tag="subscribe"):
    """Client → server: receive ``event`` messages of ``topic`` (payload :class:`SubscribeOptions`)."""


class Unsubscribe(_Envelope, tag="unsubscribe"):
    """Client → server: stop receiving ``topic``."""


class Request(_Envelope, tag="request"):
    """Client → server: a query; payload :class:`PersonaQuery` or :class:`ClusterQuery` by topic."""


class Response(_Envelope, tag="response"):
    """Server → client: the answer to a ``subscribe``/``unsubscribe``/``request`` with its ``requestId``."""


class Event(_Envelope, tag="event"):
    """Server → client: a change on a subscribed topic (or a ``snapshot``)."""


class Error(_Envelope, tag="error"):
    """Server → client: payload :class:`ErrorBody`; echoes the ``requestId`` of what failed."""


Message = Subscribe | Unsubscribe | Request | Response | Event | Error
"""Every message of the protocol, either direction."""


class LooseEnvelope(msgspec.Struct, rename="camel", kw_only=True):
    """Whatever can be salvaged from a message that does not decode as :data:`Message` (to answer it)."""

    type: Any = None
    request_id: Any = None
    topic: Any = None


# --------------------------------------------------------------------------- payloads


class _Payload(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    pass


class SubscribeOptions(_Payload):
    """Payload of ``subscribe``: server-side filters and the resume point (all optional)."""

    namespace: str | None = None
    """Only objects in this namespace (events: about objects in it). None: all namespaces."""
    name: str | None = None
    """Only the object of this name (events: about the persona of this name)."""
    label_selector: str | None = None
    """Only personas whose labels match (Kubernetes selector syntax: ``a=b,c!=d,e in (f,g),!h``)."""
    resource_version: str | None = None
    """Resume after this resourceVersion (``""``: send a snapshot first). None: live events only."""
    server_id: str | None = None
    """The ``serverId`` the resourceVersion was seen from; another instance answers with a snapshot."""


class Subscribed(_Payload):
    """Payload of the ``response`` to ``subscribe``/``unsubscribe`` (``status`` and ``topic`` are fixed)."""

    status: str
    """``subscribed`` or ``unsubscribed``."""
    topic: str
    server_id: str | None = None
    """This server instance (changes on every start)."""
    protocol_version: int | None = None
    """:data:`PROTOCOL_VERSION`."""
    resume: str | None = None
    """``replay`` (events after the given RV follow), ``snapshot`` (one follows) or None (live only)."""


class PersonaQuery(_Payload):
    """Payload of ``request`` on ``personas``: list (default), get (``name`` given) or ``validate``."""

    action: str | None = None
    """``list``, ``get`` or ``validate``; default ``get`` when ``name`` is given, else ``list``."""
    namespace: str | None = None
    """Namespace to list (None: all), of the persona to get, or of the Deployment to validate."""
    name: str | None = None
    """Persona (metadata.name) to get, or — for validate — the persona to validate against."""
    label_selector: str | None = None
    """Only personas whose labels match (list)."""
    deployment: Any = None
    """validate: the Deployment manifest (a mapping) to check; nothing is written to the cluster."""


class ClusterQuery(_Payload):
    """Payload of ``request`` on ``cluster``."""

    name: str | None = None
    """ClusterPersona ``metadata.name``; None: the first one (by name)."""


class ErrorBody(msgspec.Struct, kw_only=True):
    """Payload of ``error``."""

    code: str
    """One of the codes above (``not_found``, ``forbidden``, ...)."""
    message: str
    """Human-readable detail."""


class ValidationSummary(_Payload):
    """A persona's ``status.validation`` in brief."""

    passed: bool | None = None
    issue_count: int = 0
    error_count: int = 0


class PersonaSummary(msgspec.Struct, rename="camel", kw_only=True):
    """A persona in a list response: all seven keys always present (``""`` when unknown)."""

    namespace: str = ""
    name: str = ""
    app_name: str = ""
    type: str = ""
    tier: str = ""
    phase: str = ""
    health: str = ""


class PersonaState(_Payload):
    """One persona as events and snapshots carry it (the fixed event keys, plus additions)."""

    namespace: str = ""
    name: str = ""
    resource_version: str | None = None
    """metadata.resourceVersion of the object this state is from (the resume point)."""
    app_name: str | None = None
    type: str | None = None
    tier: str | None = None
    phase: str | None = None
    health: str | None = None
    health_message: str | None = None
    validation: ValidationSummary | None = None
    observed_generation: int | None = None
    labels: dict[str, str] | None = None


class PersonaEvent(PersonaState, kw_only=True):
    """Payload of an ``event`` on ``personas``."""

    event_type: str
    """``created``, ``updated`` or ``deleted`` (required: never omitted from the wire)."""


class PersonaList(msgspec.Struct, rename="camel", kw_only=True):
    """The ``personas`` response to a list request (the Go operator's shape too)."""

    personas: list[PersonaSummary]
    """The personas, sorted by namespace and name (``[]`` when none, never null)."""


class PersonaGot(msgspec.Struct, rename="camel", kw_only=True):
    """The ``personas`` response to a get request (``action: get``; the Go operator has none: it answers a
    list, which does not convert to this — a client tells the two apart by converting, never by indexing)."""

    persona: dict[str, Any]
    """The ApplicationPersona as the API server holds it (``managedFields`` included)."""
    summary: PersonaState | None = None
    """The same persona in brief."""


class ClusterSummary(msgspec.Struct, rename="camel", kw_only=True):
    """The ``cluster`` response: every key always present, ``addons`` null when none."""

    name: str = ""
    environment: str = ""
    phase: str = ""
    kubernetes_version: str = ""
    platform: str = ""
    node_count: int = 0
    application_count: int = 0
    addons: list[str] | None = None


class ClusterState(_Payload):
    """One ClusterPersona as events and snapshots carry it."""

    name: str = ""
    resource_version: str | None = None
    phase: str | None = None
    node_count: int | None = None
    application_count: int | None = None
    nodes: list[str] | None = None
    """Node names (the resume-safe base for ``nodeAdded``/``nodeRemoved``)."""


class ClusterEvent(ClusterState, kw_only=True):
    """Payload of an ``event`` on ``cluster``: created/updated/deleted/nodeAdded/nodeRemoved."""

    event_type: str


class KubeEventState(_Payload):
    """A Kubernetes Event about a persona (topic ``events``)."""

    namespace: str = ""
    name: str = ""
    """The Event object's own name."""
    resource_version: str | None = None
    persona: str | None = None
    """Name of the ApplicationPersona it is about."""
    reason: str | None = None
    message: str | None = None
    type: str | None = None
    """``Normal`` or ``Warning``."""
    count: int | None = None
    last_timestamp: str | None = None


class KubeEventEvent(KubeEventState, kw_only=True):
    """Payload of an ``event`` on ``events``."""

    event_type: str


class Snapshot(_Payload, kw_only=True):
    """Payload of an ``event`` with ``eventType: snapshot``: replaces the subscriber's whole set."""

    event_type: str
    """Always ``snapshot``."""
    resource_version: str
    """Resume point: pass it back on the next subscribe."""
    server_id: str = ""
    items: list[Any] = msgspec.field(default_factory=list)
    """:class:`PersonaState` / :class:`ClusterState` / :class:`KubeEventState` dicts, sorted by key."""


class ValidationResult(_Payload):
    """One persona's verdict on the Deployment sent in a ``validate`` request."""

    namespace: str = ""
    persona: str = ""
    passed: bool = True
    issue_count: int = 0
    issues: list[Any] = msgspec.field(default_factory=list)
    """``status.validation.issues`` items (severity, field, message, suggestion, deployment)."""


# --------------------------------------------------------------------------- codecs


class Codec:
    """Encodes and decodes whole messages in one framing (JSON text or msgpack binary)."""

    def __init__(self, *, msgpack: bool) -> None:
        self.msgpack = msgpack
        self._json_enc = msgspec.json.Encoder()
        self._json_dec = msgspec.json.Decoder(Message)
        self._json_loose = msgspec.json.Decoder(LooseEnvelope)
        self._mp_enc = msgspec.msgpack.Encoder()
        self._mp_dec = msgspec.msgpack.Decoder(Message)
        self._mp_loose = msgspec.msgpack.Decoder(LooseEnvelope)

    def encode(self, msg: Message) -> bytes:
        return self._mp_enc.encode(msg) if self.msgpack else self._json_enc.encode(msg)

    def decode(self, data: bytes | str, *, binary: bool) -> Message:
        """A text frame is always JSON; a binary frame is msgpack on a msgpack connection, else JSON.

        Decoding depth is bounded: a message nested deeper than the decoder's recursion allows (about a
        thousand levels, less the stack in use) raises :class:`msgspec.DecodeError` like any other frame
        that does not decode — never a ``RecursionError`` that would escape a handler's error path."""
        try:
            if binary and self.msgpack:
                return self._mp_dec.decode(data)
            return self._json_dec.decode(data)
        except RecursionError:
            raise msgspec.DecodeError("the message is nested too deeply") from None

    def salvage(self, data: bytes | str, *, binary: bool) -> LooseEnvelope | None:
        """The ``type``/``requestId``/``topic`` of an undecodable message, when it is at least a map (None
        when nested too deeply to read even those: skipping a value recurses too)."""
        try:
            if binary and self.msgpack:
                return self._mp_loose.decode(data)
            return self._json_loose.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
            return None


def payload_as(payload: Any, type_: type[Any]) -> Any:
    """Convert a decoded payload to its Struct (None → the type's defaults); raises ValidationError."""
    if payload is None:
        return type_()
    return msgspec.convert(payload, type_)


def to_builtins(obj: Any) -> Any:
    return msgspec.to_builtins(obj)


# --------------------------------------------------------------------------- label selectors

_REQ = re.compile(
    r"""\s*(?:
        (?P<not>!)\s*(?P<nkey>[A-Za-z0-9._/-]+)                                   # !key
      | (?P<skey>[A-Za-z0-9._/-]+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)          # key in (a,b)
      | (?P<ekey>[A-Za-z0-9._/-]+)\s*(?P<eop>==|=|!=)\s*(?P<val>[A-Za-z0-9._-]*)      # key=value
      | (?P<xkey>[A-Za-z0-9._/-]+)                                                  # key
    )\s*(?:,|$)""",
    re.VERBOSE,
)


class Selector:
    """A Kubernetes label selector (equality- and set-based), parsed once, matched many times."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._reqs: list[tuple[str, str, frozenset[str]]] = []
        pos, text = 0, text.strip()
        while pos < len(text):
            m = _REQ.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"invalid label selector {self.text!r} at {text[pos:]!r}")
            pos = m.end()
            if m["nkey"]:
                self._reqs.append((m["nkey"], "!", frozenset()))
            elif m["skey"]:
                vals = frozenset(v.strip() for v in m["vals"].split(",") if v.strip())
                self._reqs.append((m["skey"], m["op"], vals))
            elif m["ekey"]:
                op = "!=" if m["eop"] == "!=" else "="
                self._reqs.append((m["ekey"], op, frozenset((m["val"],))))
            else:
                self._reqs.append((m["xkey"], "exists", frozenset()))

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        for key, op, vals in self._reqs:
            has = key in labels
            if op == "exists" and not has:
                return False
            if op == "!" and has:
                return False
            if op in ("=", "in") and (not has or labels[key] not in vals):
                return False
            if op in ("!=", "notin") and has and labels[key] in vals:
                return False
        return True
