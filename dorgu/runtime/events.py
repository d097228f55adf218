"""An event recorder: controllers emit core/v1 Events about objects (client-go ``tools/record`` semantics).

:meth:`EventRecorder.record` only queues: it is synchronous, never blocks, never raises, and is bounded (a
full queue drops the new event, as client-go's 1000-event channel does). One background task correlates and
writes the queued events, in order, like client-go's ``EventCorrelator`` and ``recordToSink``:

* **Aggregation** (``EventAggregator``): events about the same object with the same type and reason but
  different messages are counted per ``aggregate_interval_s``; from the ``aggregate_max_events``-th distinct
  message on they are folded into one Event whose message is ``"(combined from similar events): "`` plus the
  latest message.
* **Deduplication** (``eventLogger``): an event identical to one already written (same source, involved
  object, type, reason and message) is not written again: the existing Event is PATCHed with ``count + 1``,
  the new ``lastTimestamp`` and the message. If that Event is gone (404) it is created again, same name.
* **Spam filter** (``EventSourceObjectSpamFilter``): a token bucket per source and involved object (burst
  ``spam_burst``, one token back every ``spam_refill_interval_s``); an event that finds it empty is dropped.
  Unlike client-go, the filter runs *before* the deduplication step, so a dropped event does not bump the
  ``count`` of the Event it would have patched.

Events are written in the involved object's namespace, ``default`` for cluster-scoped objects. New Events are
named ``<object name>.<hex unix nanoseconds>`` (kept unique within one recorder, so a frozen test clock gives
distinct names). Timestamps come from the injected clock, taken when :meth:`~EventRecorder.record` is called.

Network errors, 429 and 5xx answers are retried (``max_tries``, ``retry_interval_s`` apart, not while
stopping); any other rejection is final. Every outcome is counted in ``dorgu_events_emitted_total{reason,
result}``: ``created``, ``patched``, ``error`` or ``dropped`` (queue full, spam filter, stopped recorder).

Use it from the event loop's thread only (the queue is not thread-safe).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict, deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar

import aiohttp

from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.errors import AlreadyExists, ApiError, NotFound, ServerError, TooManyRequests
from dorgu.runtime.resource import EVENTS, Resource

__all__ = [
    "COMBINED_PREFIX",
    "Correlated",
    "EventCorrelator",
    "EventRecorder",
    "EventRecorderSettings",
    "EventType",
    "ObjectReference",
]

log = logging.getLogger("dorgu.events")

EventType = Literal["Normal", "Warning"]
COMBINED_PREFIX = "(combined from similar events): "
"""client-go's ``EventAggregatorByReasonMessageFunc`` prefix for an aggregated Event's message."""
_TYPES = frozenset({"Normal", "Warning"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_NAME = 253
_HEX_SUFFIX = 17  # "." and 16 hex digits of nanoseconds

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True, kw_only=True)
class EventRecorderSettings:
    """Tuning of the event recorder; the defaults are client-go's."""

    queue_size: int = 1000
    """Events waiting to be written; one recorded while the queue is full is dropped (client-go: the
    broadcaster's 1000-event channel)."""
    cache_size: int = 4096
    """Entries in each LRU cache (aggregation, deduplication, spam filter), as client-go's
    ``maxLruCacheEntries``."""
    aggregate_max_events: int = 10
    """Distinct messages per object, type and reason within ``aggregate_interval_s`` from which on similar
    events are combined into one (client-go ``defaultAggregateMaxEvents``)."""
    aggregate_interval_s: float = 600.0
    """Seconds without a similar event after which the count of distinct messages starts afresh (client-go
    ``defaultAggregateIntervalInSeconds``)."""
    spam_burst: int = 25
    """Events about one object (from one source) accepted in a burst (client-go ``defaultSpamBurst``)."""
    spam_refill_interval_s: float = 300.0
    """Seconds per token the spam filter's bucket regains (client-go ``defaultSpamQPS`` = 1/300)."""
    max_tries: int = 12
    """Attempts to write one event when the failure is retryable (client-go ``maxTriesPerEvent``)."""
    retry_interval_s: float = 10.0
    """Seconds between attempts, on the recorder's clock (client-go ``defaultSleepDuration``)."""
    stop_timeout_s: float = 10.0
    """Real seconds :meth:`EventRecorder.stop` waits for the queue to be written before it gives up and
    drops the rest."""


@dataclass(frozen=True, kw_only=True)
class ObjectReference:
    """The involved object of an Event (``core/v1 ObjectReference``); empty fields are left out."""

    api_version: str
    kind: str
    name: str
    namespace: str | None = None
    """``None`` (or empty) for a cluster-scoped object: its Events go to ``default``."""
    uid: str | None = None
    resource_version: str | None = None
    field_path: str | None = None

    @classmethod
    def of(
        cls,
        obj: Any,
        *,
        resource: Resource | None = None,
        api_version: str | None = None,
        kind: str | None = None,
        field_path: str | None = None,
    ) -> ObjectReference:
        """A reference to ``obj``: a dict (``apiVersion``, ``kind``, ``metadata``) or anything with a
        ``.metadata`` (e.g. a struct with :class:`~dorgu.runtime.meta.ObjectMeta`) and optional
        ``.api_version``/``.kind``. Objects from a LIST carry no apiVersion/kind: pass ``resource`` (or
        ``api_version`` and ``kind``). Raises ``ValueError`` if the name or kind cannot be found."""
        if isinstance(obj, Mapping):
            meta = obj.get("metadata") or {}
            name, namespace = meta.get("name"), meta.get("namespace")
            uid, rv = meta.get("uid"), meta.get("resourceVersion")
            obj_api_version, obj_kind = obj.get("apiVersion"), obj.get("kind")
        else:
            meta = obj.metadata
            if isinstance(meta, Mapping):
                name, namespace = meta.get("name"), meta.get("namespace")
                uid, rv = meta.get("uid"), meta.get("resourceVersion")
            else:
                name, namespace = getattr(meta, "name", None), getattr(meta, "namespace", None)
                uid, rv = getattr(meta, "uid", None), getattr(meta, "resource_version", None)
            obj_api_version, obj_kind = getattr(obj, "api_version", None), getattr(obj, "kind", None)
        api_version = api_version or (resource.api_version if resource else None) or obj_api_version
        kind = kind or (resource.kind if resource else None) or obj_kind
        if not name:
            raise ValueError("the object has no metadata.name")
        if not kind or not api_version:
            raise ValueError(f"no kind/apiVersion for {name!r}: pass resource= (or api_version= and kind=)")
        if resource is not None and not resource.namespaced:
            namespace = None
        return cls(
            api_version=str(api_version), kind=str(kind), name=str(name), namespace=namespace or None,
            uid=uid or None, resource_version=rv or None, field_path=field_path,
        )  # fmt: skip

    def to_dict(self) -> dict[str, str]:
        """The wire form (camelCase, empty fields left out)."""
        d = {
            "apiVersion": self.api_version,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "uid": self.uid,
            "resourceVersion": self.resource_version,
            "fieldPath": self.field_path,
        }
        return {k: v for k, v in d.items() if v}


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self._size = max(1, size)
        self._d: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        v = self._d.get(key)
        if v is not None:
            self._d.move_to_end(key)
        return v

    def put(self, key: K, value: V) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self._size:
            self._d.popitem(last=False)

    def pop(self, key: K) -> None:
        self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)


@dataclass
class _Pending:
    """One recorded event, as queued by :meth:`EventRecorder.record`."""

    ref: ObjectReference
    type: str
    reason: str
    message: str
    timestamp: datetime
    mono: float


@dataclass
class _AggregateRecord:
    messages: set[str] = field(default_factory=set)
    last: float = 0.0


@dataclass
class _Observation:
    name: str
    count: int
    first_timestamp: str
    resource_version: str | None = None


@dataclass
class _Bucket:
    tokens: float
    last: float


@dataclass(frozen=True, kw_only=True)
class Correlated:
    """What to write for one event: a new Event (``patch`` None) or a PATCH of an existing one."""

    key: tuple[str, ...]
    """The deduplication key (identical events share it)."""
    namespace: str
    name: str
    body: dict[str, Any]
    """The whole Event (for a create, and for a re-create after a PATCH found it gone)."""
    patch: dict[str, Any] | None
    """A merge patch of ``count``, ``lastTimestamp`` and ``message``; None for a create."""


def _rfc3339(ts: datetime) -> str:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _unix_nanos(ts: datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return (ts - _EPOCH) // timedelta(microseconds=1) * 1000


class EventCorrelator:
    """Aggregation, spam filter and deduplication — no I/O (client-go ``EventCorrelator``)."""

    def __init__(self, *, component: str, host: str | None, settings: EventRecorderSettings) -> None:
        self.component = component
        self.host = host or ""
        self.s = settings
        self._aggregates: _Lru[tuple[str, ...], _AggregateRecord] = _Lru(settings.cache_size)
        self._observed: _Lru[tuple[str, ...], _Observation] = _Lru(settings.cache_size)
        self._spam: _Lru[tuple[str, ...], _Bucket] = _Lru(settings.cache_size)
        self._last_nanos = 0

    def _object_key(self, ref: ObjectReference) -> tuple[str, ...]:
        return (
            self.component, self.host, ref.api_version, ref.kind, ref.namespace or "", ref.name,
            ref.uid or "",
        )  # fmt: skip

    def new_name(self, obj_name: str, ts: datetime) -> str:
        nanos = max(_unix_nanos(ts), self._last_nanos + 1)
        self._last_nanos = nanos
        prefix = obj_name[: _MAX_NAME - _HEX_SUFFIX].rstrip(".-") or "event"
        return f"{prefix}.{nanos:x}"

    def _allow(self, ref: ObjectReference, mono: float) -> bool:
        key = self._object_key(ref)
        bucket = self._spam.get(key)
        if bucket is None:
            bucket = _Bucket(tokens=float(self.s.spam_burst), last=mono)
        elif self.s.spam_refill_interval_s > 0:
            elapsed = max(0.0, mono - bucket.last)
            refill = elapsed / self.s.spam_refill_interval_s
            bucket.tokens = min(float(self.s.spam_burst), bucket.tokens + refill)
            bucket.last = max(bucket.last, mono)
        self._spam.put(key, bucket)
        if bucket.tokens < 1.0:
            return False
        bucket.tokens -= 1.0
        return True

    def correlate(self, ev: _Pending) -> Correlated | None:
        """What to write for ``ev``, or None when the spam filter drops it."""
        ref = ev.ref
        # Aggregation: count distinct messages per object, type and reason.
        agg_key = (*self._object_key(ref), ev.type, ev.reason)
        record = self._aggregates.get(agg_key)
        if record is None or ev.mono - record.last > self.s.aggregate_interval_s:
            record = _AggregateRecord()
        record.messages.add(ev.message)
        record.last = ev.mono
        self._aggregates.put(agg_key, record)
        if len(record.messages) < self.s.aggregate_max_events:
            key, message = (*agg_key, ref.field_path or "", ev.message), ev.message
        else:
            record.messages.pop()  # keep the set from growing (client-go's PopAny)
            key, message = ("combined", *agg_key), COMBINED_PREFIX + ev.message
        if not self._allow(ref, ev.mono):
            return None
        # Deduplication: an Event already written for this key is patched.
        now = _rfc3339(ev.timestamp)
        seen = self._observed.get(key)
        if seen is not None:
            obs = _Observation(
                name=seen.name, count=seen.count + 1, first_timestamp=seen.first_timestamp,
                resource_version=seen.resource_version,
            )  # fmt: skip
        else:
            obs = _Observation(name=self.new_name(ref.name, ev.timestamp), count=1, first_timestamp=now)
        self._observed.put(key, obs)
        namespace = ref.namespace or "default"
        source: dict[str, str] = {"component": self.component}
        if self.host:
            source["host"] = self.host
        body: dict[str, Any] = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": obs.name, "namespace": namespace},
            "involvedObject": ref.to_dict(),
            "reason": ev.reason,
            "message": message,
            "type": ev.type,
            "source": source,
            "firstTimestamp": obs.first_timestamp,
            "lastTimestamp": now,
            "count": obs.count,
            "reportingComponent": self.component,
            "reportingInstance": self.host,
        }
        patch = None
        if seen is not None:
            patch = {"count": obs.count, "lastTimestamp": now, "message": message}
        return Correlated(key=key, namespace=namespace, name=obs.name, body=body, patch=patch)

    def written(self, c: Correlated, *, name: str, resource_version: str | None) -> None:
        """Remember what the server stored for ``c`` (its name may have changed on a name clash)."""
        obs = self._observed.get(c.key)
        if obs is not None and obs.name == c.name:
            obs.name, obs.resource_version = name, resource_version

    def failed(self, c: Correlated) -> None:
        """A new Event could not be created: forget it, so the next identical event creates afresh."""
        obs = self._observed.get(c.key)
        if c.patch is None and obs is not None and obs.name == c.name and obs.count == 1:
            self._observed.pop(c.key)


def _retryable(e: BaseException) -> bool:
    if isinstance(e, ServerError | TooManyRequests):
        return True
    if isinstance(e, ApiError):
        return False
    return isinstance(e, aiohttp.ClientError | TimeoutError | OSError)


class EventRecorder:
    """Records Events about objects; start it (``await start()``, or ``run()`` as a task) to write them.

    ``record()`` may be called before the recorder is started: events wait in the queue. ``stop()`` writes
    what is queued (within ``stop_timeout_s``) and stops; events recorded after that are dropped.
    """

    def __init__(
        self,
        client: ApiClient,
        *,
        component: str,
        host: str | None = None,
        clock: Clock | None = None,
        settings: EventRecorderSettings | None = None,
    ) -> None:
        self.client = client
        self.component = component
        self.host = host
        self.clock = clock or RealClock()
        self.settings = settings or EventRecorderSettings()
        self.correlator = EventCorrelator(component=component, host=host, settings=self.settings)
        self._queue: deque[_Pending] = deque()
        self._wake = asyncio.Event()
        self._stop_requested = asyncio.Event()
        self._stopping = False
        self._stopped = False
        self._task: asyncio.Task[None] | None = None
        self._in_flight = 0
        self._drops = 0

    # -- the caller's side ------------------------------------------------------------------------------

    def record(self, obj_ref: ObjectReference, *, type: EventType, reason: str, message: str) -> None:
        """Queue an Event about ``obj_ref``. Never blocks, never raises; drops (and counts) when the queue is
        full, the type is not ``Normal``/``Warning``, or the recorder has stopped."""
        try:
            if not isinstance(obj_ref, ObjectReference) or type not in _TYPES:
                log.error(
                    "event not recorded: bad reference or type",
                    extra={"event_type": type, "reason": reason, "ref": repr(obj_ref)},
                )
                metrics.EVENTS_EMITTED.labels(str(reason), "error").inc()
                return
            if self._stopped or len(self._queue) >= self.settings.queue_size:
                self._drop(reason, "recorder stopped" if self._stopped else "queue full")
                return
            pending = _Pending(
                ref=obj_ref, type=type, reason=reason, message=message,
                timestamp=self.clock.now(), mono=self.clock.monotonic(),
            )  # fmt: skip
            self._queue.append(pending)
            self._wake.set()
        except Exception:
            log.exception("event not recorded", extra={"reason": str(reason)})

    @property
    def pending(self) -> int:
        """Events queued or being written."""
        return len(self._queue) + self._in_flight

    def _drop(self, reason: str, why: str) -> None:
        metrics.EVENTS_EMITTED.labels(reason, "dropped").inc()
        self._drops += 1
        if self._drops == 1 or self._drops % 1000 == 0:  # a flood of drops must not flood the log
            log.warning("event dropped: %s", why, extra={"reason": reason, "drops": self._drops})

    # -- lifecycle --------------------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the background writer (idempotent)."""
        if self._task is not None and not self._task.done():
            return
        self._stopping = self._stopped = False
        self._stop_requested.clear()
        self._task = asyncio.create_task(self._writer(), name=f"event-recorder-{self.component}")

    async def stop(self) -> None:
        """Write what is queued (at most ``stop_timeout_s``), then stop; what is left is dropped."""
        if self._task is None or self._task.done():
            if not self._queue:
                self._stopped = True
                return
            self._task = asyncio.create_task(self._writer(), name=f"event-recorder-{self.component}")
        task = self._task
        self._stopping = True
        self._stop_requested.set()
        self._wake.set()
        try:
            await asyncio.wait_for(asyncio.shield(task), self.settings.stop_timeout_s)
        except TimeoutError:
            log.warning("event recorder: stop timed out, %d events not written", self.pending)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
            self._stopped = True
            while self._queue:
                self._drop(self._queue.popleft().reason, "recorder stopped")

    async def run(self) -> None:
        """Write events until cancelled; then flush as :meth:`stop` does. For running as a task."""
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()

    async def __aenter__(self) -> EventRecorder:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the writer ------------------------------------------------------------------------------------

    async def _writer(self) -> None:
        while True:
            while not self._queue:
                if self._stopping:
                    return
                self._wake.clear()
                await self._wake.wait()
            ev = self._queue.popleft()
            self._in_flight = 1
            try:
                await self._handle(ev)
            except Exception:  # never let one event end the writer
                log.exception("event recorder: unexpected error", extra={"reason": ev.reason})
                metrics.EVENTS_EMITTED.labels(ev.reason, "error").inc()
            finally:
                self._in_flight = 0

    async def _handle(self, ev: _Pending) -> None:
        c = self.correlator.correlate(ev)
        if c is None:
            self._drop(ev.reason, "spam filter")
            return
        tries = 0
        while True:
            tries += 1
            try:
                result, name, rv = await self._write_once(c)
            except Exception as e:
                if _retryable(e) and tries < self.settings.max_tries and not self._stopping:
                    log.warning(
                        "event write failed, will retry: %s", e,
                        extra={"reason": ev.reason, "event": f"{c.namespace}/{c.name}", "try": tries},
                    )  # fmt: skip
                    await self._sleep(self.settings.retry_interval_s)
                    continue
                log.error(
                    "event write failed: %s", e,
                    extra={"reason": ev.reason, "event": f"{c.namespace}/{c.name}", "tries": tries},
                )  # fmt: skip
                metrics.EVENTS_EMITTED.labels(ev.reason, "error").inc()
                self.correlator.failed(c)
                return
            self.correlator.written(c, name=name, resource_version=rv)
            metrics.EVENTS_EMITTED.labels(ev.reason, result).inc()
            return

    async def _write_once(self, c: Correlated) -> tuple[str, str, str | None]:
        """Write ``c``; returns (result, the Event's name, its resourceVersion)."""
        if c.patch is not None:
            try:
                got = await self.client.patch(EVENTS, c.name, c.patch, namespace=c.namespace)
                return "patched", c.name, _rv(got)
            except NotFound:
                pass  # deleted (or expired) meanwhile: create it again, same name and count
            got = await self.client.create(EVENTS, c.body, namespace=c.namespace)
            return "created", c.name, _rv(got)
        try:
            got = await self.client.create(EVENTS, c.body, namespace=c.namespace)
            return "created", c.name, _rv(got)
        except AlreadyExists:
            # The name is taken (another recorder in the same nanosecond, or a frozen clock): take the next.
            name = self.correlator.new_name(c.body["involvedObject"]["name"], _EPOCH)
            body = {**c.body, "metadata": {**c.body["metadata"], "name": name}}
            got = await self.client.create(EVENTS, body, namespace=c.namespace)
            return "created", name, _rv(got)

    async def _sleep(self, seconds: float) -> None:
        """Sleep on the recorder's clock; cut short by :meth:`stop`."""
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        stopper = asyncio.ensure_future(self._stop_requested.wait())
        try:
            await asyncio.wait({sleeper, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for f in (sleeper, stopper):
                f.cancel()


def _rv(obj: Any) -> str | None:
    if isinstance(obj, Mapping):
        return (obj.get("metadata") or {}).get("resourceVersion")
    return None
