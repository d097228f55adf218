"""What every leader-elected controller component shares: its Lease settings, its process wiring, the
cache transform that drops ``managedFields``.

A controller module provides a reconciler class that wires itself onto a :class:`Manager`; its ``run(ctx)``
is one call to :func:`run_controller`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import msgspec

from dorgu.runtime.component import ComponentContext
from dorgu.runtime.events import EventRecorder
from dorgu.runtime.leaderelection import LeaderElectionSettings
from dorgu.runtime.manager import Manager

T = TypeVar("T")


def drop_managed_fields(obj: T) -> T:
    """Informer transform: no controller reads ``managedFields``, and they are most of a small object."""
    meta = obj.metadata  # type: ignore[attr-defined]
    if meta.managed_fields is None:
        return obj
    return msgspec.structs.replace(obj, metadata=msgspec.structs.replace(meta, managed_fields=None))  # type: ignore[type-var]


def lease_settings(
    options: Mapping[str, Any], *, identity: str, default_name: str
) -> LeaderElectionSettings | None:
    """The component's Lease from its options (None when ``leader_elect`` is false). Defaults: client-go's
    15 s / 10 s / 2 s, a 2 s spreading delay, rebalancing on (a replica holding more than its fair share of
    the controllers' Leases hands one to a replica holding fewer), namespace ``dorgu-system``."""
    if not options.get("leader_elect", True):
        return None
    return LeaderElectionSettings(
        name=options.get("lease_name", default_name),
        namespace=options.get("lease_namespace") or "dorgu-system",
        identity=identity,
        lease_duration_s=float(options.get("lease_duration_s", 15.0)),
        renew_deadline_s=float(options.get("renew_deadline_s", 10.0)),
        retry_period_s=float(options.get("retry_period_s", 2.0)),
        spread_delay_s=float(options.get("spread_delay_s", 2.0)),
        rebalance=bool(options.get("rebalance", True)),
        presence_period_s=_float_or_none(options.get("presence_period_s")),
        rebalance_period_s=_float_or_none(options.get("rebalance_period_s")),
    )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


async def run_controller(
    ctx: ComponentContext,
    *,
    name: str,
    lease_name: str,
    build: Callable[[Manager, EventRecorder], object],
) -> None:
    """A controller component's life: its own User-Agent, a Manager with its Lease, an event recorder that
    runs while leading, ``build`` to wire the reconciler, then run until stopped or the lease is lost."""
    connection = msgspec.structs.replace(ctx.connection, user_agent=f"{ctx.connection.user_agent} {name}")
    manager = Manager(
        connection=connection,
        leader_election=lease_settings(ctx.options, identity=ctx.identity, default_name=lease_name),
        set_ready=ctx.set_ready,
    )
    events = EventRecorder(manager.client, component=name, host=ctx.identity)
    build(manager, events)
    manager.add_runnable(events.run, leader_elected=True)
    await manager.run(ctx.stopping)
    await asyncio.sleep(0)
