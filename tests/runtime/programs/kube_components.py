"""Components that talk to a real API server, run by the supervisor in tests.

``informer``: caches the ConfigMaps of ``options["namespace"]``, ready once synced.
``heartbeat``: the same, and merge-patches ConfigMap ``hb-<name>`` every ``options["period"]`` seconds with
a counter — a failing write is logged and retried, so the test sees whether writes keep landing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os

from dorgu.runtime.client import ApiClient
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.errors import ApiError, NotFound
from dorgu.runtime.informer import Informer
from dorgu.runtime.resource import CONFIGMAPS
from tests.runtime.programs.cmcontroller import ConfigMap


async def informer(ctx: ComponentContext) -> None:
    async with ApiClient(ctx.connection) as client:
        inf: Informer[ConfigMap] = Informer(
            client, CONFIGMAPS, item_type=ConfigMap, namespace=ctx.options["namespace"]
        )
        task = asyncio.create_task(inf.run())
        await inf.wait_for_sync()
        ctx.set_ready(True)
        await ctx.stopping.wait()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def heartbeat(ctx: ComponentContext) -> None:
    ns, name = ctx.options["namespace"], f"hb-{ctx.name}"
    async with ApiClient(ctx.connection) as client:
        ctx.set_ready(True)
        n = 0
        while not ctx.stopping.is_set():
            n += 1
            body = {"data": {"n": str(n), "pid": str(os.getpid())}}
            try:
                try:
                    await client.patch(CONFIGMAPS, name, body, namespace=ns, decode=False)
                except NotFound:
                    await client.create(CONFIGMAPS, {"metadata": {"name": name}, **body}, namespace=ns)
            except ApiError as e:
                ctx.log.warning("heartbeat write failed: %s %s", e.code, e.reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stopping.wait(), timeout=float(ctx.options.get("period", 0.3)))
