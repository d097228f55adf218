"""Small components for the supervisor's tests, run in child processes as
``tests.runtime.programs.components:NAME``.

Each writes what the test needs to see into files under ``options["dir"]`` (a test's tmp_path):
``started-NAME-PID`` when it starts, ``graceful-NAME-PID`` when it returns after ``ctx.stopping``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

from dorgu.runtime.component import ComponentContext, RestartRequested


def _mark(ctx: ComponentContext, what: str) -> None:
    directory = ctx.options.get("dir")
    if directory:
        Path(directory, f"{what}-{ctx.name}-{os.getpid()}").write_text(ctx.identity)


async def sleeper(ctx: ComponentContext) -> None:
    """Ready at once; returns when asked to stop."""
    _mark(ctx, "started")
    ctx.set_ready(True)
    await ctx.stopping.wait()
    _mark(ctx, "graceful")


async def gated(ctx: ComponentContext) -> None:
    """Ready only once the file ``options["gate"]`` exists."""
    _mark(ctx, "started")
    gate = Path(ctx.options["gate"])
    while not gate.exists() and not ctx.stopping.is_set():
        await asyncio.sleep(0.05)
    ctx.set_ready(True)
    await ctx.stopping.wait()
    _mark(ctx, "graceful")


async def crasher(ctx: ComponentContext) -> None:
    """Raises after ``options["after_s"]``."""
    _mark(ctx, "started")
    await asyncio.sleep(float(ctx.options.get("after_s", 0.05)))
    raise RuntimeError("crasher crashed on purpose")


async def stubborn(ctx: ComponentContext) -> None:
    """Ignores SIGTERM: only SIGKILL ends it."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _mark(ctx, "started")
    ctx.set_ready(True)
    await asyncio.Event().wait()


async def metered(ctx: ComponentContext) -> None:
    """Counts ``options["count"]`` into a counter and sets a live gauge to 1, then sleeps."""
    from prometheus_client import Counter, Gauge

    ticks = Counter("dorgu_test_ticks_total", "Ticks counted by the metered test component", ["component"])
    up = Gauge("dorgu_test_up", "1 per live metered process", ["component"], multiprocess_mode="livesum")
    ticks.labels(ctx.name).inc(int(ctx.options.get("count", 1)))
    up.labels(ctx.name).set(1)
    _mark(ctx, "started")
    ctx.set_ready(True)
    once = Path(ctx.options["dir"]) / "restarted-once"
    if ctx.options.get("count_then_restart") and not once.exists():
        # Counts more after the test's scrape, then exits cleanly (once): only its final snapshot has these.
        await asyncio.sleep(float(ctx.options.get("wait_s", 0)))
        while not (Path(ctx.options["dir"]) / "scraped").exists():
            await asyncio.sleep(0.05)
        ticks.labels(ctx.name).inc(int(ctx.options["count_then_restart"]))
        once.touch()
        raise RestartRequested("test: a clean exit after counting")
    await ctx.stopping.wait()
    _mark(ctx, "graceful")
