"""Compose files (short *and* long syntax for ports, volumes, build, depends_on, environment).

The app's own service (``primary``) is the one built from the app directory (``build: .``); otherwise the
service named like the app, otherwise the first (by name) service that builds from source and publishes
ports and that no other service depends on (the top of the graph), otherwise the first that builds.
Image-only services (databases, caches, brokers) become the app's
dependencies; so do other services it ``depends_on``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from cli.analyzer.dockerfile import healthcheck_from_command
from cli.analyzer.model import ComposeInfo, ComposePort, ComposeService, Dependency, EnvVar, HealthCheck
from cli.errors import InputError

COMPOSE_NAMES = ("docker-compose.yml", "docker-compose.yaml", "compose.yml", "compose.yaml")
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}|\$([A-Za-z_][A-Za-z0-9_]*)")

_IMAGE_KINDS = (
    (("postgres", "mysql", "mariadb", "mongo", "cockroach", "mssql", "sqlserver", "oracle", "cassandra",
      "couchdb", "neo4j", "clickhouse", "timescale"), "database"),
    (("redis", "memcached", "valkey", "keydb", "dragonfly"), "cache"),
    (("rabbitmq", "kafka", "nats", "activemq", "pulsar", "redpanda", "zookeeper"), "queue"),
)  # fmt: skip


def image_kind(image: str) -> str:
    base = image.rsplit("/", 1)[-1].split(":", 1)[0].lower()
    for names, kind in _IMAGE_KINDS:
        if any(n in base for n in names):
            return kind
    return "service"


def _interpolate(value: str) -> tuple[str, bool]:
    """Compose ``${VAR:-default}`` → the default; ``${VAR}`` → "" (and *required*)."""
    required = False

    def sub(m: re.Match[str]) -> str:
        nonlocal required
        if m.group(2) and m.group(2).endswith("-"):
            return m.group(3) or ""
        required = True
        return ""

    return _INTERP.sub(sub, value.replace("$$", "\0")).replace("\0", "$"), required


def _ports(raw: Any, svc: str) -> list[ComposePort]:
    out: list[ComposePort] = []
    for item in raw or []:
        if isinstance(item, dict):  # long syntax
            target = item.get("target")
            if target is None:
                raise InputError(f"service {svc}: a long-syntax port needs 'target'")
            published = str(item.get("published") or "0").split("-")[0]
            out.append(
                ComposePort(
                    host=int(published) if published.isdigit() else 0,
                    container=int(target),
                    protocol=str(item.get("protocol") or "tcp").lower(),
                )
            )
            continue
        text = str(item)
        proto = "tcp"
        if "/" in text:
            text, proto = text.rsplit("/", 1)
        parts = text.rsplit(":", 2) if text.count(":") <= 2 else [text]
        container = parts[-1]
        host = parts[-2] if len(parts) >= 2 else container
        if not container.isdigit():
            continue  # ranges and oddities carry no single port
        out.append(
            ComposePort(
                host=int(host) if host.isdigit() else 0, container=int(container), protocol=proto.lower()
            )
        )
    return out


def _env(raw: Any) -> list[EnvVar]:
    items: dict[str, str | None] = {}
    if isinstance(raw, dict):
        items = {
            str(k): (None if v is None else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in raw.items()
        }
    elif isinstance(raw, list):
        for e in raw:
            k, sep, v = str(e).partition("=")
            items[k] = v if sep else None
    out = []
    for k, v in sorted(items.items()):
        value, required = _interpolate(v) if v is not None else ("", True)
        out.append(EnvVar(name=k, value=value, required=required, source="compose"))
    return out


def _healthcheck(raw: Any) -> HealthCheck | None:
    if not isinstance(raw, dict) or raw.get("disable"):
        return None
    test = raw.get("test")
    cmd = " ".join(str(t) for t in test) if isinstance(test, list) else str(test or "")
    hc = healthcheck_from_command(cmd)
    if hc is not None:
        hc.source = "compose"
    return hc


def _healthcheck_lines(text: str) -> dict[str, int]:
    """Service name → the 1-based line of its ``healthcheck:`` key (for the probe report's file:line)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return {}
    out: dict[str, int] = {}

    def value(node: yaml.Node | None, key: str) -> tuple[yaml.Node | None, int]:
        if not isinstance(node, yaml.MappingNode):
            return None, 0
        for k, v in node.value:
            if getattr(k, "value", None) == key:
                return v, k.start_mark.line + 1
        return None, 0

    services, _ = value(root, "services")
    if isinstance(services, yaml.MappingNode):
        for k, svc in services.value:
            _, line = value(svc, "healthcheck")
            if line:
                out[str(k.value)] = line
    return out


def parse_compose(text: str, *, path: str, app_name: str) -> ComposeInfo:
    try:
        doc = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        where = f"{path}:{mark.line + 1}" if mark else path
        raise InputError(f"{where}: compose file is not valid YAML: {e.problem or e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise InputError(f"{path}: a compose file needs a 'services' mapping")
    services = []
    for name, s in sorted(doc["services"].items()):
        s = s or {}
        if not isinstance(s, dict):
            raise InputError(f"{path}: service {name} must be a mapping")
        build, dockerfile = s.get("build"), ""
        if isinstance(build, dict):
            dockerfile = str(build.get("dockerfile") or "")
            build = str(build.get("context") or ".")
        deps = s.get("depends_on") or []
        expose = [int(str(p).split("/")[0]) for p in s.get("expose") or [] if str(p).split("/")[0].isdigit()]
        try:
            ports = _ports(s.get("ports"), name)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: service {name}: bad port: {e}") from e
        services.append(
            ComposeService(
                name=str(name),
                image=str(s.get("image") or ""),
                build=str(build) if build else "",
                dockerfile=dockerfile,
                ports=ports,
                expose=expose,
                environment=_env(s.get("environment")),
                volumes=sorted(
                    str(v.get("target", "")) if isinstance(v, dict) else str(v)
                    for v in s.get("volumes") or []
                ),
                depends_on=sorted(str(d) for d in (deps.keys() if isinstance(deps, dict) else deps)),
                healthcheck=_healthcheck(s.get("healthcheck")),
            )
        )
    lines = _healthcheck_lines(text)
    for svc in services:
        if svc.healthcheck is not None and svc.name in lines:
            svc.healthcheck.origin = f"{path}:{lines[svc.name]}"
    info = ComposeInfo(path=path, services=services)
    built = [s for s in services if s.build]
    depended = {d for s in services for d in s.depends_on}
    primary = (
        next((s for s in built if Path(s.build) == Path(".")), None)
        or next((s for s in services if s.name == app_name), None)
        or next((s for s in built if s.name not in depended and (s.ports or s.expose)), None)
        or next((s for s in built if s.ports or s.expose), None)
        or (built[0] if built else None)
    )
    info.primary = primary.name if primary else ""
    return info


def compose_dependencies(info: ComposeInfo) -> list[Dependency]:
    """Image-only services and the primary's ``depends_on`` targets, as persona dependencies."""
    by_name = {s.name: s for s in info.services}
    primary = by_name.get(info.primary)
    names = set(primary.depends_on) if primary else set()
    names |= {s.name for s in info.services if not s.build and s.name != info.primary}
    out = []
    for n in sorted(names):
        s = by_name.get(n)
        kind = image_kind(s.image) if s and s.image else "service"
        out.append(
            Dependency(
                name=n, type=kind, required=bool(primary and n in primary.depends_on), source="compose"
            )
        )
    return out
