"""One process's runtime: its client, informers, runnables, controllers and (optionally) its Lease.

What runs when follows controller-runtime's manager, in groups:

* **caches** — the informers (:meth:`Manager.informer`). They start first, on every replica, leading or not
  (a follower's caches are warm when it wins the Lease, so fail-over does not wait for a LIST). An informer
  asked for while the manager runs is started at once; its ``wait_for_sync`` tells when it is complete.
* **servers** (:attr:`RunnableGroup.SERVERS`) — start at once, beside the caches, on every replica; never
  leader-gated. A listener belongs here: it serves while the caches fill (and answers "not ready" itself).
* **others** (:attr:`RunnableGroup.OTHERS`) — start once the caches have synced, on every replica; never
  leader-gated. What needs the caches but not the Lease belongs here.
* **leader-only** (:attr:`RunnableGroup.LEADER` and the controllers) — start once the caches have synced, and
  only while this replica leads: they are started when the Lease is won and stopped when it ends. Without
  leader election the one process leads as soon as its caches have synced.

Readiness (``set_ready``) is reported once every informer that existed when :meth:`Manager.run` began has
synced and every ``ready`` event given to :meth:`Manager.add_runnable` is set (a server's "listening"); it
never waits for the Lease (followers serve too) and is withdrawn when the manager stops. Informers added later
do not count.

A runnable that returns is done (the others go on); one that raises stops the manager, and :meth:`Manager.run`
raises that exception (the process exits, its supervisor restarts it). Losing the Lease raises
:class:`~dorgu.runtime.leaderelection.LeadershipLost` out of :meth:`Manager.run` the same way. While leading,
every write of the process's client is fenced by the Lease (:meth:`LeaderElector.install_guard`).

On stop: leader-only work first (it returns on the stop signal, then the Lease is released; a follower still
waiting for the Lease stops waiting at once), then the others, the caches, and the servers last — each group
cancelled and awaited before the next.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from dorgu.runtime.client import ApiClient, ClientSettings
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.controller import Controller
from dorgu.runtime.informer import Informer, InformerSettings, Selector
from dorgu.runtime.leaderelection import LeaderElectionSettings, LeaderElector
from dorgu.runtime.meta import Keep
from dorgu.runtime.multinamespace import MultiNamespaceInformer
from dorgu.runtime.resource import Resource
from dorgu.runtime.store import IndexFunc

__all__ = ["Manager", "Runnable", "RunnableGroup"]

log = logging.getLogger("dorgu.manager")
T = TypeVar("T")
Runnable = Callable[[], Coroutine[Any, Any, None]]
"""Something the manager runs: an ``async def`` of no arguments, cancelled when its group stops."""


class RunnableGroup(enum.Enum):
    """When a runnable given to :meth:`Manager.add_runnable` runs (see the module docstring). The caches are
    a group of their own, filled by :meth:`Manager.informer`."""

    SERVERS = "servers"
    """At once, on every replica, not leader-gated; stopped last."""
    OTHERS = "others"
    """Once the caches have synced, on every replica, not leader-gated."""
    LEADER = "leader"
    """Once the caches have synced, and only while this replica leads."""


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


@dataclass(frozen=True, kw_only=True)
class _Entry:
    fn: Runnable
    """The runnable."""
    name: str
    """Its task's name (logs, debugging)."""


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
        self._informers: dict[
            tuple[str, str | tuple[str, ...] | None, str | None, str | None],
            Informer[Any] | MultiNamespaceInformer[Any],
        ] = {}
        self._controllers: list[Controller] = []
        self._runnables: dict[RunnableGroup, list[_Entry]] = {g: [] for g in RunnableGroup}
        self._ready_gates: list[asyncio.Event] = []
        self._state = _State.NEW
        self._leading = False
        # Running tasks per group; a task that raises sets _failure (the first one wins).
        self._caches: list[asyncio.Task[None]] = []
        self._servers: list[asyncio.Task[None]] = []
        self._others: list[asyncio.Task[None]] = []
        self._failure: asyncio.Future[BaseException] | None = None

    # -- building ---------------------------------------------------------------------------------------

    def informer(
        self,
        resource: Resource,
        item_type: type[T],
        *,
        namespace: str | tuple[str, ...] | None = None,
        label_selector: Selector = None,
        field_selector: str | None = None,
        indexers: dict[str, IndexFunc] | None = None,
        transform: Callable[[T], T] | None = None,
        keep: Keep | None = None,
    ) -> Informer[Any]:
        """The process's one informer for this resource/namespace/selectors (created on first request).

        ``namespace``: one namespace, several (a tuple: one cache over them, listed and watched namespace
        by namespace — :mod:`~dorgu.runtime.multinamespace`), or None (every namespace; a cluster-scoped
        kind is always cached whole, whatever is given). Created while the manager runs, it is started at
        once (it does not count for readiness; await its ``wait_for_sync``). Indexers can only be given
        when the informer is created."""
        if not resource.namespaced:
            namespace = None
        elif isinstance(namespace, tuple) and len(namespace) == 1:
            namespace = namespace[0]
        key = (str(resource), namespace, label_selector, field_selector)
        inf = self._informers.get(key)
        if inf is None:
            if self._state is _State.STOPPED:
                raise RuntimeError("the manager has stopped: no informer can be started")
            if isinstance(namespace, tuple):
                inf = MultiNamespaceInformer(
                    self.client, resource, item_type=item_type, namespaces=namespace,
                    label_selector=label_selector, field_selector=field_selector, indexers=indexers,
                    transform=transform, keep=keep, settings=self.informer_settings, clock=self.clock,
                )  # fmt: skip
            else:
                inf = Informer(
                    self.client, resource, item_type=item_type, namespace=namespace,
                    label_selector=label_selector, field_selector=field_selector, indexers=indexers,
                    transform=transform, keep=keep, settings=self.informer_settings, clock=self.clock,
                )  # fmt: skip
            self._informers[key] = inf
            if self._state is _State.RUNNING:
                self._start_informer(inf)
        elif indexers:
            raise ValueError(f"informer for {key} already exists; give its indexers at first creation")
        return inf  # type: ignore[return-value]  # a MultiNamespaceInformer has Informer's interface

    def add_controller(self, controller: Controller) -> None:
        """Run ``controller`` in the leader-only group (its informers come from :meth:`informer`)."""
        self._not_started("add_controller")
        self._controllers.append(controller)

    def add_runnable(
        self,
        fn: Runnable,
        *,
        group: RunnableGroup,
        ready: asyncio.Event | None = None,
        name: str | None = None,
    ) -> None:
        """Run ``fn`` in ``group`` (see :class:`RunnableGroup`). ``ready``: the process is not ready until
        this event is set too (e.g. a server's "listening"); not for the leader-only group, since followers
        are ready as well. ``name`` names its task (default: the function's name)."""
        self._not_started("add_runnable")
        if ready is not None and group is RunnableGroup.LEADER:
            raise ValueError("a leader-only runnable cannot gate readiness: followers must be ready too")
        label = name or getattr(fn, "__qualname__", None) or repr(fn)
        self._runnables[group].append(_Entry(fn=fn, name=f"{group.value}:{label}"))
        if ready is not None:
            self._ready_gates.append(ready)

    def _not_started(self, what: str) -> None:
        if self._state is not _State.NEW:
            raise RuntimeError(f"{what}: the manager has already started")

    @property
    def informers(self) -> list[Informer[Any] | MultiNamespaceInformer[Any]]:
        return list(self._informers.values())

    # -- running ----------------------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (then release the Lease and return), a runnable raises or the Lease is
        lost (then raise)."""
        self._not_started("run")
        self._state = _State.RUNNING
        self._failure = asyncio.get_running_loop().create_future()
        main: asyncio.Task[None] | None = None
        stopper: asyncio.Task[bool] | None = None
        try:
            initial = list(self._informers.values())
            for inf in initial:
                self._start_informer(inf)
            for entry in self._runnables[RunnableGroup.SERVERS]:
                self._spawn(self._servers, entry.fn(), entry.name)
            main = asyncio.create_task(self._main(initial, stop), name="manager")
            stopper = asyncio.create_task(stop.wait())
            waiting: set[asyncio.Future[Any]] = {main, stopper, self._failure}
            while True:
                done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if main in done:
                    main.result()  # raises what ended it (LeadershipLost, ...)
                    return
                if self._failure in done:
                    raise self._failure.result()
                # Stopped. Leader-only work returns on the stop signal (then the Lease is released); anything
                # before that (caches not synced, waiting for the Lease) simply stops waiting.
                waiting.discard(stopper)
                if not self._leading:
                    await _cancel([main])
                    return
        finally:
            self._state = _State.STOPPED
            self._set_ready(False)
            await _cancel([t for t in (main, stopper) if t is not None])
            await _cancel(self._others)
            await _cancel(self._caches)
            await _cancel(self._servers)
            await self.client.close()

    async def _main(
        self, initial: list[Informer[Any] | MultiNamespaceInformer[Any]], stop: asyncio.Event
    ) -> None:
        """Caches synced → the others and readiness → leader-only work (under the Lease, if any)."""
        await asyncio.gather(*(i.wait_for_sync() for i in initial))
        log.info("caches synced", extra={"informers": [str(i.resource) for i in initial]})
        for entry in self._runnables[RunnableGroup.OTHERS]:
            self._spawn(self._others, entry.fn(), entry.name)
        if all(gate.is_set() for gate in self._ready_gates):
            self._set_ready(True)
        else:
            self._spawn(self._others, self._ready_when_gates_open(), "readiness")
        if self.elector is None:
            await self._lead(stop)
        else:
            self.elector.install_guard()
            await self.elector.run(lambda: self._lead(stop))

    async def _ready_when_gates_open(self) -> None:
        await asyncio.gather(*(gate.wait() for gate in self._ready_gates))
        self._set_ready(True)

    async def _lead(self, stop: asyncio.Event) -> None:
        """The leader-only group: run until ``stop`` (a failure ends the manager through ``_failure``)."""
        self._leading = True
        work: list[asyncio.Task[None]] = []
        try:
            for c in self._controllers:
                self._spawn(work, c.run(), f"controller:{c.settings.name}")
            for entry in self._runnables[RunnableGroup.LEADER]:
                self._spawn(work, entry.fn(), entry.name)
            await stop.wait()
        finally:
            await _cancel(work)
            self._leading = False

    def _start_informer(self, inf: Informer[Any] | MultiNamespaceInformer[Any]) -> None:
        self._spawn(self._caches, inf.run(), f"informer:{inf.resource}")

    def _spawn(self, tasks: list[asyncio.Task[None]], coro: Coroutine[Any, Any, None], name: str) -> None:
        task = asyncio.create_task(coro, name=name)
        tasks.append(task)
        task.add_done_callback(self._on_done)

    def _on_done(self, task: asyncio.Task[None]) -> None:
        # The rule: a runnable that returns is done; one that raises stops the manager with its exception.
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None or self._failure is None or self._failure.done():
            return
        if self._state is _State.RUNNING:
            log.error("%s failed (%s: %s); stopping the manager", task.get_name(), type(exc).__name__, exc)
        self._failure.set_result(exc)


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has ended (what they raise is theirs: see ``_on_done``)."""
    for t in tasks:
        t.cancel()
    pending = [t for t in tasks if not t.done()]
    if pending:
        await asyncio.wait(pending)
    for t in tasks:
        if not t.cancelled():
            t.exception()  # retrieved: asyncio would log it as never retrieved
