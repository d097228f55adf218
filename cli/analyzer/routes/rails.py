"""Rails: ``config/routes.rb`` — ``get "/healthz", to: …``, ``get "up" => "rails/health#show"``,
``match "/x", via: [:get, …]``, ``root …``, inside ``namespace :api do`` and ``scope "/api" do`` /
``scope path: "/api" do`` blocks (their prefixes apply); routes nested in ``resources … do`` have parameters
and are not reported."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route, is_literal, join
from cli.analyzer.routes.sources import blank_comments
from cli.analyzer.walk import read_text

ROUTES_FILE = "config/routes.rb"
_NAMESPACE = re.compile(r"^\s*namespace\s*\(?\s*:(\w+)")
_SCOPE = re.compile(r"""^\s*scope\s*\(?\s*(?:path:\s*)?["']([^"']*)["']""")
_NESTED = re.compile(r"^\s*(?:resources?|member|collection)\b")
_OPENS = re.compile(r"\bdo\s*(?:\|[^|]*\|)?\s*$")
_CLOSES = re.compile(r"^\s*end\b")
_VERB = re.compile(r"""^\s*(get|post|put|patch|delete|match)\s*\(?\s*["']([^"']+)["']\s*(.*)$""")
_ROOT = re.compile(r"^\s*root\b")
_NOT_LITERAL = "<nested>"
"""A prefix that makes every path below it non-literal (a member of ``resources``)."""


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    del on_unreadable  # the one file is read with read_text: unreadable is an input error
    text = read_text(root / ROUTES_FILE, what="Rails routes file")
    if text is None:
        return []
    stack: list[str] = []
    out: set[Route] = set()
    for n, line in enumerate(blank_comments(text, hash_comments=True).splitlines(), start=1):
        if _CLOSES.match(line):
            if stack:
                stack.pop()
            continue
        prefix = join(*stack) if stack else ""
        if (m := _VERB.match(line)) is not None:
            verb, path, rest = m.groups()
            methods = [verb.upper()]
            if verb == "match":
                via = re.findall(r":(\w+)", rest.split("via:", 1)[1]) if "via:" in rest else []
                methods = [ANY_METHOD] if not via or "all" in via else [v.upper() for v in via]
            full = join(prefix, path)
            if is_literal(full) and _NOT_LITERAL not in stack:
                out.update(Route(path=full, method=meth, file=ROUTES_FILE, line=n) for meth in methods)
        elif _ROOT.match(line) and _NOT_LITERAL not in stack:
            out.add(Route(path=join(prefix, "/"), method="GET", file=ROUTES_FILE, line=n))
        if _OPENS.search(line):
            if (m := _NAMESPACE.match(line) or _SCOPE.match(line)) is not None:
                stack.append(m.group(1))
            elif _NESTED.match(line):
                stack.append(_NOT_LITERAL)
            else:
                stack.append("")
    return sorted(out)
