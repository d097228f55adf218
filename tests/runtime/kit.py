"""Test helpers: an event loop in a thread (so synchronous tests can cause faults meanwhile), polling."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from prometheus_client import REGISTRY

from dorgu.runtime.client import ApiClient
from dorgu.runtime.resource import CONFIGMAPS

T = TypeVar("T")


class LoopThread:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 120) -> T:
        return self.submit(coro).result(timeout)

    def call(self, fn: Callable[[], T]) -> T:
        async def _c() -> T:
            return fn()

        return self.run(_c())

    def close(self) -> None:
        async def _cancel_all() -> None:
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        self.run(_cancel_all(), timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)


def wait_until(pred: Callable[[], bool], *, timeout: float = 60.0, what: str = "condition") -> float:
    """Poll ``pred`` until true; returns the seconds it took; fails the test on timeout."""
    t0 = time.monotonic()
    while not pred():
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - t0


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def bounded_gather(aws: list[Awaitable[Any]], *, limit: int = 32) -> list[Any]:
    sem = asyncio.Semaphore(limit)

    async def one(a: Awaitable[Any]) -> Any:
        async with sem:
            return await a

    return await asyncio.gather(*(one(a) for a in aws))


async def create_configmaps(client: ApiClient, *, namespace: str, n: int, prefix: str = "cm") -> None:
    await bounded_gather(
        [
            client.create(
                CONFIGMAPS,
                {"metadata": {"name": f"{prefix}{i}"}, "data": {"value": "0"}},
                namespace=namespace,
            )
            for i in range(n)
        ]
    )
