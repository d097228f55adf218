"""Fan-out of cache changes to WebSocket subscribers: per-topic rings, server-side filters, bounded queues.

Rules this module keeps:

* **One frame per change per codec.** A change is encoded at most once for JSON and once for msgpack; every
  subscriber that should see it gets the same bytes (the ``timestamp`` is the time the server saw it).
* **Filters run on the server**, from a per-topic index by namespace: a change in namespace ``a`` is only
  tested against subscriptions to ``a`` and to all namespaces.
* **No missed changes.** Each topic keeps a ring of its last ``ring_size`` changes (default 4,096, see
  :class:`HubSettings`), keyed by the object's resourceVersion. Subscribing with a resourceVersion found in
  the ring (or equal to the ring's base) replays what came after it, filtered; anything else — an RV
  evicted from the ring, another server instance, ``""`` — gets a snapshot: the authoritative filtered set
  from the informer's cache, tagged with the ring's head RV. Registering the subscription and computing the
  replay/snapshot happen in one synchronous step of the event loop, so no change falls between them.
* **A slow consumer never blocks others.** Each connection has a bounded queue (``queue_size`` frames and
  ``max_buffered_bytes`` bytes). Publishing never awaits; when a change would overflow a queue it is
  emptied and replaced by one ``lagging`` error plus a fresh snapshot of each of the connection's
  subscriptions — nothing is dropped silently, and the client's set is made whole again (a client that
  never reads holds at most one resync's frames; the heartbeat drops it when it answers no ping).
* **Replies are bounded too.** Replies and errors are queued as they are answered, but the server's read
  loop waits for :meth:`Connection.room` before it reads the next message: a client that sends requests
  and never reads stops being read once ``max_buffered_bytes`` are queued for it (its further requests
  wait in the socket buffers, where TCP pushes back on it). So the queue holds at most
  ``max_buffered_bytes`` plus one reply, or one resync.
* Changes seen while an informer does its initial LIST are the base state, not changes: they never enter
  the ring. An update that does not change the resourceVersion (informer resync, relist of an unchanged
  object) is not a change either.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dorgu.domain import protocol as p
from webhook.ws.metrics import WS_CLIENTS, WS_SUBSCRIPTIONS

log = logging.getLogger("dorgu.websocket.hub")


@dataclass(frozen=True, kw_only=True)
class HubSettings:
    """Sizes of the fan-out's buffers."""

    ring_size: int = 4096
    """Changes kept per topic for resume (4,096 ≈ 40 s of 100 changes/s; ~1 KiB each with cached frames)."""
    queue_size: int = 1024
    """Frames queued per connection before it is declared lagging and resynced."""
    max_buffered_bytes: int = 8 * 1024 * 1024
    """Bytes queued per connection: a change beyond it resyncs the connection; at it, the server stops
    reading the connection's requests until its queue drains below it."""


@dataclass(eq=False)
class Change:
    """One change of one object on one topic, as it sits in the ring."""

    rv: str
    """The object's resourceVersion (the resume key)."""
    key: str
    """``namespace/name`` (``name`` when cluster-scoped)."""
    namespace: str | None
    name: str
    labels: dict[str, str] | None
    payload: Any
    """The event payload Struct."""
    timestamp: str
    created_ns: int
    """time.time_ns() when the server saw the change (latency measurements)."""
    _frames: dict[bool, bytes] = field(default_factory=dict)

    def frame(self, topic: str, codec: p.Codec) -> bytes:
        f = self._frames.get(codec.msgpack)
        if f is None:
            f = codec.encode(p.Event(topic=topic, payload=self.payload, timestamp=self.timestamp))
            self._frames[codec.msgpack] = f
        return f


@dataclass(frozen=True, kw_only=True)
class Filter:
    """What a subscription lets through."""

    namespace: str | None = None
    name: str | None = None
    selector: p.Selector | None = None

    def matches(self, namespace: str | None, name: str, labels: dict[str, str] | None) -> bool:
        if self.namespace is not None and namespace != self.namespace:
            return False
        if self.name is not None and name != self.name:
            return False
        return self.selector is None or self.selector.matches(labels)


class Ring:
    """The last ``size`` changes of a topic, findable by resourceVersion."""

    def __init__(self, size: int) -> None:
        self._items: collections.deque[Change] = collections.deque(maxlen=size)
        self.base_rv: str | None = None
        """The RV the ring's first change comes after (the state a resume from it starts from)."""

    def append(self, change: Change) -> None:
        if len(self._items) == self._items.maxlen:
            self.base_rv = self._items[0].rv
        self._items.append(change)

    def head(self) -> str | None:
        return self._items[-1].rv if self._items else self.base_rv

    def after(self, rv: str) -> list[Change] | None:
        """Changes after ``rv``; None when ``rv`` is not (or no longer) known.

        Searched oldest first: if an RV appears twice (a delete found by a relist carries the object's last
        RV) the earlier match replays more, never less — a duplicate at worst, never a gap.
        """
        if rv == "":
            return None
        if rv == self.base_rv:
            return list(self._items)
        for i, c in enumerate(self._items):
            if c.rv == rv:
                return list(self._items)[i + 1 :]
        return None

    def __len__(self) -> int:
        return len(self._items)


class Subscription:
    def __init__(self, conn: Connection, topic: Topic, flt: Filter) -> None:
        self.conn = conn
        self.topic = topic
        self.filter = flt


class Topic:
    """One topic's ring, subscribers and snapshot source."""

    def __init__(
        self,
        name: str,
        *,
        settings: HubSettings,
        server_id: str,
        snapshot_source: Callable[[Filter], list[tuple[str, Any]]],
        current_rv: Callable[[], str],
    ) -> None:
        self.name = name
        self.server_id = server_id
        self.ring = Ring(settings.ring_size)
        self._snapshot_source = snapshot_source
        self._current_rv = current_rv
        self._by_ns: dict[str | None, set[Subscription]] = {}
        self.published = 0
        self._subscriptions = WS_SUBSCRIPTIONS.labels(name)  # at 0 from the start: the series exists

    # -- publishing (called from informer handlers: synchronous, never awaits) ------------------------------

    def publish(self, change: Change) -> None:
        if self.ring.base_rv is None:
            # The first change after the initial LIST: the cache's RV before it is where the ring starts.
            self.ring.base_rv = self._current_rv()
        self.ring.append(change)
        self.published += 1
        for ns in (change.namespace, None) if change.namespace is not None else (None,):
            for sub in tuple(self._by_ns.get(ns, ())):
                if sub.filter.matches(change.namespace, change.name, change.labels):
                    sub.conn.push_change(sub, change)

    # -- subscribing ----------------------------------------------------------------------------------------

    def subscribe(self, sub: Subscription, *, resume_rv: str | None, server_id: str | None) -> str | None:
        """Register ``sub`` and queue its replay or snapshot, in one step. Returns the resume mode."""
        subs = self._by_ns.setdefault(sub.filter.namespace, set())
        if sub not in subs:
            subs.add(sub)
            self._subscriptions.inc()
        if resume_rv is None:
            return None
        changes = self.ring.after(resume_rv) if server_id == self.server_id else None
        if changes is None:
            sub.conn.push_frame(self.snapshot_frame(sub, sub.conn.codec))
            return "snapshot"
        for c in changes:
            if sub.filter.matches(c.namespace, c.name, c.labels):
                sub.conn.push_change(sub, c)
        return "replay"

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._by_ns.get(sub.filter.namespace)
        if subs is not None and sub in subs:
            subs.discard(sub)
            self._subscriptions.dec()
            if not subs:
                del self._by_ns[sub.filter.namespace]

    def snapshot_frame(self, sub: Subscription, codec: p.Codec) -> bytes:
        """The authoritative filtered set, tagged with the ring's head (consistent: same loop step)."""
        head = self.ring.head()
        if head is None:
            head = self._current_rv()
        items = [state for _, state in sorted(self._snapshot_source(sub.filter), key=lambda kv: kv[0])]
        snap = p.Snapshot(
            event_type=p.SNAPSHOT, resource_version=head or "", server_id=self.server_id, items=items
        )
        return codec.encode(p.Event(topic=self.name, payload=snap, timestamp=p.rfc3339_now()))

    def subscriber_count(self) -> int:
        return sum(len(s) for s in self._by_ns.values())


class Connection:
    """One client connection's outbound side: a bounded queue drained by a writer task."""

    def __init__(
        self,
        *,
        codec: p.Codec,
        send: Callable[[bytes], Any],
        settings: HubSettings,
        peer: str = "",
    ) -> None:
        self.codec = codec
        self._send = send
        self._max = settings.queue_size
        self._max_bytes = settings.max_buffered_bytes
        self._queue: collections.deque[bytes] = collections.deque()
        self._bytes = 0
        self._wake = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self.subs: dict[str, Subscription] = {}
        self.peer = peer
        self.closed = False
        self.resyncs = 0
        self.sent = 0
        self.peak_bytes = 0
        """The most bytes ever queued at once (tests and metrics)."""
        WS_CLIENTS.inc()  # until close()

    # -- queueing (synchronous) -----------------------------------------------------------------------------

    def push_frame(self, frame: bytes) -> None:
        if self.closed:
            return
        self._queue.append(frame)
        self._bytes += len(frame)
        self.peak_bytes = max(self.peak_bytes, self._bytes)
        if self._bytes >= self._max_bytes:
            self._room.clear()
        self._wake.set()

    def push_change(self, sub: Subscription, change: Change) -> None:
        if self.closed:
            return
        frame = change.frame(sub.topic.name, self.codec)
        if len(self._queue) >= self._max or self._bytes + len(frame) > self._max_bytes:
            self._resync()
            return
        self.push_frame(frame)

    def _resync(self) -> None:
        """Queue overflow: drop the backlog, say so, and send each subscription's current set instead."""
        self.resyncs += 1
        dropped = len(self._queue)
        self._clear()
        log.warning("connection %s lagging: %d frames replaced by snapshots", self.peer, dropped)
        err = p.Error(
            payload=p.ErrorBody(
                code=p.LAGGING,
                message=f"connection fell {dropped} frames behind; a snapshot of every subscription follows",
            ),
            timestamp=p.rfc3339_now(),
        )
        self.push_frame(self.codec.encode(err))
        for sub in self.subs.values():
            self.push_frame(sub.topic.snapshot_frame(sub, self.codec))

    def _clear(self) -> None:
        self._queue.clear()
        self._bytes = 0
        self._room.set()

    def queued(self) -> int:
        return len(self._queue)

    def buffered(self) -> int:
        """Bytes queued now."""
        return self._bytes

    async def room(self) -> None:
        """Return once fewer than ``max_buffered_bytes`` are queued (at once when so), or the connection
        closed: the read loop's brake."""
        while not self.closed and self._bytes >= self._max_bytes:
            self._room.clear()
            await self._room.wait()

    # -- writing --------------------------------------------------------------------------------------------

    async def writer(self) -> None:
        """Send queued frames in order until closed; a failed send ends the connection."""
        while not self.closed:
            if not self._queue:
                self._wake.clear()
                await self._wake.wait()
                continue
            frame = self._queue.popleft()
            self._bytes -= len(frame)
            if self._bytes < self._max_bytes:
                self._room.set()
            await self._send(frame)
            self.sent += 1

    def close(self) -> None:
        if not self.closed:
            WS_CLIENTS.dec()
        self.closed = True
        for sub in self.subs.values():
            sub.topic.unsubscribe(sub)
        self.subs.clear()
        self._clear()
        self._wake.set()


def make_change(
    *,
    rv: str,
    namespace: str | None,
    name: str,
    labels: dict[str, str] | None,
    payload: Any,
) -> Change:
    now = time.time_ns()
    key = f"{namespace}/{name}" if namespace else name
    return Change(
        rv=rv, key=key, namespace=namespace, name=name, labels=labels, payload=payload,
        timestamp=p.rfc3339_now(now), created_ns=now,
    )  # fmt: skip


def filtered(items: Iterable[Any], flt: Filter) -> list[Any]:
    return [o for o in items if flt.matches(o.metadata.namespace, o.metadata.name or "", o.metadata.labels)]
