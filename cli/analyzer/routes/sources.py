"""Which files a route finder reads, and their text with comments blanked out.

A route is declared in the application's own server code. Tests (``tests/``, ``test_*.py``,
``*.test.js``, ``*_test.go``, ``*Test.java`` …) and front-end code (``client/``, ``frontend/``, ``public/``,
``static/`` …) are never read: a test that asserts ``/status`` answers 404, or a React
``fetch('/api/health')``, names a path the server does not necessarily serve. The tree walk is
:func:`cli.analyzer.walk.source_files` (bounded, no symlinks, vendored and build directories pruned).

Comment blanking keeps every character's line and column: comments become spaces (newlines stay), string
literals stay as they are, so a match's offset still gives the right line number.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from cli.analyzer.walk import source_files

TEST_DIRS = frozenset(
    {"test", "tests", "__tests__", "spec", "specs", "testing", "e2e", "cypress", "__mocks__"}
)
"""Directories whose files are tests."""
FRONTEND_DIRS = frozenset(
    {"client", "frontend", "front-end", "public", "static", "assets", "ui", "www", "web-ui"}
)
"""Directories whose files run in a browser."""
_TEST_FILE = re.compile(
    r"(^test_.*\.py$|_test\.py$|^conftest\.py$|\.(test|spec)\.[cm]?[jt]sx?$|_test\.go$|(Test|Tests|IT)\.(java|kt)$"
    r"|Tests?\.cs$)"
)


@dataclass(frozen=True)
class SourceFile:
    """One file of server code."""

    rel: str
    """Path relative to the finder's root, ``/``-separated."""
    text: str
    """The file's text (undecodable bytes replaced)."""


def is_server_code(rel: str) -> bool:
    """Not a test and not front-end code (see the module docstring)."""
    p = PurePosixPath(rel)
    dirs = {d.lower() for d in p.parts[:-1]}
    return not (dirs & TEST_DIRS or dirs & FRONTEND_DIRS or _TEST_FILE.search(p.name))


def server_files(
    root: Path, *, extensions: frozenset[str], on_unreadable: Callable[[Path, str], None]
) -> list[SourceFile]:
    """The server code under ``root`` with one of ``extensions``, in lexical order."""
    out = []
    for path, text in source_files(root, extensions=extensions, on_unreadable=on_unreadable):
        rel = path.relative_to(root).as_posix()
        if is_server_code(rel):
            out.append(SourceFile(rel=rel, text=text))
    return out


MASK = "\0"
"""What :func:`blank_comments` puts in place of a string's characters when asked to mask strings."""


def blank_comments(
    text: str, *, hash_comments: bool = False, raw_backquote: bool = False, mask_strings: bool = False
) -> str:
    """``text`` with ``//`` and ``/* */`` comments (and ``#`` ones when ``hash_comments``) replaced by spaces.
    Strings in ``'``, ``"`` and `````` are skipped over (a ``//`` inside ``"http://x"`` is not a comment);
    ``raw_backquote`` makes backquoted strings raw (Go: no escapes). ``mask_strings`` also replaces each
    string's characters (not its quotes or newlines) by :data:`MASK`: a match that starts on a mask is
    inside a string (``x := `r.Get("/raw", h)` `` declares nothing) — see :func:`in_code`."""
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "'\"`":
            j = i + 1
            while j < n and text[j] != c:
                if text[j] == "\\" and not (raw_backquote and c == "`"):
                    j += 1
                elif text[j] == "\n" and c != "`":
                    break  # an unterminated quote ends at the line's end
                j += 1
            if mask_strings:
                for k in range(i + 1, min(j, n)):
                    if out[k] != "\n":
                        out[k] = MASK
            i = j + 1
            continue
        if text.startswith("//", i) or (hash_comments and c == "#"):
            j = text.find("\n", i)
            j = n if j < 0 else j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
        else:
            i += 1
            continue
        for k in range(i, j):
            if out[k] != "\n":
                out[k] = " "
        i = j
    return "".join(out)


def in_code(masked: str, offset: int) -> bool:
    """Whether ``offset`` is outside comments and strings in ``masked`` (``blank_comments(…,
    mask_strings=True)`` of the same text)."""
    return offset < len(masked) and masked[offset] not in (MASK, " ")


def code_matches(pattern: re.Pattern[str], text: str, masked: str) -> Iterator[re.Match[str]]:
    """``pattern``'s matches in ``text`` that start in code (see :func:`in_code`)."""
    return (m for m in pattern.finditer(text) if in_code(masked, m.start()))


def line_of(text: str, offset: int) -> int:
    """The 1-based line of ``offset`` in ``text``."""
    return text.count("\n", 0, offset) + 1


STRING = r"""(?:"((?:[^"\\\n]|\\.)*)"|'((?:[^'\\\n]|\\.)*)'|`([^`]*)`)"""
"""A quoted string literal; its text is in whichever of the three groups matched (see :func:`unquote`)."""


def unquote(m: re.Match[str], first_group: int) -> str:
    """The text of the :data:`STRING` whose groups start at ``first_group``."""
    for g in range(first_group, first_group + 3):
        if m.group(g) is not None:
            return m.group(g)
    return ""
