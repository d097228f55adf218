"""The mount graph most frameworks share: an application object, routers (blueprints, ``APIRouter``\\ s,
Express ``Router``\\ s, route groups) mounted on it or on each other under a prefix, and routes declared on
each. Only what is reachable from an application is served: a router nobody mounts serves nothing."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field

from cli.analyzer.routes.model import Route, is_literal, join

_MAX_DEPTH = 16
"""Deeper mount chains (or cycles) are not followed."""


@dataclass(frozen=True)
class Mount:
    """``parent`` mounts ``child`` under ``prefix``."""

    child: Hashable
    """The mounted router's key."""
    prefix: str | None
    """The mount prefix; ``None`` when the mount call gives none."""
    keeps_own_prefix: bool = True
    """Whether the child's own prefix still applies under this mount (FastAPI ``include_router``: yes; a
    Flask ``register_blueprint(bp, url_prefix=…)``: no, the registration's prefix replaces it)."""


@dataclass
class MountGraph:
    """Routers, their own prefixes, their routes and who mounts whom; keys are anything hashable (usually
    ``(file, variable)``)."""

    apps: list[Hashable] = field(default_factory=list)
    """The application objects: what the server serves starts here."""
    own_prefix: dict[Hashable, str] = field(default_factory=dict)
    """A router's own prefix (Blueprint ``url_prefix``, ``APIRouter(prefix=…)``)."""
    routes: dict[Hashable, list[Route]] = field(default_factory=dict)
    """Routes declared on a router, paths relative to it."""
    mounts: dict[Hashable, list[Mount]] = field(default_factory=dict)
    """What each router (or app) mounts."""

    def add_route(self, key: Hashable, route: Route) -> None:
        self.routes.setdefault(key, []).append(route)

    def add_mount(self, parent: Hashable, mount: Mount) -> None:
        self.mounts.setdefault(parent, []).append(mount)

    def served(self) -> list[Route]:
        """Every literal route reachable from an app, with its full path; sorted and de-duplicated."""
        out: set[Route] = set()

        def visit(key: Hashable, base: str, depth: int, seen: frozenset[Hashable]) -> None:
            if depth > _MAX_DEPTH or key in seen:
                return
            for r in self.routes.get(key, []):
                path = join(base, r.path)
                if is_literal(path):
                    out.add(Route(path=path, method=r.method, file=r.file, line=r.line))
            for m in self.mounts.get(key, []):
                own = self.own_prefix.get(m.child, "")
                if m.prefix is None:
                    sub = join(base, own)
                else:
                    sub = join(base, m.prefix, own) if m.keeps_own_prefix else join(base, m.prefix)
                visit(m.child, sub, depth + 1, seen | {key})

        for app in dict.fromkeys(self.apps):
            visit(app, self.own_prefix.get(app, ""), 0, frozenset())
        return sorted(out)
