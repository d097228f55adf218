"""FastAPI (and Starlette underneath it): ``@app.get``/``@router.get``, ``api_route``/``add_api_route``
(``GET`` unless ``methods=`` leaves it out), ``APIRouter(prefix=…)``, ``include_router(router, prefix=…)``
(the include's prefix goes in front of the router's own), nested routers; Starlette's
``Route(path, endpoint, methods=…)`` in ``routes=[…]`` of the app, and ``Mount(prefix, routes=[…])``."""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import Route
from cli.analyzer.routes.mounts import Mount, MountGraph
from cli.analyzer.routes.pyindex import Module, PyIndex, arg, callee, keyword, receiver, string, strings

_VERBS = {"get": "GET", "post": "POST", "put": "PUT", "delete": "DELETE", "patch": "PATCH"}
_APPS = ("FastAPI", "Starlette")


def _methods(call: ast.Call, name: str) -> list[str]:
    if name in _VERBS:
        return [_VERBS[name]]
    listed = strings(keyword(call, "methods"))
    return [m.upper() for m in listed] if listed is not None else ["GET"]


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    index = PyIndex(root, on_unreadable=on_unreadable)
    graph = MountGraph()
    route_lists: dict[tuple[str, str], ast.expr] = {}

    def key_of(mod: Module, expr: ast.expr | None) -> tuple[str, str] | None:
        found = index.resolve(mod, expr) if expr is not None else None
        return (found[0].key, found[1]) if found else None

    def starlette_routes(mod: Module, owner: tuple[str, str], value: ast.expr | None, depth: int = 0) -> None:
        """``routes=[Route(...), Mount(...)]`` (a literal list, or a name bound to one) on ``owner``."""
        if isinstance(value, ast.Name | ast.Attribute) and depth < 4:
            k = key_of(mod, value)
            if k is not None and k in route_lists:
                starlette_routes(index.modules[k[0]], owner, route_lists[k], depth + 1)
            return
        if not isinstance(value, ast.List | ast.Tuple):
            return
        for i, el in enumerate(value.elts):
            if not isinstance(el, ast.Call):
                continue
            path = string(arg(el, 0, "path"))
            if path is None:
                continue
            if callee(el) == "Route":
                for method in _methods(el, "route"):
                    graph.add_route(owner, Route(path=path, method=method, file=mod.rel, line=el.lineno))
            elif callee(el) == "Mount":
                child = (f"{mod.key}#mount{el.lineno}:{el.col_offset}", str(i))
                graph.add_mount(owner, Mount(child=child, prefix=path))
                starlette_routes(mod, child, arg(el, 2, "routes"), depth + 1)

    for mod, name, value, _line in index.assignments():
        if isinstance(value, ast.List | ast.Tuple):
            route_lists[(mod.key, name)] = value
    for mod, name, value, _line in index.assignments():
        if not isinstance(value, ast.Call):
            continue
        if callee(value) in _APPS:
            graph.apps.append((mod.key, name))
            starlette_routes(mod, (mod.key, name), keyword(value, "routes"))
        elif callee(value) == "APIRouter":
            graph.own_prefix[(mod.key, name)] = string(keyword(value, "prefix")) or ""

    # own prefixes are applied on declaration (below), so the graph itself must not apply them again
    own_prefix, graph.own_prefix = graph.own_prefix, {}

    def declare(mod: Module, call: ast.Call, name: str, line: int) -> None:
        path = string(arg(call, 0, "path"))
        key = key_of(mod, receiver(call))
        if path is None or key is None:
            return
        # the router's own prefix is part of a route's path from the start (FastAPI applies it on declaration)
        full = own_prefix.get(key, "") + path
        for method in _methods(call, name):
            graph.add_route(key, Route(path=full, method=method, file=mod.rel, line=line))

    for mod, fn in index.functions():
        for dec in fn.decorator_list:
            if isinstance(dec, ast.Call) and callee(dec) in ("api_route", *_VERBS):
                declare(mod, dec, callee(dec), dec.lineno)
    for mod, call in index.calls():
        name = callee(call)
        if name == "add_api_route":
            declare(mod, call, "api_route", call.lineno)
        elif name == "include_router":
            parent, child = key_of(mod, receiver(call)), key_of(mod, arg(call, 0, "router"))
            if parent is not None and child is not None:
                # own prefixes are already in the routes' paths: only the include's prefix is added here
                # FastAPI re-adds the included routes on the parent: the parent router's own prefix goes in
                # front too (an app has none)
                prefix = own_prefix.get(parent, "") + (string(keyword(call, "prefix")) or "")
                graph.add_mount(parent, Mount(child=child, prefix=prefix))
    return graph.served()
