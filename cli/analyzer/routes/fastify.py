"""Fastify: routes declared on the root instance, in the file that creates it
(``const app = require('fastify')(…)``, ``const app = Fastify(…)``): ``app.get('/x', …)`` and
``app.route({ method: 'GET', url: '/x', … })``. Routes in plugins (``app.register(plugin, { prefix })``)
are not read: their prefix is decided at registration, and a route reported without it would be a probe
on a path the app does not serve."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal
from cli.analyzer.routes.sources import (
    STRING,
    blank_comments,
    code_matches,
    line_of,
    server_files,
    unquote,
)

EXTENSIONS = frozenset({".js", ".mjs", ".cjs", ".ts"})
_ROOT = re.compile(
    r"(?:const|let|var)\s+(\w+)\s*=\s*(?:await\s+)?(?:require\(\s*['\"]fastify['\"]\s*\)|Fastify|fastify)\s*\("
)
_VERB = re.compile(r"\b(\w+)\s*\.\s*(get|post|put|delete|patch|all)\s*\(\s*" + STRING)
_ROUTE = re.compile(r"\b(\w+)\s*\.\s*route\s*\(\s*\{")


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    out: set[Route] = set()
    for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable):
        text = blank_comments(f.text)
        masked = blank_comments(f.text, mask_strings=True)
        roots = {m.group(1) for m in code_matches(_ROOT, text, masked)}
        for m in code_matches(_VERB, text, masked):
            path = unquote(m, 3)
            if m.group(1) in roots and is_literal(path):
                method = ANY_METHOD if m.group(2) == "all" else m.group(2).upper()
                out.add(Route(path=path, method=method, file=f.rel, line=line_of(text, m.start())))
        for m in code_matches(_ROUTE, text, masked):
            if m.group(1) not in roots:
                continue
            body = text[m.end() : text.find("}", m.end())]
            url = re.search(r"\burl\s*:\s*" + STRING, body)
            method = re.search(r"\bmethod\s*:\s*(\[[^\]]*\]|" + STRING + ")", body)
            if url is None or method is None or not is_literal(unquote(url, 1)):
                continue
            for verb in re.findall(r"['\"`](\w+)['\"`]", method.group(1)):
                out.add(
                    Route(
                        path=unquote(url, 1), method=verb.upper(), file=f.rel, line=line_of(text, m.start())
                    )
                )
    return sorted(out)
