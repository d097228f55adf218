"""An asyncio work queue with client-go's semantics (``util/workqueue``: queue, delaying and rate limiting).

The promise it keeps: **one key is never processed by two workers at once, and every add that arrives while
a key is being processed collapses into exactly one more run after it is done.** Three structures keep it:

- ``_queue``: the keys waiting for a worker, in FIFO order;
- ``_dirty``: the keys that need processing (every queued key, plus processing keys added again);
- ``_processing``: the keys handed out by :meth:`WorkQueue.get` and not yet :meth:`WorkQueue.done`.

On top sits a delaying part (:meth:`WorkQueue.add_after`): a min-heap of ready times holding at most one
live entry per key, the *earliest* one asked for, released by one background task that sleeps on the
injected clock until the earliest deadline. :meth:`WorkQueue.add_rate_limited` asks the rate limiter how
long to wait. Everything runs on one event loop (no threads, no locks); each operation is O(1) or O(log n).

Metrics are client-go's (``workqueue_*``, labelled ``name`` and ``controller``; ``priority`` is ``""``).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
from collections import deque
from collections.abc import Hashable
from typing import Generic, TypeVar

from dorgu.runtime import metrics
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.ratelimit import RateLimiter, default_controller_rate_limiter

__all__ = ["UNFINISHED_WORK_UPDATE_PERIOD", "ShutDown", "WorkQueue"]

K = TypeVar("K", bound=Hashable)

UNFINISHED_WORK_UPDATE_PERIOD = 0.5
"""client-go's ``defaultUnfinishedWorkUpdatePeriod``: how often the unfinished-work gauges are refreshed."""


class ShutDown(Exception):
    """Raised by :meth:`WorkQueue.get` once the queue is shut down and nothing is left queued."""


class WorkQueue(Generic[K]):
    """A de-duplicating, delaying, rate-limited work queue for hashable keys.

    Workers loop ``key = await q.get()`` → work → ``q.done(key)`` (always), then ``q.forget(key)`` on
    success or ``q.add_rate_limited(key)`` on failure.

    Background tasks (the delaying loop, the unfinished-work updater) start lazily on first use inside the
    running loop, so a queue may be constructed anywhere; ``add`` alone never needs a running loop.
    """

    def __init__(
        self,
        *,
        name: str,
        controller: str = "",
        rate_limiter: RateLimiter | None = None,
        clock: Clock | None = None,
        unfinished_work_update_period: float | None = UNFINISHED_WORK_UPDATE_PERIOD,
    ) -> None:
        """``rate_limiter`` defaults to :func:`default_controller_rate_limiter` on this queue's clock.

        ``unfinished_work_update_period``: seconds between refreshes of the unfinished-work and
        longest-running gauges (on ``clock``), or None for no periodic task (call
        :meth:`update_unfinished_work` yourself).
        """
        self.name = name
        self.controller = controller
        self._clock: Clock = clock if clock is not None else RealClock()
        self._rate_limiter: RateLimiter = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter(clock=self._clock)
        )
        self._unfinished_period = unfinished_work_update_period

        self._queue: deque[K] = deque()
        self._dirty: set[K] = set()
        self._processing: set[K] = set()
        self._shutting_down = False

        # Getters blocked on an empty queue, oldest first; each add that queues a key wakes one.
        self._getters: deque[asyncio.Future[None]] = deque()
        # Set when shutdown_with_drain is waiting and the last in-flight key is done.
        self._drained: asyncio.Future[None] | None = None

        # Delaying part: heap entries are (ready_at, seq, key). ``_waiting`` holds each key's one live entry
        # as (ready_at, seq); heap entries whose (ready_at, seq) no longer match are stale and skipped.
        self._heap: list[tuple[float, int, K]] = []
        self._waiting: dict[K, tuple[float, int]] = {}
        self._seq = itertools.count()
        self._waiting_task: asyncio.Task[None] | None = None
        self._wake: asyncio.Future[None] | None = None  # resolved to wake the delaying loop early
        self._metrics_task: asyncio.Task[None] | None = None

        # Metrics: when each queued key was first added, when each processing key was handed out.
        self._added_at: dict[K, float] = {}
        self._started_at: dict[K, float] = {}
        labels = {"name": name, "controller": controller}
        self._m_depth = metrics.WORKQUEUE_DEPTH.labels(priority="", **labels)
        self._m_adds = metrics.WORKQUEUE_ADDS.labels(**labels)
        self._m_queue_duration = metrics.WORKQUEUE_QUEUE_DURATION.labels(**labels)
        self._m_work_duration = metrics.WORKQUEUE_WORK_DURATION.labels(**labels)
        self._m_unfinished = metrics.WORKQUEUE_UNFINISHED_WORK.labels(**labels)
        self._m_longest = metrics.WORKQUEUE_LONGEST_RUNNING.labels(**labels)
        self._m_retries = metrics.WORKQUEUE_RETRIES.labels(**labels)

    # ---------------------------------------------------------------------------------------------------
    # Core queue

    def __len__(self) -> int:
        """The keys waiting for a worker (not counting those being processed or waiting on a delay)."""
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, key: K) -> None:
        """Mark ``key`` as needing processing. Ignored once the queue is shutting down."""
        if self._shutting_down:
            return
        # Dedup: a dirty key is already queued, or already due one more run after its current one.
        if key in self._dirty:
            return
        self._m_adds.inc()
        self._m_depth.inc()
        self._added_at.setdefault(key, self._clock.monotonic())
        self._dirty.add(key)
        # A key being processed is not queued: that would hand it to a second worker. done() queues it.
        if key in self._processing:
            return
        self._queue.append(key)
        self._wakeup_getter()

    async def get(self) -> K:
        """Take the next key, waiting while the queue is empty; the key is processing until :meth:`done`.

        Raises :class:`ShutDown` once the queue is shut down and nothing is left queued (workers drain what
        was queued before the shutdown).
        """
        self._start_metrics_task()
        while not self._queue:
            if self._shutting_down:
                raise ShutDown
            getter = asyncio.get_running_loop().create_future()
            self._getters.append(getter)
            try:
                await getter
            except BaseException:
                getter.cancel()
                with contextlib.suppress(ValueError):  # already taken off by a wake-up
                    self._getters.remove(getter)
                # This getter was woken for a key it will now not take: pass the wake-up on.
                if self._queue and not getter.cancelled():
                    self._wakeup_getter()
                raise
        key = self._queue.popleft()
        self._dirty.discard(key)
        self._processing.add(key)
        now = self._clock.monotonic()
        self._m_depth.dec()
        added = self._added_at.pop(key, None)
        if added is not None:
            self._m_queue_duration.observe(now - added)
        self._started_at[key] = now
        return key

    def done(self, key: K) -> None:
        """Mark ``key`` as processed. If it was added again meanwhile, it is queued for one more run."""
        if key not in self._processing:
            # Not handed out (or done twice): queueing it here could put a dirty key in the queue twice.
            return
        self._processing.remove(key)
        started = self._started_at.pop(key, None)
        if started is not None:
            self._m_work_duration.observe(self._clock.monotonic() - started)
        if key in self._dirty:
            self._queue.append(key)
            self._wakeup_getter()
        # Draining waits for nothing to be in flight (as client-go): keys still queued are the workers' job.
        if not self._processing and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _wakeup_getter(self) -> None:
        while self._getters:
            getter = self._getters.popleft()
            if not getter.done():
                getter.set_result(None)
                return

    # ---------------------------------------------------------------------------------------------------
    # Rate limiting

    def add_rate_limited(self, key: K) -> None:
        """Add ``key`` after the delay the rate limiter gives it (one more counted failure)."""
        if self._shutting_down:
            return
        self.add_after(key, self._rate_limiter.when(key))

    def forget(self, key: K) -> None:
        """Tell the rate limiter that ``key`` is finished with: its failure count restarts at zero."""
        self._rate_limiter.forget(key)

    def num_requeues(self, key: K) -> int:
        """How many failures of ``key`` the rate limiter is counting."""
        return self._rate_limiter.num_requeues(key)

    # ---------------------------------------------------------------------------------------------------
    # Delaying

    def add_after(self, key: K, delay: float) -> None:
        """Add ``key`` once ``delay`` seconds have passed on the clock (at once if ``delay <= 0``).

        A key already waiting keeps the *earlier* of its two ready times. Counts ``workqueue_retries_total``
        (as client-go's ``AddAfter`` does, so rate-limited and explicit requeues are both counted).
        """
        if self._shutting_down:
            return
        self._m_retries.inc()
        if delay <= 0:
            self.add(key)
            return
        ready_at = self._clock.monotonic() + delay
        current = self._waiting.get(key)
        if current is not None and current[0] <= ready_at:
            return  # already due no later than this
        seq = next(self._seq)
        self._waiting[key] = (ready_at, seq)
        heapq.heappush(self._heap, (ready_at, seq, key))
        # The replaced entry (if any) is now stale; rebuild when stale entries outnumber live ones.
        if len(self._heap) > 2 * len(self._waiting) + 64:
            self._compact_heap()
        self._ensure_waiting_task()
        # Wake the delaying loop only when the earliest deadline moved earlier: it sleeps until the old one.
        if self._heap[0][1] == seq and self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    @property
    def waiting(self) -> int:
        """How many keys are waiting on a delay."""
        return len(self._waiting)

    def _compact_heap(self) -> None:
        self._heap = [(at, seq, key) for key, (at, seq) in self._waiting.items()]
        heapq.heapify(self._heap)

    def _release_due(self) -> None:
        """Add every waiting key whose ready time has come, earliest first."""
        now = self._clock.monotonic()
        heap = self._heap
        while heap and heap[0][0] <= now:
            ready_at, seq, key = heapq.heappop(heap)
            if self._waiting.get(key) != (ready_at, seq):
                continue  # stale: the key was moved to an earlier time (and maybe released already)
            del self._waiting[key]
            self.add(key)

    def _ensure_waiting_task(self) -> None:
        if self._waiting_task is None or self._waiting_task.done():
            self._waiting_task = asyncio.get_running_loop().create_task(
                self._waiting_loop(), name=f"workqueue-{self.name}-delaying"
            )

    async def _waiting_loop(self) -> None:
        """Release due keys, then sleep on the clock until the earliest deadline or an earlier arrival."""
        loop = asyncio.get_running_loop()
        alarm: asyncio.Task[None] | None = None
        try:
            while not self._shutting_down:
                self._release_due()
                wake: asyncio.Future[None] = loop.create_future()
                self._wake = wake
                if alarm is not None:
                    alarm.cancel()
                    alarm = None
                if self._heap:
                    delay = self._heap[0][0] - self._clock.monotonic()
                    alarm = loop.create_task(self._alarm(delay, wake))
                # With nothing waiting this sleeps until add_after (or shutdown) resolves ``wake``.
                await wake
        finally:
            if alarm is not None:
                alarm.cancel()
            self._wake = None

    async def _alarm(self, delay: float, wake: asyncio.Future[None]) -> None:
        await self._clock.sleep(delay)
        if not wake.done():
            wake.set_result(None)

    # ---------------------------------------------------------------------------------------------------
    # Shutdown

    def shutdown(self) -> None:
        """Stop accepting adds and wake every blocked getter; keys still queued can still be taken.

        Keys waiting on a delay are dropped (as in client-go, the delaying loop stops).
        """
        if self._shutting_down:
            return
        self._shutting_down = True
        for getter in self._getters:
            if not getter.done():
                getter.set_result(None)
        self._getters.clear()
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)
        self._heap.clear()
        self._waiting.clear()
        if self._metrics_task is not None:
            self._metrics_task.cancel()

    async def shutdown_with_drain(self, timeout: float | None = None) -> bool:
        """Shut down, then wait (up to ``timeout`` seconds on the clock) until no key is processing.

        Returns True if everything in flight was done in time.
        """
        self.shutdown()
        if not self._processing:
            return True
        loop = asyncio.get_running_loop()
        if self._drained is None or self._drained.done():
            self._drained = loop.create_future()
        drained = self._drained
        if timeout is None:
            await asyncio.shield(drained)
            return True
        timer = loop.create_task(self._clock.sleep(timeout))
        try:
            await asyncio.wait({drained, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
        return drained.done()

    # ---------------------------------------------------------------------------------------------------
    # Unfinished-work metrics

    def update_unfinished_work(self) -> None:
        """Refresh ``workqueue_unfinished_work_seconds`` and ``..._longest_running_processor_seconds``."""
        now = self._clock.monotonic()
        total = 0.0
        longest = 0.0
        for started in self._started_at.values():
            running = now - started
            total += running
            longest = max(longest, running)
        self._m_unfinished.set(total)
        self._m_longest.set(longest)

    def _start_metrics_task(self) -> None:
        if self._unfinished_period is None or self._shutting_down:
            return
        if self._metrics_task is not None and not self._metrics_task.done():
            return
        self._metrics_task = asyncio.get_running_loop().create_task(
            self._metrics_loop(self._unfinished_period), name=f"workqueue-{self.name}-metrics"
        )

    async def _metrics_loop(self, period: float) -> None:
        while True:
            await self._clock.sleep(period)
            self.update_unfinished_work()
