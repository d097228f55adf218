"""``Controller.hold``: keys it holds are not queued by watch events (primary or mapped), and queue again
when their holder calls ``enqueue`` (pure: the handlers are called directly, no server)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from dorgu.runtime.clock import FakeClock
from dorgu.runtime.controller import Controller, ControllerSettings, Request
from dorgu.runtime.informer import Handlers


class _Source:
    """Stands in for an informer: the controller only registers handlers on it."""

    def __init__(self) -> None:
        self.handlers: list[Handlers[Any]] = []

    def add_handlers(self, handlers: Handlers[Any]) -> None:
        self.handlers.append(handlers)


def _obj(name: str, app: str = "") -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(namespace="ns", name=name, labels={"app": app}))


def test_held_keys_are_not_queued_by_events_and_enqueue_lets_them_go() -> None:
    async def main() -> None:
        async def reconcile(req: Request) -> None:
            return None

        c = Controller(settings=ControllerSettings(name="hold-test"), reconcile=reconcile, clock=FakeClock())
        held = {"ns/a"}
        c.hold = lambda req: req.key in held
        primary, secondary = _Source(), _Source()
        c.watch_for(primary)  # type: ignore[arg-type]
        c.watch_mapped(secondary, lambda d: [Request("ns", d.metadata.labels["app"])])  # type: ignore[arg-type]
        (p,), (s,) = primary.handlers, secondary.handlers
        assert p.on_add and p.on_update and p.on_delete and s.on_add and s.on_update
        p.on_add(_obj("a"))
        p.on_update(_obj("a"), _obj("a"))
        s.on_add(_obj("dep-1", app="a"))
        s.on_update(_obj("dep-1", app="a"), _obj("dep-1", app="a"))
        assert len(c.queue) == 0
        p.on_add(_obj("b"))
        s.on_add(_obj("dep-2", app="b"))
        assert len(c.queue) == 1  # b, once
        c.enqueue(Request("ns", "a"))  # its holder lets it go
        assert len(c.queue) == 2
        held.clear()
        p.on_delete(_obj("c"))
        assert len(c.queue) == 3

    asyncio.run(main())
