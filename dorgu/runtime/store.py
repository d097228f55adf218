"""An indexed object cache (client-go's Indexer / ThreadSafeStore, for one event loop).

Keys are ``namespace/name`` (``name`` for cluster-scoped objects). Indexers map an object to the index
values it is filed under; lookups by index are O(1) plus the size of the answer. Objects handed out are
shared, not copied: treat them as read-only (dorgu's wire types are msgspec Structs; replace, never mutate).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Generic, Protocol, TypeVar


class KubeObject(Protocol):
    @property
    def metadata(self) -> Any: ...


T = TypeVar("T", bound=KubeObject)
IndexFunc = Callable[[Any], Iterable[str]]

NAMESPACE_INDEX = "namespace"


def object_key(obj: KubeObject) -> str:
    """``namespace/name``, or ``name`` for a cluster-scoped object (client-go MetaNamespaceKeyFunc)."""
    meta = obj.metadata
    return f"{meta.namespace}/{meta.name}" if meta.namespace else str(meta.name)


def namespace_index(obj: KubeObject) -> Iterable[str]:
    ns = obj.metadata.namespace
    return (ns,) if ns else ()


class Store(Generic[T]):
    """key → object, plus indices: index name → value → keys."""

    def __init__(self, *, indexers: dict[str, IndexFunc] | None = None) -> None:
        self._items: dict[str, T] = {}
        self._indexers: dict[str, IndexFunc] = {NAMESPACE_INDEX: namespace_index, **(indexers or {})}
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: str) -> bool:
        return key in self._items

    def get(self, key: str) -> T | None:
        return self._items.get(key)

    def keys(self) -> list[str]:
        return list(self._items)

    def list(self) -> list[T]:
        return list(self._items.values())

    def by_index(self, index: str, value: str) -> list[T]:
        keys = self._indices[index].get(value, ())
        return [self._items[k] for k in keys]

    def index_values(self, index: str) -> list[str]:
        """The values ``index`` holds now, each for at least one object (client-go ListIndexFuncValues)."""
        return list(self._indices[index])

    def put(self, key: str, obj: T) -> T | None:
        """Insert or replace; returns the previous object (None if new)."""
        old = self._items.get(key)
        if old is not None:
            self._unindex(key, old)
        self._items[key] = obj
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            for value in fn(obj):
                idx.setdefault(value, set()).add(key)
        return old

    def pop(self, key: str) -> T | None:
        old = self._items.pop(key, None)
        if old is not None:
            self._unindex(key, old)
        return old

    def _unindex(self, key: str, obj: T) -> None:
        for name, fn in self._indexers.items():
            idx = self._indices[name]
            for value in fn(obj):
                keys = idx.get(value)
                if keys is not None:
                    keys.discard(key)
                    if not keys:
                        del idx[value]
