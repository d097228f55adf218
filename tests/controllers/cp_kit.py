"""Helpers for the ClusterPersona and Argo CD controller tests: run a reconciler in-process, poll."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from dorgu.envtest import ControlPlane
from dorgu.runtime.manager import Manager
from tests.runtime.kit import LoopThread

R = TypeVar("R")


@contextlib.contextmanager
def running(cp: ControlPlane, make: Callable[[Manager], R], *, agent: str = "dorgu-test") -> Iterator[R]:
    """Build a reconciler on a fresh Manager (no leader election) in a loop thread; run it; stop it after."""
    lt = LoopThread()
    holder: dict[str, Any] = {}

    async def setup() -> None:
        m = Manager(connection=cp.connection(user_agent=agent))
        holder["r"] = make(m)
        holder["stop"] = asyncio.Event()
        holder["task"] = asyncio.create_task(m.run(holder["stop"]))

    lt.run(setup())
    try:
        yield holder["r"]
    finally:

        async def teardown() -> None:
            holder["stop"].set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(holder["task"], 20)

        lt.run(teardown(), timeout=40)
        lt.close()


def poll(
    fn: Callable[[], R], pred: Callable[[R], bool], *, timeout: float = 90.0, what: str = "condition"
) -> R:
    """Call ``fn`` until ``pred`` holds for its result; returns that result; fails on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if pred(last):
                return last
        except Exception as e:  # keep polling through transient errors
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
        time.sleep(0.05)
