"""What a route finder reports: one route an application serves, and where it is declared."""

from __future__ import annotations

import msgspec

ANY_METHOD = "*"
"""The method of a route that answers every HTTP method (``http.HandleFunc("/x", …)``, a Django view)."""


class Route(msgspec.Struct, frozen=True, kw_only=True, order=True):
    """A route the app serves, with its full path (every mount prefix applied)."""

    path: str
    """The URL path the app answers, e.g. ``/api/v1/health``; always literal (routes with parameters such as
    ``/users/<id>`` are not reported, they cannot be probed)."""
    method: str
    """The HTTP method in upper case (``GET``, ``POST`` …) or :data:`ANY_METHOD`."""
    file: str
    """The declaring source file, relative to the directory the finder was given, with ``/`` separators."""
    line: int
    """The 1-based line of the declaration in :attr:`file`."""

    @property
    def where(self) -> str:
        """``file:line``."""
        return f"{self.file}:{self.line}"

    @property
    def serves_get(self) -> bool:
        """A probe (``httpGet``) can use this route."""
        return self.method in ("GET", ANY_METHOD)


def join(*parts: str) -> str:
    """Mount prefixes and a route path joined the way web frameworks do: ``join("/api/", "/v1", "health")``
    is ``/api/v1/health``; empty parts vanish; the result starts with ``/``; a trailing slash of the last
    non-empty part is kept (``/healthz/`` is not ``/healthz`` to Django)."""
    pieces = [p for p in parts if p and p != "/"]
    if not pieces:
        return "/"
    body = "/".join(p.strip("/") for p in pieces if p.strip("/"))
    trailing = pieces[-1].endswith("/") and body != ""
    return "/" + body + ("/" if trailing else "")


def is_literal(path: str) -> bool:
    """Whether ``path`` names exactly one URL: no parameters (``<id>``, ``{id}``, ``:id``), no wildcards or
    regular-expression syntax."""
    return path.startswith("/") and not any(c in path for c in "<>{}:*()[]?$^|\\+ ")
