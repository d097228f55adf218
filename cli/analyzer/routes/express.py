"""Express: ``app.get(path, …)`` on ``app = express()``, routes on ``express.Router()`` objects,
``router.route(path).get(…)``, and ``app.use(prefix, …, router)`` mounts — a router from the same file, a
``require('./routes/api')``/``import api from './routes/api'`` (its ``module.exports``/``export default``)
or a named export. Comments are blanked first; only server files are read (see
:mod:`cli.analyzer.routes.sources`)."""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable
from pathlib import Path

from cli.analyzer.routes.model import ANY_METHOD, Route
from cli.analyzer.routes.mounts import Mount, MountGraph
from cli.analyzer.routes.sources import STRING, blank_comments, code_matches, line_of, server_files, unquote

EXTENSIONS = frozenset({".js", ".mjs", ".cjs", ".ts"})
_RESOLVE_SUFFIXES = ("", ".js", ".mjs", ".cjs", ".ts", "/index.js", "/index.mjs", "/index.ts")
_DECL = r"(?:const|let|var)\s+(\w+)\s*(?::\s*[\w.]+\s*)?=\s*"
_APP = re.compile(_DECL + r"(?:express\s*\(\s*\)|require\(\s*['\"]express['\"]\s*\)\s*\(\s*\))")
_ROUTER = re.compile(_DECL + r"(?:new\s+)?(?:express\s*\.\s*)?Router\s*\(")
_EXPORTED_ROUTER = re.compile(
    r"export\s+(?:const|let|var)\s+(\w+)\s*(?::\s*[\w.]+\s*)?=\s*(?:express\s*\.\s*)?Router\s*\("
)
_VERB = re.compile(r"\b(\w+)\s*\.\s*(get|post|put|delete|patch|all)\s*\(\s*" + STRING)
_ROUTE_CHAIN = re.compile(r"\b(\w+)\s*\.\s*route\s*\(\s*" + STRING + r"\s*\)")
_USE = re.compile(r"\b(\w+)\s*\.\s*use\s*\(")
_REQUIRE = re.compile(_DECL + r"require\(\s*" + STRING + r"\s*\)\s*(?:\.\s*(\w+))?")
_REQUIRE_NAMED = re.compile(r"(?:const|let|var)\s*\{([^}]*)\}\s*=\s*require\(\s*" + STRING + r"\s*\)")
_IMPORT_DEFAULT = re.compile(r"import\s+(\w+)\s*(?:,\s*\{[^}]*\})?\s*from\s*" + STRING)
_IMPORT_NAMED = re.compile(r"import\s+(?:\w+\s*,\s*)?\{([^}]*)\}\s*from\s*" + STRING)
_EXPORT_DEFAULT = re.compile(r"(?:module\.exports|export\s+default)\s*=?\s*(\w+)\s*;?\s*$", re.M)
_EXPORT_OBJECT = re.compile(r"module\.exports\s*=\s*\{([^}]*)\}")
_EXPORT_PROP = re.compile(r"(?:module\.)?exports\.(\w+)\s*=\s*(\w+)")
_INLINE_REQUIRE = re.compile(r"^require\(\s*" + STRING + r"\s*\)(?:\s*\.\s*(\w+))?$")
_DEFAULT = "default"


def _args(text: str, start: int) -> list[str]:
    """The top-level, comma-separated arguments of the call whose ``(`` is just before ``start``."""
    depth, cur, out, i, quote = 0, [], [], start, ""
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                cur.append(text[i : i + 2])
                i += 2
                continue
            quote = "" if c == quote else quote
        elif c in "'\"`":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            if depth == 0:
                out.append("".join(cur).strip())
                return out
            depth -= 1
        elif c == "," and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            i += 1
            continue
        cur.append(c)
        i += 1
    return out


def _string(arg: str) -> str | None:
    m = re.fullmatch(STRING, arg.strip())
    return unquote(m, 1) if m else None


def _names(spec: str) -> list[tuple[str, str]]:
    """``{ a, b: c }`` (require) or ``{ a, b as c }`` (import) → [(exported, local)]."""
    out = []
    for part in spec.split(","):
        bits = re.split(r"\s*(?::|\bas\b)\s*", part.strip())
        if bits and bits[0]:
            out.append((bits[0], bits[-1]))
    return out


def find(root: Path, *, on_unreadable: Callable[[Path, str], None]) -> list[Route]:
    files = {f.rel: f for f in server_files(root, extensions=EXTENSIONS, on_unreadable=on_unreadable)}
    graph = MountGraph()
    exports: dict[tuple[str, str], tuple[str, str]] = {}  # (file, exported name) → (file, local variable)
    imports: dict[tuple[str, str], tuple[str, str]] = {}  # (file, local name) → (file, exported name)
    texts = {rel: blank_comments(f.text) for rel, f in files.items()}
    masks = {rel: blank_comments(f.text, mask_strings=True) for rel, f in files.items()}

    def module(rel: str, spec: str) -> str | None:
        if not spec.startswith("."):
            return None
        base = posixpath.normpath(posixpath.join(posixpath.dirname(rel), spec))
        return next((base + s for s in _RESOLVE_SUFFIXES if base + s in files), None)

    for rel, text in texts.items():
        for m in code_matches(_APP, text, masks[rel]):
            graph.apps.append((rel, m.group(1)))
        for m in code_matches(_EXPORTED_ROUTER, text, masks[rel]):
            exports[(rel, m.group(1))] = (rel, m.group(1))
        for m in code_matches(_EXPORT_DEFAULT, text, masks[rel]):
            exports[(rel, _DEFAULT)] = (rel, m.group(1))
        for m in code_matches(_EXPORT_OBJECT, text, masks[rel]):
            for exported, local in _names(m.group(1)):
                exports[(rel, exported)] = (rel, local)
        for m in code_matches(_EXPORT_PROP, text, masks[rel]):
            exports[(rel, m.group(1))] = (rel, m.group(2))
        for m in code_matches(_REQUIRE, text, masks[rel]):
            if (target := module(rel, unquote(m, 2))) is not None:
                imports[(rel, m.group(1))] = (target, m.group(5) or _DEFAULT)
        for m in code_matches(_REQUIRE_NAMED, text, masks[rel]):
            if (target := module(rel, unquote(m, 2))) is not None:
                for exported, local in _names(m.group(1)):
                    imports[(rel, local)] = (target, exported)
        for m in code_matches(_IMPORT_DEFAULT, text, masks[rel]):
            if (target := module(rel, unquote(m, 2))) is not None:
                imports[(rel, m.group(1))] = (target, _DEFAULT)
        for m in code_matches(_IMPORT_NAMED, text, masks[rel]):
            if (target := module(rel, unquote(m, 2))) is not None:
                for exported, local in _names(m.group(1)):
                    imports[(rel, local)] = (target, exported)

    def key(rel: str, name: str, hops: int = 0) -> tuple[str, str]:
        """The (file, variable) a name used in ``rel`` stands for."""
        if (rel, name) in imports and hops < 8:
            target, exported = imports[(rel, name)]
            local = exports.get((target, exported), (target, exported))
            return key(local[0], local[1], hops + 1)
        return rel, name

    def mounted(rel: str, arg: str) -> tuple[str, str] | None:
        arg = arg.strip()
        if re.fullmatch(r"\w+", arg):
            return key(rel, arg)
        if (m := _INLINE_REQUIRE.match(arg)) and (target := module(rel, unquote(m, 1))) is not None:
            local = exports.get((target, m.group(4) or _DEFAULT), (target, m.group(4) or _DEFAULT))
            return key(*local)
        return None

    for rel, text in texts.items():
        for m in code_matches(_VERB, text, masks[rel]):
            if not unquote(m, 3).startswith("/"):
                continue  # app.get('env') reads a setting; a route's path starts with "/"
            method = (
                "GET" if m.group(2) == "get" else ANY_METHOD if m.group(2) == "all" else m.group(2).upper()
            )
            graph.add_route(
                key(rel, m.group(1)),
                Route(path=unquote(m, 3), method=method, file=rel, line=line_of(text, m.start())),
            )
        for m in code_matches(_ROUTE_CHAIN, text, masks[rel]):
            if not unquote(m, 2).startswith("/"):
                continue
            chain = re.match(r"(?:\s*\.\s*(\w+)\s*\((?:[^()]|\([^()]*\))*\))+", text[m.end() :])
            verbs = re.findall(r"\.\s*(get|post|put|delete|patch|all)\s*\(", chain.group(0)) if chain else []
            for verb in dict.fromkeys(verbs):
                method = "GET" if verb == "get" else ANY_METHOD if verb == "all" else verb.upper()
                graph.add_route(
                    key(rel, m.group(1)),
                    Route(path=unquote(m, 2), method=method, file=rel, line=line_of(text, m.start())),
                )
        for m in code_matches(_USE, text, masks[rel]):
            args = _args(text, m.end())
            if not args:
                continue
            prefix = _string(args[0])
            for a in args[1 if prefix is not None else 0 :]:
                child = mounted(rel, a)
                if child is not None and child != key(rel, m.group(1)):
                    graph.add_mount(key(rel, m.group(1)), Mount(child=child, prefix=prefix))
    return graph.served()
