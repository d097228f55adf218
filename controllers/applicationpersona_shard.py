"""The ApplicationPersona controller as a ring of shards (``dorgu operator --shards``), and its sharder.

* **Shard** (:func:`run`): the ordinary reconciler on caches narrowed to one shard. Personas: a label
  selector ``shard.dorgu.io/applicationpersona=<shard>`` (the sharder writes the label; our own CRD, so no
  user object is ever mutated). Deployments: every shard watches all of them but caches only those its own
  personas select (:class:`OwnDeployments`): memory splits, the decode CPU of Deployment events does not.
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
    _deployment_index,
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


def shard_name(identity: str, index: int) -> str:
    """Shard ``index`` of replica ``identity``."""
    return f"{identity}-{index}"


class OwnDeployments:
    """The rule of a shard's Deployment cache: a Deployment is cached while one of the shard's own personas
    selects it (``<namespace>/<app name>`` from its labels, as the reconciler's index maps it).

    * Filtered from the first LIST on, as it is decoded (the informer's ``keep``): the shard never holds
      every Deployment, not even while it starts (CPython rarely returns a peak's memory).
    * A persona that becomes the shard's later (a new persona, a move) gets its Deployments fetched and
      admitted into the cache: batched per namespace, two set-based label-selected LISTs (the name label
      and the older ``app`` label) per 100 app names; until they are in, :meth:`pending` holds the
      persona's reconcile back (it would judge it without its Deployments: a wrong Pending status and
      Events) and enqueues it once they are in (no polling: thousands of personas can wait at once).
    * A persona that leaves (deleted, drained) drops the Deployments no other own persona selects.
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
        self.deployments: Informer[Deployment] | None = None
        self.personas: Informer[ApplicationPersona] | None = None
        self._m_cached = metrics.SHARD_SECONDARY_OBJECTS.labels(RING, shard, "deployments")
        self.fetches = 0
        """Label-selected Deployment fetches made (observable by tests and benchmarks)."""

    def keep(self, d: MetadataView) -> bool:
        return any(v in self.wanted for v in _deployment_index(d))

    def pending(self, persona: ApplicationPersona) -> bool:
        return bool(self._pending) and _persona_index(persona)[0] in self._pending

    def attach(
        self,
        personas: Informer[ApplicationPersona],
        deployments: Informer[Deployment],
        enqueue: Callable[[Request], None],
    ) -> None:
        """Follow the shard's persona cache; ``enqueue`` a persona once its Deployments are fetched."""
        self.enqueue = enqueue
        self.deployments = deployments
        self.personas = personas
        personas.add_handlers(
            Handlers(
                on_add=lambda p: self._want(_persona_index(p)[0]),
                on_update=self._moved,
                on_delete=lambda p: self._unwant(_persona_index(p)[0]),
            )
        )
        count = lambda *_: self._m_cached.set(len(deployments.store))  # noqa: E731
        deployments.add_handlers(Handlers(on_add=count, on_delete=count))

    def _moved(self, old: ApplicationPersona, new: ApplicationPersona) -> None:
        a, b = _persona_index(old)[0], _persona_index(new)[0]
        if a != b:
            self._want(b)
            self._unwant(a)

    def _want(self, value: str) -> None:
        self.wanted[value] += 1
        deps = self.deployments
        # Before the Deployment cache has synced, its first LIST (filtered as it is decoded) brings them.
        if self.wanted[value] == 1 and deps is not None and deps.has_synced():
            self._pending.add(value)
            self._queued.add(value)
            if self._fetcher is None or self._fetcher.done():
                self._fetcher = asyncio.get_running_loop().create_task(self._fetch_loop())

    def _unwant(self, value: str) -> None:
        self.wanted[value] -= 1
        if self.wanted[value] > 0:
            return
        del self.wanted[value]
        self._pending.discard(value)
        self._queued.discard(value)
        deps = self.deployments
        if deps is not None:
            deps.forget(
                [
                    f"{d.metadata.namespace}/{d.metadata.name}"
                    for d in deps.store.by_index(BY_APP_LABEL, value)
                ]
            )
            self._m_cached.set(len(deps.store))

    def _fetched(self, values: list[str]) -> None:
        """The Deployments of ``values`` are in: their personas' reconciles, held back, run now (the gate
        does not poll)."""
        self._pending.difference_update(values)
        assert self.personas is not None
        for value in values:
            for p in self.personas.store.by_index(BY_SPEC_NAME, value):
                self.enqueue(Request(p.metadata.namespace or "", p.metadata.name or ""))

    async def _fetch_loop(self) -> None:
        """Fetch what is queued, in batches: per namespace, one set-based selector per label for up to
        ``FETCH_BATCH`` app names (a sharder assigning thousands of personas at once costs a few LISTs, not
        two per persona). A failed batch is queued again after ``retry_s``."""
        deps = self.deployments
        assert deps is not None
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
            for ns, apps in by_ns.items():
                for i in range(0, len(apps), FETCH_BATCH):
                    batch = apps[i : i + FETCH_BATCH]
                    values = [f"{ns}/{a}" for a in batch]
                    deps.begin_admit()
                    try:
                        # Served from the API server's watch cache, not older than what this cache has seen
                        # (resourceVersion = its last one; "not older than" is a LIST's meaning of a given
                        # RV): a Deployment whose event this cache already passed by is in the answer. A
                        # quorum read instead reads every Deployment of the namespace from etcd per batch
                        # (at 40,000 that paced a whole ring's start).
                        rv = deps.last_sync_rv or "0"
                        for label in (NAME_LABEL, APP_LABEL):
                            page = await self.client.list_all(
                                DEPLOYMENTS, type=Deployment, namespace=ns,
                                label_selector=f"{label} in ({','.join(batch)})", resource_version=rv,
                            )  # fmt: skip
                            deps.admit(page.items)
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
                        deps.end_admit()
            self._m_cached.set(len(deps.store))


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
    )
    own.attach(reconciler.personas, reconciler.deployments, reconciler.controller.enqueue)
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
