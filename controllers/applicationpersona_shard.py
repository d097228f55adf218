"""The ApplicationPersona controller as a ring of shards (``dorgu operator --shards``), and its sharder.

* **Shard** (:func:`run`): the ordinary reconciler on caches narrowed to one shard. Personas: a label
  selector ``shard.dorgu.io/applicationpersona=<shard>`` (the sharder writes the label; our own CRD, so no
  user object is ever mutated). Deployments: once a shard's persona set is settled, the API server sends it
  only those its own personas select (:class:`OwnDeployments`: a set-based selector on the name label), so
  memory, decode CPU and the bytes read all split; while personas arrive, and for Deployments without the
  name label (matched by ``app``), it watches them all and caches only its own.
  The reconcile is wrapped by :class:`~dorgu.runtime.sharding.ShardGate` (ownership check, drain
  acknowledgement, wait for a newly owned persona's Deployments) and the shard's Lease is its own
  (``applicationpersona-shard.<shard>``): it reconciles only while holding it.
* **Sharder** (:func:`run_sharder`): :class:`~dorgu.runtime.sharder.Sharder` over the personas, under the
  Lease ``dorgu-applicationpersona-sharder`` (one active sharder; it is spread with the other controllers'
  Leases).

The webhook and the WebSocket server are not sharded: they are components of their own with whole,
read-only persona caches, so any replica answers for any persona.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections import Counter
from collections.abc import Callable
from typing import Any

import msgspec

from controllers.applicationpersona import (
    BY_APP_LABEL,
    BY_SPEC_NAME,
    NAME,
    ApplicationPersonaReconciler,
    _persona_index,
)
from controllers.component import lease_settings
from controllers.settings import PersonaSettings
from dorgu.domain.kube import Deployment
from dorgu.domain.resources import APP_LABEL, APPLICATION_PERSONAS, NAME_LABEL
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.controller import Request
from dorgu.runtime.events import EventRecorder
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import MetadataView
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import DEPLOYMENTS
from dorgu.runtime.sharder import Sharder, SharderSettings
from dorgu.runtime.sharding import ShardGate, shard_label, shard_lease_settings

log = logging.getLogger("dorgu.applicationpersona.shard")
_LABEL_VALUE = re.compile(r"(?=.{1,63}$)[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?")

RING = "applicationpersona"
SHARDER_LEASE = "dorgu-applicationpersona-sharder"
SHARD_LABEL = shard_label(RING)
FETCH_COALESCE_S = 1.0
"""A shard gaining personas waits this long for more before each fetch of their Deployments (the delay a
new persona's first reconcile can see)."""
FETCH_BATCH = 100
"""App names per label-selected Deployment LIST when a shard gains personas (label values are at most 63
characters: a selector of 100 stays well under any URL limit)."""
NARROW_AFTER_S = 5.0
"""A shard narrows its named Deployment watch to its own apps once no persona has arrived for this long."""
MAX_NARROW_APPS = 3_000
"""A shard with more apps than this keeps its named Deployment watch wide (its filter still caches only its
own). The API server matches a set-based selector by a linear scan of its values, for every event and every
watch (twice for an update: old and new object) — about 5 ns a value, so 3,000 values cost it ~30 µs per
Deployment event per shard: of the order of what a wide watch costs to skip an event that is not the
shard's (the server sending it, the shard reading it; the decode alone is ~6 µs). Above it narrowing costs
more than it saves (at 40,000 personas over 4 shards, ~10,000 values a shard: ~95 µs per event per shard).
It also keeps the request line under 200 KB (label values are at most 63 characters; the server takes at
most 1 MiB)."""
UNNAMED = f"!{NAME_LABEL}"
"""The selector of the second Deployment watch: Deployments matched by their ``app`` label."""


def shard_name(identity: str, index: int) -> str:
    """Shard ``index`` of replica ``identity``."""
    return f"{identity}-{index}"


class OwnDeployments:
    """The rule of a shard's Deployment caches: a Deployment is cached while one of the shard's own personas
    selects it (``<namespace>/<app>``, the app being its name label, else its ``app`` label, as the rules
    match them).

    * Two caches, a partition by the name label: **named** (the label present, even empty) and
      **unnamed** (:data:`UNNAMED`). Both filter as they decode (``keep`` reads metadata only): the shard
      never holds every Deployment, not even while it starts. The reconciler sees their union.
    * The named watch is **narrowed** by the server to ``app.kubernetes.io/name in (<own apps>)``
      (:meth:`named_selector`): from the start, and again once no persona has arrived for
      :data:`NARROW_AFTER_S`: from then on the shard receives only its own Deployments' events. While
      personas arrive it is **wide** (the label exists): narrowing per arrival would restart the watch — a
      new TLS connection — every second of a ring's start, and a start changes few Deployments.
    * A persona that becomes the shard's (a new persona, a move) gets its Deployments fetched and admitted:
      batched per namespace, a LIST per cache per 100 app names, after the named watch has been made wide
      (:meth:`~dorgu.runtime.informer.Informer.rewatch`, if it was narrow), so every change after the fetch
      reaches the cache through the watch. Until they are in, the persona's reconcile is held back
      (:meth:`pending`, :meth:`holds`: it would judge it without its Deployments — a wrong Pending status
      and Events) and enqueued once they are in (no polling: thousands of personas can wait at once).
    * A persona that leaves (deleted, drained) drops the Deployments no other own persona selects; a narrow
      selector shrinks at its next restart (a wider one only costs bytes).
    """

    def __init__(self, *, client: ApiClient, shard: str, clock: Clock, retry_s: float = 1.0) -> None:
        self.client = client
        self.enqueue: Callable[[Request], None] = lambda req: None
        self.clock = clock
        self.retry_s = retry_s
        self.wanted: Counter[str] = Counter()
        self._pending: set[str] = set()
        self._queued: set[str] = set()
        self._fetcher: asyncio.Task[None] | None = None
        # The named watch starts narrow: its first LIST asks for the apps of the personas known by then —
        # none on a ring's first start, often all of its own on a restart — instead of every Deployment in
        # scope, which each shard would read and skip. Whatever it misses is fetched (``_want``).
        self._narrow = True
        self.named: Informer[Deployment] | None = None
        self.unnamed: Informer[Deployment] | None = None
        self.personas: Informer[ApplicationPersona] | None = None
        self._m_cached = metrics.SHARD_SECONDARY_OBJECTS.labels(RING, shard, "deployments")
        self.fetches = 0
        """Label-selected Deployment fetches made (observable by tests and benchmarks)."""

    def keep(self, d: MetadataView) -> bool:
        labels = d.metadata.labels or {}
        app = labels.get(NAME_LABEL) or labels.get(APP_LABEL)
        return bool(app) and f"{d.metadata.namespace}/{app}" in self.wanted

    def named_selector(self) -> str:
        """The named watch's selector: wide, the name label exists; narrow, it is one of the shard's app
        names (or empty, which the ``app`` label then decides) — wide again above :data:`MAX_NARROW_APPS`."""
        apps = self._own_apps() if self._narrow else None
        if apps is None or len(apps) > MAX_NARROW_APPS:
            return NAME_LABEL
        return f"{NAME_LABEL} in (,{','.join(sorted(apps))})"

    def _own_apps(self) -> set[str]:
        """The app names of the shard's personas that can be label values (only those select by label)."""
        return {a for v in self.wanted if _LABEL_VALUE.fullmatch(a := v.partition("/")[2])}

    def holds(self, req: Request) -> bool:
        """The persona of ``req`` waits for its Deployments (the controller's ``hold``: no reconcile is
        queued for it meanwhile; :meth:`_fetched` queues it). A persona whose app is not wanted yet is
        being added: the controller's handlers run before this cache's, which then marks it pending."""
        if self.personas is None:
            return False
        p = self.personas.store.get(req.key)
        if p is None:
            return False
        value = _persona_index(p)[0]
        return value in self._pending or value not in self.wanted

    @property
    def caches(self) -> list[Informer[Deployment]]:
        return [c for c in (self.named, self.unnamed) if c is not None]

    def cached(self) -> int:
        """Deployments held (both caches)."""
        return sum(len(c.store) for c in self.caches)

    def pending(self, persona: ApplicationPersona) -> bool:
        return bool(self._pending) and _persona_index(persona)[0] in self._pending

    def attach(
        self,
        personas: Informer[ApplicationPersona],
        named: Informer[Deployment],
        unnamed: Informer[Deployment],
        enqueue: Callable[[Request], None],
    ) -> None:
        """Follow the shard's persona cache; ``enqueue`` a persona once its Deployments are fetched."""
        self.enqueue = enqueue
        self.named, self.unnamed = named, unnamed
        self.personas = personas
        personas.add_handlers(
            Handlers(
                on_add=lambda p: self._want(_persona_index(p)[0]),
                on_update=self._moved,
                on_delete=lambda p: self._unwant(_persona_index(p)[0]),
            )
        )
        count = lambda *_: self._m_cached.set(self.cached())  # noqa: E731
        for cache in (named, unnamed):
            cache.add_handlers(Handlers(on_add=count, on_delete=count))

    def _start_fetcher(self) -> None:
        if self._fetcher is None or self._fetcher.done():
            self._fetcher = asyncio.get_running_loop().create_task(self._fetch_loop())

    def _moved(self, old: ApplicationPersona, new: ApplicationPersona) -> None:
        a, b = _persona_index(old)[0], _persona_index(new)[0]
        if a != b:
            self._want(b)
            self._unwant(a)

    def _want(self, value: str) -> None:
        self.wanted[value] += 1
        # Fetched even before the caches have synced: their first LISTs may have been asked for already,
        # with the selector as it was (the fetch loop waits for the sync, then restarts the named watch).
        if self.wanted[value] == 1 and self.named is not None:
            self._pending.add(value)
            self._queued.add(value)
            self._start_fetcher()

    def _unwant(self, value: str) -> None:
        self.wanted[value] -= 1
        if self.wanted[value] > 0:
            return
        del self.wanted[value]
        self._pending.discard(value)
        self._queued.discard(value)
        for cache in self.caches:
            cache.forget(
                [
                    f"{d.metadata.namespace}/{d.metadata.name}"
                    for d in cache.store.by_index(BY_APP_LABEL, value)
                ]
            )
        self._m_cached.set(self.cached())

    def _fetched(self, values: list[str]) -> None:
        """The Deployments of ``values`` are in: their personas' reconciles, held back, run now (the gate
        does not poll)."""
        self._pending.difference_update(values)
        assert self.personas is not None
        for value in values:
            for p in self.personas.store.by_index(BY_SPEC_NAME, value):
                self.enqueue(Request(p.metadata.namespace or "", p.metadata.name or ""))

    async def _fetch_loop(self) -> None:
        """Fetch what is queued, then narrow the named watch once nothing more arrives."""
        named = self.named
        assert named is not None
        while True:
            await self._fetch_queued()
            if not self._narrow:
                await self.clock.sleep(NARROW_AFTER_S)
                if self._queued:
                    continue
                if len(self._own_apps()) > MAX_NARROW_APPS:
                    # The watch stays wide, and is not restarted for nothing.
                    log.info("kept the Deployment watch wide: %d own apps", len(self.wanted))
                else:
                    self._narrow = True
                    await named.rewatch()
                    log.info("narrowed the Deployment watch to %d own apps", len(self.wanted))
            if not self._queued:  # (a persona that arrived meanwhile found this task running)
                return

    async def _fetch_queued(self) -> None:
        """Fetch what is queued, in batches: per namespace, one set-based selector per cache for up to
        ``FETCH_BATCH`` app names (a sharder assigning thousands of personas at once costs a few LISTs, not
        two per persona). A failed batch is queued again after ``retry_s``."""
        named, unnamed = self.named, self.unnamed
        assert named is not None and unnamed is not None
        await asyncio.gather(named.wait_for_sync(), unnamed.wait_for_sync())
        while self._queued:
            # Let assignments queue up: a sharder assigning thousands of personas at tens per second would
            # otherwise cost a LIST pair per persona.
            await self.clock.sleep(FETCH_COALESCE_S)
            by_ns: dict[str, list[str]] = {}
            for value in sorted(self._queued):
                ns, _, app = value.partition("/")
                if _LABEL_VALUE.fullmatch(app):
                    by_ns.setdefault(ns, []).append(app)
                else:
                    self._fetched([value])  # no Deployment can carry it as a label value: none to fetch
            self._queued.clear()
            # The named watch is wide before any of them is fetched (see the class docstring): a change after
            # a fetch's answer is then always in the watch.
            if self._narrow:
                self._narrow = False
                await named.rewatch()
            for ns, apps in by_ns.items():
                for i in range(0, len(apps), FETCH_BATCH):
                    batch = apps[i : i + FETCH_BATCH]
                    values = [f"{ns}/{a}" for a in batch]
                    names = ",".join(batch)
                    for cache in (named, unnamed):
                        cache.begin_admit()
                    try:
                        # Served from the API server's watch cache, not older than what each cache has seen
                        # (resourceVersion = its last one; "not older than" is a LIST's meaning of a given
                        # RV): a Deployment whose event a cache already passed by is in the answer. A quorum
                        # read instead reads every Deployment of the namespace from etcd per batch (at
                        # 40,000 that paced a whole ring's start).
                        for cache, selector in (
                            (named, f"{NAME_LABEL} in (,{names})"),
                            (unnamed, f"{UNNAMED},{APP_LABEL} in ({names})"),
                        ):
                            page = await self.client.list_all(
                                DEPLOYMENTS, type=Deployment, namespace=ns, label_selector=selector,
                                resource_version=cache.last_sync_rv or "0",
                            )  # fmt: skip
                            cache.admit(page.items)
                        self.fetches += 1
                        self._fetched(values)
                    except asyncio.CancelledError:
                        raise
                    except Exception as e:
                        log.info(
                            "fetching Deployments of %d apps in %s failed (%s); retrying", len(batch), ns, e
                        )
                        self._queued.update(v for v in values if v in self.wanted)
                        await self.clock.sleep(self.retry_s)
                    finally:
                        for cache in (named, unnamed):
                            cache.end_admit()
            self._m_cached.set(self.cached())


async def run(ctx: ComponentContext) -> None:
    """One shard (a child process; ``shard_index`` set by ``dorgu operator --shards``)."""
    settings = msgspec.convert(dict(ctx.options), type=PersonaSettings)
    assert settings.shard_index is not None, "a shard needs shard_index"
    shard = shard_name(ctx.identity, settings.shard_index)
    base = lease_settings(settings, identity=ctx.identity, default_name=f"{RING}-shard")
    if base is None:
        raise ValueError("a sharded controller needs leader election (its shard Lease)")
    connection = msgspec.structs.replace(
        ctx.connection, user_agent=f"{ctx.connection.user_agent} {NAME} shard={shard}"
    )
    manager = Manager(
        connection=connection,
        leader_election=shard_lease_settings(base, ring=RING, shard=shard),
        set_ready=ctx.set_ready,
    )
    events = EventRecorder(manager.client, component=NAME, host=ctx.identity, clock=manager.clock)
    own = OwnDeployments(client=manager.client, shard=shard, clock=manager.clock)
    reconciler = ApplicationPersonaReconciler(
        manager=manager,
        settings=settings,
        events=events,
        persona_selector=f"{SHARD_LABEL}={shard}",
        deployment_keep=own.keep,
        deployment_selectors=(own.named_selector, UNNAMED),
    )
    named, unnamed = reconciler.deployment_caches
    own.attach(reconciler.personas, named, unnamed, reconciler.controller.enqueue)
    reconciler.controller.hold = own.holds
    gate = ShardGate(
        client=manager.client,
        resource=APPLICATION_PERSONAS,
        ring=RING,
        shard=shard,
        informer=reconciler.personas,
        enqueue=reconciler.controller.enqueue,
        pending=own.pending,
    )
    reconciler.controller.reconcile = gate.wrap(reconciler.reconcile)

    manager.add_runnable(events.run, group=RunnableGroup.LEADER, name="event-recorder")
    log.info("shard %s of ring %s starting", shard, RING)
    await manager.run(ctx.stopping)
    await asyncio.sleep(0)


async def run_sharder(ctx: ComponentContext) -> None:
    """The ring's sharder (a child process on every replica; one leads)."""
    settings = msgspec.convert(dict(ctx.options), type=PersonaSettings)
    lease = lease_settings(settings, identity=ctx.identity, default_name=SHARDER_LEASE)
    if lease is None:
        raise ValueError("the sharder needs leader election")
    connection = msgspec.structs.replace(ctx.connection, user_agent=f"{ctx.connection.user_agent} sharder")
    manager = Manager(connection=connection, leader_election=lease, set_ready=ctx.set_ready)
    Sharder(
        manager=manager,
        settings=SharderSettings(
            ring=RING,
            resource=APPLICATION_PERSONAS,
            namespace=namespace_scope(settings.namespaces),
            lease_namespace=lease.namespace,
            lease_duration_s=settings.lease_duration_s,
            settle_s=settings.sharder_settle_s,
            workers=settings.sharder_workers,
        ),
    )
    await manager.run(ctx.stopping)
    await asyncio.sleep(0)


__all__: list[Any] = ["OwnDeployments", "run", "run_sharder", "shard_name"]
