"""Components: what the supervisor runs, one OS process each, and what a component gets when it runs.

A component is an ``async def run(ctx: ComponentContext) -> None`` named by ``"package.module:function"``.
The supervisor (:mod:`dorgu.runtime.supervisor`) is handed :class:`ComponentSpec` values and knows nothing
else about them; the child bootstrap (:mod:`dorgu.runtime.child`) imports the target in a fresh
interpreter and calls it with a :class:`ComponentContext`.

The contract for a target: call ``ctx.set_ready(True)`` once it can serve (``/readyz`` of the supervisor
is 200 only while every component has); return promptly after ``ctx.stopping`` is set (a graceful stop);
raise to report failure (the supervisor restarts the process with backoff). Returning without being asked
to stop is also treated as an unexpected exit. Raising :class:`RestartRequested` asks for a fresh process
at once: no backoff, not counted as a failure (a controller that handed its Lease to another replica
starts again as a follower this way).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from dorgu.runtime.config import ConnectionSettings

__all__ = ["ComponentContext", "ComponentSpec", "ComponentTarget", "RestartRequested"]


class RestartRequested(Exception):
    """Raised by a component to be started afresh in a new process at once (not a failure)."""


@dataclass(frozen=True, kw_only=True)
class ComponentSpec:
    """One component the supervisor keeps running in a process of its own."""

    name: str
    """Unique name of the component (``"persona-controller"``, ``"webhook"``): logs, metrics, ``/readyz``."""
    target: str
    """``"package.module:function"`` naming an ``async def run(ctx: ComponentContext) -> None``."""
    options: dict[str, Any] = field(default_factory=dict)
    """Settings for the component, handed to the child as plain data (msgspec-serialisable values only)."""


ComponentTarget = Callable[["ComponentContext"], Awaitable[None]]
"""The signature of a component's target function."""


class ComponentContext:
    """What a component's target gets in its child process."""

    def __init__(
        self,
        *,
        name: str,
        connection: ConnectionSettings,
        options: Mapping[str, Any],
        identity: str,
        stopping: asyncio.Event,
        report: Callable[[Mapping[str, Any]], None],
        log: logging.Logger | None = None,
    ) -> None:
        self.name: str = name
        """The component's name (:attr:`ComponentSpec.name`)."""
        self.connection: ConnectionSettings = connection
        """How to reach the API server (resolved once by the supervisor)."""
        self.options: Mapping[str, Any] = options
        """The component's settings (:attr:`ComponentSpec.options`)."""
        self.identity: str = identity
        """This replica's identity (pod name or hostname), e.g. for leader election."""
        self.stopping: asyncio.Event = stopping
        """Set when the component is asked to stop gracefully (SIGTERM from the supervisor)."""
        self.log: logging.Logger = log if log is not None else logging.getLogger(f"dorgu.component.{name}")
        """A logger for the component (the process's log lines also carry ``component``)."""
        self._report = report
        self._ready: bool | None = None

    @property
    def ready(self) -> bool:
        """What the component last reported with :meth:`set_ready` (False before it reported)."""
        return bool(self._ready)

    def set_ready(self, ready: bool) -> None:
        """Report readiness to the supervisor (it serves the conjunction of all components at ``/readyz``).

        Only changes are sent; the message is written before this returns, so it reaches the supervisor
        even if the event loop is blocked afterwards.
        """
        ready = bool(ready)
        if ready == self._ready:
            return
        self._ready = ready
        self._report({"ready": ready})
