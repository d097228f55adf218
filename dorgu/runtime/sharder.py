"""The sharder: assigns a ring's objects to its live shards and moves them, one at a time, safely.

It runs leader-elected (one active sharder per ring; its Lease is an ordinary controller Lease, so every
label write it makes is fenced by it). It caches the shard Leases of its ring and the sharded objects'
metadata (name, namespace, labels, resourceVersion: nothing else is decoded) and is itself a controller
over the objects' keys. Rules it keeps (the protocol is in :mod:`dorgu.runtime.sharding`):

* **Membership** is :class:`~dorgu.runtime.sharding.ShardMembership` (alive = a holder whose record changed
  within the lease duration, on the sharder's clock). It is checked every ``check_period_s`` and on every
  shard Lease event. A change of the alive set starts a **settling** wait: no object is assigned or moved
  until the set has been unchanged for ``settle_s`` (shards of a starting ring appear one by one; assigning
  to the first of them would move most objects again moments later). A set that only lost shards settles
  for ``settle_leave_s`` instead: the lost shards' objects have no working owner meanwhile, and the shards
  of one dead replica expire within a check period or two of each other. Then the ring is rebuilt and every
  key re-examined.
* **Per object** (desired = the ring's owner of its ``namespace/name``): unassigned → write the desired
  shard; assigned to a dead shard → write the desired shard (and drop a drain label) — the dead shard stopped
  working when it could not renew; assigned to a live shard that is not the desired one → add the drain label
  and wait for the shard to remove its label (the shard's acknowledgement), then assign. Nothing else moves:
  with consistent hashing only the keys whose owner changed are touched.
* Every label write is a merge patch carrying the ``resourceVersion`` the decision was made on: if the
  object changed meanwhile (409) the decision is dropped and made again from the newer version, which the
  watch delivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from dorgu.runtime import metrics
from dorgu.runtime.controller import Controller, ControllerSettings, Request, Result
from dorgu.runtime.errors import Conflict, NotFound
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.leaderelection import GROUP_LABEL
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.resource import LEASES, Resource
from dorgu.runtime.sharding import ShardMembership, drain_label, lease_group, shard_label
from dorgu.runtime.shardring import DEFAULT_VNODES, HashRing

log = logging.getLogger("dorgu.sharder")

BY_SHARD = "shard"
"""The objects' index by their shard label's value."""

__all__ = ["Sharder", "SharderSettings"]


@dataclass(frozen=True, kw_only=True)
class SharderSettings:
    """One ring's sharder."""

    ring: str
    """The ring's name: label suffix of ``shard.dorgu.io/<ring>`` and of the shard Leases' group."""
    resource: Resource
    """The sharded objects' resource."""
    namespace: str | tuple[str, ...] | None = None
    """Shard the objects of this namespace (or these namespaces) only (None: all)."""
    lease_namespace: str
    """Where the shard Leases live."""
    lease_duration_s: float = 15.0
    """The shards' lease duration: a shard not seen renewing for this long is dead."""
    settle_s: float = 5.0
    """After the alive set changes, wait until it has been stable this long before assigning or moving."""
    settle_leave_s: float = 2.0
    """The same wait when the alive set only lost shards (their objects are unowned until it ends); never
    longer than ``settle_s``."""
    check_period_s: float = 1.0
    """How often membership is re-judged (expiry happens without any event)."""
    workers: int = 16
    """Concurrent label writes."""
    vnodes: int = DEFAULT_VNODES
    """Ring points per shard."""


class _SlimMeta(msgspec.Struct, rename="camel"):
    name: str | None = None
    namespace: str | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None


class ObjectRef(msgspec.Struct):
    """A sharded object as the sharder caches it: its metadata's identity and labels only."""

    metadata: _SlimMeta = msgspec.field(default_factory=_SlimMeta)


class _LeaseSpec(msgspec.Struct, rename="camel"):
    holder_identity: str | None = None
    lease_duration_seconds: int | None = None
    acquire_time: str | None = None
    renew_time: str | None = None
    lease_transitions: int | None = None


class ShardLease(msgspec.Struct):
    """A shard Lease as the sharder caches it."""

    metadata: _SlimMeta = msgspec.field(default_factory=_SlimMeta)
    spec: _LeaseSpec = msgspec.field(default_factory=_LeaseSpec)


class Sharder:
    """Wire onto a leader-elected :class:`Manager` (its controller and loop run only while it leads)."""

    def __init__(self, *, manager: Manager, settings: SharderSettings) -> None:
        self.m = manager
        self.s = settings
        self.clock = manager.clock
        self._shard_label = shard_label(settings.ring)
        self._drain_label = drain_label(settings.ring)
        label = self._shard_label
        self.objects: Informer[ObjectRef] = manager.informer(
            settings.resource,
            ObjectRef,
            namespace=settings.namespace,
            indexers={BY_SHARD: lambda o: [v] if (v := (o.metadata.labels or {}).get(label)) else []},
        )
        self.leases: Informer[ShardLease] = manager.informer(
            LEASES,
            ShardLease,
            namespace=settings.lease_namespace,
            label_selector=f"{GROUP_LABEL}={lease_group(settings.ring)}",
        )
        self.membership = ShardMembership(lease_duration_s=settings.lease_duration_s, clock=self.clock)
        self.ring = HashRing([], vnodes=settings.vnodes)
        self._candidate: frozenset[str] = frozenset()
        self._candidate_since = self.clock.monotonic()
        self._wake = asyncio.Event()
        self.controller = Controller(
            settings=ControllerSettings(name=f"sharder-{settings.ring}", workers=settings.workers),
            reconcile=self.reconcile,
            clock=self.clock,
        )
        self.controller.watch_for(self.objects, update_predicate=self._labels_changed)
        self.leases.add_handlers(
            Handlers(on_add=self._saw_lease, on_update=lambda _o, n: self._saw_lease(n),
                     on_delete=self._lease_gone)
        )  # fmt: skip
        manager.add_controller(self.controller)
        manager.add_runnable(self._membership_loop, group=RunnableGroup.LEADER, name="sharder-membership")
        self._m_shards = metrics.SHARDER_SHARDS.labels(settings.ring)
        self._m_actions = {
            a: metrics.SHARDER_ASSIGNMENTS.labels(settings.ring, a) for a in ("assign", "drain", "reassign")
        }
        self.actions: dict[str, int] = {"assign": 0, "drain": 0, "reassign": 0}
        """Label writes made, by action (observable by tests and benchmarks)."""

    # -- membership ----------------------------------------------------------------------------------------

    def _saw_lease(self, lease: ShardLease) -> None:
        self.membership.observe(
            lease.metadata.name or "",
            holder=lease.spec.holder_identity or "",
            duration_s=float(lease.spec.lease_duration_seconds or 0),
            record=msgspec.json.encode(lease.spec),
        )
        self._wake.set()

    def _lease_gone(self, lease: ShardLease) -> None:
        self.membership.forget(lease.metadata.name or "")
        self._wake.set()

    def _labels_changed(self, old: ObjectRef, new: ObjectRef) -> bool:
        return old.metadata.labels != new.metadata.labels

    async def _membership_loop(self) -> None:
        """Re-judge membership; rebuild the ring once the alive set has settled, then re-examine every key."""
        while True:
            alive = self.membership.alive()
            now = self.clock.monotonic()
            if alive != self._candidate:
                self._candidate, self._candidate_since = alive, now
                log.info("ring %s: shards now %s; settling", self.s.ring, sorted(alive))
            settle = self.s.settle_s
            if self._candidate < self.ring.shards:
                settle = min(settle, self.s.settle_leave_s)
            if self._candidate != self.ring.shards and now - self._candidate_since >= settle:
                self.ring = HashRing(self._candidate, vnodes=self.s.vnodes)
                self._m_shards.set(len(self.ring))
                log.info(
                    "ring %s: rebuilt with %d shards %s",
                    self.s.ring,
                    len(self.ring),
                    sorted(self.ring.shards),
                )
                self.enqueue_all()
            elif self.ring.shards:
                # Expiry of a shard already gone from the ring needs no event: re-examine its objects.
                self._requeue_dead()
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._wake.wait(), timeout=self.s.check_period_s)

    def _requeue_dead(self) -> None:
        # By the shard-label index: this runs every check period and on every Lease renewal, so it costs
        # O(shards) when nothing is dead, not a walk over every object.
        store = self.objects.store
        for shard in store.index_values(BY_SHARD):
            if shard not in self.ring.shards and self.membership.is_dead(shard):
                for obj in store.by_index(BY_SHARD, shard):
                    self.controller.enqueue(Request(obj.metadata.namespace or "", obj.metadata.name or ""))

    def enqueue_all(self) -> None:
        for obj in self.objects.store.list():
            self.controller.enqueue(Request(obj.metadata.namespace or "", obj.metadata.name or ""))

    def settled(self) -> bool:
        return bool(self.ring.shards) and self.ring.shards == self._candidate

    # -- one object ----------------------------------------------------------------------------------------

    async def reconcile(self, req: Request) -> Result | None:
        obj = self.objects.store.get(req.key)
        if obj is None or not self.settled():
            return None  # settling ends with every key enqueued again
        desired = self.ring.owner(req.key)
        if desired is None:
            return None
        labels = obj.metadata.labels or {}
        current = labels.get(self._shard_label)
        draining = self._drain_label in labels
        retry = False
        if current is None:
            retry = await self._write(
                req, obj, {self._shard_label: desired, self._drain_label: None}, "assign"
            )
        elif current == desired and not draining:
            return None
        elif self.membership.is_dead(current):
            retry = await self._write(
                req, obj, {self._shard_label: desired, self._drain_label: None}, "reassign"
            )
        elif not draining:
            retry = await self._write(req, obj, {self._drain_label: "true"}, "drain")
        # else: a live shard is letting go; its acknowledgement (label removed) wakes this key again.
        return Result(requeue=True) if retry else None

    async def _write(self, req: Request, obj: ObjectRef, labels: dict[str, Any], action: str) -> bool:
        """One label write; True when it conflicted (the key is retried)."""
        body = {"metadata": {"resourceVersion": obj.metadata.resource_version, "labels": labels}}
        try:
            await self.m.client.patch(
                self.s.resource, req.name, body, namespace=req.namespace or None, decode=False
            )
        except NotFound:
            return False  # gone
        except Conflict:
            # Changed since the decision (a status write, a shard's acknowledgement): decide again on the
            # newer version, after the rate limiter's short backoff (status writes do not wake this key).
            return True
        self.actions[action] += 1
        self._m_actions[action].inc()
        return False
