"""One watch request: a chunked stream of JSON lines, decoded with msgspec.

Rules this module keeps:

* Lines are split by hand from ``iter_any()`` chunks: aiohttp's ``readline`` fails on lines above its
  128 KiB buffer, and an object in a watch line may be megabytes.
* The request has no total timeout (a watch lives for minutes) but a read timeout: no bytes for
  ``stall_timeout_s`` (default 70 s, just above the server's 60 s bookmark period) means the connection is
  dead, and :class:`WatchStalled` is raised so the caller re-watches.
* ``timeoutSeconds`` is randomised in [min, 2·min] (client-go: 5-10 min) so watches of many clients do not
  all end at once.
* An ``ERROR`` event is raised as the typed API error its Status describes (410 → ``Gone``).
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import msgspec

from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import error_from_response
from dorgu.runtime.resource import Resource


class WatchEvent(msgspec.Struct):
    """A watch event with its object still undecoded (decoded into the caller's type afterwards)."""

    type: str
    object: msgspec.Raw


class WatchStalled(Exception):
    """No bytes arrived for the stall timeout: the connection is presumed dead."""


@dataclass(frozen=True, kw_only=True)
class WatchSettings:
    """How watches are made."""

    min_timeout_s: int = 300
    """Lower bound of the server-side ``timeoutSeconds``; each watch picks uniformly in [min, 2·min]."""
    stall_timeout_s: float = 70.0
    """No bytes for this long → the watch is presumed dead and restarted."""
    allow_bookmarks: bool = True
    """Ask for BOOKMARK events (they keep an idle watch's resourceVersion fresh)."""


_decoder = msgspec.json.Decoder(WatchEvent)


async def watch(
    client: ApiClient,
    resource: Resource,
    *,
    resource_version: str,
    namespace: str | None = None,
    label_selector: str | None = None,
    field_selector: str | None = None,
    settings: WatchSettings | None = None,
    rng: random.Random | None = None,
) -> AsyncIterator[WatchEvent]:
    """Yield the events of one watch request until the server ends it (normal close: just returns)."""
    s = settings or WatchSettings()
    timeout = (rng or random).randint(s.min_timeout_s, 2 * s.min_timeout_s)
    params = {"watch": "1", "resourceVersion": resource_version, "timeoutSeconds": str(timeout)}
    if s.allow_bookmarks:
        params["allowWatchBookmarks"] = "true"
    if label_selector:
        params["labelSelector"] = label_selector
    if field_selector:
        params["fieldSelector"] = field_selector
    path = resource.path(namespace=namespace)
    try:
        async with client.stream(path, params=params, read_timeout_s=s.stall_timeout_s) as resp:
            buf = bytearray()
            async for chunk in resp.content.iter_any():
                scan = len(buf)  # bytes before this chunk hold no newline: never rescan them
                buf += chunk
                start = 0
                while True:
                    nl = buf.find(b"\n", scan)
                    if nl < 0:
                        break
                    line = bytes(buf[start:nl])
                    start = scan = nl + 1
                    if line.strip():
                        yield _event(line, path)
                if start:
                    del buf[:start]
            if buf.strip():
                yield _event(bytes(buf), path)
    except (aiohttp.ServerTimeoutError, TimeoutError) as e:
        raise WatchStalled(f"no bytes from {path} for {s.stall_timeout_s:.0f} s") from e


def _event(line: bytes, path: str) -> WatchEvent:
    ev = _decoder.decode(line)
    if ev.type == "ERROR":
        raise error_from_response(code=500, body=bytes(ev.object), method="WATCH", path=path)
    return ev
