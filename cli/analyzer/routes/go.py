"""Go: ``net/http`` (``http.HandleFunc``/``Handle`` and a ``ServeMux``'s, Go 1.22 ``"GET /path"``
patterns), gin and echo (``r.GET``, ``r.Any``, groups ``v1 := r.Group("/api/v1")``), chi (``r.Get``,
``r.Route("/api", func(r chi.Router) { … })`` scopes and ``r.Mount("/api", sub)`` of a router variable).
Fiber's ``app.Get``/``app.Group`` read the same way. A router variable counts when something creates it
(``gin.Default()``, ``chi.NewRouter()``, ``http.NewServeMux()``, ``echo.New()``, ``fiber.New()``) or it is
the ``http`` package itself."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import STRING, blank_comments, code_matches, line_of, server_files, unquote

EXTENSIONS = frozenset({".go"})
_ROUTER = re.compile(
    r"\b(\w+)\s*:?=\s*(?:gin\.(?:Default|New)|chi\.NewRouter|chi\.NewMux|http\.NewServeMux|echo\.New"
    r"|mux\.NewRouter|fiber\.New)\s*\("
)
_GROUP = re.compile(r"\b(\w+)\s*:?=\s*(\w+)\s*\.\s*Group\s*\(\s*" + STRING)
_SCOPE = re.compile(r"\b(\w+)\s*\.\s*Route\s*\(\s*" + STRING + r"\s*,\s*func\s*\(\s*(\w+)")
_MOUNT = re.compile(r"\b(\w+)\s*\.\s*Mount\s*\(\s*" + STRING + r"\s*,\s*(\w+)\s*\)")
_CALL = re.compile(
    r"\b(\w+)\s*\.\s*(?:With\([^)]*\)\s*\.\s*)?(HandleFunc|Handle|GET|POST|PUT|DELETE|PATCH|Any|Get|Post|Put|Delete|Patch|HandleFunc)\s*\(\s*"
    + STRING
)
_VERBS = {"GET": "GET", "Get": "GET", "POST": "POST", "Post": "POST", "PUT": "PUT", "Put": "PUT",
          "DELETE": "DELETE", "Delete": "DELETE", "PATCH": "PATCH", "Patch": "PATCH",
          "Any": ANY_METHOD}  # fmt: skip


def _closing_brace(text: str, start: int) -> int:
    """The index of the ``}`` closing the first ``{`` at or after ``start`` (strings are skipped)."""
    depth, i, quote = 0, text.find("{", start), ""
    if i < 0:
        return len(text)
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\" and quote != "`":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'`":
            quote = c
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return len(text)


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    out: set[Route] = set()
    for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable):
        text = blank_comments(f.text, raw_backquote=True)
        masked = blank_comments(f.text, raw_backquote=True, mask_strings=True)
        # (variable, start, end) → prefix: a variable's prefix holds in a span of the file (the whole file, or
        # the body of a chi Route callback whose parameter shadows the outer router)
        spans: list[tuple[str, int, int, str]] = [("http", 0, len(text), "")]
        spans += [(m.group(1), m.start(), len(text), "") for m in code_matches(_ROUTER, text, masked)]

        def prefix_of(var: str, at: int, spans: list[tuple[str, int, int, str]] = spans) -> str | None:
            live = [s for s in spans if s[0] == var and s[1] <= at <= s[2]]
            return max(live, key=lambda s: s[1])[3] if live else None

        changed = True
        while changed:  # groups of groups, scopes in scopes: repeat until nothing new is learnt
            changed = False
            for m in code_matches(_GROUP, text, masked):
                base = prefix_of(m.group(2), m.start())
                span = (m.group(1), m.start(), len(text), join(base or "", unquote(m, 3)))
                if base is not None and span not in spans:
                    spans.append(span)
                    changed = True
            for m in code_matches(_SCOPE, text, masked):
                base = prefix_of(m.group(1), m.start())
                span = (m.group(5), m.end(), _closing_brace(text, m.end()), join(base or "", unquote(m, 2)))
                if base is not None and span not in spans:
                    spans.append(span)
                    changed = True
            for m in code_matches(_MOUNT, text, masked):
                base = prefix_of(m.group(1), m.start())
                span = (m.group(5), 0, len(text), join(base or "", unquote(m, 2)))
                if base is not None and span not in spans:
                    spans.append(span)
                    changed = True
        for m in code_matches(_CALL, text, masked):
            base = prefix_of(m.group(1), m.start())
            if base is None:
                continue
            pattern = unquote(m, 3)
            method = _VERBS.get(m.group(2), ANY_METHOD)
            if m.group(2) in ("HandleFunc", "Handle") and " " in pattern.strip():  # Go 1.22: "GET /path"
                verb, _, pattern = pattern.strip().partition(" ")
                method = verb.upper()
            if not pattern.strip().startswith("/"):
                continue  # gin's Handle("GET", "/x", …) puts the method first; a host pattern is not probed
            path = join(base, pattern.strip())
            if is_literal(path):
                out.add(Route(path=path, method=method, file=f.rel, line=line_of(text, m.start())))
    return sorted(out)
