"""Generic Kubernetes object metadata as msgspec Structs.

This module knows nothing about any particular resource kind. It models the parts of the
Kubernetes wire format that every object shares (``ObjectMeta``, ``ListMeta``, ``OwnerReference``,
``metav1.Condition`` and the ``Status`` error object) and decodes List responses item by item, so
that one malformed object does not make a whole LIST fail.

Conventions shared with the domain Structs:

* camelCase on the wire (``rename="camel"``), snake_case in Python;
* ``omit_defaults=True`` with ``None`` as the default of every optional field, so that a value
  that is present (including ``False``, ``0``, ``""`` and ``[]``) is always serialised and an
  absent one stays absent;
* sub-trees that are not modelled but must survive a round trip (``managedFields`` entries,
  ``Status.details``) are kept as ``msgspec.Raw``.
"""

import functools
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

import msgspec

__all__ = [
    "Condition",
    "ItemDecodeError",
    "ListMeta",
    "ListPage",
    "ObjectMeta",
    "OwnerReference",
    "Status",
    "decode_list",
    "decode_list_page",
]

T = TypeVar("T")


class OwnerReference(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``metav1.OwnerReference``."""

    api_version: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    block_owner_deletion: bool | None = None


class ObjectMeta(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``metav1.ObjectMeta``.

    Timestamps are decoded as timezone-aware ``datetime``; the API server writes them as RFC 3339
    with second precision in UTC, which msgspec re-encodes identically.
    """

    name: str | None = None
    generate_name: str | None = None
    namespace: str | None = None
    self_link: str | None = None
    uid: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    creation_timestamp: datetime | None = None
    deletion_timestamp: datetime | None = None
    deletion_grace_period_seconds: int | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    owner_references: list[OwnerReference] | None = None
    finalizers: list[str] | None = None
    # Removed from the API in 1.24, still served (when set) by older servers such as 1.20.
    cluster_name: str | None = None
    # Server-side-apply bookkeeping: opaque to us, but must survive a read-modify-write.
    managed_fields: list[msgspec.Raw] | None = None


class ListMeta(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``metav1.ListMeta``."""

    self_link: str | None = None
    resource_version: str | None = None
    continue_: str | None = msgspec.field(default=None, name="continue")
    remaining_item_count: int | None = None


class Condition(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``metav1.Condition`` (the standard status condition)."""

    type: str
    status: str
    last_transition_time: datetime
    reason: str
    message: str
    observed_generation: int | None = None


class Status(msgspec.Struct, rename="camel", omit_defaults=True, kw_only=True):
    """``metav1.Status``: the body of an API error (and of some DELETE responses).

    ``details`` is kept verbatim; an empty ``msgspec.Raw()`` means it was absent.
    """

    kind: str | None = None
    api_version: str | None = None
    metadata: ListMeta | None = None
    status: str | None = None
    message: str | None = None
    reason: str | None = None
    details: msgspec.Raw = msgspec.Raw()
    code: int | None = None


class ItemDecodeError(msgspec.Struct, frozen=True, kw_only=True):
    """One List item that did not decode into the requested type."""

    index: int
    name: str | None
    namespace: str | None
    message: str
    raw: bytes = b""
    """The item as the server sent it (JSON), for a caller that must still read some of it."""

    @property
    def key(self) -> str:
        """``namespace/name`` (``name`` when cluster-scoped), as :func:`~dorgu.runtime.store.object_key`
        keys an object; ``#<index>`` when the item's name cannot be read."""
        if self.name is None:
            return f"#{self.index}"
        return f"{self.namespace}/{self.name}" if self.namespace else self.name


class ListPage(msgspec.Struct, Generic[T], frozen=True, kw_only=True):
    """A decoded List response: its metadata, the items that decoded and the ones that did not."""

    metadata: ListMeta
    items: list[T]
    errors: list[ItemDecodeError]


class _RawList(msgspec.Struct, rename="camel", kw_only=True):
    metadata: ListMeta | None = None
    items: list[msgspec.Raw] | None = None


class _NameOnly(msgspec.Struct, kw_only=True):
    metadata: Any = None


_list_decoder = msgspec.json.Decoder(_RawList)
_name_decoder = msgspec.json.Decoder(_NameOnly)


@functools.lru_cache(maxsize=128)
def _item_decoder(item_type: Any) -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(item_type)


def _identify(raw: msgspec.Raw) -> tuple[str | None, str | None]:
    """Best-effort ``(name, namespace)`` of an item that failed to decode."""
    try:
        meta = _name_decoder.decode(raw).metadata
    except msgspec.DecodeError:
        return None, None
    if not isinstance(meta, dict):
        return None, None
    name = meta.get("name")
    namespace = meta.get("namespace")
    return (
        name if isinstance(name, str) else None,
        namespace if isinstance(namespace, str) else None,
    )


class ViewMeta(msgspec.Struct, rename="camel"):
    """The metadata a cache filter may read: identity, version, labels and annotations."""

    name: str | None = None
    namespace: str | None = None
    resource_version: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


class MetadataView(msgspec.Struct):
    """An object decoded only as far as :class:`ViewMeta` (msgspec skips the rest without building it):
    what a cache filter (``keep``) is called with, so an object it rejects is never decoded whole."""

    metadata: ViewMeta = msgspec.field(default_factory=ViewMeta)


Keep = Callable[[MetadataView], bool]
"""A cache filter: it reads only the object's :class:`ViewMeta` (a label selector the server cannot
express, e.g. one over a changing set of values)."""

_view_decoder = msgspec.json.Decoder(MetadataView)


def decode_view(raw: bytes | msgspec.Raw) -> MetadataView:
    """An object's :class:`MetadataView` (``msgspec.DecodeError`` when its metadata does not decode)."""
    return _view_decoder.decode(raw)


def view_of(obj: Any) -> MetadataView:
    """The :class:`MetadataView` of an object already decoded (its ``metadata`` read, not copied deep)."""
    m = obj.metadata
    return MetadataView(
        metadata=ViewMeta(
            name=m.name, namespace=m.namespace, resource_version=m.resource_version,
            labels=m.labels, annotations=m.annotations,
        )
    )  # fmt: skip


def decode_list_page(data: bytes, item_type: type[T], *, keep: Keep | None = None) -> ListPage[T]:
    """Decode a Kubernetes List response, decoding each item on its own.

    ``keep``: drop the items it rejects, judged on their :class:`MetadataView` before the item is decoded
    (a rejected item costs a metadata decode, not a full one, and a filtered cache never holds the whole
    list decoded at once: a process's peak memory, which CPython rarely gives back, stays near what it
    keeps). An item whose metadata does not decode is decoded whole, so its error is reported.

    The envelope (``metadata`` and ``items``) must be well formed, otherwise
    ``msgspec.DecodeError`` is raised. An item that does not match ``item_type`` is reported in
    ``errors`` with its index, name and namespace (when they can be read) and msgspec's message;
    the other items are still returned, in order.
    """
    envelope = _list_decoder.decode(data)
    decoder = _item_decoder(item_type)
    items: list[T] = []
    errors: list[ItemDecodeError] = []
    for index, raw in enumerate(envelope.items or ()):
        if keep is not None:
            try:
                if not keep(_view_decoder.decode(raw)):
                    continue
            except msgspec.DecodeError:
                pass  # the full decode below reports it
        try:
            item = decoder.decode(raw)
        except msgspec.DecodeError as exc:  # ValidationError is a subclass
            name, namespace = _identify(raw)
            errors.append(
                ItemDecodeError(index=index, name=name, namespace=namespace, message=str(exc), raw=bytes(raw))
            )
            continue
        items.append(item)
    return ListPage(metadata=envelope.metadata or ListMeta(), items=items, errors=errors)


def decode_list(data: bytes, item_type: type[T]) -> tuple[list[T], list[ItemDecodeError]]:
    """Decode a List response's ``items`` one by one; see :func:`decode_list_page`."""
    page = decode_list_page(data, item_type)
    return page.items, page.errors
