"""Flask: ``@app.route``/``@app.get`` (and the same on a ``Blueprint``), ``add_url_rule``, blueprints with
their ``url_prefix`` and ``register_blueprint(bp, url_prefix=…)`` (which replaces the blueprint's own prefix),
nested blueprints. ``route`` serves ``GET`` unless ``methods=`` leaves it out."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import Route
from cli.analyzer.routes.mounts import Mount, MountGraph
from cli.analyzer.routes.pyindex import Module, PyIndex, arg, callee, keyword, receiver, string, strings

_VERBS = {"get": "GET", "post": "POST", "put": "PUT", "delete": "DELETE", "patch": "PATCH"}


def _methods(call: ast.Call, name: str) -> list[str]:
    if name in _VERBS:
        return [_VERBS[name]]
    listed = strings(keyword(call, "methods"))
    return [m.upper() for m in listed] if listed is not None else ["GET"]


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    index = PyIndex(root, on_unreadable=on_unreadable)
    graph = MountGraph()
    for mod, name, value, _line in index.assignments():
        if isinstance(value, ast.Call) and callee(value) == "Flask":
            graph.apps.append((mod.key, name))
        elif isinstance(value, ast.Call) and callee(value) == "Blueprint":
            graph.own_prefix[(mod.key, name)] = string(keyword(value, "url_prefix")) or ""

    def key_of(mod: Module, expr: ast.expr | None) -> tuple[str, str] | None:
        found = index.resolve(mod, expr) if expr is not None else None
        return (found[0].key, found[1]) if found else None

    def declare(mod: Module, call: ast.Call, name: str, line: int) -> None:
        rule = string(arg(call, 0, "rule"))
        key = key_of(mod, receiver(call))
        if rule is None or key is None:
            return
        for method in _methods(call, name):
            graph.add_route(key, Route(path=rule, method=method, file=mod.rel, line=line))

    for mod, fn in index.functions():
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and callee(dec) in ("route", *_VERBS):
                declare(mod, dec, callee(dec), dec.lineno)
    for mod, call in index.calls():
        name = callee(call)
        if name == "add_url_rule":
            declare(mod, call, "route", call.lineno)
        elif name == "register_blueprint":
            parent, child = key_of(mod, receiver(call)), key_of(mod, arg(call, 0, "blueprint"))
            if parent is None or child is None:
                continue
            prefix = string(keyword(call, "url_prefix"))
            graph.add_mount(parent, Mount(child=child, prefix=prefix, keeps_own_prefix=prefix is None))
    return graph.served()
