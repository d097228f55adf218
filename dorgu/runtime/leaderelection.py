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
from dorgu.runtime.errors import AlreadyExists, ApiError, Conflict, NotFound
from dorgu.runtime.resource import LEASES
from dorgu.runtime.watch import WatchSettings, watch

log = logging.getLogger("dorgu.leaderelection")
JITTER = 1.2
GROUP_LABEL = "dorgu.io/lease-group"


class LeadershipLost(Exception):
    """The lease could not be renewed within the renew deadline (or was taken): stop leading now."""


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

        Our own Lease is its object path (PUT) and, for its creation, a POST to the Leases collection."""
        if path == self._lease_path or (method == "POST" and path == self._leases_path):
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
            self.is_leader = True
            metrics.LEADER_ELECTION_MASTER_STATUS.labels(self.s.name).set(1)
        return ok

    def _record(self, now: datetime, *, acquire: str | None, transitions: int) -> dict[str, Any]:
        return {
            "holderIdentity": self.s.identity,
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
        failover = bool(holder) and holder == self._saw_renewal_by
        if not failover and not await self._may_contend():
            return False
        i_held = holder == self.s.identity
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
        return await asyncio.wait_for(aw, timeout=max(self.s.renew_deadline_s / 2, 1.0))

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
                    await asyncio.wait_for(self._changed.wait(), timeout=wait)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher

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

    async def renew_until_lost(self) -> None:
        """Renew every retry period; raise :class:`LeadershipLost` when a renewal cannot succeed in time."""
        while True:
            await self.clock.sleep(self.s.retry_period_s)
            started = self.clock.monotonic()
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
