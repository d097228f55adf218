"""One process's runtime: its client, its informers, its controllers and (optionally) its Lease.

Start order follows controller-runtime's manager: informers start at once on every replica (a follower's
caches are warm when it wins the lease, so fail-over does not wait for a LIST), readiness is reported when
every informer has synced, and only then — and only while leading — do controllers and leader-only
runnables run. Losing the lease raises :class:`~dorgu.runtime.leaderelection.LeadershipLost` out of
:meth:`Manager.run`: the process exits and its supervisor restarts it as a follower. While leading, every
write of the process's client is fenced by the lease (:meth:`LeaderElector.install_guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dorgu.runtime.client import ApiClient, ClientSettings
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.controller import Controller
from dorgu.runtime.informer import Informer, InformerSettings
from dorgu.runtime.leaderelection import LeaderElectionSettings, LeaderElector
from dorgu.runtime.resource import Resource
from dorgu.runtime.store import IndexFunc

log = logging.getLogger("dorgu.manager")
T = TypeVar("T")
Runnable = Callable[[], Awaitable[None]]


class Manager:
    """Build with :meth:`informer`, :meth:`add_controller`, :meth:`add_runnable`; then ``await run(stop)``."""

    def __init__(
        self,
        *,
        connection: ConnectionSettings,
        leader_election: LeaderElectionSettings | None = None,
        clock: Clock | None = None,
        client_settings: ClientSettings | None = None,
        informer_settings: InformerSettings | None = None,
        set_ready: Callable[[bool], None] | None = None,
    ) -> None:
        self.clock = clock or RealClock()
        self.client = ApiClient(connection, settings=client_settings, clock=self.clock)
        self.leader_election = leader_election
        self.elector: LeaderElector | None = (
            LeaderElector(self.client, leader_election, clock=self.clock) if leader_election else None
        )
        self.informer_settings = informer_settings or InformerSettings()
        self._set_ready = set_ready or (lambda ready: None)
        self._informers: dict[tuple[str, str | None, str | None], Informer[Any]] = {}
        self._controllers: list[Controller] = []
        self._leader_runnables: list[Runnable] = []
        self._always_runnables: list[Runnable] = []

    def informer(
        self,
        resource: Resource,
        item_type: type[T],
        *,
        namespace: str | None = None,
        label_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Callable[[T], T] | None = None,
    ) -> Informer[Any]:
        """The process's one informer for this resource/namespace/selector (created on first request)."""
        key = (str(resource), namespace, label_selector)
        inf = self._informers.get(key)
        if inf is None:
            inf = Informer(
                self.client, resource, item_type=item_type, namespace=namespace,
                label_selector=label_selector, indexers=indexers, transform=transform,
                settings=self.informer_settings, clock=self.clock,
            )  # fmt: skip
            self._informers[key] = inf
        elif indexers:
            raise ValueError(f"informer for {key} already exists; give its indexers at first creation")
        return inf

    def add_controller(self, controller: Controller) -> None:
        self._controllers.append(controller)

    def add_runnable(self, fn: Runnable, *, leader_elected: bool = True) -> None:
        """Run ``fn`` for the manager's life (``leader_elected``: only while leading)."""
        (self._leader_runnables if leader_elected else self._always_runnables).append(fn)

    @property
    def informers(self) -> list[Informer[Any]]:
        return list(self._informers.values())

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (then release the lease and return) or the lease is lost (raises)."""
        tasks = [
            asyncio.create_task(i.run(), name=f"informer:{i.resource}") for i in self._informers.values()
        ]
        tasks += [asyncio.create_task(fn(), name="runnable") for fn in self._always_runnables]
        try:
            await asyncio.gather(*(i.wait_for_sync() for i in self._informers.values()))
            self._set_ready(True)
            log.info(
                "caches synced", extra={"informers": [str(i.resource) for i in self._informers.values()]}
            )
            if self.elector is None:
                await self._lead(stop)
            else:
                self.elector.install_guard()
                await self.elector.run(lambda: self._lead(stop))
        finally:
            self._set_ready(False)
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.client.close()

    async def _lead(self, stop: asyncio.Event) -> None:
        work = [asyncio.create_task(c.run(), name=f"controller:{c.settings.name}") for c in self._controllers]
        work += [asyncio.create_task(fn(), name="leader-runnable") for fn in self._leader_runnables]
        stopper = asyncio.create_task(stop.wait())
        try:
            done, _ = await asyncio.wait([*work, stopper], return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is not stopper and not t.cancelled() and t.exception() is not None:
                    raise t.exception()  # type: ignore[misc]
        finally:
            for t in [*work, stopper]:
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.gather(*work, stopper, return_exceptions=True)
