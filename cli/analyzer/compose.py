"""Compose files (short *and* long syntax for ports, volumes, build, depends_on, environment).

``primary`` (what a single-workload run describes) is the service built from the app directory
(``build: .``); otherwise the service named like the app, otherwise the first (by name) service that builds
from source and publishes ports and that no other service depends on (the top of the graph), otherwise the
first that builds. A whole project becomes one workload per service (:mod:`cli.analyzer.project`); a
service's dependencies are what it ``depends_on`` and the services its environment names as hosts.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path
from typing import Any

import yaml

from cli.analyzer.dockerfile import healthcheck_from_command, port_range
from cli.analyzer.model import (
    ComposeInfo,
    ComposePort,
    ComposeSecret,
    ComposeService,
    ComposeVolume,
    Dependency,
    EnvVar,
    HealthCheck,
)
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


def _ports(raw: Any, svc: str, notes: list[str]) -> list[ComposePort]:
    """Short and long syntax; the protocol is kept (``53:53/udp``); a container port range is expanded
    (``7000-7002:7000-7002``) up to :data:`~cli.analyzer.dockerfile.MAX_RANGE` ports, else refused with a
    note."""
    out: list[ComposePort] = []
    for item in raw or []:
        if isinstance(item, dict):  # long syntax
            target = item.get("target")
            if target is None:
                raise ValueError("a long-syntax port needs 'target'")
            published = str(item.get("published") or "0").split("-")[0]
            proto = str(item.get("protocol") or "tcp").lower()
            first, _, last = str(target).partition("-")
            for p in port_range(int(first), int(last or 0), proto, where=f"service {svc}", notes=notes):
                out.append(
                    ComposePort(
                        host=int(published) if published.isdigit() else 0, container=p.port, protocol=proto
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
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", container)
        if not m:
            notes.append(f"service {svc}: port {item!r} names no container port; ignored")
            continue
        hm = re.fullmatch(r"(\d+)(?:-(\d+))?", host)
        ports = port_range(int(m.group(1)), int(m.group(2) or 0), proto, where=f"service {svc}", notes=notes)
        for i, p in enumerate(ports):
            h = int(hm.group(1)) + (i if hm.group(2) else 0) if hm else 0
            out.append(ComposePort(host=h, container=p.port, protocol=proto.lower()))
    return out


def _mounts(raw: Any, svc: str) -> list[ComposeVolume]:
    """``volumes`` in short (``src:/target:ro``) and long syntax."""
    out: list[ComposeVolume] = []
    for v in raw or []:
        if isinstance(v, dict):
            target = str(v.get("target") or "")
            kind = str(v.get("type") or "volume")
            source = str(v.get("source") or "")
            ro = bool(v.get("read_only"))
        else:
            parts = str(v).split(":")
            if len(parts) == 1:
                source, target, mode = "", parts[0], ""
            else:
                source, target, mode = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
            kind = "bind" if source.startswith((".", "/", "~")) else "volume"
            ro = "ro" in mode.split(",")
        if not target.startswith("/"):
            raise ValueError(f"volume {v!r} needs an absolute container path")
        out.append(ComposeVolume(target=target, source=source, type=kind, read_only=ro))
    return out


def _command(raw: Any) -> list[str]:
    if isinstance(raw, list):
        return [str(x) for x in raw]
    if isinstance(raw, str) and raw.strip():
        return shlex.split(raw)
    return []


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


def _healthcheck_command(raw: Any) -> list[str]:
    """A healthcheck test as an exec command (``CMD`` / ``CMD-SHELL`` forms); [] when disabled or none."""
    if not isinstance(raw, dict) or raw.get("disable"):
        return []
    test = raw.get("test")
    if isinstance(test, list) and test:
        head, rest = str(test[0]), [str(t) for t in test[1:]]
        if head == "NONE":
            return []
        if head == "CMD-SHELL":
            return ["/bin/sh", "-c", " ".join(rest)]
        return rest if head == "CMD" else [head, *rest]
    if isinstance(test, str) and test.strip():
        return ["/bin/sh", "-c", test]
    return []


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


def _secrets(raw: Any) -> list[ComposeSecret]:
    out = []
    for item in raw or []:
        if isinstance(item, dict):
            source = str(item.get("source") or "")
            target = str(item.get("target") or source)
        else:
            source = target = str(item)
        if source:
            out.append(ComposeSecret(source=source, target=target))
    return out


def _replicas(deploy: Any) -> int:
    r = deploy.get("replicas") if isinstance(deploy, dict) else None
    return r if isinstance(r, int) and r > 0 else 0


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
    notes: list[str] = []
    for name, s in sorted(doc["services"].items()):
        s = s or {}
        if not isinstance(s, dict):
            raise InputError(f"{path}: service {name} must be a mapping")
        build, dockerfile, target = s.get("build"), "", ""
        if isinstance(build, dict):
            dockerfile = str(build.get("dockerfile") or "")
            target = str(build.get("target") or "")
            build = str(build.get("context") or ".")
        deps = s.get("depends_on") or []
        expose: list[int] = []
        expose_udp: list[int] = []
        for item in s.get("expose") or []:
            number, _, proto = str(item).partition("/")
            if not number.isdigit() or not 0 < int(number) < 65536:
                notes.append(f"service {name}: expose {item!r} is not a port; ignored")
                continue
            (expose_udp if proto.lower() == "udp" else expose).append(int(number))
        try:
            ports = _ports(s.get("ports"), name, notes)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: service {name}: bad port: {e}") from e
        try:
            mounts = _mounts(s.get("volumes"), name)
        except (TypeError, ValueError) as e:
            raise InputError(f"{path}: service {name}: {e}") from e
        services.append(
            ComposeService(
                name=str(name),
                image=str(s.get("image") or ""),
                build=str(build) if build else "",
                dockerfile=dockerfile,
                target=target,
                mounts=mounts,
                command=_command(s.get("command")),
                replicas=_replicas(s.get("deploy")),
                secrets=_secrets(s.get("secrets")),
                healthcheck_command=_healthcheck_command(s.get("healthcheck")),
                ports=ports,
                expose=expose,
                expose_udp=expose_udp,
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
    info = ComposeInfo(path=path, services=services, notes=notes)
    top = doc.get("secrets")
    if isinstance(top, dict):
        info.secret_files = {
            str(k): str(v.get("file") or "") for k, v in sorted(top.items()) if isinstance(v, dict)
        }
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


_HOST_REF = re.compile(r"(?:^|//|@)([A-Za-z0-9][A-Za-z0-9._-]*)(?=:\d|/|,|$)")


def referenced_services(svc: ComposeService, names: set[str]) -> list[str]:
    """The other services ``svc``'s environment names as a host: ``http://api:5000``, ``…@db:5432/app``,
    ``DB_HOST=db``."""
    out: set[str] = set()
    for e in svc.environment:
        for value in e.value.split(","):
            out |= {m for m in _HOST_REF.findall(value.strip()) if m in names}
    out.discard(svc.name)
    return sorted(out)


def compose_dependencies(info: ComposeInfo, service: str = "") -> list[Dependency]:
    """What ``service`` (default: the primary) depends on: the services it ``depends_on`` and those its
    environment names as a host. The direction is the consumer's: a service that uses this one is not its
    dependency."""
    by_name = {s.name: s for s in info.services}
    me = by_name.get(service or info.primary)
    if me is None:
        return []
    names = set(me.depends_on) | set(referenced_services(me, set(by_name)))
    out = []
    for n in sorted(names - {me.name}):
        s = by_name.get(n)
        kind = image_kind(s.image) if s and s.image and not s.build else "service"
        out.append(Dependency(name=n, type=kind, required=True, source="compose"))
    return out
