"""The Argo CD controller: each ApplicationPersona's ``status.argoCD`` mirrors its Argo CD Application.

Rules it keeps:

* **Argo CD optional.** At start the controller asks discovery whether ``argoproj.io/v1alpha1
  applications`` is served; if not, it logs that once and asks again every ``crd_poll_interval_s``, and
  takes its Application informer (all namespaces) from the manager as soon as the CRD appears, on every
  replica. The process never fails (nor restarts) for want of the CRD.
* **Keyed by persona**, event-driven (no 30-s polling): an Application event maps to the persona it binds
  to (old and new object on an update, the last known one on a delete); a persona event maps to every
  persona with the same ``spec.name`` (another one appearing can make a fallback ambiguous).
* **Binding.** App name = label ``app.kubernetes.io/name``, else label ``app``, else the Application's
  name (an empty label value counts as absent). The persona with that ``spec.name`` in the destination
  namespace (first by name); otherwise the one persona with that ``spec.name`` in all namespaces — only
  when exactly one exists (never any one of several: that would bind unrelated namespaces by accident).
  Several Applications binding one persona: the first by namespace/name wins, deterministically.
* **Status** ``status.argoCD`` (syncStatus, healthStatus, revision — multi-source ``revisions`` joined
  with ``,`` —, lastSyncTime from ``operationState.finishedAt``, applicationName/Namespace) is written
  with server-side apply on the status subresource under field manager ``dorgu-argocd``: it owns only
  that subtree, so it never touches the ApplicationPersona controller's fields and vice versa. Values
  outside the CRD enums become ``Unknown``. With no Application bound any more the field is cleared by
  applying a status without it (when ``argoCD`` was all the status held, the server refuses the then
  empty status, and a JSON patch removes the field instead). Nothing is written when what it reports is
  unchanged (Argo CD touches its Applications every few minutes).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from controllers.component import drop_managed_fields, run_controller
from controllers.settings import ArgoCDSettings
from dorgu.domain.kube import ArgoApplication
from dorgu.domain.resources import APP_LABEL, APPLICATION_PERSONAS, NAME_LABEL
from dorgu.domain.types import API_VERSION, ApplicationPersona, ArgoCDStatus
from dorgu.runtime.clock import Clock
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.controller import Controller, ControllerSettings, Request, Result, generation_changed
from dorgu.runtime.errors import Invalid, NotFound
from dorgu.runtime.events import EventRecorder, ObjectReference
from dorgu.runtime.informer import Informer
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import Resource

log = logging.getLogger("dorgu.argocd")

FIELD_MANAGER = "dorgu-argocd"
NAME = "argocd"
LEASE_NAME = "dorgu-argocd"

APPLICATIONS = Resource(
    group="argoproj.io", version="v1alpha1", plural="applications", kind="Application", namespaced=True
)
BY_NS_NAME = "ns-spec-name"
BY_NAME = "spec-name"
BY_APP_NAME = "app-name"
SYNC_STATUSES = frozenset({"Synced", "OutOfSync", "Unknown"})
HEALTH_STATUSES = frozenset({"Healthy", "Degraded", "Progressing", "Suspended", "Missing", "Unknown"})


def app_name(app: ArgoApplication) -> str:
    """Label ``app.kubernetes.io/name``, else label ``app``, else ``metadata.name`` (empty values skipped)."""
    labels = app.metadata.labels or {}
    return labels.get(NAME_LABEL) or labels.get(APP_LABEL) or app.metadata.name or ""


def _parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text)
    except ValueError:
        return None
    if t.tzinfo is None:
        return None
    return t.astimezone(UTC).replace(microsecond=0)


def argo_status(app: ArgoApplication) -> ArgoCDStatus:
    """What the persona shows of an Application (CRD enums enforced)."""
    st = app.status
    sync = st.sync if st else None
    health = st.health if st else None
    op = st.operation_state if st else None
    sync_status = sync.status if sync and sync.status in SYNC_STATUSES else "Unknown"
    health_status = health.status if health and health.status in HEALTH_STATUSES else "Unknown"
    revisions = [r for r in ((sync.revisions if sync else None) or []) if r]
    revision = ",".join(revisions) if revisions else ((sync.revision if sync else None) or None)
    return ArgoCDStatus(
        sync_status=sync_status,
        health_status=health_status,
        last_sync_time=_parse_time(op.finished_at if op else None),
        revision=revision,
        application_name=app.metadata.name,
        application_namespace=app.metadata.namespace,
    )


def _comparable(s: ArgoCDStatus | None) -> Any:
    if s is None:
        return None
    if s.last_sync_time is not None:
        s = msgspec.structs.replace(s, last_sync_time=s.last_sync_time.astimezone(UTC).replace(microsecond=0))
    return msgspec.to_builtins(s)


class ArgoCDReconciler:
    """Mirrors Argo CD Applications into ApplicationPersonas' ``status.argoCD``."""

    def __init__(
        self,
        *,
        manager: Manager,
        settings: ArgoCDSettings,
        events: EventRecorder | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.m = manager
        self.s = settings
        self.events = events
        self.clock = clock or manager.clock
        self.scope = namespace_scope(settings.namespaces)
        """The namespaces watched (None: every one). Applications are watched in them too, so with
        ``--namespaces`` the Argo CD namespace must be one of them for Applications to be seen."""
        self.personas: Informer[ApplicationPersona] = manager.informer(
            APPLICATION_PERSONAS,
            ApplicationPersona,
            namespace=self.scope,
            indexers={
                BY_NS_NAME: lambda p: [f"{p.metadata.namespace}/{p.spec.name}"],
                BY_NAME: lambda p: [p.spec.name],
            },
            transform=drop_managed_fields,
        )
        self.apps: Informer[ArgoApplication] | None = None
        """The Application informer, once the CRD is served."""
        self.controller = Controller(
            settings=ControllerSettings(name=NAME, workers=settings.workers),
            reconcile=self.reconcile,
            clock=self.clock,
        )
        self.controller.watch_mapped(self.personas, self._peers, update_predicate=generation_changed)
        manager.add_controller(self.controller)
        manager.add_runnable(self._watch_applications, group=RunnableGroup.OTHERS)
        self.writes = 0
        """Status writes made (observable by tests)."""

    # -- Application informer, once the CRD exists ----------------------------------------------------------

    async def _watch_applications(self) -> None:
        """In the others group (every replica, once the caches have synced, whether leading or not): wait
        until discovery serves the Application CRD, then take the Application informer from the manager
        (started at once; a follower's cache is warm when it takes over) and look at every persona."""
        logged = False
        while True:
            try:
                if await self.m.client.served(group="argoproj.io", version="v1alpha1", plural="applications"):
                    break
                if not logged:
                    log.info(
                        "Argo CD integration waiting: Application CRD (argoproj.io/v1alpha1) not found in "
                        "cluster; checking again every %.0f s",
                        self.s.crd_poll_interval_s,
                    )
                    logged = True
            except Exception as e:  # discovery failing is no reason to die: ask again
                log.warning("discovery of argoproj.io/v1alpha1 failed: %s", e)
            await self.clock.sleep(self.s.crd_poll_interval_s)
        apps: Informer[ArgoApplication] = self.m.informer(
            APPLICATIONS,
            ArgoApplication,
            namespace=self.scope,
            indexers={BY_APP_NAME: lambda a: [app_name(a)]},
            transform=drop_managed_fields,
        )
        self.controller.watch_mapped(apps, self._persona_of_app)
        self.apps = apps
        await apps.wait_for_sync()
        await self.personas.wait_for_sync()
        log.info("Argo CD integration enabled: watching Applications")
        # Events mapped before both caches were complete may have missed a persona: look at them all.
        for p in self.personas.store.list():
            self.controller.enqueue(Request.for_object(p))

    # -- mapping --------------------------------------------------------------------------------------------

    def _peers(self, p: ApplicationPersona) -> list[Request]:
        return [Request.for_object(x) for x in self.personas.store.by_index(BY_NAME, p.spec.name)] + [
            Request.for_object(p)
        ]

    def target(self, app: ArgoApplication) -> Request | None:
        """The persona ``app`` binds to (see the module docstring), or None."""
        name = app_name(app)
        if not name:
            return None
        dest = app.spec.destination.namespace if app.spec and app.spec.destination else None
        if dest:
            here = self.personas.store.by_index(BY_NS_NAME, f"{dest}/{name}")
            if here:
                return Request.for_object(min(here, key=lambda p: p.metadata.name or ""))
        anywhere = self.personas.store.by_index(BY_NAME, name)
        if len(anywhere) == 1:
            return Request.for_object(anywhere[0])
        return None

    def _persona_of_app(self, app: ArgoApplication) -> list[Request]:
        t = self.target(app)
        return [t] if t else []

    # -- reconcile ------------------------------------------------------------------------------------------

    async def reconcile(self, req: Request) -> Result | None:
        apps = self.apps
        if apps is None or not apps.has_synced():
            return None  # enqueued again once the Application cache is complete
        persona = self.personas.store.get(req.key)
        if persona is None:
            return None
        bound = sorted(
            (a for a in apps.store.by_index(BY_APP_NAME, persona.spec.name) if self.target(a) == req),
            key=lambda a: (a.metadata.namespace or "", a.metadata.name or ""),
        )
        desired = argo_status(bound[0]) if bound else None
        current = persona.status.argo_cd if persona.status else None
        if _comparable(current) == _comparable(desired):
            return None
        status: dict[str, Any] = {"argoCD": msgspec.to_builtins(desired)} if desired else {}
        body = {
            "apiVersion": API_VERSION,
            "kind": "ApplicationPersona",
            "metadata": {"name": req.name, "namespace": req.namespace},
            "status": status,
        }
        try:
            await self._write(req, body, clear=desired is None)
        except NotFound:
            return None  # deleted meanwhile
        self.writes += 1
        if desired is None:
            log.info("cleared argoCD status", extra={"persona": req.key})
        else:
            log.info(
                "argoCD status written",
                extra={"persona": req.key, "sync": desired.sync_status, "health": desired.health_status},
            )
        if self.events is not None and len(bound) > 1:
            others = ", ".join(f"{a.metadata.namespace}/{a.metadata.name}" for a in bound[1:])
            self.events.record(
                ObjectReference.of(persona, resource=APPLICATION_PERSONAS),
                type="Warning", reason="MultipleApplications",
                message=f"Showing Application {bound[0].metadata.namespace}/{bound[0].metadata.name}; "
                f"also bound: {others}",
            )  # fmt: skip
        return None

    async def _write(self, req: Request, body: dict[str, Any], *, clear: bool) -> None:
        try:
            await self.m.client.apply(
                APPLICATION_PERSONAS, body, name=req.name, namespace=req.namespace,
                field_manager=FIELD_MANAGER, subresource="status", decode=False,
            )  # fmt: skip
        except Invalid:
            if not clear:
                raise
            # Nothing but argoCD in the status: the server refuses to leave ``status`` empty (null) after
            # the apply. Remove the field with a JSON patch instead (guarded: only while it is ours).
            await self.m.client.patch(
                APPLICATION_PERSONAS, req.name, [{"op": "remove", "path": "/status/argoCD"}],
                namespace=req.namespace, patch_type="json", subresource="status", field_manager=FIELD_MANAGER,
                decode=False,
            )  # fmt: skip


async def run(ctx: ComponentContext) -> None:
    """The component's entry point (a child process of the supervisor)."""
    settings = msgspec.convert(dict(ctx.options), type=ArgoCDSettings)
    await run_controller(
        ctx,
        name=NAME,
        lease_name=LEASE_NAME,
        lease=settings,
        build=lambda m, ev: ArgoCDReconciler(manager=m, settings=settings, events=ev),
    )
