"""The Python modules of an app, parsed, with just enough name resolution for route finders.

Each module is known by its dotted name relative to the app directory (``api/health.py`` → ``api.health``,
``pkg/__init__.py`` → ``pkg``; a ``src/`` layout is found by suffix: ``import app.main`` matches
``src.app.main``). :meth:`PyIndex.resolve` follows ``import``/``from … import`` (relative imports too, and
``as`` aliases) from a name used in one module to the module that defines it. A file that does not parse is
skipped: it cannot serve anything.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from cli.analyzer.routes.sources import server_files

_MAX_HOPS = 8
"""Import chains longer than this are not followed (and cycles end)."""


@dataclass
class Module:
    """One parsed source file."""

    key: str
    """Dotted module name relative to the app directory."""
    rel: str
    """File path relative to the app directory."""
    tree: ast.Module
    """The parsed file."""
    imports: dict[str, tuple[str, str]] = field(default_factory=dict)
    """Local name → (module key or dotted name as written, attribute name; ``""`` when the name is the module
    itself)."""


def _key(rel: str) -> str:
    parts = rel[: -len(".py")].split("/")
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


class PyIndex:
    """All server-code Python modules under a directory."""

    def __init__(self, root: Path, *, on_unreadable: Callable[[Path, str], None]) -> None:
        self.modules: dict[str, Module] = {}
        for f in server_files(root, extensions=frozenset({".py"}), on_unreadable=on_unreadable):
            try:
                tree = ast.parse(f.text, filename=f.rel)
            except (SyntaxError, ValueError):
                continue
            mod = Module(key=_key(f.rel), rel=f.rel, tree=tree)
            self.modules[mod.key] = mod
        for mod in self.modules.values():
            self._collect_imports(mod)

    def _absolute(self, mod: Module, name: str, level: int) -> str:
        if level == 0:
            return name
        package = mod.key.split(".")
        if not mod.rel.endswith("__init__.py"):
            package = package[:-1]
        package = package[: len(package) - (level - 1)] if level > 1 else package
        return ".".join([*package, name] if name else package)

    def _collect_imports(self, mod: Module) -> None:
        for node in ast.walk(mod.tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    mod.imports[a.asname or a.name.split(".")[0]] = (
                        a.name if a.asname else a.name.split(".")[0],
                        "",
                    )
            elif isinstance(node, ast.ImportFrom):
                base = self._absolute(mod, node.module or "", node.level)
                for a in node.names:
                    sub = f"{base}.{a.name}" if base else a.name
                    if self.find(sub) is not None:  # `from pkg import health` imports a module
                        mod.imports[a.asname or a.name] = (sub, "")
                    else:
                        mod.imports[a.asname or a.name] = (base, a.name)

    def find(self, dotted: str) -> Module | None:
        """The module named ``dotted`` (exactly, else the only one whose name ends with ``.dotted``)."""
        if dotted in self.modules:
            return self.modules[dotted]
        hits = [m for k, m in self.modules.items() if k.endswith("." + dotted)]
        return hits[0] if len(hits) == 1 else None

    def resolve(self, mod: Module, expr: ast.expr) -> tuple[Module, str] | None:
        """Where the object named by ``expr`` (``name`` or ``module.name``) used in ``mod`` is defined:
        (defining module, name there). ``None`` for names from outside the app."""
        for _ in range(_MAX_HOPS):
            if isinstance(expr, ast.Name):
                name = expr.id
                if name not in mod.imports:
                    return mod, name
                target, attr = mod.imports[name]
                found = self.find(target)
                if found is None:
                    return None
                if not attr:
                    return None  # the name is a module, not an object in it
                mod, expr = found, ast.Name(id=attr)
                if attr not in found.imports:
                    return found, attr
                continue
            if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name):
                target = mod.imports.get(expr.value.id)
                found = self.find(target[0]) if target and not target[1] else None
                if found is None:
                    return None
                mod, expr = found, ast.Name(id=expr.attr)
                continue
            return None
        return None

    def calls(self) -> Iterator[tuple[Module, ast.Call]]:
        """Every call expression in every module, in file order."""
        for mod in self.modules.values():
            for node in ast.walk(mod.tree):
                if isinstance(node, ast.Call):
                    yield mod, node

    def functions(self) -> Iterator[tuple[Module, ast.FunctionDef | ast.AsyncFunctionDef]]:
        """Every function definition (decorated views and handlers) in every module."""
        for mod in self.modules.values():
            for node in ast.walk(mod.tree):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    yield mod, node

    def assignments(self) -> Iterator[tuple[Module, str, ast.expr, int]]:
        """``name = value`` anywhere (module level or inside a factory function):
        (module, name, value, line)."""
        for mod in self.modules.values():
            for node in ast.walk(mod.tree):
                if isinstance(node, ast.Assign):
                    for t in node.targets:
                        if isinstance(t, ast.Name):
                            yield mod, t.id, node.value, node.lineno
                elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
                    yield mod, node.target.id, node.value, node.lineno


def callee(call: ast.Call) -> str:
    """The called name's last part: ``Flask`` for ``flask.Flask(...)``, ``route`` for ``bp.route(...)``."""
    f = call.func
    return f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""


def receiver(call: ast.Call) -> ast.expr | None:
    """The object a method is called on: ``bp`` for ``bp.route(...)``."""
    return call.func.value if isinstance(call.func, ast.Attribute) else None


def string(node: ast.expr | None) -> str | None:
    """A string literal's value, else ``None``."""
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def strings(node: ast.expr | None) -> list[str] | None:
    """A list/tuple/set of string literals, else ``None`` (unknown)."""
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        vals = [string(e) for e in node.elts]
        return None if any(v is None for v in vals) else [v for v in vals if v is not None]
    return None


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    """The value of keyword argument ``name``."""
    return next((k.value for k in call.keywords if k.arg == name), None)


def arg(call: ast.Call, index: int, name: str) -> ast.expr | None:
    """Positional argument ``index``, else keyword ``name``."""
    return call.args[index] if len(call.args) > index else keyword(call, name)
