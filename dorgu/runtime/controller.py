"""A controller: informers map events to keys, a workqueue coalesces them, N workers reconcile.

Reconciliation is level-based (controller-runtime ``reconcile.go``): a reconciler gets only a
:class:`Request` (namespace/name) and reads the current state from the caches; it never branches on the
event that woke it. How a result is acted on:

================================  ===========================================  ===================
outcome                           queue action                                 ``result`` label
================================  ===========================================  ===================
raised :class:`TerminalError`     not retried; counted as terminal             ``error``
raised anything else              ``add_rate_limited`` (per-item backoff)      ``error``
``Result(requeue_after=d)``       ``forget``, then ``add_after(d)``            ``requeue_after``
``Result(requeue=True)``          ``add_rate_limited``                         ``requeue``
``None`` / ``Result()``           ``forget``                                   ``success``
================================  ===========================================  ===================

An exception never kills a worker or the process: it is logged with its traceback and counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from dorgu.runtime import metrics
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.logs import controller_var, key_var, reconcile_id_var
from dorgu.runtime.ratelimit import RateLimitSettings, default_controller_rate_limiter
from dorgu.runtime.workqueue import ShutDown, WorkQueue

log = logging.getLogger("dorgu.controller")
_PID = os.getpid()
_RECONCILE_IDS = itertools.count(1)
"""Reconcile ids are unique per process (pid + counter): as good as a UUID for correlating log lines, and
cheaper to make."""


class Request(NamedTuple):
    """What to reconcile: an object's namespace (``""`` for cluster-scoped) and name.

    A NamedTuple: the workqueue hashes keys on every add, get and done, and a tuple hashes in C."""

    namespace: str
    name: str

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    @classmethod
    def for_object(cls, obj: Any) -> Request:
        return cls(obj.metadata.namespace or "", obj.metadata.name)

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, kw_only=True)
class Result:
    """What the reconciler asks for next."""

    requeue_after: float | None = None
    """Reconcile this key again after this many seconds (periodic re-validation); resets its backoff."""
    requeue: bool = False
    """Retry with the rate limiter's backoff, as after an error (prefer ``requeue_after``)."""


class TerminalError(Exception):
    """A failure that retrying cannot fix: logged and counted, not retried."""


Reconciler = Callable[[Request], Awaitable[Result | None]]
UpdatePredicate = Callable[[Any, Any], bool]


def generation_changed(old: Any, new: Any) -> bool:
    """Pass updates whose ``metadata.generation`` changed (hides status-only and metadata-only writes)."""
    return bool(old.metadata.generation != new.metadata.generation)


def resource_version_changed(old: Any, new: Any) -> bool:
    """Pass updates whose ``metadata.resourceVersion`` changed (controller-runtime's
    ``ResourceVersionChangedPredicate``): hides the unchanged objects a relist hands to the handlers again,
    which are not news — a relist of a few thousand objects would otherwise queue a reconcile for each."""
    return bool(old.metadata.resource_version != new.metadata.resource_version)


@dataclass(frozen=True, kw_only=True)
class ControllerSettings:
    """How a controller runs."""

    name: str
    """Controller name (metrics label ``controller``, logs)."""
    workers: int = 1
    """Concurrent reconciles (a key is never reconciled by two at once)."""
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    """Retry backoff: per-item exponential, maxed with a token bucket."""
    shutdown_drain_s: float = 5.0
    """On stop, how long in-flight reconciles may take to finish."""


class Controller:
    """Wire sources with :meth:`watch_for` / :meth:`watch_mapped`, then ``await run()``."""

    def __init__(
        self,
        *,
        settings: ControllerSettings,
        reconcile: Reconciler,
        clock: Clock | None = None,
    ) -> None:
        self.settings = settings
        self.reconcile = reconcile
        self.clock = clock or RealClock()
        self.queue: WorkQueue[Request] = WorkQueue(
            name=settings.name,
            controller=settings.name,
            rate_limiter=default_controller_rate_limiter(settings.rate_limit, clock=self.clock),
            clock=self.clock,
        )
        self._informers: list[Informer[Any]] = []
        self.hold: Callable[[Request], bool] | None = None
        """Keys this returns True for are not queued by watch events: whoever holds a key queues it with
        :meth:`enqueue` when it lets go (a held key would only be dequeued to be skipped)."""
        name = settings.name
        self._m_total = {
            r: metrics.RECONCILE_TOTAL.labels(name, r)
            for r in ("success", "error", "requeue", "requeue_after")
        }
        self._m_errors = metrics.RECONCILE_ERRORS.labels(name)
        self._m_terminal = metrics.TERMINAL_RECONCILE_ERRORS.labels(name)
        self._m_panics = metrics.RECONCILE_PANICS.labels(name)
        self._m_time = metrics.RECONCILE_TIME.labels(name)
        self._m_active = metrics.ACTIVE_WORKERS.labels(name)
        metrics.MAX_CONCURRENT_RECONCILES.labels(name).set(settings.workers)

    # -- sources ------------------------------------------------------------------------------------------

    def enqueue(self, req: Request) -> None:
        self.queue.add(req)

    def _add(self, req: Request) -> None:
        if self.hold is None or not self.hold(req):
            self.queue.add(req)

    def watch_for(self, informer: Informer[Any], *, update_predicate: UpdatePredicate | None = None) -> None:
        """The primary type: each event enqueues the object's own key."""
        self._informers.append(informer)

        def on_update(old: Any, new: Any) -> None:
            if update_predicate is None or update_predicate(old, new):
                self._add(Request.for_object(new))

        informer.add_handlers(
            Handlers(
                on_add=lambda o: self._add(Request.for_object(o)),
                on_update=on_update,
                on_delete=lambda o: self._add(Request.for_object(o)),
            )
        )

    def watch_mapped(
        self,
        informer: Informer[Any],
        map_fn: Callable[[Any], Iterable[Request]],
        *,
        update_predicate: UpdatePredicate | None = None,
    ) -> None:
        """A secondary type: each event enqueues what ``map_fn`` maps the object to; an update maps both the
        old and the new object (a label change moves it from one owner to another)."""
        self._informers.append(informer)

        def add(obj: Any) -> None:
            for req in map_fn(obj):
                self._add(req)

        def on_update(old: Any, new: Any) -> None:
            if update_predicate is None or update_predicate(old, new):
                reqs = set(map_fn(old))
                reqs.update(map_fn(new))
                for req in reqs:
                    self._add(req)

        informer.add_handlers(Handlers(on_add=add, on_update=on_update, on_delete=add))

    # -- running ------------------------------------------------------------------------------------------

    async def run(self, *, wait_for_sync: bool = True) -> None:
        """Run the workers until cancelled; informers must be running (their owner starts them)."""
        if wait_for_sync:
            await asyncio.gather(*(i.wait_for_sync() for i in self._informers))
        workers = [asyncio.create_task(self._worker(i)) for i in range(self.settings.workers)]
        try:
            await asyncio.gather(*workers)
        finally:
            self.queue.shutdown()
            with contextlib.suppress(Exception):
                await asyncio.shield(self.queue.shutdown_with_drain(self.settings.shutdown_drain_s))
            for w in workers:
                w.cancel()

    async def _worker(self, n: int) -> None:
        controller_var.set(self.settings.name)
        while True:
            try:
                req = await self.queue.get()
            except ShutDown:
                return
            self._m_active.inc()
            try:
                await self._process(req)
            finally:
                self._m_active.dec()
                self.queue.done(req)

    async def _process(self, req: Request) -> None:
        key_token = key_var.set(req.key)
        rid_token = reconcile_id_var.set(f"{_PID:x}-{next(_RECONCILE_IDS):x}")
        started = self.clock.monotonic()
        try:
            result = await self.reconcile(req)
        except asyncio.CancelledError:
            raise
        except TerminalError as e:
            self._m_total["error"].inc()
            self._m_errors.inc()
            self._m_terminal.inc()
            self.queue.forget(req)
            log.error("reconcile %s failed terminally: %s", req, e, exc_info=True)
            return
        except Exception:
            self._m_total["error"].inc()
            self._m_errors.inc()
            self._m_panics.inc()
            self.queue.add_rate_limited(req)
            log.exception("reconcile %s failed; retrying with backoff", req)
            return
        finally:
            self._m_time.observe(self.clock.monotonic() - started)
            key_var.reset(key_token)
            reconcile_id_var.reset(rid_token)
        if result is not None and result.requeue_after and result.requeue_after > 0:
            self._m_total["requeue_after"].inc()
            self.queue.forget(req)
            self.queue.add_after(req, result.requeue_after)
        elif result is not None and result.requeue:
            self._m_total["requeue"].inc()
            self.queue.add_rate_limited(req)
        else:
            self._m_total["success"].inc()
            self.queue.forget(req)


async def run_informers(informers: Iterable[Informer[Any]]) -> None:
    """Run informers together until cancelled (a helper for components)."""
    await asyncio.gather(*(i.run() for i in informers))
