"""Time, injected: everything time-based in the runtime takes a :class:`Clock`, so tests never sleep.

``RealClock`` is the event loop's clock. ``FakeClock`` only moves when a test calls :meth:`FakeClock.advance`;
sleepers whose deadline has passed are woken in deadline order.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import time
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Protocol, TypeVar

T = TypeVar("T")


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes backwards (for intervals and deadlines)."""
        ...

    def now(self) -> datetime:
        """Wall-clock time, timezone-aware UTC (for timestamps written to the API)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Sleep on this clock."""
        ...

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T:
        """``aw``'s result, or :class:`TimeoutError` once ``timeout`` has passed on this clock (``aw`` is
        then cancelled and awaited), as :func:`asyncio.wait_for` does on the loop's clock."""
        ...


class RealClock:
    """The real clock."""

    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime:
        return datetime.now(UTC)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T:
        # asyncio.timeout, not asyncio.wait_for: on Python 3.11 wait_for can swallow a cancellation that
        # arrives in the same loop step as the awaited result, and a task then never ends when cancelled.
        async with asyncio.timeout(max(0.0, timeout)):
            return await aw


class FakeClock:
    """A clock that moves only when told to. ``now()`` is ``start`` plus the time advanced."""

    def __init__(self, *, start: datetime | None = None, monotonic: float = 1000.0) -> None:
        self._mono = monotonic
        self._start_mono = monotonic
        self._start = start or datetime(2026, 1, 1, tzinfo=UTC)
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def monotonic(self) -> float:
        return self._mono

    def now(self) -> datetime:
        from datetime import timedelta

        return self._start + timedelta(seconds=self._mono - self._start_mono)

    async def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self._mono + seconds, next(self._seq), fut))
        await fut

    async def wait_for(self, aw: Awaitable[T], timeout: float) -> T:
        task = asyncio.ensure_future(aw)
        timer = asyncio.ensure_future(self.sleep(timeout))
        try:
            await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            timer.cancel()
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if task.cancelled():
            raise TimeoutError
        return task.result()

    @property
    def sleepers(self) -> int:
        """How many coroutines are asleep on this clock right now."""
        return sum(1 for _, _, f in self._sleepers if not f.done())

    async def advance(self, seconds: float) -> None:
        """Move time forward, waking each sleeper whose deadline is reached, in order, and let them run."""
        target = self._mono + seconds
        while self._sleepers and self._sleepers[0][0] <= target:
            deadline, _, fut = heapq.heappop(self._sleepers)
            self._mono = max(self._mono, deadline)
            if not fut.done():
                fut.set_result(None)
            for _ in range(5):  # let the woken coroutine (and what it wakes) run
                await asyncio.sleep(0)
        self._mono = target
        for _ in range(5):
            await asyncio.sleep(0)
