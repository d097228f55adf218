"""An informer: a reflector (LIST + WATCH with client-go's rules) feeding an indexed store and handlers.

Reflector rules kept here (client-go ``tools/cache/reflector.go``):

* The first LIST asks for RV "0" (served from the apiserver's watch cache: cheap, possibly stale). A relist
  after a watch error asks for the last synced RV ("not older than"), unpaginated so the watch cache serves
  it; if *that* LIST answers Expired/410, the next one is a quorum read (RV "") paginated by 500.
* A watch that ends normally (server timeout, EOF) is resumed at once from the last RV without relisting.
  A watch that ends in under 1 s with no events is an error (relist after backoff).
* 410 Gone/Expired on a watch → back off, then relist (the LIST first tries the last RV again).
* 429 and connection refused → back off (at least the 429's ``Retry-After``), then re-watch from the same RV
  — no relist. A stalled stream (:class:`~dorgu.runtime.watch.WatchStalled`) is re-watched from the same RV
  at once: the stall timeout already waited, and the backoff is left untouched.
* Every event's RV is recorded; a BOOKMARK only advances the RV. For a watch started at RV "" or "0" the
  server first sends synthetic ADDED events not in RV order, so their RVs are not recorded until some other
  event type has been seen (``propagateRVFromStart``).
* Backoff: 0.8 s doubling to 30 s with full jitter, reset after 2 min without failures.

Events are applied to the store in arrival order and handlers are called in that order (handlers should only
enqueue keys). A relist diffs the new list against the store: objects missing from it are delivered to
``on_delete`` with their last known state — deletes missed while disconnected are never lost.

A ``keep`` predicate makes a *filtered* cache: an object it rejects is treated as absent (not stored; an
update that makes a stored object fail it is delivered as a delete). Objects it starts accepting later are
not re-sent by the server, so their owner fetches them and hands them to :meth:`Informer.admit`, which keeps
whichever of the fetched and the watched version is newer and never resurrects an object deleted while the
fetch was in flight (deletes seen between :meth:`Informer.begin_admit` and :meth:`Informer.end_admit` are
remembered with their resourceVersion). The server still sends every object, but ``keep`` reads only an
object's metadata (:class:`~dorgu.runtime.meta.MetadataView`), so an object it rejects and the cache does
not hold is decoded only that far, in LISTs and in watch events: a filter splits memory and most of the
decode CPU, not the bytes read.

A label selector may be a callable, evaluated anew by each LIST and each watch request: a cache whose
wanted set changes narrows the server's answers to it (the bytes read then split too).
:meth:`Informer.rewatch` ends the running watch so the next one asks with the selector as it is now,
from the last synced RV.
Objects the wider selector now matches that did not change since are not sent again: whoever widened it
fetches them and hands them to :meth:`Informer.admit` *after* ``rewatch`` returns; from then on the
watch's start RV is at most the fetch's, so every later change reaches the cache by one or the other. The
selector must match everything ``keep`` accepts (a narrower watch would miss their events).

An object the server holds that does not decode into the item type is not in the store, but it is not
forgotten either: :attr:`Informer.undecodable` holds it (with the decoder's message and its raw JSON) from
the LIST that found it until an event of the same key decodes or deletes it. (A watch event that does not
decode ends the watch, so the relist after the backoff records it.)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import aiohttp
import msgspec

from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.errors import ApiError, Gone, TooManyRequests
from dorgu.runtime.meta import ItemDecodeError, Keep, decode_view, view_of
from dorgu.runtime.resource import Resource
from dorgu.runtime.store import NAMESPACE_INDEX, IndexFunc, KubeObject, Store, object_key
from dorgu.runtime.watch import WatchSettings, WatchStalled, watch

T = TypeVar("T", bound=KubeObject)
Selector = str | Callable[[], str | None] | None
"""A label selector, or a callable giving the one to use for the next LIST or watch."""
log = logging.getLogger("dorgu.informer")


@dataclass(frozen=True, kw_only=True)
class InformerSettings:
    """Tuning of an informer (all intervals are settings, short in tests)."""

    watch: WatchSettings = field(default_factory=WatchSettings)
    """How each watch request is made (timeoutSeconds, stall detection, bookmarks)."""
    backoff_initial_s: float = 0.8
    """First retry delay after a failure."""
    backoff_max_s: float = 30.0
    """Largest retry delay."""
    backoff_reset_s: float = 120.0
    """A failure-free stretch this long resets the backoff."""
    quorum_page_size: int = 500
    """Page size of a quorum LIST (RV "")."""
    resync_period_s: float | None = None
    """Re-deliver every cached object as an update this often (None: never)."""


@dataclass
class Handlers(Generic[T]):
    """Callbacks for cache changes; each should be quick (enqueue a key)."""

    on_add: Callable[[T], None] | None = None
    on_update: Callable[[T, T], None] | None = None
    on_delete: Callable[[T], None] | None = None


class _Backoff:
    """client-go's jittered exponential backoff with reset (wait.NewExponentialBackoffManager)."""

    def __init__(self, s: InformerSettings, clock: Clock, rng: random.Random) -> None:
        self._s, self._clock, self._rng = s, clock, rng
        self._delay = s.backoff_initial_s
        self._last = clock.monotonic()

    def next(self) -> float:
        now = self._clock.monotonic()
        if now - self._last > self._s.backoff_reset_s:
            self._delay = self._s.backoff_initial_s
        self._last = now
        d = self._delay
        self._delay = min(self._delay * 2, self._s.backoff_max_s)
        return d * (1 + self._rng.random())  # jitter factor 1.0


class _VeryShortWatch(Exception):
    pass


class Informer(Generic[T]):
    """Keeps :attr:`store` in step with the server for one resource (optionally one namespace/selector)."""

    def __init__(
        self,
        client: ApiClient,
        resource: Resource,
        *,
        item_type: type[T],
        namespace: str | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Callable[[T], T] | None = None,
        keep: Keep | None = None,
        settings: InformerSettings | None = None,
        clock: Clock | None = None,
        rng: random.Random | None = None,
        store: Store[T] | None = None,
    ) -> None:
        """``store``: share a store with other informers of the same resource in other namespaces
        (:class:`~dorgu.runtime.multinamespace.MultiNamespaceInformer`); this one then owns only the keys
        of its namespace — its relists, replays and resyncs touch no other."""
        self.client = client
        self.resource = resource
        self.item_type = item_type
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.keep = keep
        """Cache only objects this accepts, judged on their metadata alone (see the module docstring; a
        ``transform`` must leave what it reads unchanged); None: all."""
        self._admitting = 0
        self._interrupt = asyncio.Event()
        self._rewatched: list[asyncio.Future[None]] = []
        self._watching = False
        self._listing = False
        self._tombstones: dict[str, int] = {}
        self.settings = settings or InformerSettings()
        self.clock = clock or RealClock()
        self.rng = rng or random.Random()
        self.store: Store[T] = store if store is not None else Store(indexers=indexers)
        self._handlers: list[Handlers[T]] = []
        self._decoder = msgspec.json.Decoder(item_type)
        self._synced = asyncio.Event()
        self.last_sync_rv = ""
        self._rv_unavailable = False
        self._label = str(resource)
        # Metric children looked up once: a label lookup per watch event costs more than the event's decode.
        self._m_events: dict[str, object] = {}
        self._m_objects = metrics.INFORMER_OBJECTS.labels(self._label)
        self.lists = 0
        """Number of LISTs made (relists included) — observable by tests."""
        self.events = 0
        """Watch events received, bookmarks included — observable by tests."""
        self.undecodable: dict[str, ItemDecodeError] = {}
        """Objects the server holds that do not decode into ``item_type``, by key (see the module docstring):
        a caller that must not take "not in the store" for "does not exist" looks here."""

    # -- public -------------------------------------------------------------------------------------------

    def add_handlers(self, handlers: Handlers[T]) -> None:
        """Register callbacks; a late registration first receives an add for every cached object."""
        self._handlers.append(handlers)
        if handlers.on_add and self._synced.is_set():
            for obj in self._own():
                handlers.on_add(obj)

    def begin_admit(self) -> None:
        """Before fetching objects for :meth:`admit`: remember deletes from now on."""
        self._admitting += 1

    def end_admit(self) -> None:
        """After :meth:`admit` (or a failed fetch): forget the deletes once no fetch is in flight."""
        self._admitting -= 1
        if self._admitting <= 0:
            self._admitting = 0
            self._tombstones.clear()

    def admit(self, items: list[T]) -> int:
        """Store fetched objects ``keep`` now accepts, unless the cache holds a newer version or saw the
        object deleted since :meth:`begin_admit` (resourceVersions compared as integers, as etcd issues
        them); handlers see them as adds or updates. Returns how many were stored."""
        stored = 0
        for obj in items:
            obj = self.transform(obj) if self.transform else obj
            if self.keep is not None and not self.keep(view_of(obj)):
                continue
            key = object_key(obj)
            rv = resource_version_int(obj.metadata.resource_version)
            dead = self._tombstones.get(key)
            if dead is not None and (rv is None or dead >= rv):
                continue
            have = self.store.get(key)
            if have is not None:
                have_rv = resource_version_int(have.metadata.resource_version)
                if have_rv is None or rv is None or have_rv >= rv:
                    continue
            self._apply_upsert(key, obj)
            stored += 1
        self._m_objects.set(len(self.store))
        return stored

    def forget(self, keys: list[str]) -> None:
        """Drop objects from a filtered cache that ``keep`` no longer accepts (no handler is called: their
        owner stopped caring about them)."""
        for key in keys:
            obj = self.store.get(key)
            if obj is not None and self.keep is not None and not self.keep(view_of(obj)):
                self.store.pop(key)
        self._m_objects.set(len(self.store))

    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def rewatch(self) -> None:
        """Make the next LIST or watch ask with the label selector as it is now (see the module docstring):
        end the running watch, and return once the next request has taken its selector and start RV. A LIST
        in flight (its answer replaces the store with what the old selector matched) is waited for, then the
        watch after it. While neither runs, the next request takes the selector anyway: return at once."""
        if not (self._watching or self._listing):
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._rewatched.append(done)
        if self._watching:
            self._interrupt.set()
        await done

    def _selector(self) -> str | None:
        """The label selector for the request being made now; waiters of :meth:`rewatch` are released."""
        sel = self.label_selector() if callable(self.label_selector) else self.label_selector
        for done in self._rewatched:
            if not done.done():
                done.set_result(None)
        self._rewatched.clear()
        self._interrupt.clear()
        return sel

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    async def run(self) -> None:
        """List and watch until cancelled; failures back off and retry, never escape."""
        metrics.INFORMER_SYNCED.labels(self._label).set(0)
        backoff = _Backoff(self.settings, self.clock, self.rng)
        resync = asyncio.create_task(self._resync_loop()) if self.settings.resync_period_s else None
        try:
            while True:
                try:
                    await self._list_and_watch(backoff)
                except asyncio.CancelledError:
                    raise
                except Exception as e:  # the outer loop: back off, then relist
                    metrics.WATCH_ERRORS.labels(self._label, type(e).__name__).inc()
                    log.info("informer %s: %s; relisting after backoff", self._label, _describe(e))
                await self.clock.sleep(backoff.next())
        finally:
            if resync:
                resync.cancel()

    def _own(self) -> list[T]:
        """The objects of this informer's namespace (all of the store when it watches every namespace)."""
        if self.namespace is None:
            return self.store.list()
        return self.store.by_index(NAMESPACE_INDEX, self.namespace)

    # -- reflector ----------------------------------------------------------------------------------------

    def _relist_rv(self) -> str:
        if self._rv_unavailable:
            return ""
        return self.last_sync_rv or "0"

    async def _list(self) -> None:
        rv = self._relist_rv()
        selector = self.label_selector() if callable(self.label_selector) else self.label_selector
        self._listing = True
        try:
            page = await self.client.list_all(
                self.resource, type=self.item_type, namespace=self.namespace,
                label_selector=selector, field_selector=self.field_selector,
                resource_version=rv, page_size=self.settings.quorum_page_size,
                keep=self.keep,
            )  # fmt: skip
        except Gone:
            if rv == "":
                raise
            # "too old"/"too large" RV on LIST: the next LIST is a quorum read (and may paginate).
            self._rv_unavailable = True
            raise
        finally:
            self._listing = False  # waiters of rewatch() go on when the next watch takes its selector
        self.lists += 1
        metrics.INFORMER_RELISTS.labels(self._label).inc()
        for err in page.errors:
            log.warning(
                "informer %s: skipped %s/%s that does not decode: %s",
                self._label, err.namespace, err.name, err.message,
            )  # fmt: skip
        self.undecodable = {err.key: err for err in page.errors}
        self._replace(page.items)
        self._rv_unavailable = False
        self.last_sync_rv = page.metadata.resource_version or ""
        if not self._synced.is_set():
            self._synced.set()
            metrics.INFORMER_SYNCED.labels(self._label).set(1)

    def _replace(self, items: list[T]) -> None:
        seen = set()
        for obj in items:
            obj = self.transform(obj) if self.transform else obj
            # (``keep`` already dropped what it rejects while the LIST was decoded: a stored object missing
            # from ``items`` is delivered as deleted below.)
            key = object_key(obj)
            seen.add(key)
            self._apply_upsert(key, obj)
        for key in [object_key(o) for o in self._own()]:
            if key not in seen:  # deleted while we were not watching: deliver the last known state
                old = self.store.pop(key)
                if old is not None:
                    self._dispatch_delete(old)
        self._m_objects.set(len(self.store))

    async def _list_and_watch(self, backoff: _Backoff) -> None:
        await self._list()
        while True:
            try:
                await self._watch_once()
            except (TooManyRequests, WatchStalled, aiohttp.ClientConnectorError) as e:
                # Retriable without relist: same RV (client-go isWatchErrorRetriable), after a backoff —
                # except a stall, which already waited its timeout.
                metrics.WATCH_ERRORS.labels(self._label, type(e).__name__).inc()
                log.info(
                    "informer %s: %s; re-watching from RV %s", self._label, _describe(e), self.last_sync_rv
                )
                delay = e.retry_after if isinstance(e, TooManyRequests) else 0.0
                if not isinstance(e, WatchStalled):
                    delay = max(delay, backoff.next())
                await self.clock.sleep(delay)

    async def _watch_once(self) -> None:
        start_rv = self.last_sync_rv
        record_rv = start_rv not in ("", "0")  # see propagateRVFromStart in the module docstring
        started = self.clock.monotonic()
        metrics.WATCH_STARTS.labels(self._label).inc()
        selector = self._selector()
        try:
            if callable(self.label_selector):
                # A selector that changes: the watch runs beside the wait for :meth:`rewatch`.
                consume = asyncio.ensure_future(self._consume(start_rv, record_rv, selector))
                interrupt = asyncio.ensure_future(self._interrupt.wait())
                self._watching = True
                try:
                    await asyncio.wait((consume, interrupt), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    self._watching = False
                    interrupt.cancel()
                    if not consume.done():
                        consume.cancel()
                        with contextlib.suppress(asyncio.CancelledError):
                            await consume
                if consume.cancelled():
                    return  # ended for a new selector: resume from the last RV at once
                events = consume.result()
            else:
                events = await self._consume(start_rv, record_rv, selector)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError) as e:
            # A stream cut mid-way (apiserver restart, proxy reset) is a closed watch, as client-go treats an
            # unexpected EOF: resume from the last RV without relisting.
            log.info(
                "informer %s: watch stream broke (%s); resuming from RV %s", self._label, e, self.last_sync_rv
            )
            metrics.WATCH_ERRORS.labels(self._label, type(e).__name__).inc()
            events = 1 if self.last_sync_rv != start_rv else 0
        if events == 0 and self.clock.monotonic() - started < 1.0:
            raise _VeryShortWatch(f"watch of {self._label} closed in under 1 s with no events")

    async def _consume(self, start_rv: str, record_rv: bool, selector: str | None) -> int:
        events = 0
        async for ev in watch(
            self.client, self.resource, resource_version=start_rv, namespace=self.namespace,
            label_selector=selector, field_selector=self.field_selector,
            settings=self.settings.watch, rng=self.rng,
        ):  # fmt: skip
            events += 1
            self.events += 1
            counter = self._m_events.get(ev.type)
            if counter is None:
                counter = self._m_events[ev.type] = metrics.WATCH_EVENTS.labels(self._label, ev.type)
            counter.inc()  # type: ignore[attr-defined]
            if ev.type == "BOOKMARK":
                rv = msgspec.json.decode(ev.object, type=_RVOnly).metadata.resource_version
                if rv:
                    self.last_sync_rv = rv
                continue
            kept = True
            if self.keep is not None:
                view = decode_view(ev.object)
                kept = self.keep(view)
                if not kept:
                    key = object_key(view)
                    if key not in self.store:
                        # Neither wanted nor held: only its RV counts, so the object is never decoded whole.
                        self.undecodable.pop(key, None)
                        if ev.type == "DELETED" and self._admitting:
                            rv = resource_version_int(view.metadata.resource_version)
                            self._tombstones[key] = rv if rv is not None else 2**63
                        if ev.type != "ADDED":
                            record_rv = True
                        if record_rv and view.metadata.resource_version:
                            self.last_sync_rv = view.metadata.resource_version
                        continue
            obj = self._decoder.decode(ev.object)
            if self.transform:
                obj = self.transform(obj)
            key = object_key(obj)
            self.undecodable.pop(key, None)  # it decodes now, or it is gone
            if ev.type in ("ADDED", "MODIFIED"):
                if kept:
                    self._apply_upsert(key, obj)
                elif self.store.pop(key) is not None:
                    self._dispatch_delete(obj)  # it left the filtered cache
            elif ev.type == "DELETED":
                if self._admitting:
                    rv = resource_version_int(obj.metadata.resource_version)
                    self._tombstones[key] = rv if rv is not None else 2**63
                if self.store.pop(key) is not None or self.keep is None:
                    self._dispatch_delete(obj)  # the final state, as the server sent it
            if ev.type != "ADDED":
                record_rv = True
            if record_rv and obj.metadata.resource_version:
                self.last_sync_rv = obj.metadata.resource_version
            if ev.type != "MODIFIED":  # only adds and deletes change the count
                self._m_objects.set(len(self.store))
        return events

    # -- dispatch -----------------------------------------------------------------------------------------

    def _apply_upsert(self, key: str, obj: T) -> None:
        old = self.store.put(key, obj)
        for h in self._handlers:
            try:
                if old is None:
                    if h.on_add:
                        h.on_add(obj)
                elif h.on_update:
                    h.on_update(old, obj)
            except Exception:
                log.exception("informer %s: handler failed for %s", self._label, key)

    def _dispatch_delete(self, obj: T) -> None:
        for h in self._handlers:
            if h.on_delete:
                try:
                    h.on_delete(obj)
                except Exception:
                    log.exception("informer %s: delete handler failed", self._label)

    async def _resync_loop(self) -> None:
        period = self.settings.resync_period_s
        assert period
        while True:
            await self.clock.sleep(period)
            for obj in self._own():
                for h in self._handlers:
                    if h.on_update:
                        h.on_update(obj, obj)


class _RVMeta(msgspec.Struct, rename="camel"):
    resource_version: str | None = None


class _RVOnly(msgspec.Struct):
    metadata: _RVMeta = msgspec.field(default_factory=_RVMeta)


def resource_version_int(rv: str | None) -> int | None:
    """A resourceVersion as the integer etcd issued it (None: absent or not a number); only for ordering
    versions of one object, as admit and a union of caches do."""
    try:
        return int(rv) if rv else None
    except ValueError:
        return None


def _describe(e: BaseException) -> str:
    if isinstance(e, ApiError):
        return f"{type(e).__name__} ({e.code} {e.reason}: {e.message})"
    return f"{type(e).__name__}: {e}"


__all__ = ["Handlers", "Informer", "InformerSettings", "Selector", "Store", "resource_version_int"]
