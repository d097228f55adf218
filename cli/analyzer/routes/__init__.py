"""The route finder: which HTTP routes an application really serves, read from its server code the way its
framework would mount them (prefixes of blueprints, routers, includes, groups and class-level mappings
applied). Tests, front-end code and comments are not read (:mod:`cli.analyzer.routes.sources`); a router
that is never mounted serves nothing.

``find_routes(app_dir, framework)`` is the one entry point: ``generate`` picks its probes from it
(:mod:`cli.analyzer.probes`), and anything that must check a proposed probe path (an LLM's, a user's) asks
it too. A framework without a finder gives no routes — dorgu then says so and writes no HTTP probe rather
than guess.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes import (
    aspnet,
    axum,
    django,
    express,
    fastapi,
    fastify,
    flask,
    go,
    laravel,
    nestjs,
    rails,
    spring,
)
from cli.analyzer.routes.model import ANY_METHOD, Route

__all__ = ["ANY_METHOD", "FINDERS", "Route", "find_routes", "finder_for", "serves_get"]

Finder = Callable[..., list[Route]]

FINDERS: dict[str, Finder] = {
    "flask": flask.find,
    "fastapi": fastapi.find,
    "starlette": fastapi.find,
    "django": django.find,
    "express": express.find,
    "nestjs": nestjs.find,
    "spring-boot": spring.find,
    "aspnetcore": aspnet.find,
    "gin": go.find,
    "echo": go.find,
    "chi": go.find,
    "gorilla": go.find,
    "fiber": go.find,
    "go": go.find,
    "rails": rails.find,
    "laravel": laravel.find,
    "fastify": fastify.find,
    "axum": axum.find,
}
"""Framework (as :mod:`cli.analyzer.code` names it; ``go`` for plain ``net/http``) → its finder."""


def finder_for(framework: str, *, language: str = "") -> str | None:
    """The :data:`FINDERS` key used for an app, or ``None`` when dorgu has no route finder for it."""
    if framework in FINDERS:
        return framework
    if not framework and language == "go":
        return "go"
    return None


def find_routes(
    app_dir: Path,
    framework: str,
    *,
    language: str = "",
    on_unreadable: Callable[[Path, str], None] = lambda _p, _r: None,
) -> list[Route]:
    """Every route the app in ``app_dir`` serves (all methods), sorted by path; ``[]`` when there is no finder
    for ``framework``. ``Route.file`` is relative to ``app_dir``."""
    key = finder_for(framework, language=language)
    if key is None:
        return []
    return FINDERS[key](app_dir, on_unreadable=on_unreadable)


def serves_get(routes: list[Route], path: str) -> Route | None:
    """The route that answers ``GET path``, if any (what an ``httpGet`` probe on ``path`` needs)."""
    return next((r for r in routes if r.path == path and r.serves_get), None)
