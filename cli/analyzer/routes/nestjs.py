"""NestJS: ``@Controller(prefix)`` classes (``@Controller({ path: … })`` too) and their ``@Get(path)``/
``@All(path)`` handlers, behind ``app.setGlobalPrefix(prefix)``. Every controller in the server code counts
as registered (modules are not followed)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.annotated import annotations, paths
from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import STRING, blank_comments, server_files, unquote

EXTENSIONS = frozenset({".ts", ".js", ".mjs"})
_VERBS = {"Get": "GET", "Post": "POST", "Put": "PUT", "Delete": "DELETE", "Patch": "PATCH", "All": ANY_METHOD}
_GLOBAL_PREFIX = re.compile(r"\.\s*setGlobalPrefix\s*\(\s*" + STRING)


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    files = [
        (f, blank_comments(f.text))
        for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable)
    ]
    global_prefix = next((unquote(m, 1) for _f, t in files for m in [_GLOBAL_PREFIX.search(t)] if m), "")
    out: set[Route] = set()
    for f, text in files:
        prefixes: dict[int, list[str]] = {}
        for a in annotations(text):
            if a.on_class:
                if a.name == "Controller":
                    prefixes[a.class_index] = paths(a.args, "path") or []
                continue
            if a.class_index not in prefixes or a.name not in _VERBS:
                continue
            for prefix in prefixes[a.class_index]:
                for p in paths(a.args, "path") or []:
                    path = join(global_prefix, prefix, p)
                    if is_literal(path):
                        out.add(Route(path=path, method=_VERBS[a.name], file=f.rel, line=a.line))
    return sorted(out)
