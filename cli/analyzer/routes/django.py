"""Django: the root URLconf (``ROOT_URLCONF`` in the settings, else the ``urls`` module no other one
includes) and its ``urlpatterns`` — ``path``, ``re_path``/``url`` with a literal pattern,
``include("app.urls")``,
``include(module)`` and ``include([...])`` nested under their prefix. A view serves ``GET`` unless it is a
function decorated ``require_POST``/``require_http_methods([...])`` without ``GET``, or a class view that
defines handlers but no ``get`` (``View.as_view()``); a view dorgu cannot see (from a library) counts as
serving every method."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.pyindex import Module, PyIndex, arg, callee, string, strings

_MAX_DEPTH = 8
_HANDLERS = {"get", "post", "put", "patch", "delete"}
_GET_GENERICS = {"TemplateView", "RedirectView", "ListView", "DetailView", "ArchiveIndexView"}
_REGEX_ANCHORS = re.compile(r"^\^|\$$")


def _pattern(call: ast.Call) -> str | None:
    """The literal URL part of a ``path``/``re_path`` route (``None`` if it has parameters)."""
    raw = string(arg(call, 0, "route"))
    if raw is None:
        return None
    if callee(call) in ("re_path", "url"):
        raw = _REGEX_ANCHORS.sub("", raw)
        if raw.endswith("/?"):
            raw = raw[:-1]
        raw = raw.replace("\\/", "/").replace("\\-", "-").replace("\\.", ".")
    return raw


def _view_method(index: PyIndex, mod: Module, view: ast.expr | None) -> str | None:
    """``GET``/``*`` for a view serving GET, ``None`` for one that does not."""
    if isinstance(view, ast.Call) and callee(view) == "as_view" and isinstance(view.func, ast.Attribute):
        found = index.resolve(mod, view.func.value)
        cls = _definition(found, ast.ClassDef)
        if not isinstance(cls, ast.ClassDef):
            return ANY_METHOD
        defined = {n.name for n in cls.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
        bases = {b.attr if isinstance(b, ast.Attribute) else getattr(b, "id", "") for b in cls.bases}
        if "get" in defined or bases & _GET_GENERICS:
            return "GET"
        return None if defined & _HANDLERS else ANY_METHOD
    found = index.resolve(mod, view) if view is not None else None
    fn = _definition(found, ast.FunctionDef)
    if fn is None:
        return ANY_METHOD
    for dec in fn.decorator_list:
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name == "require_POST":
            return None
        if isinstance(dec, ast.Call) and callee(dec) == "require_http_methods":
            listed = strings(arg(dec, 0, "request_method_list"))
            if listed is not None and "GET" not in [m.upper() for m in listed]:
                return None
    return ANY_METHOD


def _definition(found: tuple[Module, str] | None, kind: type) -> ast.AST | None:
    if found is None:
        return None
    mod, name = found
    kinds = (ast.FunctionDef, ast.AsyncFunctionDef) if kind is ast.FunctionDef else (kind,)
    return next((n for n in mod.tree.body if isinstance(n, kinds) and n.name == name), None)


def _urlpatterns(mod: Module) -> list[ast.expr]:
    out: list[ast.expr] = []
    for node in mod.tree.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "urlpatterns" for t in node.targets
        ):
            out += node.value.elts if isinstance(node.value, ast.List | ast.Tuple) else []
        elif (
            isinstance(node, ast.AugAssign)
            and isinstance(node.target, ast.Name)
            and node.target.id == "urlpatterns"
            and isinstance(node.value, ast.List | ast.Tuple)
        ):
            out += node.value.elts
    return out


def _included_module(index: PyIndex, mod: Module, target: ast.expr | None) -> Module | None:
    if (name := string(target)) is not None:
        return index.find(name)
    if isinstance(target, ast.Name) and target.id in mod.imports and not mod.imports[target.id][1]:
        return index.find(mod.imports[target.id][0])
    if isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name):
        base = mod.imports.get(target.value.id)
        return index.find(f"{base[0]}.{target.attr}") if base and not base[1] else None
    return None


def _root_urlconfs(index: PyIndex) -> list[Module]:
    for mod in index.modules.values():
        for node in mod.tree.body:
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "ROOT_URLCONF" for t in node.targets
            ):
                root = index.find(string(node.value) or "")
                if root is not None:
                    return [root]
    urlconfs = [m for m in index.modules.values() if m.key.split(".")[-1] == "urls"]
    included: set[str] = set()
    for m in urlconfs:
        for el in _urlpatterns(m):
            if isinstance(el, ast.Call) and len(el.args) > 1 and isinstance(el.args[1], ast.Call):
                inc = _included_module(index, m, arg(el.args[1], 0, "arg"))
                if inc is not None:
                    included.add(inc.key)
    return [m for m in urlconfs if m.key not in included]


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    index = PyIndex(root, on_unreadable=on_unreadable)
    out: set[Route] = set()

    def walk(mod: Module, patterns: list[ast.expr], prefix: str, depth: int) -> None:
        if depth > _MAX_DEPTH:
            return
        for el in patterns:
            if not isinstance(el, ast.Call) or callee(el) not in ("path", "re_path", "url"):
                continue
            part = _pattern(el)
            view = arg(el, 1, "view")
            if part is None:
                continue
            if isinstance(view, ast.Call) and callee(view) == "include":
                target = arg(view, 0, "arg")
                if isinstance(target, ast.List | ast.Tuple):
                    walk(mod, list(target.elts), prefix + part, depth + 1)
                elif (inc := _included_module(index, mod, target)) is not None:
                    walk(inc, _urlpatterns(inc), prefix + part, depth + 1)
                continue
            path = join("/", prefix + part)
            method = _view_method(index, mod, view)
            if method is not None and is_literal(path):
                out.add(Route(path=path, method=method, file=mod.rel, line=el.lineno))

    for conf in _root_urlconfs(index):
        walk(conf, _urlpatterns(conf), "", 0)
    return sorted(out)
