"""Laravel: ``routes/web.php`` and ``routes/api.php`` (the latter under ``/api``, as Laravel mounts it):
``Route::get('/x', …)``, ``Route::match(['get', …], '/x', …)``, ``Route::any('/x', …)``, inside
``Route::prefix('v1')->group(function () { … })`` and ``Route::group(['prefix' => 'v1'], function () { … })``;
and Laravel 11's health route, ``->withRouting(…, health: '/up')`` in ``bootstrap/app.php``."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import STRING, blank_comments, code_matches, line_of, unquote
from cli.analyzer.walk import read_text

FILES = (("routes/web.php", ""), ("routes/api.php", "/api"))
"""Route files and the prefix Laravel serves each under."""
BOOTSTRAP = "bootstrap/app.php"
_ROUTE = re.compile(r"Route::(get|post|put|patch|delete|any|match)\s*\(\s*(\[[^\]]*\]\s*,\s*)?" + STRING)
_GROUP = re.compile(
    r"Route::(?:prefix\s*\(\s*" + STRING + r"\s*\)[^;{]*?->group|group\s*\(\s*\[[^\]]*'prefix'\s*=>\s*"
    r"'([^']*)'[^\]]*\]\s*,)\s*\(?\s*function"
)
_HEALTH = re.compile(r"\bhealth\s*:\s*" + STRING)


def _closing(text: str, start: int) -> int:
    """The index of the ``}`` matching the first ``{`` at or after ``start``."""
    depth, i = 0, text.find("{", start)
    if i < 0:
        return len(text)
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return j
    return len(text)


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    del on_unreadable  # key files are read with read_text: unreadable is an input error
    out: set[Route] = set()
    for rel, base in FILES:
        raw = read_text(root / rel, what="Laravel routes file")
        if raw is None:
            continue
        text = blank_comments(raw, hash_comments=True)
        masked = blank_comments(raw, hash_comments=True, mask_strings=True)
        groups = []
        for m in code_matches(_GROUP, text, masked):
            groups.append((m.end(), _closing(text, m.end()), unquote(m, 1) or m.group(4) or ""))
        for m in code_matches(_ROUTE, text, masked):
            verb = m.group(1)
            if verb == "match":
                listed = [v.upper() for v in re.findall(r"['\"](\w+)['\"]", m.group(2) or "")]
                methods = listed or [ANY_METHOD]
            else:
                methods = [ANY_METHOD if verb == "any" else verb.upper()]
            prefixes = [p for start, end, p in sorted(groups) if start <= m.start() <= end]
            path = join(base, *prefixes, unquote(m, 3))
            if is_literal(path):
                out.update(
                    Route(path=path, method=x, file=rel, line=line_of(text, m.start())) for x in methods
                )
    boot = read_text(root / BOOTSTRAP, what="Laravel bootstrap file")
    if boot is not None and (m := _HEALTH.search(blank_comments(boot, hash_comments=True))) is not None:
        out.add(Route(path=join(unquote(m, 1)), method="GET", file=BOOTSTRAP, line=line_of(boot, m.start())))
    return sorted(out)
