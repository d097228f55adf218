"""The ClusterPersona controller ("Cluster Soul"): a picture of the cluster in every ClusterPersona's status.

The heuristics are in :mod:`dorgu.domain.discovery`. Rules this controller keeps:

* **Triggers.** ClusterPersona events whose generation changed (its own status writes do not wake it), a
  periodic discovery (5 min by default, jittered ±10 %), and Node changes: a Node added or removed, or one
  whose readiness, labels, providerID, taints, capacity or versions changed (heartbeats do not count),
  re-discovers every ClusterPersona after a short debounce (a burst of node events gives one pass).
* **Discovery**: nodes (from the cache, in name order), resource summary, namespaces, Kubernetes version,
  platform, ApplicationPersona count and add-ons (label-selected LISTs of Deployments, StatefulSets and
  DaemonSets in all namespaces — or, with ``--namespaces``, in each of those: the personas counted and the
  add-ons found are then those of the operator's namespaces; nodes and the namespace totals are the
  cluster's, as cluster-scoped kinds). A step that fails keeps its previous value, and is reported:
  ``Discovered=False/DiscoveryIncomplete`` naming the step, and a ``Ready`` phase becomes ``Degraded``.
* **No Pod is ever read**: a cluster-wide Pod read would expose every Pod's environment values, so add-ons
  are found on their workloads and running Pods are not counted (``runningPods`` stays unset).
* **Status** is written with server-side apply on the status subresource under field manager
  ``dorgu-clusterpersona``; every apply carries every field this manager owns (a left-out field would be
  deleted). ``status.nodeCount`` feeds the ``Nodes`` printer column.
* **Bootstrap.** When leading and no ClusterPersona exists, one is created (``bootstrap`` option), so a
  fresh install has a cluster picture without manual steps. Only at start-up: a deleted one is not re-made.
* **Events** on the ClusterPersona when its phase changes.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, TypeVar

import msgspec

from controllers.component import drop_managed_fields, run_controller
from controllers.settings import ClusterPersonaSettings
from dorgu.domain import discovery
from dorgu.domain.kube import Namespace, Node
from dorgu.domain.resources import APPLICATION_PERSONAS, CLUSTER_PERSONAS
from dorgu.domain.types import (
    API_VERSION,
    ClusterPersona,
    ClusterPersonaStatus,
    NamespaceSummary,
)
from dorgu.runtime.clock import Clock
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.conditions import set_status_conditions, status_time
from dorgu.runtime.controller import Controller, ControllerSettings, Request, Result, generation_changed
from dorgu.runtime.errors import AlreadyExists
from dorgu.runtime.events import EventRecorder, ObjectReference
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import DAEMONSETS, DEPLOYMENTS, NAMESPACES, NODES, STATEFULSETS, Resource

log = logging.getLogger("dorgu.clusterpersona")
T = TypeVar("T")

FIELD_MANAGER = "dorgu-clusterpersona"
NAME = "clusterpersona"
LEASE_NAME = "dorgu-clusterpersona"

WORKLOADS: tuple[tuple[str, Resource], ...] = (
    ("Deployment", DEPLOYMENTS),
    ("StatefulSet", STATEFULSETS),
    ("DaemonSet", DAEMONSETS),
)
OWN_CONDITIONS = ("Discovered", "Healthy")


class _MetaOnly(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


class ClusterPersonaReconciler:
    """Discovers the cluster and writes each ClusterPersona's status."""

    def __init__(
        self,
        *,
        manager: Manager,
        settings: ClusterPersonaSettings,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.m = manager
        self.s = settings
        self.events = events
        self.clock = clock or manager.clock
        self.rng = rng or random.Random()
        self.scope = namespace_scope(settings.namespaces)
        """The namespaces whose personas and add-ons count (None: every one)."""
        self.personas: Informer[ClusterPersona] = manager.informer(
            CLUSTER_PERSONAS, ClusterPersona, transform=drop_managed_fields
        )
        self.nodes: Informer[Node] = manager.informer(NODES, Node)
        self.controller = Controller(
            settings=ControllerSettings(name=NAME, workers=settings.workers),
            reconcile=self.reconcile,
            clock=self.clock,
        )
        self.controller.watch_for(self.personas, update_predicate=generation_changed)
        self.nodes.add_handlers(
            Handlers(
                on_add=lambda n: self._nodes_changed(),
                on_update=self._node_updated,
                on_delete=lambda n: self._nodes_changed(),
            )
        )
        manager.add_controller(self.controller)
        if settings.bootstrap:
            manager.add_runnable(self._bootstrap, group=RunnableGroup.LEADER)
        self.passes = 0
        """Discovery passes made (observable by tests)."""

    # -- triggers -------------------------------------------------------------------------------------------

    def _node_updated(self, old: Node, new: Node) -> None:
        if discovery.node_fingerprint(old) != discovery.node_fingerprint(new):
            self._nodes_changed()

    def _nodes_changed(self) -> None:
        for p in self.personas.store.list():
            self.controller.queue.add_after(Request("", p.metadata.name or ""), self.s.node_debounce_s)

    async def _bootstrap(self) -> None:
        if not self.personas.store.list():
            name = self.s.bootstrap_name
            spec: dict[str, Any] = {"name": name}
            if self.s.bootstrap_environment:
                spec["environment"] = self.s.bootstrap_environment
            body = {
                "apiVersion": API_VERSION,
                "kind": "ClusterPersona",
                "metadata": {"name": name},
                "spec": spec,
            }
            try:
                await self.m.client.create(CLUSTER_PERSONAS, body)
                log.info("created ClusterPersona %s (none existed)", name)
            except AlreadyExists:
                pass

    # -- reconcile ------------------------------------------------------------------------------------------

    async def reconcile(self, req: Request) -> Result | None:
        persona = self.personas.store.get(req.key)
        if persona is None:
            return None
        old = persona.status or ClusterPersonaStatus()
        new = await self.discover(persona, old)
        body = {
            "apiVersion": API_VERSION,
            "kind": "ClusterPersona",
            "metadata": {"name": req.name},
            "status": msgspec.to_builtins(new),
        }
        await self.m.client.apply(
            CLUSTER_PERSONAS,
            body,
            name=req.name,
            field_manager=FIELD_MANAGER,
            subresource="status",
            decode=False,
        )
        self.passes += 1
        if self.events is not None and old.phase != new.phase:
            self.events.record(
                ObjectReference.of(persona, resource=CLUSTER_PERSONAS),
                type="Normal" if new.phase == "Ready" else "Warning",
                reason="PhaseChanged",
                message=f"Phase changed from {old.phase or 'none'} to {new.phase}",
            )
        log.info("discovered", extra={"persona": req.name, "phase": new.phase, "nodes": new.node_count})
        jitter = 1 + (self.rng.random() - 0.5) * 0.2
        return Result(requeue_after=self.s.discovery_interval_s * jitter)

    async def discover(self, persona: ClusterPersona, old: ClusterPersonaStatus) -> ClusterPersonaStatus:
        """This pass's status: everything this manager owns (a failed step keeps its old value)."""
        now = status_time(self.clock.now())
        raw_nodes = sorted(self.nodes.store.list(), key=lambda n: n.metadata.name or "")
        nodes = [discovery.node_info(n) for n in raw_nodes]
        failures: dict[str, str] = {}

        async def step(name: str, coro: Any) -> Any:
            try:
                return await coro
            except Exception as e:  # one failed step must not lose the others
                log.warning("discovery step %s failed: %s", name, e)
                failures[name] = f"{type(e).__name__}: {e}"[:300]
                return None

        namespaces, personas, version, workloads = await asyncio.gather(
            step("namespaces", self.m.client.list_all(NAMESPACES, type=Namespace)),
            step("applicationPersonas", self._list_scoped(APPLICATION_PERSONAS, _MetaOnly)),
            step("version", self.m.client.server_version()),
            step("addons", self._workloads()),
        )

        ns_summary = old.namespaces
        app_count = old.application_count
        if namespaces is not None:
            with_personas = (
                len({p.metadata.namespace for p in personas}) if personas is not None
                else (old.namespaces.with_personas if old.namespaces else None)
            )  # fmt: skip
            ns_summary = NamespaceSummary(
                total=len(namespaces.items),
                active=sum(1 for n in namespaces.items if n.status and n.status.phase == "Active"),
                with_personas=with_personas,
            )
        if personas is not None:
            app_count = len(personas)
        summary = discovery.resource_summary(nodes)
        addons = discovery.detect_addons(workloads) if workloads is not None else old.addons
        kube_version = (version or {}).get("gitVersion") or old.kubernetes_version
        phase, conds = discovery.phase_and_conditions(nodes, failures)
        gen = persona.metadata.generation
        return ClusterPersonaStatus(
            observed_generation=gen,
            phase=phase,
            last_discovery=now,
            node_count=len(nodes),
            nodes=nodes or None,
            resource_summary=summary,
            addons=addons,
            namespaces=ns_summary,
            kubernetes_version=kube_version,
            platform=discovery.detect_platform(raw_nodes),
            application_count=app_count,
            conditions=set_status_conditions(
                [c for c in (old.conditions or []) if c.type in OWN_CONDITIONS],
                conds,
                now=now,
                observed_generation=gen,
            )[0],
        )

    async def _list_scoped(
        self, resource: Resource, type_: type[T], *, label_selector: str | None = None
    ) -> list[T]:
        """Every object of a namespaced kind: one LIST cluster-wide, or one per namespace of the scope."""
        namespaces: tuple[str | None, ...] = self.scope or (None,)
        pages = await asyncio.gather(
            *(self.m.client.list_all(resource, type=type_, namespace=ns, label_selector=label_selector)
              for ns in namespaces)
        )  # fmt: skip
        return [item for page in pages for item in page.items]

    async def _workloads(self) -> list[discovery.Workload]:
        """Every Deployment, StatefulSet and DaemonSet carrying a label an add-on rule looks for."""
        queries = discovery.selector_queries()
        jobs = [
            (kind, self._list_scoped(res, discovery.RawWorkload, label_selector=q))
            for kind, res in WORKLOADS
            for q in queries
        ]
        pages = await asyncio.gather(*(j for _, j in jobs))
        seen: dict[tuple[str, str, str], discovery.Workload] = {}
        for (kind, _), items in zip(jobs, pages, strict=True):
            for raw in items:
                w = discovery.workload_of(kind, raw)
                seen[(kind, w.namespace, w.name)] = w
        return list(seen.values())


async def run(ctx: ComponentContext) -> None:
    """The component's entry point (a child process of the supervisor)."""
    settings = msgspec.convert(dict(ctx.options), type=ClusterPersonaSettings)
    await run_controller(
        ctx,
        name=NAME,
        lease_name=LEASE_NAME,
        lease=settings,
        build=lambda m, ev: ClusterPersonaReconciler(manager=m, settings=settings, events=ev),
    )
