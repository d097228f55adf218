"""Sharding one controller's objects over a ring of shard instances: the labels, the shard's side of the
drain handshake, and how a shard's liveness is judged from its Lease.

The protocol (the sharder's side is :mod:`dorgu.runtime.sharder`, the ring :mod:`dorgu.runtime.shardring`):

* A **shard** is one controller instance with an identity of its own (``<replica>-<n>``). It holds a shard
  Lease (``<ring>-shard.<shard>``, labelled ``dorgu.io/lease-group=ring.<ring>``) with the ordinary leader
  election (:mod:`dorgu.runtime.leaderelection`): it reconciles only while the Lease is validly held, every
  write of its process is fenced by it, and a shard that cannot renew within the renew deadline stops and
  exits. A graceful stop ends the work first, then releases the Lease (empty holder).
* An object belongs to the shard named by its label ``shard.dorgu.io/<ring>``; a shard watches only objects
  carrying its own name (a label selector: the cache and the work split).
* **Drain handshake**: to move an object away from a live shard the sharder adds ``drain.dorgu.io/<ring>``;
  the shard, in a reconcile of that key (so never while another reconcile of it runs), stops working on it
  and acknowledges by removing both labels with a JSON patch that first *tests* that the shard label still
  names it (a stale cache can never strip a label the sharder has meanwhile given to someone else). Only
  then does the sharder write the new shard's name.
* A shard whose Lease is released, or not renewed for the lease duration as the sharder's own clock sees it
  (:class:`ShardMembership`), has stopped working — the same rule that lets a follower take a Lease over —
  and its objects are reassigned without a drain.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock
from dorgu.runtime.controller import Request, Result
from dorgu.runtime.errors import ApiError, Conflict, NotFound
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.leaderelection import LeaderElectionSettings
from dorgu.runtime.resource import Resource

log = logging.getLogger("dorgu.sharding")

__all__ = [
    "ShardGate",
    "ShardMembership",
    "drain_label",
    "lease_group",
    "shard_label",
    "shard_lease_settings",
]


def shard_label(ring: str) -> str:
    """The label naming an object's shard."""
    return f"shard.dorgu.io/{ring}"


def drain_label(ring: str) -> str:
    """The label asking an object's shard to let go of it."""
    return f"drain.dorgu.io/{ring}"


def lease_group(ring: str) -> str:
    """The Lease group (``dorgu.io/lease-group``) of the ring's shard Leases."""
    return f"ring.{ring}"


def shard_lease_settings(base: LeaderElectionSettings, *, ring: str, shard: str) -> LeaderElectionSettings:
    """The shard's own Lease, with the durations of ``base``: never spread, never rebalanced (the sharder
    balances objects, not Leases)."""
    return LeaderElectionSettings(
        name=f"{ring}-shard.{shard}",
        namespace=base.namespace,
        identity=shard,
        lease_duration_s=base.lease_duration_s,
        renew_deadline_s=base.renew_deadline_s,
        retry_period_s=base.retry_period_s,
        group=lease_group(ring),
    )


def _json_pointer(label: str) -> str:
    return "/metadata/labels/" + label.replace("~", "~0").replace("/", "~1")


class ShardMembership:
    """Which shards of a ring are alive, judged like a Lease's expiry: on the *local* clock, from when a
    shard Lease's record was last seen to change; the times written in it are never trusted.

    * alive (:meth:`alive`, the ring's members): a holder *seen renewing* (its record changed while this
      sharder watched), last less than the lease duration ago — a Lease only seen once proves nothing, and
      assigning personas to a shard that is in fact dead would strand them for a lease duration;
    * dead (:meth:`is_dead`): released (no holder; its work ended before the release) or expired; a Lease
      first seen counts as changed then, so a sharder that just started waits a whole duration before
      calling anyone dead (it never takes personas from a shard that may still be working);
    * unknown names (an object labelled for a shard whose Lease does not exist) are dead once they have been
      unknown for a lease duration."""

    def __init__(self, *, lease_duration_s: float, clock: Clock) -> None:
        self.lease_duration_s = lease_duration_s
        self.clock = clock
        self._seen: dict[str, tuple[bytes, str, float, float]] = {}  # lease → (spec, holder, at, duration)
        self._renewing: set[str] = set()  # leases whose record changed while we watched
        self._unknown_since: dict[str, float] = {}

    def observe(self, name: str, *, holder: str, duration_s: float | None, record: bytes) -> None:
        """Record a shard Lease as read or watched: its name, holder, duration and whole spec (``record``:
        any change of it is a renewal)."""
        prev = self._seen.get(name)
        if prev is not None and prev[0] != record and prev[1] == holder:
            self._renewing.add(name)
        elif prev is not None and prev[1] != holder:
            self._renewing.discard(name)  # a new holder must be seen renewing in turn
        if prev is None or prev[0] != record:
            duration = max(duration_s or 0.0, self.lease_duration_s)
            self._seen[name] = (record, holder, self.clock.monotonic(), duration)

    def forget(self, lease_name: str) -> None:
        """A shard Lease was deleted."""
        self._seen.pop(lease_name, None)
        self._renewing.discard(lease_name)

    def alive(self) -> frozenset[str]:
        """The shards to assign to: seen renewing, within the lease duration."""
        now = self.clock.monotonic()
        return frozenset(
            holder
            for name, (_, holder, at, duration) in self._seen.items()
            if holder and name in self._renewing and now - at < duration
        )

    def _fresh(self, shard: str) -> bool:
        now = self.clock.monotonic()
        return any(h == shard and now - at < d for _, h, at, d in self._seen.values())

    def is_dead(self, shard: str) -> bool:
        """True when ``shard`` has certainly stopped working (see the class docstring)."""
        if self._fresh(shard):
            self._unknown_since.pop(shard, None)
            return False
        if any(holder == shard for _, holder, _, _ in self._seen.values()):
            return True  # its Lease names it and has expired
        if any(name.endswith("." + shard) for name in self._seen):
            return True  # its Lease was released
        now = self.clock.monotonic()
        since = self._unknown_since.setdefault(shard, now)
        return now - since >= self.lease_duration_s


class ShardGate:
    """The shard's side: wraps the controller's reconcile so that it works only on objects labelled for this
    shard, answers a drain request, and waits for objects whose secondary caches are still being filled.

    Also enqueues a key whose drain label appears (an update the controller's own predicates may hide)."""

    def __init__(
        self,
        *,
        client: ApiClient,
        resource: Resource,
        ring: str,
        shard: str,
        informer: Informer[Any],
        enqueue: Callable[[Request], None],
        pending: Callable[[Any], bool] = lambda obj: False,
        # ``pending(obj)``: its secondary caches are still being filled; the filler must enqueue it after.
    ) -> None:
        self.client = client
        self.resource = resource
        self.ring = ring
        self.shard = shard
        self.informer = informer
        self.pending = pending
        self._shard_label = shard_label(ring)
        self._drain_label = drain_label(ring)
        self._m_reconciles = metrics.SHARD_RECONCILES.labels(ring, shard)
        self._m_drains = metrics.SHARD_DRAINS.labels(ring, shard)
        self._m_objects = metrics.SHARD_OBJECTS.labels(ring, shard)
        self.drains = 0
        """Drain requests acknowledged (observable by tests)."""

        def on_update(old: Any, new: Any) -> None:
            if self._drain_label in (new.metadata.labels or {}) and self._drain_label not in (
                old.metadata.labels or {}
            ):
                enqueue(Request.for_object(new))

        def count(*_: Any) -> None:
            self._m_objects.set(len(self.informer.store))

        informer.add_handlers(Handlers(on_add=count, on_update=on_update, on_delete=count))

    @property
    def selector(self) -> str:
        return f"{self._shard_label}={self.shard}"

    def wrap(
        self, reconcile: Callable[[Request], Awaitable[Result | None]]
    ) -> Callable[[Request], Awaitable[Result | None]]:
        async def gated(req: Request) -> Result | None:
            obj = self.informer.store.get(req.key)
            if obj is None:
                return None
            labels = obj.metadata.labels or {}
            if labels.get(self._shard_label) != self.shard:
                return None  # no longer ours (the cache shows it a moment longer)
            if self._drain_label in labels:
                await self._acknowledge(req)
                return None
            if self.pending(obj):
                return None  # its secondary objects are being fetched; whoever fetches them enqueues it
            self._m_reconciles.inc()
            return await reconcile(req)

        return gated

    async def _acknowledge(self, req: Request) -> None:
        """Let go of the object: remove both labels, only if the shard label still names this shard."""
        ops = [
            {"op": "test", "path": _json_pointer(self._shard_label), "value": self.shard},
            {"op": "remove", "path": _json_pointer(self._shard_label)},
            {"op": "remove", "path": _json_pointer(self._drain_label)},
        ]
        try:
            await self.client.patch(
                self.resource, req.name, ops, namespace=req.namespace or None, patch_type="json", decode=False
            )
        except (NotFound, Conflict):
            return
        except ApiError as e:
            if e.code == 422:  # the test failed: the object is no longer ours, or no longer draining
                return
            raise
        self.drains += 1
        self._m_drains.inc()
        log.info("drained %s from shard %s", req.key, self.shard)
