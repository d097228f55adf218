"""The kopf peer: the ApplicationPersona controller's observable work, written the way a kopf user would.

Benchmarks only (``dorgu bench --peers kopf``). kopf does what kopf does — the watches, its in-memory index
of Deployments by app, the dispatch of handlers per object, Events — and the persona check itself is
dorgu's (``dorgu.domain``: the same rules, health, phase and conditions), so that the two differ in their
runtimes and nothing else.

The handlers:

* ``@kopf.index`` on Deployments: ``(namespace, app)`` → the Deployments (both ``app.kubernetes.io/name``
  and ``app``, like dorgu's index);
* ``@kopf.on.event`` on personas and on Deployments: check the persona (for a Deployment: the personas of
  its app) and write its status when it changed or a heartbeat is due — dorgu's write-skipping rule;
* ``@kopf.timer`` on personas every ``--revalidate-interval`` seconds: the periodic re-validation.

kopf settings, written down as the issue asks:

* no posting of progress or logs as Events (``posting.enabled = False``) and no handler progress stored on
  the objects (only event, index and timer handlers are used, which keep no state on the object);
* watch timeouts as kopf's documentation recommends for long-running operators: ``server_timeout`` 600 s,
  ``client_timeout`` 660 s (a little longer than the server's), ``connect_timeout`` 60 s;
* standalone (no peering); ``batching.worker_limit`` left at kopf's default (no limit: one worker per
  object). A limit deadlocks with an index: handlers wait until every Deployment is indexed, and indexing
  needs the workers the waiting handlers hold. ``--workers`` is accepted for the bench's command line and
  ignored.

The status write is the one dorgu makes (server-side apply of ``/status`` with dorgu's field manager,
through dorgu's client): kopf has no public API to patch an object other than the one whose event is
being handled, and a Deployment's event must update its persona. Events go through ``kopf.event``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import kopf
import msgspec

from controllers.applicationpersona import CONDITION_TYPES, FIELD_MANAGER, _without_timestamps
from dorgu.domain.health import assess
from dorgu.domain.kube import Deployment
from dorgu.domain.resources import APP_LABEL, APPLICATION_PERSONAS, NAME_LABEL
from dorgu.domain.rules import matching_deployments
from dorgu.domain.types import API_VERSION, ApplicationPersona, ApplicationPersonaStatus, DeploymentTracking
from dorgu.runtime.client import ApiClient
from dorgu.runtime.conditions import status_time
from dorgu.runtime.kubeconfig import resolve

ARGS: argparse.Namespace
CLIENT: ApiClient
PERSONAS: dict[tuple[str, str], dict[str, Any]] = {}  # (namespace, name) -> the latest body seen
LOCKS: dict[tuple[str, str], asyncio.Lock] = {}  # one check of a persona at a time


class _RVMeta(msgspec.Struct, rename="camel"):
    resource_version: str | None = None


class _RVOnly(msgspec.Struct):
    metadata: _RVMeta


@kopf.on.startup()
async def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    global CLIENT
    settings.posting.enabled = False
    settings.watching.server_timeout = 600
    settings.watching.client_timeout = 660
    settings.watching.connect_timeout = 60
    access = resolve(kubeconfig=ARGS.kubeconfig, context=ARGS.context, run_dir=ARGS.run_dir,
                     user_agent="kopf-peer")  # fmt: skip
    CLIENT = ApiClient(access.connection)


@kopf.on.cleanup()
async def close(**_: Any) -> None:
    await CLIENT.close()


@kopf.index("apps", "v1", "deployments")
def deployments_by_app(body: kopf.Body, namespace: str, **_: Any) -> dict[tuple[str, str], Any]:
    labels = body.get("metadata", {}).get("labels") or {}
    apps = {labels[k] for k in (NAME_LABEL, APP_LABEL) if labels.get(k)}
    return {(namespace, app): dict(body) for app in apps}


@kopf.on.event("dorgu.io", "v1", "applicationpersonas")
async def persona_event(type: str, body: kopf.Body, deployments_by_app: Any, **_: Any) -> None:
    key = (body["metadata"]["namespace"], body["metadata"]["name"])
    if type == "DELETED":
        PERSONAS.pop(key, None)
        return
    PERSONAS[key] = dict(body)
    await check(key, deployments_by_app)


@kopf.on.event("apps", "v1", "deployments")
async def deployment_event(body: kopf.Body, deployments_by_app: Any, **_: Any) -> None:
    ns = body["metadata"]["namespace"]
    labels = body.get("metadata", {}).get("labels") or {}
    apps = {labels[k] for k in (NAME_LABEL, APP_LABEL) if labels.get(k)}
    for key, persona in list(PERSONAS.items()):
        if key[0] == ns and (persona.get("spec") or {}).get("name") in apps:
            await check(key, deployments_by_app)


async def revalidate(body: kopf.Body, deployments_by_app: Any, **_: Any) -> None:
    await check((body["metadata"]["namespace"], body["metadata"]["name"]), deployments_by_app)


def _lean(body: dict[str, Any]) -> dict[str, Any]:
    """The body without managedFields (dorgu's caches drop them too)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {**body, "metadata": meta}


async def check(key: tuple[str, str], index: Any) -> None:
    lock = LOCKS.setdefault(key, asyncio.Lock())
    async with lock:
        raw = PERSONAS.get(key)
        if raw is None:
            return
        persona = msgspec.convert(_lean(raw), ApplicationPersona, strict=False)
        ns, name = key
        found = index.get((ns, persona.spec.name), [])
        candidates = [msgspec.convert(_lean(d), Deployment, strict=False) for d in found]
        deployments = matching_deployments(persona.spec.name, candidates)
        now = status_time(datetime.now(UTC))
        old = persona.status or ApplicationPersonaStatus()
        gen = persona.metadata.generation
        mine = [c for c in (old.conditions or []) if c.type in CONDITION_TYPES]
        a = assess(persona.spec, deployments, now=now, conditions=mine, generation=gen)
        tracking = a.deployments
        if tracking is None and old.deployments and old.deployments.current is not None:
            tracking = DeploymentTracking(current=old.deployments.current)
        new = ApplicationPersonaStatus(
            observed_generation=gen, phase=a.phase, last_updated=a.last_updated, deployments=tracking,
            health=a.health, validation=a.validation, conditions=a.conditions,
        )  # fmt: skip
        last = old.validation.last_checked if old.validation else None
        heartbeat_due = last is None or now - last >= timedelta(seconds=ARGS.heartbeat_interval)
        if not heartbeat_due and _without_timestamps(old) == _without_timestamps(new):
            return
        body = {
            "apiVersion": API_VERSION, "kind": "ApplicationPersona",
            "metadata": {"name": name, "namespace": ns}, "status": msgspec.to_builtins(new),
        }  # fmt: skip
        await CLIENT.apply(APPLICATION_PERSONAS, body, name=name, namespace=ns, field_manager=FIELD_MANAGER,
                           subresource="status", type=_RVOnly)  # fmt: skip
        # The cache (PERSONAS) shows the write when its watch event arrives; until then this is the status.
        raw["status"] = msgspec.to_builtins(new)
        _events(raw, old, new)


def _events(raw: dict[str, Any], old: ApplicationPersonaStatus, new: ApplicationPersonaStatus) -> None:
    was = old.validation.passed if old.validation else None
    now_passed = new.validation.passed if new.validation else None
    if was is not False and now_passed is False:
        n = len([i for i in (new.validation.issues or []) if i.severity == "error"]) if new.validation else 0
        kopf.event(raw, type="Warning", reason="ValidationFailed", message=f"{n} validation error(s) found")
    elif was is False and now_passed is True:
        kopf.event(raw, type="Normal", reason="ValidationPassed", message="All validations passed")
    if old.phase and old.phase != new.phase:
        kind = "Normal" if new.phase in ("Active", "Pending") else "Warning"
        kopf.event(
            raw, type=kind, reason="PhaseChanged", message=f"Phase changed from {old.phase} to {new.phase}"
        )


def main() -> int:
    global ARGS
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kubeconfig", required=True)
    p.add_argument("--context")
    p.add_argument("--namespace", required=True)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--heartbeat-interval", type=float, default=15.0)
    p.add_argument("--revalidate-interval", type=float, default=7.5)
    p.add_argument("--metrics-bind-address", help="accepted for the bench's command line and ignored")
    ARGS = p.parse_args()
    import tempfile
    from pathlib import Path

    ARGS.run_dir = Path(tempfile.mkdtemp(prefix="kopf-peer-"))
    # Registered here: its interval is a flag (±10 % jitter, as dorgu's requeue).
    kopf.timer("dorgu.io", "v1", "applicationpersonas", interval=ARGS.revalidate_interval,
               initial_delay=ARGS.revalidate_interval * random.random())(revalidate)  # fmt: skip
    logging.basicConfig(level=os.environ.get("KOPF_PEER_LOG", "WARNING"))

    @kopf.on.login()
    def login(**kwargs: Any) -> Any:
        return kopf.login_with_kubeconfig(**kwargs)

    os.environ["KUBECONFIG"] = ARGS.kubeconfig
    if ARGS.context:
        os.environ["KUBECONTEXT"] = ARGS.context
    asyncio.run(kopf.operator(standalone=True, namespaces=[ARGS.namespace], clusterwide=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
