"""One cache over several namespaces (controller-runtime's multi-namespace cache): an informer per namespace,
all feeding one store.

An operator limited to some namespaces (``dorgu operator --namespaces=a,b``) must never LIST or WATCH a
namespaced kind cluster-wide — with namespaced RBAC (Roles per namespace) it is not allowed to. Rules kept:

* One :class:`~dorgu.runtime.informer.Informer` per namespace, each with its own reflector (its own
  resourceVersion, relists, backoff), sharing one :class:`~dorgu.runtime.store.Store`; each owns only its
  namespace's keys, so one namespace's relist never delivers deletes of another's objects.
* To its users it is one informer: one store (with the indexers), handlers registered once (each part
  calls them for its namespace's changes), synced when every part has synced.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock
from dorgu.runtime.informer import Handlers, Informer, InformerSettings, Selector
from dorgu.runtime.meta import ItemDecodeError, Keep
from dorgu.runtime.resource import Resource
from dorgu.runtime.store import IndexFunc, KubeObject, Store

T = TypeVar("T", bound=KubeObject)


def namespace_scope(value: str | Iterable[str] | None) -> tuple[str, ...] | None:
    """A namespaces option as a scope: a comma-separated string or a list, blanks dropped, duplicates
    removed, in order; None when it names none (every namespace)."""
    items = value.split(",") if isinstance(value, str) else (value or ())
    out = tuple(dict.fromkeys(n.strip() for n in items if n.strip()))
    return out or None


class MultiNamespaceInformer(Generic[T]):
    """The informer interface (:attr:`store`, :meth:`add_handlers`, :meth:`has_synced`,
    :meth:`wait_for_sync`, :meth:`run`) over one informer per namespace of ``namespaces``."""

    def __init__(
        self,
        client: ApiClient,
        resource: Resource,
        *,
        item_type: type[T],
        namespaces: tuple[str, ...],
        label_selector: Selector = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Callable[[T], T] | None = None,
        keep: Keep | None = None,
        settings: InformerSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not resource.namespaced:
            raise ValueError(f"{resource} is cluster-scoped: it has no namespaces to limit a cache to")
        self.resource = resource
        self.namespaces = namespaces
        self.store: Store[T] = Store(indexers=indexers)
        self.parts: list[Informer[T]] = []
        for ns in namespaces:
            part = Informer(
                client, resource, item_type=item_type, namespace=ns, label_selector=label_selector,
                field_selector=field_selector, transform=transform, keep=keep, settings=settings,
                clock=clock, rng=rng, store=self.store,
            )  # fmt: skip
            self.parts.append(part)

    @property
    def undecodable(self) -> dict[str, ItemDecodeError]:
        """Objects of every namespace that do not decode (see :attr:`Informer.undecodable`)."""
        out: dict[str, ItemDecodeError] = {}
        for part in self.parts:
            out.update(part.undecodable)
        return out

    @property
    def last_sync_rv(self) -> str:
        """The newest resourceVersion any part has seen (all come from one etcd; "" before any LIST). A
        token for "the cache as it is now", as a single informer's is."""
        rvs = [part.last_sync_rv for part in self.parts if part.last_sync_rv]
        return max(rvs, key=lambda rv: (len(rv), rv)) if rvs else ""

    @property
    def lists(self) -> int:
        """LISTs made by all parts."""
        return sum(part.lists for part in self.parts)

    def add_handlers(self, handlers: Handlers[T]) -> None:
        for part in self.parts:
            part.add_handlers(handlers)

    # A filtered cache (``keep``): fetched objects go to the part of their namespace, which alone keeps its
    # keys (see Informer.admit / forget).

    def begin_admit(self) -> None:
        for part in self.parts:
            part.begin_admit()

    def end_admit(self) -> None:
        for part in self.parts:
            part.end_admit()

    def admit(self, items: list[T]) -> int:
        by_ns: dict[str, list[T]] = {}
        for obj in items:
            by_ns.setdefault(obj.metadata.namespace or "", []).append(obj)  # type: ignore[attr-defined]
        return sum(part.admit(by_ns.get(part.namespace or "", [])) for part in self.parts)

    def forget(self, keys: list[str]) -> None:
        for part in self.parts:
            prefix = f"{part.namespace}/"
            part.forget([k for k in keys if k.startswith(prefix)])

    def has_synced(self) -> bool:
        return all(part.has_synced() for part in self.parts)

    async def rewatch(self) -> None:
        """:meth:`Informer.rewatch` of every part."""
        await asyncio.gather(*(part.rewatch() for part in self.parts))

    async def wait_for_sync(self) -> None:
        await asyncio.gather(*(part.wait_for_sync() for part in self.parts))

    async def run(self) -> None:
        """Run every part until cancelled (a part never ends on its own: it backs off and retries)."""
        async with asyncio.TaskGroup() as tg:
            for part in self.parts:
                tg.create_task(part.run(), name=f"informer:{self.resource}:{part.namespace}")
