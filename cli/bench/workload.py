"""What ``dorgu bench`` puts on the server, and how it watches it converge.

N personas ``app<i>``, each with one matching Deployment whose status a **kubelet stand-in** writes (no
kubelet runs on the local control plane). Completion is always counted from a watch (an :class:`Informer`
of this process), never by polling LISTs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import msgspec

from dorgu.domain.resources import APPLICATION_PERSONAS
from dorgu.runtime.client import ApiClient
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import DEPLOYMENTS

FIRST_IMAGE = "app:1"


def persona(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": f"app{i}"},
        "spec": {
            "name": f"app{i}", "type": "api",
            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
            "scaling": {"minReplicas": 1, "maxReplicas": 3},
            "policies": {"security": {}},
        },
    }  # fmt: skip


def deployment(i: int, image: str) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": f"app{i}", "labels": {"app.kubernetes.io/name": f"app{i}"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"pod": f"app{i}"}},
            "template": {
                "metadata": {"labels": {"pod": f"app{i}"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": True},
                    "containers": [{
                        "name": "app", "image": image,
                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                      "limits": {"cpu": "500m", "memory": "512Mi"}},
                        "securityContext": {"readOnlyRootFilesystem": True,
                                            "allowPrivilegeEscalation": False},
                    }],
                },
            },
        },
    }  # fmt: skip


def image_patch(image: str) -> dict[str, Any]:
    """A strategic-merge patch changing the Deployment's (only) container image."""
    return {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}}


async def gather_bounded(aws: list[Awaitable[Any]], limit: int = 48) -> None:
    sem = asyncio.Semaphore(limit)

    async def one(a: Awaitable[Any]) -> None:
        async with sem:
            await a

    await asyncio.gather(*(one(a) for a in aws))


async def seed(
    client: ApiClient, namespace: str, n: int, *, progress: Callable[[int], None] | None = None
) -> None:
    """N personas + N Deployments in ``namespace`` (which must exist), every Deployment marked ready."""
    done = 0

    async def counted(a: Awaitable[Any]) -> None:
        nonlocal done
        await a
        done += 1
        if progress:
            progress(done)

    await gather_bounded(
        [counted(client.create(APPLICATION_PERSONAS, persona(i), namespace=namespace)) for i in range(n)]
    )
    await gather_bounded(
        [
            counted(client.create(DEPLOYMENTS, deployment(i, FIRST_IMAGE), namespace=namespace))
            for i in range(n)
        ]
    )
    available = {"type": "Available", "status": "True", "reason": "KubeletStandIn"}
    status = {
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "conditions": [available]}
    }
    # kubelet stand-in: no kubelet runs here, so the bench marks every Deployment ready itself.
    await gather_bounded(
        [
            counted(
                client.patch(
                    DEPLOYMENTS, f"app{i}", status, namespace=namespace, subresource="status", decode=False
                )
            )
            for i in range(n)
        ]
    )


# -- what the bench's own watches decode (partial structs: decoding is this process's main cost) ----------


class _Tracking(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    current: str | None = None


class _Health(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    status: str | None = None
    message: str | None = None


class _Issue(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    severity: str | None = None
    message: str | None = None


class _Validation(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    passed: bool | None = None
    last_checked: datetime | None = None
    issues: list[_Issue] | None = None


class _PersonaStatus(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    observed_generation: int | None = None
    phase: str | None = None
    deployments: _Tracking | None = None
    health: _Health | None = None
    validation: _Validation | None = None


class PersonaView(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """The parts of an ApplicationPersona the bench reads."""

    metadata: ObjectMeta
    status: _PersonaStatus | None = None


class _Container(msgspec.Struct, omit_defaults=True, kw_only=True):
    name: str | None = None
    image: str | None = None


class _PodSpec(msgspec.Struct, omit_defaults=True, kw_only=True):
    containers: list[_Container] | None = None


class _Template(msgspec.Struct, omit_defaults=True, kw_only=True):
    spec: _PodSpec | None = None


class _DeploymentSpec(msgspec.Struct, omit_defaults=True, kw_only=True):
    template: _Template | None = None


class DeploymentView(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """The parts of a Deployment the bench reads."""

    metadata: ObjectMeta
    spec: _DeploymentSpec | None = None


def _drop_managed_fields(obj: Any) -> Any:
    if obj.metadata.managed_fields is None:
        return obj
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(obj.metadata, managed_fields=None))


def persona_informer(client: ApiClient, namespace: str) -> Informer[PersonaView]:
    return Informer(
        client,
        APPLICATION_PERSONAS,
        item_type=PersonaView,
        namespace=namespace,
        transform=_drop_managed_fields,
    )


def deployment_informer(client: ApiClient, namespace: str) -> Informer[DeploymentView]:
    return Informer(
        client, DEPLOYMENTS, item_type=DeploymentView, namespace=namespace, transform=_drop_managed_fields
    )


def image_of(d: DeploymentView) -> str | None:
    cs = d.spec.template.spec.containers if d.spec and d.spec.template and d.spec.template.spec else None
    return cs[0].image if cs else None


def current_of(p: PersonaView) -> str | None:
    return p.status.deployments.current if p.status and p.status.deployments else None


def validated(p: PersonaView) -> bool:
    return bool(p.status and p.status.validation and p.status.validation.last_checked and p.status.phase)


def shows(image: str) -> Callable[[PersonaView], bool]:
    return lambda p: current_of(p) == image


def substance(p: PersonaView) -> Any:
    """A persona's status without its timestamps: two writes with equal substance differ only in time."""
    s = p.status
    if s is None:
        return None
    v, h = s.validation, s.health
    return (
        s.observed_generation,
        s.phase,
        current_of(p),
        (h.status, h.message) if h else None,
        (v.passed, [(i.severity, i.message) for i in v.issues or []]) if v else None,
    )


def last_checked(p: PersonaView) -> datetime | None:
    return p.status.validation.last_checked if p.status and p.status.validation else None


class Progress:
    """Counts personas that satisfy a predicate, from a watch (an informer's events)."""

    def __init__(self, informer: Informer[PersonaView], n: int) -> None:
        self.informer, self.n = informer, n
        self.pred: Callable[[PersonaView], bool] = lambda p: False
        self.done: set[str] = set()
        self.complete = asyncio.Event()
        self.first_at: float | None = None
        self.last_at: float | None = None
        informer.add_handlers(Handlers(on_add=self._see, on_update=lambda o, p: self._see(p)))

    def expect(self, pred: Callable[[PersonaView], bool]) -> None:
        self.pred, self.done, self.first_at, self.last_at = pred, set(), None, None
        self.complete.clear()
        for p in self.informer.store.list():
            self._see(p)

    def _see(self, p: PersonaView) -> None:
        if self.pred(p):
            now = time.monotonic()
            if self.first_at is None:
                self.first_at = now
            name = p.metadata.name or ""
            if name not in self.done:
                self.done.add(name)
                self.last_at = now
            if len(self.done) >= self.n:
                self.complete.set()
