"""Analyze an application's source: Dockerfile, compose file, code, git, and the app's ``.dorgu.yaml``.

:func:`analyze` is deterministic: the same tree (and config) always gives the same :class:`AppAnalysis`.
The optional LLM step (:mod:`cli.analyzer.llm`) runs after it, on its result.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.code import analyze_code
from cli.analyzer.compose import COMPOSE_NAMES, compose_dependencies, parse_compose
from cli.analyzer.dockerfile import DOCKERFILE_NAMES, parse_dockerfile
from cli.analyzer.git import git_remote
from cli.analyzer.model import (
    AppAnalysis,
    Dependency,
    EnvVar,
    HealthCheck,
    Port,
    Scaling,
    canonical_dep,
    dep_type,
)
from cli.analyzer.walk import read_text
from cli.errors import InputError
from cli.settings import AppConfig

__all__ = ["AppAnalysis", "analyze", "dns_name", "is_secret"]

_SECRET_HINTS = (
    "PASSWORD",
    "PASSWD",
    "SECRET",
    "TOKEN",
    "API_KEY",
    "PRIVATE_KEY",
    "ACCESS_KEY",
    "CREDENTIAL",
)
_CRED_URL = re.compile(r"://[^/@\s:]+:[^/@\s]+@")
_DEP_KINDS = {
    "postgresql": "database", "mysql": "database", "mongodb": "database", "sqlserver": "database",
    "database": "database", "redis": "cache", "kafka": "queue", "rabbitmq": "queue",
    "elasticsearch": "service",
}  # fmt: skip
_DEP_IMAGES = {"postgresql": "postgres", "mongodb": "mongo", "sqlserver": "mssql"}
_WEB_FRAMEWORKS = {"nextjs", "nuxt", "gatsby", "react", "vue", "angular", "remix"}


def dns_name(raw: str) -> str:
    """A DNS-1123 label from a directory name: ``My_App`` → ``my-app``."""
    name = re.sub(r"[^a-z0-9-]+", "-", raw.lower()).strip("-")
    return re.sub(r"-{2,}", "-", name)[:63].strip("-") or "app"


def is_secret(var: EnvVar) -> bool:
    """Whether an environment variable holds a secret (its name says so, or its value is a URL with
    credentials); a path to a mounted secret (``*_FILE``) does not."""
    if var.value.startswith("/run/secrets/"):  # a path to a mounted secret (``*_FILE``), not a secret
        return False
    upper = var.name.upper()
    return any(h in upper for h in _SECRET_HINTS) or bool(_CRED_URL.search(var.value))


def analyze(
    path: Path,
    *,
    app_config: AppConfig,
    warn: Callable[[str], None] = lambda _m: None,
    service: str = "",
    name: str = "",
) -> AppAnalysis:
    """``service``: the compose service to analyze (its build context, Dockerfile, ``build.target``,
    ports, environment and dependencies); default: the compose file's primary service. ``name``: the
    workload's name (default: the app's)."""
    app_dir = path.resolve()
    if not app_dir.exists():
        raise InputError(f"path does not exist: {app_dir}")
    if not app_dir.is_dir():
        raise InputError(f"not a directory: {app_dir} (point dorgu at the application's directory)")
    app = app_config.app
    given = name
    name = name or app.name or dns_name(app_dir.name)
    if not given and not app.name and name != app_dir.name:
        warn(f"directory name {app_dir.name!r} is not a valid Kubernetes name; using {name!r}")
    analysis = AppAnalysis(name=name, source_dir=".")

    compose_file = next((app_dir / n for n in COMPOSE_NAMES if (app_dir / n).is_file()), None)
    source_dir = app_dir
    primary = None
    if compose_file is not None:
        text = read_text(compose_file, what="compose file") or ""
        analysis.compose = parse_compose(text, path=compose_file.name, app_name=name)
        if service:
            analysis.compose.primary = service
        primary = next((s for s in analysis.compose.services if s.name == analysis.compose.primary), None)
        if primary is not None and primary.build:
            candidate = (app_dir / primary.build).resolve()
            if candidate.is_dir() and candidate.is_relative_to(app_dir):
                source_dir = candidate
                analysis.source_dir = candidate.relative_to(app_dir).as_posix() or "."

    # the Dockerfile: the built service's own (in its build context, compose's build.dockerfile first),
    # else the app directory's
    docker_file = None
    if primary is not None and primary.build:
        names = ((primary.dockerfile,) if primary.dockerfile else ()) + DOCKERFILE_NAMES
        docker_file = next((source_dir / n for n in names if (source_dir / n).is_file()), None)
    if docker_file is None:
        docker_file = next((app_dir / n for n in DOCKERFILE_NAMES if (app_dir / n).is_file()), None)
    if docker_file is not None:
        text = read_text(docker_file, what="Dockerfile") or ""
        shown = docker_file.relative_to(app_dir).as_posix() if docker_file.is_relative_to(app_dir) else ""
        analysis.dockerfile = parse_dockerfile(
            text,
            path=shown or docker_file.name,
            shown=str(docker_file),
            target=primary.target if primary is not None and primary.build else "",
        )
        for note in analysis.dockerfile.notes:
            warn(note)
    if analysis.dockerfile is None and analysis.compose is None:
        raise InputError(
            f"no Dockerfile or compose file found in {app_dir} (looked for "
            f"{', '.join(DOCKERFILE_NAMES + COMPOSE_NAMES)}); add one, or point dorgu at the app's directory"
        )

    def unreadable(p: Path, reason: str) -> None:
        warn(f"skipped unreadable {p}: {reason}")

    analysis.code = analyze_code(source_dir, on_unreadable=unreadable, prefix=analysis.source_dir)
    analysis.language, analysis.framework = analysis.code.language, analysis.code.framework

    # ports: the built stage's EXPOSE, then the app service's compose ports; ENV PORT as a last resort;
    # each keeps its protocol (UDP stays UDP)
    ports: list[tuple[int, str]] = (
        [(p.port, p.protocol) for p in analysis.dockerfile.exposed] if analysis.dockerfile else []
    )
    if primary is not None:
        ports += [(p.container, p.protocol.upper()) for p in primary.ports]
        ports += [(p, "TCP") for p in primary.expose] + [(p, "UDP") for p in primary.expose_udp]
    if not ports and analysis.dockerfile:
        port_env = next((e.value for e in analysis.dockerfile.env_vars if e.name == "PORT"), "")
        if port_env.isdigit():
            ports.append((int(port_env), "TCP"))
    analysis.ports = [Port(port=p, protocol=proto) for p, proto in dict.fromkeys(ports)]

    # environment: what compose gives the app service at run time (the image already has its ENV)
    if primary is not None:
        analysis.env_vars = [
            EnvVar(name=e.name, value=e.value, required=e.required, secret=is_secret(e), source=e.source)
            for e in primary.environment
        ]

    # dependencies: app config > compose > code
    deps: dict[str, Dependency] = {}
    for d in app_config.dependencies:
        deps[d.name] = Dependency(
            name=d.name,
            type=dep_type(d.type or "service"),
            required=d.required,
            health_check=d.health_check,
            source="config",
        )
    compose_images: list[str] = []
    if analysis.compose is not None:
        compose_images = [s.image.lower() for s in analysis.compose.services if s.image]
        for d in compose_dependencies(analysis.compose):
            deps.setdefault(d.name, d)
    for dep in analysis.code.dependencies:
        image = _DEP_IMAGES.get(dep, dep)
        known = {canonical_dep(n) for n in deps} | {canonical_dep(d.name) for d in deps.values()}
        if any(image in i for i in compose_images) or canonical_dep(dep) in known:
            continue
        deps[dep] = Dependency(name=dep, type=_DEP_KINDS.get(dep, "service"), required=True, source="code")
    analysis.dependencies = [deps[k] for k in sorted(deps)]

    # health: app config > routes the app serves > Dockerfile HEALTHCHECK > compose healthcheck
    tcp = [p.port for p in analysis.ports if p.protocol == "TCP"]
    first_port = tcp[0] if tcp else 8080
    hc: HealthCheck | None = None
    code = analysis.code
    if code.health_path:
        hc = HealthCheck(
            path=code.health_path,
            readiness_path=code.readiness_path,
            source="code",
            origin=code.health_origin,
            readiness_origin=code.readiness_origin or code.health_origin,
        )
    elif analysis.dockerfile and analysis.dockerfile.healthcheck:
        hc = HealthCheck(
            **{f: getattr(analysis.dockerfile.healthcheck, f) for f in ("path", "port", "source", "origin")}
        )
    elif primary is not None and primary.healthcheck:
        hc = HealthCheck(
            path=primary.healthcheck.path,
            port=primary.healthcheck.port,
            source="compose",
            origin=primary.healthcheck.origin or (compose_file.name if compose_file else ""),
        )
    if app_config.health and (app_config.health.liveness or app_config.health.readiness):
        live = app_config.health.liveness
        ready = app_config.health.readiness
        hc = HealthCheck(
            path=(live.path if live else "") or (ready.path if ready else ""),
            port=(live.port if live else 0) or (ready.port if ready else 0),
            readiness_path=(ready.path if ready else "") or (live.path if live else ""),
            initial_delay_seconds=live.initial_delay if live else 0,
            period_seconds=live.period if live else 0,
            source="config",
            origin=".dorgu.yaml",
        )
    if hc is not None:
        hc.port = hc.port or first_port
        hc.readiness_path = hc.readiness_path or hc.path
        hc.readiness_origin = hc.readiness_origin or hc.origin
    analysis.health_check = hc

    # type and profile: app config > guess (no ports: worker; a front-end framework: web; else api)
    if app.type:
        analysis.type = app.type
    elif not analysis.ports:
        analysis.type = "worker"
    elif analysis.framework in _WEB_FRAMEWORKS:
        analysis.type = "web"
    else:
        analysis.type = "api"
    analysis.resource_profile = analysis.type
    s = app_config.scaling
    analysis.scaling = Scaling(
        min_replicas=(s.min_replicas if s else 0) or 2,
        max_replicas=(s.max_replicas if s else 0) or 10,
        target_cpu_percent=(s.target_cpu if s else 0) or 70,
        target_memory_percent=s.target_memory if s else 0,
        behavior=(s.behavior if s else "") or "balanced",
    )
    if analysis.scaling.max_replicas < analysis.scaling.min_replicas:
        analysis.scaling.max_replicas = analysis.scaling.min_replicas
    analysis.description = app.description or f"A containerized {analysis.type} application"
    analysis.team, analysis.owner, analysis.environment = app.team, app.owner, app_config.environment
    analysis.repository = app.repository or git_remote(app_dir)
    return analysis
