"""Axum: ``.route("/x", get(handler))`` (``get(h).post(h)``, ``routing::get``, ``any``), and
``.nest("/api", api_routes())`` / ``.nest("/api", api)``: the routes built in the body of the function
``api_routes``, or in the statement ``let api = Router::new()…;``, are served under ``/api``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import (
    STRING,
    blank_comments,
    code_matches,
    line_of,
    server_files,
    unquote,
)

EXTENSIONS = frozenset({".rs"})
_ROUTE = re.compile(r"\.\s*route\s*\(\s*" + STRING + r"\s*,")
_NEST = re.compile(r"\.\s*nest\s*\(\s*" + STRING + r"\s*,\s*(\w+)\s*(\()?")
_FN = re.compile(r"\bfn\s+(\w+)\s*(?:<[^>]*>)?\s*\(")
_LET = re.compile(r"\blet\s+(?:mut\s+)?(\w+)\s*(?::\s*[\w:<>]+\s*)?=")
_METHOD = re.compile(r"\b(get|post|put|delete|patch|any)\s*\(")


def _span_end(text: str, start: int, *, until: str) -> int:
    """From ``start``: the index of the brace closing the first ``{`` (``until="}"``) or of the first ``;``
    outside brackets (``until=";"``)."""
    if until == "}":
        start = text.find("{", start)
        if start < 0:
            return len(text)
    depth = 0
    for i in range(start, len(text)):
        c = text[i]
        if c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
            if until == "}" and depth == 0:
                return i
        elif c == ";" and until == ";" and depth == 0:
            return i
    return len(text)


def _args_end(text: str, start: int) -> int:
    """The index of the ``)`` closing the call whose arguments start at ``start``."""
    depth = 1
    for i in range(start, len(text)):
        if text[i] == "(":
            depth += 1
        elif text[i] == ")":
            depth -= 1
            if depth == 0:
                return i
    return len(text)


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    files = [
        (f, blank_comments(f.text), blank_comments(f.text, mask_strings=True))
        for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable)
    ]
    nested: dict[str, str] = {}  # function or variable name → the prefix it is nested under
    for _f, text, masked in files:
        for m in code_matches(_NEST, text, masked):
            nested[m.group(4)] = unquote(m, 1)
    out: set[Route] = set()
    for f, text, masked in files:
        spans: list[tuple[int, int, str]] = []  # (start, end, prefix) of nested functions' and lets' bodies
        for m in code_matches(_FN, text, masked):
            if m.group(1) in nested:
                spans.append((m.end(), _span_end(text, m.end(), until="}"), nested[m.group(1)]))
        for m in code_matches(_LET, text, masked):
            if m.group(1) in nested:
                spans.append((m.end(), _span_end(text, m.end(), until=";"), nested[m.group(1)]))
        for m in code_matches(_ROUTE, text, masked):
            prefixes = [p for start, end, p in spans if start <= m.start() <= end]
            path = join(*prefixes, unquote(m, 1))
            handler = text[m.end() : _args_end(text, m.end())]
            methods = [ANY_METHOD if v == "any" else v.upper() for v in _METHOD.findall(handler)]
            if is_literal(path):
                out.update(
                    Route(path=path, method=x, file=f.rel, line=line_of(text, m.start())) for x in methods
                )
    return sorted(out)
