"""Which served routes make the liveness and readiness probes.

A health route is a ``GET`` route whose last path segment names a health endpoint (``health``,
``healthz``, ``_health``, ``healthcheck``, ``livez``, ``readyz``, ``ping``, Rails' ``up`` …), or
``…/health/live`` and
``…/health/ready`` style pairs. Readiness: the shortest route naming readiness (``ready``, ``readyz``,
``readiness``); liveness: the shortest naming liveness (``live``, ``livez``, ``liveness``, ``healthz``), else
a plain health route, else ``ping``, else the readiness route. Ties go to the lexically first path.
"""

from __future__ import annotations

from dataclasses import dataclass

from cli.analyzer.model import AppAnalysis
from cli.analyzer.routes import Route

_READY = {"ready", "readyz", "readiness"}
_LIVE = {"live", "livez", "liveness", "healthz"}
_HEALTH = {"health", "_health", "healthcheck", "health-check", "health_check", "status-check", "up"}
_PING = {"ping"}
_ALL = _READY | _LIVE | _HEALTH | _PING


@dataclass(frozen=True)
class ProbeRoutes:
    """The routes chosen for the probes (``None``: nothing suitable)."""

    liveness: Route | None
    """Liveness probe route."""
    readiness: Route | None
    """Readiness probe route."""


def _kind(path: str) -> str:
    segs = [s for s in path.lower().split("/") if s]
    if not segs or segs[-1] not in _ALL:
        return ""
    last = segs[-1]
    if last in _READY:
        return "ready"
    if last in _LIVE:
        return "live"
    return "health" if last in _HEALTH else "ping"


def choose(routes: list[Route]) -> ProbeRoutes:
    health = sorted(
        (r for r in routes if r.serves_get and _kind(r.path)), key=lambda r: (len(r.path), r.path)
    )

    def first(kind: str) -> Route | None:
        return next((r for r in health if _kind(r.path) == kind), None)

    ready = first("ready")
    live = first("live") or first("health") or first("ping") or ready
    return ProbeRoutes(liveness=live, readiness=ready)


def probe_report(analysis: AppAnalysis) -> list[str]:
    """Where the probes come from, for the user: one line per probe with its origin, or why there is none."""
    hc = analysis.health_check
    code = analysis.code
    if hc is not None and hc.path:
        what = _SOURCES.get(hc.source, hc.source)
        if hc.source == "code":
            what = f"a {code.framework} route"
        return [
            "Probes:",
            f"  liveness   GET {hc.path} (port {hc.port}) from {hc.origin or '?'}, {what}",
            f"  readiness  GET {hc.readiness_path or hc.path} (port {hc.port}) from "
            f"{hc.readiness_origin or hc.origin or '?'}, {what}",
        ]
    if code.route_finder:
        why = (
            f"no GET health route among the {len(code.routes)} route(s) the {code.route_finder} route finder "
            "found"
        )
    else:
        why = f"dorgu has no route finder for {code.framework or code.language or 'this app'}"
    return [
        f"Probes: none — {why}, and no HEALTHCHECK; no HTTP probe written "
        "(add health.liveness/readiness to the app's .dorgu.yaml, or a HEALTHCHECK to the Dockerfile)"
    ]


_SOURCES = {
    "dockerfile": "the Dockerfile's HEALTHCHECK",
    "compose": "the compose healthcheck",
    "config": "the app's .dorgu.yaml",
    "llm": "proposed by the LLM and served by that route",
}
