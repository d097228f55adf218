"""Spring (MVC and WebFlux, Java and Kotlin): ``@RestController``/``@Controller`` classes, their class-level
``@RequestMapping`` prefix, ``@GetMapping`` and ``@RequestMapping`` (without ``method=``, or with
``RequestMethod.GET``) members; ``server.servlet.context-path`` in front of all. Spring Boot Actuator, when
the build declares ``spring-boot-starter-actuator``: its health probe groups
``<base-path>/health/liveness`` and ``/health/readiness`` (Spring Boot enables them on Kubernetes;
``management.endpoints.web.base-path``, default ``/actuator``)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import yaml

from cli.analyzer.routes.annotated import annotations, paths
from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import blank_comments, line_of, server_files
from cli.analyzer.walk import read_text

EXTENSIONS = frozenset({".java", ".kt"})
_CONTROLLERS = {"RestController", "Controller"}
_VERBS = {
    "GetMapping": "GET",
    "PostMapping": "POST",
    "PutMapping": "PUT",
    "DeleteMapping": "DELETE",
    "PatchMapping": "PATCH",
}
_BUILD_FILES = ("pom.xml", "build.gradle.kts", "build.gradle")
_RESOURCES = "src/main/resources"


def _settings(root: Path) -> dict[str, str]:
    """``application.properties``/``application.yml`` flattened to dotted keys."""
    out: dict[str, str] = {}
    props = read_text(root / _RESOURCES / "application.properties", what="Spring properties")
    for line in (props or "").splitlines():
        k, sep, v = line.partition("=")
        if sep and not line.lstrip().startswith(("#", "!")):
            out[k.strip()] = v.strip()
    for name in ("application.yml", "application.yaml"):
        text = read_text(root / _RESOURCES / name, what="Spring settings")
        try:
            docs = list(yaml.safe_load_all(text)) if text else []
        except yaml.YAMLError:
            docs = []

        def flat(node: object, prefix: str) -> None:
            if isinstance(node, dict):
                for k, v in node.items():
                    flat(v, f"{prefix}.{k}" if prefix else str(k))
            elif node is not None:
                out.setdefault(prefix, str(node))

        if docs:
            flat(docs[0], "")
    return out


def _methods(args: str) -> list[str]:
    named = re.findall(r"RequestMethod\.(\w+)", args)
    return named or [ANY_METHOD]


def _actuator(root: Path, settings: dict[str, str], context: str) -> list[Route]:
    for name in _BUILD_FILES:
        text = read_text(root / name, what=name)
        if text and (m := re.search(r"spring-boot-starter-actuator", text)):
            base = settings.get("management.endpoints.web.base-path", "/actuator")
            if settings.get("management.server.port"):
                return []  # the actuator is then served on another port, which the probes do not target
            line = line_of(text, m.start())
            return [
                Route(path=join(context, base, "health", p), method="GET", file=name, line=line)
                for p in ("liveness", "readiness")
            ]
    return []


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    settings = _settings(root)
    context = settings.get("server.servlet.context-path", "") or settings.get("spring.webflux.base-path", "")
    out: set[Route] = set(_actuator(root, settings, context))
    for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable):
        text = blank_comments(f.text)
        controllers: set[int] = set()
        prefixes: dict[int, list[str]] = {}
        for a in annotations(text):
            if a.on_class:
                if a.name in _CONTROLLERS:
                    controllers.add(a.class_index)
                elif a.name == "RequestMapping":
                    prefixes[a.class_index] = paths(a.args, "value", "path") or []
                continue
            if a.class_index not in controllers:
                continue
            if a.name in _VERBS:
                methods = [_VERBS[a.name]]
            elif a.name == "RequestMapping":
                methods = _methods(a.args)
            else:
                continue
            for prefix in prefixes.get(a.class_index, [""]):
                for p in paths(a.args, "value", "path") or []:
                    path = join(context, prefix, p)
                    if is_literal(path):
                        out.update(Route(path=path, method=m, file=f.rel, line=a.line) for m in methods)
    return sorted(out)
