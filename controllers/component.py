"""What every leader-elected controller component shares: its Lease, its process wiring, the cache
transform that drops ``managedFields``.

A controller module provides a reconciler class that wires itself onto a :class:`Manager`; its ``run(ctx)``
converts ``ctx.options`` to its settings struct (:mod:`controllers.settings`, which carries the Lease
options) and makes one call to :func:`run_controller`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

import msgspec

from controllers.settings import LeaseOptions
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.events import EventRecorder
from dorgu.runtime.leaderelection import LeaderElectionSettings
from dorgu.runtime.manager import Manager, RunnableGroup

T = TypeVar("T")


def drop_managed_fields(obj: T) -> T:
    """Informer transform: no controller reads ``managedFields``, and they are most of a small object."""
    meta = obj.metadata  # type: ignore[attr-defined]
    if meta.managed_fields is None:
        return obj
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(meta, managed_fields=None))  # type: ignore[type-var]


def lease_settings(
    options: LeaseOptions, *, identity: str, default_name: str
) -> LeaderElectionSettings | None:
    """The component's Lease from its options (None when ``leader_elect`` is false); the name defaults to
    ``default_name``, the namespace to ``dorgu-system``."""
    if not options.leader_elect:
        return None
    return LeaderElectionSettings(
        name=options.lease_name or default_name,
        namespace=options.lease_namespace or "dorgu-system",
        identity=identity,
        lease_duration_s=options.lease_duration_s,
        renew_deadline_s=options.renew_deadline_s,
        retry_period_s=options.retry_period_s,
        spread_delay_s=options.spread_delay_s,
        rebalance=options.rebalance,
        presence_period_s=options.presence_period_s,
        rebalance_period_s=options.rebalance_period_s,
    )


async def run_controller(
    ctx: ComponentContext,
    *,
    name: str,
    lease_name: str,
    lease: LeaseOptions,
    build: Callable[[Manager, EventRecorder], object],
) -> None:
    """A controller component's life: its own User-Agent, a Manager with the Lease ``lease`` describes
    (named ``lease_name`` unless it names one), an event recorder in the leader-only group (only the leader
    writes), ``build`` to wire the reconciler, then run until stopped or the lease is lost."""
    connection = msgspec.structs.replace(ctx.connection, user_agent=f"{ctx.connection.user_agent} {name}")
    manager = Manager(
        connection=connection,
        leader_election=lease_settings(lease, identity=ctx.identity, default_name=lease_name),
        set_ready=ctx.set_ready,
    )
    events = EventRecorder(manager.client, component=name, host=ctx.identity, clock=manager.clock)
    build(manager, events)
    manager.add_runnable(events.run, group=RunnableGroup.LEADER, name="event-recorder")
    await manager.run(ctx.stopping)
    await asyncio.sleep(0)
