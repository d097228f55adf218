"""Leader election on a ``coordination.k8s.io/v1`` Lease (client-go ``tools/leaderelection`` semantics).

Rules this module keeps:

* Expiry is judged on the **local** monotonic clock from when we last saw the record *change*; the times
  written in the Lease are never trusted (clock skew between hosts is harmless).
* Every write carries the ``resourceVersion`` of the Lease we last read or wrote, so of two candidates that
  saw the same record, only one write lands (409 Conflict for the other).
* A leader renews every ``retry_period``; if no renewal succeeds within ``renew_deadline`` leadership is lost
  and :class:`LeadershipLost` is raised — the process is expected to exit (controller-runtime does).
* :meth:`LeaderElector.is_valid` is the fence for the leader's own writes: true only while less than
  ``renew_deadline`` has passed since the *sending* of the last successful renewal. A leader that was paused
  (SIGSTOP) past its lease wakes up invalid and writes nothing; the margin ``lease_duration -
  renew_deadline`` covers a request already on the wire. A read that shows another holder closes the fence at
  once. (No fencing token exists in Kubernetes: a process paused *between* the check and sending its request
  can still write late; that window is the length of one send.)
* Release on a graceful stop writes an empty holder with ``leaseDurationSeconds: 1``; followers also watch
  the Lease, so they take over at once instead of after a full lease duration.
* Spreading: a candidate that already holds other Leases of the same group waits ``spread_delay ×`` that
  many before contending for a *free* one (never held, released, or stale when it started), so controllers
  end up led by different replicas. A Lease whose holder it saw renewing and then stop is taken over as
  soon as it expires, with no spreading wait: every survivor would wait alike, and the outage would grow.
* Candidates wake at the exact moment an attempt can succeed (the observed expiry, the end of a spreading
  wait), not a retry tick later.
* Rebalancing (``rebalance``): spreading only places *free* Leases, so replicas started together can end up
  one holding two Leases of the group and another none, for good. With rebalancing, a waiting candidate
  keeps a *presence* Lease (``<lease>.<identity>``, renewed every ``presence_period_s``; cleared on a
  graceful stop), and a leader checks the group every ``rebalance_period_s``: when it holds more than its
  fair share (:mod:`dorgu.runtime.leasebalance`) it stops its work, then writes the receiver's identity as
  the holder. The receiver, waiting on the Lease's watch, takes it over at once; if it died meanwhile the
  Lease expires and any candidate takes it. The giver raises :class:`LeadershipHandedOver` (its process
  starts afresh as a follower). A receiver must have been seen *renewing* its presence (alive and ready:
  a presence is written only by a candidate that is contending, i.e. whose caches have synced).
  **Bound**: with a stable set of candidates and no faults, every identity holds at most its fair share
  within ``lease_duration_s + 2 × presence_period_s + 2 × rebalance_period_s`` (plus request times) of the
  last candidate starting to contend: free Leases are taken within a lease duration (spreading waits are
  shorter), a new candidate's renewal is witnessed within two presence periods, and each surplus leader
  checks within one rebalance period after that; moves are planned from one snapshot, all surplus Leases
  in the same round, and each move only lowers the imbalance (no Lease moves back).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec

from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.component import RestartRequested
from dorgu.runtime.errors import AlreadyExists, ApiError, Conflict, NotFound
from dorgu.runtime.leasebalance import plan_handovers
from dorgu.runtime.resource import LEASES
from dorgu.runtime.watch import WatchSettings, watch

log = logging.getLogger("dorgu.leaderelection")
JITTER = 1.2
GROUP_LABEL = "dorgu.io/lease-group"
PRESENCE_LABEL = "dorgu.io/candidate-for"
"""On a presence Lease: the name of the Lease its candidate waits for (presence Leases are not led)."""


class LeadershipLost(Exception):
    """The lease could not be renewed within the renew deadline (or was taken): stop leading now."""


class LeadershipHandedOver(LeadershipLost, RestartRequested):
    """This leader handed its Lease to a candidate holding fewer of the group (rebalancing): the work has
    stopped; start afresh as a follower."""


class _HandOver(Exception):
    def __init__(self, receiver: str) -> None:
        super().__init__(receiver)
        self.receiver = receiver


class NotLeading(Exception):
    """A guarded write was attempted while the lease is not (or no longer) valid."""


@dataclass(frozen=True, kw_only=True)
class LeaderElectionSettings:
    """One Lease and how to hold it. Defaults are client-go's (15 s / 10 s / 2 s)."""

    name: str
    """The Lease's name (one Lease per controller)."""
    namespace: str
    """The Lease's namespace."""
    identity: str
    """This candidate's identity (e.g. the pod name); written as ``holderIdentity``."""
    lease_duration_s: float = 15.0
    """How long a non-renewed lease stays valid for followers."""
    renew_deadline_s: float = 10.0
    """How long the leader keeps retrying a renewal before giving up leadership."""
    retry_period_s: float = 2.0
    """Interval between attempts (jittered by 1.2 for candidates)."""
    release_on_cancel: bool = True
    """Write an empty holder on a graceful stop so a follower takes over at once."""
    group: str = "dorgu"
    """Leases of one group are spread over replicas (label ``dorgu.io/lease-group``)."""
    spread_delay_s: float = 0.0
    """Per other Lease of the group this candidate holds, wait this long before contending."""
    rebalance: bool = False
    """Hand a Lease held beyond this identity's fair share of the group to a ready candidate holding fewer
    (set it alike on every candidate of the group: it is what makes them write presence Leases)."""
    presence_period_s: float | None = None
    """How often a waiting candidate renews its presence Lease (default: a third of the lease duration)."""
    rebalance_period_s: float | None = None
    """How often a leader checks the group's balance (default: a third of the lease duration)."""

    def __post_init__(self) -> None:
        if not self.lease_duration_s > self.renew_deadline_s:
            raise ValueError("lease_duration_s must be greater than renew_deadline_s")
        if not self.renew_deadline_s > JITTER * self.retry_period_s:
            raise ValueError("renew_deadline_s must be greater than 1.2 × retry_period_s")


def _micro(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Acquire, renew and release one Lease."""

    def __init__(
        self,
        client: ApiClient,
        settings: LeaderElectionSettings,
        *,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        on_new_leader: Callable[[str], None] | None = None,
    ) -> None:
        self.client = client
        self.s = settings
        self.clock = clock or RealClock()
        self.rng = rng or random.Random()
        self.on_new_leader = on_new_leader
        self._lease: dict[str, Any] | None = None  # last Lease read or written by us
        self._observed_spec: bytes = b""
        self._observed_at = 0.0
        self._observed_holder = ""
        self._free_since: float | None = None
        self._saw_renewal_by: str | None = None  # holder whose renewal (a second record) we observed
        self._wake_at: float | None = None  # monotonic time the next attempt can succeed (expiry, spreading)
        self._renewed_sent_at: float | None = None  # monotonic time we *sent* the last successful renewal
        self._changed = asyncio.Event()
        self.is_leader = False
        self._lease_path = LEASES.path(namespace=settings.namespace, name=settings.name)
        self._leases_path = LEASES.path(namespace=settings.namespace)
        self.presence_name = f"{settings.name}.{settings.identity}"
        self._presence_path = LEASES.path(namespace=settings.namespace, name=self.presence_name)
        self._presence: dict[str, Any] | None = None  # our presence Lease as last written
        self._presence_period = settings.presence_period_s or settings.lease_duration_s / 3
        self._rebalance_period = settings.rebalance_period_s or settings.lease_duration_s / 3
        self._next_balance_check = 0.0
        # Presence Leases of the group as we observed them: name → (spec, when it last changed, whether we
        # saw it change at all). Judged on our own clock, like the Lease itself.
        self._presences_seen: dict[str, tuple[bytes, float, bool]] = {}
        metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(0)

    # -- the fence ----------------------------------------------------------------------------------------

    def is_valid(self) -> bool:
        """True while our leadership is certainly still valid (see the module docstring)."""
        if not self.is_leader or self._renewed_sent_at is None:
            return False
        return self.clock.monotonic() - self._renewed_sent_at < self.s.renew_deadline_s

    def ensure_leading(self) -> None:
        """Raise :class:`NotLeading` unless :meth:`is_valid`; call before every write of the leader."""
        if not self.is_valid():
            raise NotLeading(
                f"lease {self.s.namespace}/{self.s.name} is not held validly by {self.s.identity}"
            )

    def guard(self, method: str, path: str) -> None:
        """A :attr:`ApiClient.write_guard`: refuse every write but our own Lease's unless leading validly.

        Our own Lease (and our presence Lease) is its object path (PUT) and, for its creation, a POST to the
        Leases collection."""
        if path in (self._lease_path, self._presence_path) or (
            method == "POST" and path == self._leases_path
        ):
            return
        self.ensure_leading()

    def install_guard(self) -> None:
        """Fence all writes of this process's client with this election."""
        self.client.write_guard = self.guard

    # -- one attempt ----------------------------------------------------------------------------------------

    async def try_acquire_or_renew(self) -> bool:
        sent_at = self.clock.monotonic()
        now = self.clock.now()
        ok = await self._attempt(now)
        if ok:
            self._renewed_sent_at = sent_at
            if not self.is_leader:
                log.info("lease %s/%s acquired by %s", self.s.namespace, self.s.name, self.s.identity)
                # Hysteresis in time: a Lease just taken is held at least one period before any hand-over.
                self._next_balance_check = self.clock.monotonic() + self._rebalance_period
            self.is_leader = True
            metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(1)
        return ok

    def _record(
        self, now: datetime, *, acquire: str | None, transitions: int, holder: str | None = None
    ) -> dict[str, Any]:
        return {
            "holderIdentity": self.s.identity if holder is None else holder,
            # Rounded up: a rounded-down duration would let followers take over before our validity ends.
            "leaseDurationSeconds": max(1, math.ceil(self.s.lease_duration_s)),
            "acquireTime": acquire or _micro(now),
            "renewTime": _micro(now),
            "leaseTransitions": transitions,
        }

    async def _attempt(self, now: datetime) -> bool:
        # Fast path: we lead and our cached Lease is current — renew with its resourceVersion.
        if self.is_leader and self._lease is not None and self.is_valid():
            spec = self._lease.get("spec", {})
            lease = dict(self._lease, spec=self._record(
                now, acquire=spec.get("acquireTime"), transitions=spec.get("leaseTransitions", 0)
            ))  # fmt: skip
            try:
                self._lease = await self._put(lease)
                self._observe(self._lease)
                return True
            except (ApiError, OSError, TimeoutError) as e:
                metrics.LEADER_ELECTION_SLOWPATH.labels(self.s.name).inc()
                log.info("lease %s: fast-path renew failed (%s); slow path", self.s.name, e)

        # Slow path: read the Lease.
        try:
            current = await self._call(self.client.get(LEASES, self.s.name, namespace=self.s.namespace))
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.s.name, "namespace": self.s.namespace,
                             "labels": {GROUP_LABEL: self.s.group}},
                "spec": self._record(now, acquire=None, transitions=0),
            }  # fmt: skip
            if not await self._may_contend():
                return False
            try:
                self._lease = await self._call(self.client.create(LEASES, body, namespace=self.s.namespace))
            except AlreadyExists:
                return False
            self._observe(self._lease)
            return True
        self._observe(current)
        spec = current.get("spec") or {}
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.s.lease_duration_s)
        if holder and holder != self.s.identity:
            # Someone else holds it: whatever we believed, we do not lead now (the fence closes at once).
            self._renewed_sent_at = None
            expires_at = self._observed_at + duration
            if expires_at > self.clock.monotonic():
                self._free_since = None
                self._wake_at = expires_at  # try again the moment it expires, not a retry tick later
                return False  # held by someone else, and not expired by our own clock
        # Spreading applies to a free Lease (never held, released on a graceful stop, or found expired when we
        # started): that is when replicas can share the controllers out. A Lease whose holder we saw renewing
        # and then stop is a fail-over: taken over at its expiry, with no spreading wait, as every survivor
        # would wait alike and the outage would only grow.
        # Nor does it apply to a Lease that names us: handed over to us, or ours before a restart.
        failover = bool(holder) and holder == self._saw_renewal_by
        i_held = holder == self.s.identity
        if not (failover or i_held) and not await self._may_contend():
            return False
        transitions = int(spec.get("leaseTransitions") or 0) + (0 if i_held else 1)
        lease = dict(current, spec=self._record(
            now, acquire=spec.get("acquireTime") if i_held else None, transitions=transitions
        ))  # fmt: skip
        try:
            self._lease = await self._put(lease)
        except Conflict:
            return False  # another candidate wrote first: it won this round
        self._observe(self._lease)
        return True

    async def _may_contend(self) -> bool:
        """Spreading: a candidate already leading others of the group lets free Leases wait for a while."""
        if self.s.spread_delay_s <= 0:
            return True
        now = self.clock.monotonic()
        if self._free_since is None:
            self._free_since = now
        try:
            leases = await self._call(
                self.client.request(
                    "GET",
                    LEASES.path(namespace=self.s.namespace),
                    params={"labelSelector": f"{GROUP_LABEL}={self.s.group}"},
                )
            )
        except (ApiError, OSError, TimeoutError):
            return True
        held = sum(
            1
            for item in msgspec.json.decode(leases).get("items", [])
            if item["metadata"]["name"] != self.s.name
            and PRESENCE_LABEL not in (item["metadata"].get("labels") or {})
            and (item.get("spec") or {}).get("holderIdentity") == self.s.identity
        )
        ready_at = self._free_since + held * self.s.spread_delay_s
        if now >= ready_at:
            return True
        self._wake_at = ready_at  # contend the moment the spreading wait ends
        return False

    async def _put(self, lease: dict[str, Any]) -> dict[str, Any]:
        return dict(
            await self._call(self.client.replace(LEASES, self.s.name, lease, namespace=self.s.namespace))
        )

    async def _call(self, aw: Awaitable[Any]) -> Any:
        # controller-runtime: the leader-election client times out at max(renew_deadline/2, 1 s), so one
        # hung request cannot eat the whole renew deadline.
        return await self.clock.wait_for(aw, timeout=max(self.s.renew_deadline_s / 2, 1.0))

    def _observe(self, lease: dict[str, Any]) -> None:
        spec = lease.get("spec") or {}
        raw = msgspec.json.encode(spec)
        holder = spec.get("holderIdentity") or ""
        if raw != self._observed_spec:
            # A second record from the same holder is a renewal we saw: it was alive while we watched.
            renewed = bool(self._observed_spec) and holder == self._observed_holder
            self._saw_renewal_by = holder if renewed else None
            self._observed_spec = raw
            self._observed_at = self.clock.monotonic()
        if holder != self._observed_holder:
            self._observed_holder = holder
            if self.on_new_leader and holder:
                self.on_new_leader(holder)

    # -- loops ---------------------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Return once this candidate leads. Polls every retry period (jittered) and on any Lease change."""
        watcher = asyncio.create_task(self._watch_lease())
        presence = asyncio.create_task(self._keep_presence()) if self.s.rebalance else None
        try:
            while True:
                # Cleared before the attempt: a change seen while it runs wakes the next one at once.
                self._changed.clear()
                try:
                    if await self.try_acquire_or_renew():
                        return
                except (ApiError, OSError, TimeoutError) as e:
                    log.info("lease %s: acquire attempt failed: %s", self.s.name, e)
                wait = self.s.retry_period_s * (1 + self.rng.random() * (JITTER - 1))
                if self._wake_at is not None:
                    wait = max(0.0, min(wait, self._wake_at - self.clock.monotonic()))
                    self._wake_at = None
                with contextlib.suppress(TimeoutError):
                    await self.clock.wait_for(self._changed.wait(), timeout=wait)
        finally:
            for task in (watcher, presence):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task

    async def _watch_lease(self) -> None:
        """Wake :meth:`acquire` whenever the Lease changes (a release is then taken over at once)."""
        while True:
            try:
                async for _ in watch(
                    self.client, LEASES, resource_version="", namespace=self.s.namespace,
                    field_selector=f"metadata.name={self.s.name}",
                    settings=WatchSettings(min_timeout_s=300, stall_timeout_s=70.0),
                ):  # fmt: skip
                    self._changed.set()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.debug("lease %s: watch ended: %s", self.s.name, e)
            await self.clock.sleep(self.s.retry_period_s)

    # -- presence and rebalancing ------------------------------------------------------------------------

    async def _keep_presence(self) -> None:
        """While contending: renew our presence Lease every presence period (errors only delay it)."""
        while True:
            try:
                await self._write_presence(self.s.identity)
            except (ApiError, OSError, TimeoutError) as e:
                log.info("lease %s: presence not renewed: %s", self.s.name, e)
            await self.clock.sleep(self._presence_period)

    async def _write_presence(self, holder: str) -> None:
        spec = {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, math.ceil(self.s.lease_duration_s)),
            "renewTime": _micro(self.clock.now()),
        }
        if self._presence is not None:
            try:
                self._presence = await self._put_presence(dict(self._presence, spec=spec))
                return
            except (Conflict, NotFound):
                self._presence = None  # changed or deleted by someone else: read it again below
        try:
            current = await self._call(
                self.client.get(LEASES, self.presence_name, namespace=self.s.namespace)
            )
        except NotFound:
            body = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {"name": self.presence_name, "namespace": self.s.namespace,
                             "labels": {GROUP_LABEL: self.s.group, PRESENCE_LABEL: self.s.name}},
                "spec": spec,
            }  # fmt: skip
            self._presence = await self._call(self.client.create(LEASES, body, namespace=self.s.namespace))
            return
        self._presence = await self._put_presence(dict(current, spec=spec))

    async def _put_presence(self, lease: dict[str, Any]) -> dict[str, Any]:
        return dict(
            await self._call(
                self.client.replace(LEASES, self.presence_name, lease, namespace=self.s.namespace)
            )
        )

    async def _clear_presence(self) -> None:
        """A graceful stop: an empty holder, so leaders stop counting us at once. Never raises."""
        if self._presence is None:
            return
        try:
            await self._write_presence("")
        except (ApiError, OSError, TimeoutError) as e:
            log.info("lease %s: presence not cleared: %s", self.s.name, e)

    async def _balance_receiver(self) -> str | None:
        """The identity our Lease should be handed to now, if we hold more than our fair share."""
        raw = await self._call(
            self.client.request(
                "GET", self._leases_path, params={"labelSelector": f"{GROUP_LABEL}={self.s.group}"}
            )
        )
        now = self.clock.monotonic()
        holders: dict[str, str] = {}
        alive: set[str] = set()
        ready: dict[str, set[str]] = {}
        seen_now: set[str] = set()
        for item in msgspec.json.decode(raw).get("items", []):
            meta = item["metadata"]
            spec = item.get("spec") or {}
            holder = spec.get("holderIdentity") or ""
            target = (meta.get("labels") or {}).get(PRESENCE_LABEL)
            if target is None:
                holders[meta["name"]] = holder
                continue
            name = meta["name"]
            seen_now.add(name)
            record = msgspec.json.encode(spec)
            prev = self._presences_seen.get(name)
            if prev is None:
                self._presences_seen[name] = (record, now, False)  # first sight counts as fresh
            elif prev[0] != record:
                self._presences_seen[name] = (record, now, True)
            _, changed_at, renewed = self._presences_seen[name]
            if holder and now - changed_at < self.s.lease_duration_s:
                alive.add(holder)
                if renewed:
                    ready.setdefault(target, set()).add(holder)
        for gone in set(self._presences_seen) - seen_now:
            del self._presences_seen[gone]
        return plan_handovers(holders=holders, alive=alive, ready=ready).get(self.s.name)

    async def _hand_over(self, receiver: str) -> None:
        """Write ``receiver`` as the holder (our work has stopped). Raises :class:`LeadershipHandedOver`, or
        :class:`LeadershipLost` if the write failed."""
        self.is_leader = False
        self._renewed_sent_at = None  # the fence closes before the write
        metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(0)
        assert self._lease is not None
        spec = self._lease.get("spec") or {}
        lease = dict(self._lease, spec=self._record(
            self.clock.now(), acquire=None, transitions=int(spec.get("leaseTransitions") or 0) + 1,
            holder=receiver,
        ))  # fmt: skip
        try:
            self._lease = await self._put(lease)
        except (ApiError, OSError, TimeoutError) as e:
            self._lost()
            raise LeadershipLost(f"lease {self.s.namespace}/{self.s.name}: hand-over failed: {e}") from e
        log.info(
            "lease %s/%s handed over by %s to %s", self.s.namespace, self.s.name, self.s.identity, receiver
        )
        raise LeadershipHandedOver(f"lease {self.s.namespace}/{self.s.name} handed over to {receiver}")

    async def renew_until_lost(self) -> None:
        """Renew every retry period; raise :class:`LeadershipLost` when a renewal cannot succeed in time
        (and, when rebalancing, ``_HandOver`` when our Lease should go to another candidate)."""
        while True:
            await self.clock.sleep(self.s.retry_period_s)
            started = self.clock.monotonic()
            if self.s.rebalance and self.is_valid() and started >= self._next_balance_check:
                self._next_balance_check = started + self._rebalance_period
                try:
                    receiver = await self._balance_receiver()
                except (ApiError, OSError, TimeoutError) as e:
                    log.info("lease %s: balance check failed: %s", self.s.name, e)
                    receiver = None
                if receiver is not None:
                    raise _HandOver(receiver)
            while True:
                try:
                    if await self.try_acquire_or_renew():
                        break
                except (ApiError, OSError, TimeoutError) as e:
                    log.info("lease %s: renew failed: %s", self.s.name, e)
                if self.clock.monotonic() - started >= self.s.renew_deadline_s or not self.is_valid():
                    self._lost()
                    raise LeadershipLost(f"failed to renew lease {self.s.namespace}/{self.s.name}")
                await self.clock.sleep(self.s.retry_period_s)

    def _lost(self) -> None:
        self.is_leader = False
        self._renewed_sent_at = None
        metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(0)
        log.warning("lease %s/%s lost by %s", self.s.namespace, self.s.name, self.s.identity)

    async def release(self) -> None:
        """Give the Lease up (empty holder, 1 s duration) if we hold it; never raises."""
        if not self.is_leader or self._lease is None:
            return
        spec = dict(self._lease.get("spec") or {}, holderIdentity="", leaseDurationSeconds=1)
        spec.pop("acquireTime", None)
        lease = dict(self._lease, spec=spec)
        self.is_leader = False
        self._renewed_sent_at = None
        metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(0)
        try:
            self._lease = await self._put(lease)
            log.info("lease %s/%s released by %s", self.s.namespace, self.s.name, self.s.identity)
        except (ApiError, OSError, TimeoutError) as e:
            log.info("lease %s: release failed: %s", self.s.name, e)

    async def run(self, leading: Callable[[], Awaitable[None]]) -> None:
        """Acquire, then run ``leading()`` while renewing. Raises :class:`LeadershipLost` if the lease is lost
        (``leading`` is cancelled first). On cancellation or when ``leading`` returns, the lease is released
        (if ``release_on_cancel``), only after ``leading()`` has ended (cancelled *and* awaited). A request
        cancelled mid-flight may still land at the server after the release, so a ``leading`` whose writes
        must never overlap its successor's should return on a stop signal of its own instead of being
        cancelled."""
        work: asyncio.Task[None] | None = None
        renew: asyncio.Task[None] | None = None
        try:
            await self.acquire()  # inside the try: a cancel right after a won attempt still releases
            work = asyncio.create_task(leading())
            renew = asyncio.create_task(self.renew_until_lost())
            done, _ = await asyncio.wait({work, renew}, return_when=asyncio.FIRST_COMPLETED)
            if renew in done:
                work.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await work
                exc = renew.exception()
                if isinstance(exc, _HandOver):
                    await self._hand_over(exc.receiver)  # raises LeadershipHandedOver
                renew.result()  # raises LeadershipLost
            else:
                work.result()
        finally:
            for task in (work, renew):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
            if self.s.release_on_cancel:
                await asyncio.shield(self.release())
            await asyncio.shield(self._clear_presence())
