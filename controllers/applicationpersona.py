"""The ApplicationPersona controller: every app's Deployments checked against its persona, continuously.

Rules it keeps:

* **Triggers.** Persona events whose generation changed (so neither this controller's own status writes nor
  the Argo CD controller's wake it), every Deployment event mapped to personas through indexes (old *and*
  new labels on an update; no generation predicate — health comes from Deployment ``status``) whose
  resourceVersion moved (a relist re-delivers unchanged ones), and a periodic re-validation (60 s by
  default, jittered ±10 %).
* **Matching.** All Deployments of the persona's namespace labelled ``app.kubernetes.io/name=<spec.name>``
  (falling back to the ``app`` label), validated in name order; each issue names its Deployment.
* **Status** is written with server-side apply on the status subresource under field manager
  ``dorgu-applicationpersona``; it owns phase, lastUpdated, observedGeneration, deployments.current, health,
  validation and the Ready/Validated conditions. Fields of other managers (``status.argoCD``, the baseline's
  ``learned`` and ``recommendations`` under ``dorgu-applicationpersona-baseline``) are never touched. A
  field this manager owns and leaves out of an apply is deleted, so every apply carries all of them (on the
  Pending path — no Deployment matches — the last ``deployments.current`` is re-sent, so it stays in place).
* **No write storm.** The status is written only when something but timestamps changed (compared with
  timestamps truncated to whole seconds, as the server stores them), or when the last write is older than
  the heartbeat interval (30 min by default).
* **No write from a stale cache.** Until the persona cache shows the resourceVersion our last status write
  returned, that write — not the cached status — is the persona's current status for this controller: a
  re-validation that runs before the cache caught up compares with it, so it neither repeats the write (a
  no-op at the server, but a request) nor emits the same Events again.
* **Events** on the persona when validation starts failing or recovers, and when the phase changes.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec

from controllers.component import drop_managed_fields, run_controller
from controllers.metrics import PersonaCounter
from controllers.settings import PersonaSettings
from dorgu.domain.health import assess
from dorgu.domain.kube import Deployment
from dorgu.domain.recommendations import recommend
from dorgu.domain.resources import APP_LABEL, APPLICATION_PERSONAS, NAME_LABEL
from dorgu.domain.rules import matching_deployments
from dorgu.domain.types import API_VERSION, ApplicationPersona, ApplicationPersonaStatus, DeploymentTracking
from dorgu.runtime.clock import Clock
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.conditions import DesiredCondition, set_status_conditions, status_time
from dorgu.runtime.controller import (
    Controller,
    ControllerSettings,
    Request,
    Result,
    generation_changed,
    resource_version_changed,
)
from dorgu.runtime.events import EventRecorder, ObjectReference
from dorgu.runtime.informer import Handlers, Informer, Selector, resource_version_int
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import Condition, Keep, MetadataView
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import DEPLOYMENTS

if TYPE_CHECKING:  # imported lazily below: prometheus-api-client costs ~70 ms of every child's start-up
    from controllers.baseline import BaselineLearner, BaselineOutcome

log = logging.getLogger("dorgu.applicationpersona")

FIELD_MANAGER = "dorgu-applicationpersona"
BASELINE_FIELD_MANAGER = "dorgu-applicationpersona-baseline"
"""Owns status.learned.resourceBaseline and status.recommendations. They are refreshed far less often than
the rest; under a manager of their own, the main apply (which leaves them out) never deletes them.

The ``BaselineLearned`` condition is *not* written by it: kube-apiserver 1.20 falls back to treating every
list of this CRD as atomic under server-side apply (its schema has int-or-string quantities, which 1.20's
typed merge cannot convert — seen on the real server), so two managers applying different entries of
``status.conditions`` would delete each other's. The whole conditions list therefore has one owner, the
main manager; the baseline loop hands it the condition in memory and enqueues the persona."""
CONDITION_TYPES = ("Ready", "Validated", "BaselineLearned")
NAME = "applicationpersona"
LEASE_NAME = "dorgu-applicationpersona"

BY_SPEC_NAME = "spec-name"
BY_APP_LABEL = "app-label"


WRITTEN_MEMORY_S = 120.0
"""How long a status write is remembered while the cache has not shown it. Past this, the cache is trusted
again (a relist after a 410 can skip the write's own event: the entry is then never cleared by it)."""


class _RVMeta(msgspec.Struct, rename="camel"):
    resource_version: str | None = None


class _RVOnly(msgspec.Struct):
    """Just the resourceVersion of a write's answer (the rest of the body is skipped, not decoded)."""

    metadata: _RVMeta = msgspec.field(default_factory=_RVMeta)


@dataclass(frozen=True, slots=True)
class _Written:
    """A status this controller wrote that the persona cache may not show yet."""

    resource_version: str
    status: ApplicationPersonaStatus
    at: float


def _persona_index(p: ApplicationPersona) -> list[str]:
    return [f"{p.metadata.namespace}/{p.spec.name}"]


def _deployment_index(d: Deployment | MetadataView) -> list[str]:
    """``<namespace>/<app>`` from the name and ``app`` labels (metadata only: a cache filter calls it too)."""
    labels = d.metadata.labels or {}
    return [f"{d.metadata.namespace}/{v}" for v in {labels.get(NAME_LABEL), labels.get(APP_LABEL)} if v]


class ApplicationPersonaReconciler:
    """Computes and writes one persona's status from the caches."""

    def __init__(
        self,
        *,
        manager: Manager,
        settings: PersonaSettings,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        persona_selector: str | None = None,
        deployment_keep: Keep | None = None,
        deployment_selectors: tuple[Selector, ...] = (None,),
    ) -> None:
        """``persona_selector``, ``deployment_keep`` and ``deployment_selectors`` narrow the caches to one
        shard's objects (:mod:`controllers.applicationpersona_shard`); unsharded, they are None and one
        unselected Deployment cache. One Deployment cache per selector: their union (by key, the newest
        resourceVersion winning while an object moves from one to another) is what the reconciler sees."""
        self.m = manager
        self.s = settings
        self.events = events
        self.clock = clock or manager.clock
        self.rng = rng or random.Random()
        scope = namespace_scope(settings.namespaces)  # None: every namespace
        self.personas: Informer[ApplicationPersona] = manager.informer(
            APPLICATION_PERSONAS,
            ApplicationPersona,
            namespace=scope,
            label_selector=persona_selector,
            indexers={BY_SPEC_NAME: _persona_index},
            transform=drop_managed_fields,
        )
        self.deployment_caches: list[Informer[Deployment]] = [
            manager.informer(
                DEPLOYMENTS,
                Deployment,
                namespace=scope,
                label_selector=selector,
                indexers={BY_APP_LABEL: _deployment_index},
                keep=deployment_keep,
            )
            for selector in deployment_selectors
        ]
        self.deployments: Informer[Deployment] = self.deployment_caches[0]
        self.controller = Controller(
            settings=ControllerSettings(name=NAME, workers=settings.workers),
            reconcile=self.reconcile,
            clock=self.clock,
        )
        self._written: dict[str, _Written] = {}
        self.personas.add_handlers(Handlers(on_update=self._saw_update, on_delete=self._saw_delete))
        self.counter = PersonaCounter()  # the personas-by-phase gauges, from this cache
        self.personas.add_handlers(self.counter.handlers())
        self.controller.watch_for(self.personas, update_predicate=generation_changed)
        for cache in self.deployment_caches:
            # A relist (after a broken watch) hands every cached Deployment to the handlers again; only those
            # whose resourceVersion moved are news (the periodic re-validation covers the rest).
            self.controller.watch_mapped(cache, self.personas_of, update_predicate=resource_version_changed)
        manager.add_controller(self.controller)
        self.learner: BaselineLearner | None = None
        if settings.prometheus_url:
            from controllers.baseline import BaselineLearner, BaselineSettings

            self.learner = BaselineLearner(
                BaselineSettings(
                    url=settings.prometheus_url,
                    refresh_interval_s=settings.baseline_refresh_s,
                    timeout_s=settings.prometheus_timeout_s,
                ),
                clock=self.clock,
            )
            manager.add_runnable(self._baseline_loop, group=RunnableGroup.LEADER)
        self._baseline_conditions: dict[str, DesiredCondition] = {}
        self.writes = 0
        """Status writes made (observable by tests and benchmarks)."""

    def deployments_of(self, namespace: str, app: str) -> list[Deployment]:
        """The cached Deployments that may belong to app ``app`` of ``namespace`` (not yet matched)."""
        value = f"{namespace}/{app}"
        if len(self.deployment_caches) == 1:
            return self.deployments.store.by_index(BY_APP_LABEL, value)
        newest: dict[str, tuple[int, Deployment]] = {}
        for cache in self.deployment_caches:
            for d in cache.store.by_index(BY_APP_LABEL, value):
                name = d.metadata.name or ""
                rv = resource_version_int(d.metadata.resource_version) or 0
                have = newest.get(name)
                if have is None or rv > have[0]:
                    newest[name] = (rv, d)
        return [d for _, d in newest.values()]

    def personas_of(self, d: Deployment) -> list[Request]:
        out = []
        for value in _deployment_index(d):
            for p in self.personas.store.by_index(BY_SPEC_NAME, value):
                out.append(Request(p.metadata.namespace or "", p.metadata.name or ""))
        return out

    def _saw_update(self, old: ApplicationPersona, new: ApplicationPersona) -> None:
        # The cache now shows our write (events arrive in order, so anything later also carries it).
        key = f"{new.metadata.namespace}/{new.metadata.name}"
        w = self._written.get(key)
        if w is not None and w.resource_version == new.metadata.resource_version:
            del self._written[key]

    def _saw_delete(self, obj: ApplicationPersona) -> None:
        self._written.pop(f"{obj.metadata.namespace}/{obj.metadata.name}", None)

    def _current_status(self, key: str, persona: ApplicationPersona) -> ApplicationPersonaStatus:
        """The persona's status as this controller last knew it: its own unseen write, else the cache's."""
        w = self._written.get(key)
        if w is not None:
            if (
                w.resource_version != persona.metadata.resource_version
                and self.clock.monotonic() - w.at < WRITTEN_MEMORY_S
            ):
                return w.status
            del self._written[key]
        return persona.status or ApplicationPersonaStatus()

    def _requeue(self) -> Result:
        jitter = 1 + (self.rng.random() - 0.5) * 0.2
        return Result(requeue_after=self.s.revalidate_interval_s * jitter)

    async def reconcile(self, req: Request) -> Result | None:
        persona = self.personas.store.get(req.key)
        if persona is None:
            return None  # deleted: nothing to clean up (no finalizers)
        name = persona.spec.name
        deployments = matching_deployments(name, self.deployments_of(req.namespace, name))
        now = status_time(self.clock.now())
        old = self._current_status(req.key, persona)
        new = self.desired_status(persona, deployments, old, now)
        if self._unchanged(old, new, now):
            return self._requeue()
        body = {
            "apiVersion": API_VERSION,
            "kind": "ApplicationPersona",
            "metadata": {"name": req.name, "namespace": req.namespace},
            "status": msgspec.to_builtins(new),
        }
        answer: _RVOnly = await self.m.client.apply(
            APPLICATION_PERSONAS,
            body,
            name=req.name,
            namespace=req.namespace,
            field_manager=FIELD_MANAGER,
            subresource="status",
            type=_RVOnly,
        )
        self.writes += 1
        rv = answer.metadata.resource_version
        if rv and rv != persona.metadata.resource_version:
            self._written[req.key] = _Written(rv, new, self.clock.monotonic())
        self._emit_events(persona, old, new)
        # At debug, as controller-runtime logs reconciles: a line per write costs ~5 % of the CPU at info.
        log.debug(
            "reconciled",
            extra={
                "phase": new.phase,
                "passed": new.validation.passed if new.validation else None,
                "issues": len((new.validation.issues or []) if new.validation else []),
            },
        )
        return self._requeue()

    # -- baselines ------------------------------------------------------------------------------------------

    async def _baseline_loop(self) -> None:
        while True:
            try:
                await self.refresh_baselines()
            except Exception:
                log.exception("baseline refresh failed")
            await self.clock.sleep(self.s.baseline_check_s)

    async def refresh_baselines(self, *, force: bool = False) -> int:
        """Learn the baselines of the personas that are due (all with ``force``), one query set per namespace;
        returns how many personas were written."""
        if self.learner is None:
            return 0
        by_ns: dict[str, dict[str, list[str]]] = {}
        deps_of: dict[str, list[Deployment]] = {}
        for p in self.personas.store.list():
            ns, name = p.metadata.namespace or "", p.metadata.name or ""
            key = f"{ns}/{name}"
            if not (force or self.learner.due(key)):
                continue
            deps = matching_deployments(p.spec.name, self.deployments_of(ns, p.spec.name))
            deps_of[key] = deps
            by_ns.setdefault(ns, {})[key] = [d.metadata.name or "" for d in deps]
        written = 0
        for ns, wanted in by_ns.items():
            outcomes = await self.learner.learn(ns, wanted, force=force)
            for key, outcome in outcomes.items():
                persona = self.personas.store.get(key)
                if persona is not None and await self._write_baseline(persona, deps_of.get(key, []), outcome):
                    written += 1
        return written

    async def _write_baseline(
        self, persona: ApplicationPersona, deployments: list[Deployment], outcome: BaselineOutcome
    ) -> bool:
        st = persona.status or ApplicationPersonaStatus()
        previous = st.learned.resource_baseline if st.learned else None
        from controllers.baseline import BaselineUnavailable, next_baseline

        baseline = next_baseline(previous, outcome)
        if isinstance(outcome, BaselineUnavailable):
            cond = DesiredCondition("BaselineLearned", "False", "PrometheusUnavailable", outcome.reason)
        elif outcome is None:
            cond = DesiredCondition(
                "BaselineLearned",
                "False",
                "NoData",
                "Prometheus has no samples of the app's pods in the last hour",
            )
        else:
            cond = DesiredCondition(
                "BaselineLearned", "True", "Learned", "Resource baseline learned from Prometheus"
            )
        key = f"{persona.metadata.namespace}/{persona.metadata.name}"
        before = self._baseline_conditions.get(key) or _desired(st.conditions, "BaselineLearned")
        self._baseline_conditions[key] = cond
        if before != cond:
            self.controller.enqueue(Request(persona.metadata.namespace or "", persona.metadata.name or ""))
        recs = recommend(baseline=baseline, deployment=deployments[0]) if deployments and baseline else []
        if baseline == previous and (recs or None) == (st.recommendations or None):
            return before != cond
        status: dict[str, Any] = {}
        if baseline is not None:
            status["learned"] = {"resourceBaseline": msgspec.to_builtins(baseline)}
        if recs:
            status["recommendations"] = msgspec.to_builtins(recs)
        if not status:
            return before != cond
        ns, name = persona.metadata.namespace or "", persona.metadata.name or ""
        body = {
            "apiVersion": API_VERSION,
            "kind": "ApplicationPersona",
            "metadata": {"name": name, "namespace": ns},
            "status": status,
        }
        await self.m.client.apply(
            APPLICATION_PERSONAS, body, name=name, namespace=ns, field_manager=BASELINE_FIELD_MANAGER,
            subresource="status", decode=False,
        )  # fmt: skip
        return True

    # -- status ---------------------------------------------------------------------------------------------

    def desired_status(
        self,
        persona: ApplicationPersona,
        deployments: list[Deployment],
        old: ApplicationPersonaStatus,
        now: datetime,
    ) -> ApplicationPersonaStatus:
        """What this manager owns, complete (a field it leaves out of an apply would be deleted)."""
        gen = persona.metadata.generation
        mine = [c for c in (old.conditions or []) if c.type in CONDITION_TYPES]
        a = assess(persona.spec, deployments, now=now, conditions=mine, generation=gen)
        conditions = a.conditions
        baseline_cond = self._baseline_conditions.get(f"{persona.metadata.namespace}/{persona.metadata.name}")
        if baseline_cond is not None:
            conditions, _ = set_status_conditions(
                conditions, [baseline_cond], now=now, observed_generation=gen
            )
        tracking = a.deployments
        if tracking is None and old.deployments and old.deployments.current is not None:
            # Pending path: status.deployments stays as it was, which under SSA means re-sending it.
            tracking = DeploymentTracking(current=old.deployments.current)
        return ApplicationPersonaStatus(
            observed_generation=gen,
            phase=a.phase,
            last_updated=a.last_updated,
            deployments=tracking,
            health=a.health,
            validation=a.validation,
            conditions=conditions,
        )

    def _unchanged(self, old: ApplicationPersonaStatus, new: ApplicationPersonaStatus, now: datetime) -> bool:
        """True when writing ``new`` would change nothing but timestamps, and no heartbeat is due."""
        last = old.validation.last_checked if old.validation else None
        if last is None or now - last >= timedelta(seconds=self.s.heartbeat_interval_s):
            return False
        return _without_timestamps(old) == _without_timestamps(new)

    def _emit_events(
        self, persona: ApplicationPersona, old: ApplicationPersonaStatus, new: ApplicationPersonaStatus
    ) -> None:
        if self.events is None:
            return
        ref = ObjectReference.of(persona, resource=APPLICATION_PERSONAS)
        was = old.validation.passed if old.validation else None
        now_passed = new.validation.passed if new.validation else None
        if was is not False and now_passed is False:
            n = (
                len([i for i in (new.validation.issues or []) if i.severity == "error"])
                if new.validation
                else 0
            )
            self.events.record(
                ref, type="Warning", reason="ValidationFailed", message=f"{n} validation error(s) found"
            )
        elif was is False and now_passed is True:
            self.events.record(
                ref, type="Normal", reason="ValidationPassed", message="All validations passed"
            )
        # A persona's first status (no phase before) is not news: like a Deployment's first rollout, it is
        # shown by the status itself; an Event for it would cost one more POST per persona at cold start.
        if old.phase and old.phase != new.phase:
            kind = "Normal" if new.phase in ("Active", "Pending") else "Warning"
            self.events.record(
                ref,
                type=kind,
                reason="PhaseChanged",
                message=f"Phase changed from {old.phase or 'none'} to {new.phase}",
            )


def _desired(conditions: list[Condition] | None, type_: str) -> DesiredCondition | None:
    for c in conditions or []:
        if c.type == type_:
            return DesiredCondition(c.type, c.status, c.reason, c.message)
    return None


def _without_timestamps(s: ApplicationPersonaStatus) -> Any:
    """The parts of a status this controller owns, with every timestamp blanked out."""
    d: dict[str, Any] = msgspec.to_builtins(
        msgspec.structs.replace(
            s,
            last_updated=None,
            learned=None,
            recommendations=None,
            argo_cd=None,
            health=msgspec.structs.replace(s.health, last_check=None) if s.health else None,
            validation=msgspec.structs.replace(s.validation, last_checked=None) if s.validation else None,
            conditions=None,
        )
    )
    d["conditions"] = sorted(
        (c.type, c.status, c.reason, c.message, c.observed_generation)
        for c in (s.conditions or [])
        if c.type in CONDITION_TYPES
    )
    return d


async def run(ctx: ComponentContext) -> None:
    """The component's entry point (a child process of the supervisor)."""
    settings = msgspec.convert(dict(ctx.options), type=PersonaSettings)
    await run_controller(
        ctx,
        name=NAME,
        lease_name=LEASE_NAME,
        lease=settings,
        build=lambda m, ev: ApplicationPersonaReconciler(manager=m, settings=settings, events=ev),
    )
