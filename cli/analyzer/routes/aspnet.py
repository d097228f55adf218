"""ASP.NET Core minimal APIs: ``app.MapGet(pattern, …)``, ``MapMethods(pattern, new[] { "GET" }, …)``,
``MapHealthChecks(pattern)`` and route groups ``var api = app.MapGroup("/api")`` (nested too); the
``WebApplication`` is whatever ``builder.Build()`` returns."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route
from cli.analyzer.routes.mounts import Mount, MountGraph
from cli.analyzer.routes.sources import STRING, blank_comments, code_matches, line_of, server_files, unquote

EXTENSIONS = frozenset({".cs", ".fs"})
_APP = re.compile(r"\b(?:var|let)\s+(\w+)\s*=\s*[\w.()\s\[\]]*?\.Build\s*\(\s*\)")
_GROUP = re.compile(r"\b(?:var|let)?\s*(\w+)\s*=\s*(\w+)\s*\.\s*MapGroup\s*\(\s*@?" + STRING)
_MAP = re.compile(
    r"\b(\w+)\s*\.\s*(MapGet|MapPost|MapPut|MapDelete|MapPatch|MapHealthChecks|MapMethods|Map)\s*\(\s*@?"
    + STRING
)
_VERBS = {
    "MapGet": "GET",
    "MapPost": "POST",
    "MapPut": "PUT",
    "MapDelete": "DELETE",
    "MapPatch": "PATCH",
    "MapHealthChecks": "GET",
    "Map": ANY_METHOD,
}


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    graph = MountGraph()
    for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable):
        text = blank_comments(f.text)
        masked = blank_comments(f.text, mask_strings=True)
        graph.apps += [(f.rel, m.group(1)) for m in code_matches(_APP, text, masked)]
        for m in code_matches(_GROUP, text, masked):
            graph.add_mount((f.rel, m.group(2)), Mount(child=(f.rel, m.group(1)), prefix=unquote(m, 3)))
        for m in code_matches(_MAP, text, masked):
            path = unquote(m, 3)
            if m.group(2) == "MapMethods":
                listed = text[m.end() : m.end() + 200].split(")", 1)[0]
                methods = [v.upper() for v in re.findall(r'"(\w+)"', listed)] or [ANY_METHOD]
            else:
                methods = [_VERBS[m.group(2)]]
            for method in methods:
                graph.add_route(
                    (f.rel, m.group(1)),
                    Route(path=path, method=method, file=f.rel, line=line_of(text, m.start())),
                )
    return graph.served()
