"""What an LLM may change in the analysis, and the checks every proposal must pass first.

The model proposes; the analysis decides. A proposal is taken only where nobody fixed the value (the app's
``.dorgu.yaml`` always wins) and only when it holds against what the analysis found:

* ``type``: one of :data:`APP_TYPES`;
* ``description``: a non-empty string (whitespace collapsed, at most :data:`MAX_DESCRIPTION` characters);
* ``ports``: only ports the Dockerfile exposes (or the compose service publishes); the model may name their
  purpose and protocol and put the main one first, never add one;
* ``health_check``: probe paths a route of the app serves with ``GET`` (the route finder
  :func:`~cli.analyzer.routes.find_routes` + :func:`~cli.analyzer.routes.serves_get`), on an exposed port,
  with delays in range;
* ``resources``: quantities that parse, requests at most limits, and no value above the limit of the
  type's resource profile;
* ``scaling``: ``1 <= min <= max <=`` :data:`MAX_REPLICAS`, CPU/memory targets in 10-95 %.

Each proposal that fails is dropped with a warning that says what was proposed and why it does not hold;
the rest of the reply is still used.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cli.analyzer.model import AppAnalysis, CpuMemory, HealthCheck, Resources
from cli.analyzer.routes import find_routes, finder_for, serves_get
from cli.settings import AppConfig, ResourceProfile
from dorgu.domain.quantity import QuantityError, compare_quantities, parse_quantity

APP_TYPES = ("api", "web", "worker", "cron", "daemon")
"""The persona CRD's ``spec.type`` enum."""
MAX_DESCRIPTION = 2000
"""The longest description taken, in characters."""
MAX_REPLICAS = 100
"""The most replicas a proposal may ask for."""
PROTOCOLS = ("TCP", "UDP", "SCTP")
"""Container port protocols Kubernetes accepts."""


@dataclass
class Outcome:
    """What came of one reply: the fields taken and the warnings for the ones rejected."""

    applied: list[str] = field(default_factory=list)
    """Names of the analysis fields the reply changed."""
    rejected: list[str] = field(default_factory=list)
    """One warning per rejected proposal."""


def _int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def apply(
    analysis: AppAnalysis,
    reply: dict[str, Any],
    *,
    app_dir: Path,
    app_config: AppConfig,
    profile_for: Callable[[str], ResourceProfile],
) -> Outcome:
    """Merge the checked proposals of ``reply`` into ``analysis`` (in place)."""
    out = Outcome()
    app = app_config.app
    _type(analysis, reply.get("type"), fixed=bool(app.type), out=out)
    _description(analysis, reply.get("description"), fixed=bool(app.description), out=out)
    _ports(analysis, reply.get("ports"), out=out)
    health_fixed = bool(app_config.health and (app_config.health.liveness or app_config.health.readiness))
    _health(analysis, reply.get("health_check"), fixed=health_fixed, app_dir=app_dir, out=out)
    _resources(
        analysis,
        reply.get("resources"),
        profile=profile_for(analysis.resource_profile),
        app_config=app_config,
        out=out,
    )
    _scaling(analysis, reply.get("scaling"), app_config=app_config, out=out)
    return out


def _type(analysis: AppAnalysis, value: Any, *, fixed: bool, out: Outcome) -> None:
    if value is None or fixed or value == analysis.type:
        return
    if value not in APP_TYPES:
        out.rejected.append(f"type {value!r} is not one of {', '.join(APP_TYPES)}")
        return
    analysis.type = analysis.resource_profile = value
    out.applied.append("type")


def _description(analysis: AppAnalysis, value: Any, *, fixed: bool, out: Outcome) -> None:
    if value is None or fixed:
        return
    text = " ".join(value.split()) if isinstance(value, str) else ""
    if not text:
        out.rejected.append("description: not a non-empty string")
        return
    analysis.description = text[:MAX_DESCRIPTION]
    out.applied.append("description")


def _ports(analysis: AppAnalysis, value: Any, *, out: Outcome) -> None:
    if value is None:
        return
    if not isinstance(value, list):
        out.rejected.append(f"ports: not a list ({value!r})")
        return
    exposed = {p.port: p for p in analysis.ports}
    shown = ", ".join(str(p) for p in exposed) or "none"
    order: list[int] = []
    for item in value:
        entry = item if isinstance(item, dict) else {"port": item}
        port = _int(entry.get("port"))
        if port is None:
            out.rejected.append(f"port {entry.get('port')!r} is not a port number")
            continue
        if port not in exposed:
            out.rejected.append(f"port {port} is not exposed by the Dockerfile (exposed: {shown})")
            continue
        protocol = str(entry.get("protocol") or exposed[port].protocol).upper()
        if protocol not in PROTOCOLS:
            out.rejected.append(f"port {port}: protocol {protocol!r} is not one of {', '.join(PROTOCOLS)}")
            continue
        purpose = " ".join(str(entry.get("purpose") or exposed[port].purpose).split())[:40]
        exposed[port].protocol, exposed[port].purpose = protocol, purpose or exposed[port].purpose
        if port not in order:
            order.append(port)
    if order:
        # the proposed ports first, in the proposed order; an exposed port is never dropped
        analysis.ports = [exposed[p] for p in order] + [p for p in analysis.ports if p.port not in order]
        out.applied.append("ports")


def _health(analysis: AppAnalysis, value: Any, *, fixed: bool, app_dir: Path, out: Outcome) -> None:
    if value is None or fixed:
        return
    if not isinstance(value, dict):
        out.rejected.append(f"health_check: not an object ({value!r})")
        return
    path = value.get("path")
    ready = value.get("readiness_path") or path
    if not isinstance(path, str) or not path.startswith("/") or not isinstance(ready, str):
        out.rejected.append(f"probe path {path!r} is not an absolute URL path")
        return
    source_dir = app_dir / analysis.source_dir if analysis.source_dir not in ("", ".") else app_dir
    routes = find_routes(source_dir, analysis.framework, language=analysis.language)
    finder = finder_for(analysis.framework, language=analysis.language)
    served = {}
    for probe in dict.fromkeys((path, ready)):
        route = serves_get(routes, probe)
        if route is None:
            if finder is None:
                why = f"dorgu has no route finder for {analysis.framework or analysis.language or 'this app'}"
            else:
                why = f"no route the {finder} route finder found serves GET {probe}"
            out.rejected.append(f"probe path {probe}: {why}")
            return
        served[probe] = route
    first_port = analysis.ports[0].port if analysis.ports else 0
    port = _int(value.get("port")) if value.get("port") is not None else first_port
    exposed = [p.port for p in analysis.ports]
    if port not in exposed:
        shown = ", ".join(str(p) for p in exposed) or "none"
        out.rejected.append(
            f"probe port {value.get('port')!r} is not exposed by the Dockerfile (exposed: {shown})"
        )
        return
    delay = _int(value.get("initial_delay_seconds", 0))
    period = _int(value.get("period_seconds", 0))
    if delay is None or not 0 <= delay <= 600 or period is None or not 0 <= period <= 300:
        out.rejected.append(
            f"probe timing initial_delay_seconds={value.get('initial_delay_seconds')!r}, "
            f"period_seconds={value.get('period_seconds')!r} is outside 0-600 s / 0-300 s"
        )
        return
    live, readiness = served[path], served[ready]
    prefix = "" if analysis.source_dir in ("", ".") else analysis.source_dir.rstrip("/") + "/"
    analysis.health_check = HealthCheck(
        path=path,
        readiness_path=ready,
        port=port or 0,
        initial_delay_seconds=delay,
        period_seconds=period,
        source="llm",
        origin=f"{prefix}{live.file}:{live.line}",  # relative to the app directory, as the analysis's are
        readiness_origin=f"{prefix}{readiness.file}:{readiness.line}",
    )
    out.applied.append("health_check")


def _resources(
    analysis: AppAnalysis, value: Any, *, profile: ResourceProfile, app_config: AppConfig, out: Outcome
) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        out.rejected.append(f"resources: not an object ({value!r})")
        return
    fixed = app_config.resources
    proposed: dict[tuple[str, str], str] = {}
    for kind in ("requests", "limits"):
        block = value.get(kind) or {}
        if not isinstance(block, dict):
            out.rejected.append(f"resources.{kind}: not an object ({block!r})")
            return
        for res in ("cpu", "memory"):
            raw = block.get(res)
            if raw in (None, "") or (fixed is not None and getattr(getattr(fixed, kind), res)):
                continue  # not proposed, or the app's .dorgu.yaml sets it
            if not isinstance(raw, str | int) or isinstance(raw, bool):
                out.rejected.append(f"resources.{kind}.{res} {raw!r} is not a quantity")
                return
            proposed[(kind, res)] = str(raw)
    problems = []
    for (kind, res), raw in proposed.items():
        try:
            q = parse_quantity(raw)
        except QuantityError as e:
            problems.append(f"resources.{kind}.{res} {raw!r} is not a quantity ({e})")
            continue
        cap = str(getattr(profile.limits, res))
        if q.value <= 0:
            problems.append(f"resources.{kind}.{res} {raw} is not positive")
        elif cap and compare_quantities(q, cap) > 0:
            problems.append(
                f"resources.{kind}.{res} {raw} is above the {analysis.resource_profile} profile's limit {cap}"
            )
    if not problems:  # requests at most limits, each side proposed or the profile's
        for res in ("cpu", "memory"):
            req = proposed.get(("requests", res)) or str(getattr(profile.requests, res))
            lim = proposed.get(("limits", res)) or str(getattr(profile.limits, res))
            if req and lim and compare_quantities(req, lim) > 0:
                problems.append(f"resources: requests.{res} {req} is above limits.{res} {lim}")
    if problems:
        out.rejected.extend(problems)
        return
    if proposed:
        analysis.resources = Resources(
            requests=CpuMemory(
                cpu=proposed.get(("requests", "cpu"), ""), memory=proposed.get(("requests", "memory"), "")
            ),
            limits=CpuMemory(
                cpu=proposed.get(("limits", "cpu"), ""), memory=proposed.get(("limits", "memory"), "")
            ),
        )
        out.applied.append("resources")


def _scaling(analysis: AppAnalysis, value: Any, *, app_config: AppConfig, out: Outcome) -> None:
    if value is None:
        return
    if not isinstance(value, dict):
        out.rejected.append(f"scaling: not an object ({value!r})")
        return
    s, fixed = analysis.scaling, app_config.scaling
    names = {
        "min_replicas": "min_replicas",
        "max_replicas": "max_replicas",
        "target_cpu_percent": "target_cpu",
        "target_memory_percent": "target_memory",
    }
    new: dict[str, int] = {}
    for name, cfg_name in names.items():
        raw = value.get(name)
        if raw is None or (fixed is not None and getattr(fixed, cfg_name)):
            continue
        n = _int(raw)
        if n is None:
            out.rejected.append(f"scaling.{name} {raw!r} is not a whole number")
            return
        new[name] = n
    lo, hi = new.get("min_replicas", s.min_replicas), new.get("max_replicas", s.max_replicas)
    problems = []
    if not 1 <= lo <= hi <= MAX_REPLICAS:
        problems.append(f"scaling replicas min {lo} / max {hi} are not 1 <= min <= max <= {MAX_REPLICAS}")
    for name in ("target_cpu_percent", "target_memory_percent"):
        if name in new and not 10 <= new[name] <= 95:
            problems.append(f"scaling.{name} {new[name]} is outside 10-95")
    if problems:
        out.rejected.extend(problems)
        return
    changed = False
    for name, n in new.items():
        if getattr(s, name) != n:
            setattr(s, name, n)
            changed = True
    if changed:
        out.applied.append("scaling")
