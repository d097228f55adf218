"""A test's own record of what the API server did to one namespace's objects of one kind.

:class:`ServerWatch` keeps one watch (plain ``http.client`` in a thread of the test, nothing of dorgu's
runtime) on a cluster-wide collection narrowed to one namespace by a field selector, so it can be opened
before the namespace exists. It keeps every event in the server's order; :meth:`catch_up` waits until the
record is complete, i.e. it holds each object's latest version (or its deletion) as a LIST shows it now.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Any

from dorgu.envtest import HarnessClient
from dorgu.envtest.http import ApiError

Event = tuple[str, dict[str, Any]]


class ServerWatch:
    def __init__(self, kube: HarnessClient, collection: str, namespace: str) -> None:
        self.kube, self.collection, self.namespace = kube, collection, namespace
        self.events: list[Event] = []
        self.error: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._started = threading.Event()
        self._conn: http.client.HTTPSConnection | None = None
        self._thread = threading.Thread(target=self._run, name=f"watch {collection}", daemon=True)

    def __enter__(self) -> ServerWatch:
        self._thread.start()
        if not self._started.wait(30):
            raise AssertionError(f"the watch on {self.collection} did not open: {self.error}")
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None and conn.sock is not None:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(10)

    def snapshot(self) -> list[Event]:
        with self._lock:
            return list(self.events)

    def _run(self) -> None:
        url = urllib.parse.urlsplit(self.kube.server)
        ctx = ssl.create_default_context(cafile=self.kube.ca_file)
        rv = ""  # "" the first time: start now (the namespace does not exist yet); then resume after rv
        while not self._stop.is_set():
            params = {"watch": "1", "fieldSelector": f"metadata.namespace={self.namespace}",
                      "timeoutSeconds": "3600", "resourceVersion": rv}  # fmt: skip
            conn = http.client.HTTPSConnection(url.hostname or "", url.port, context=ctx, timeout=None)
            self._conn = conn
            try:
                conn.request("GET", f"{self.collection}?{urllib.parse.urlencode(params)}",
                             headers={"Authorization": f"Bearer {self.kube.token}"})  # fmt: skip
                resp = conn.getresponse()
                if resp.status != 200:
                    self.error = f"HTTP {resp.status}: {resp.read()[:500]!r}"
                    return
                self._started.set()
                for line in resp:
                    ev = json.loads(line)
                    if ev["type"] == "ERROR":  # e.g. 410 Gone: events were lost, the record is incomplete
                        self.error = json.dumps(ev["object"])[:500]
                        return
                    rv = ev["object"]["metadata"]["resourceVersion"]
                    if ev["type"] != "BOOKMARK":
                        with self._lock:
                            self.events.append((ev["type"], ev["object"]))
            except (OSError, http.client.HTTPException, ValueError) as e:
                if not self._started.is_set():
                    self.error = f"{type(e).__name__}: {e}"
                    return
                # otherwise the stream broke (or is being stopped): resume right after the last event seen
                time.sleep(0.2)
            finally:
                conn.close()

    def catch_up(self, *, timeout_s: float = 120.0) -> list[Event]:
        """The events once the record holds every object's current version (or its deletion)."""
        deadline = time.monotonic() + timeout_s
        while True:
            assert self._thread.is_alive(), f"the watch on {self.collection} ended: {self.error}"
            try:
                items = self.kube.get(
                    self.collection, params={"fieldSelector": f"metadata.namespace={self.namespace}"}
                )["items"]
            except ApiError as e:
                raise AssertionError(f"LIST {self.collection}: {e}") from None
            now = {x["metadata"]["name"]: x["metadata"]["resourceVersion"] for x in items}
            last: dict[str, tuple[str, str]] = {}
            events = self.snapshot()
            for kind, obj in events:
                last[obj["metadata"]["name"]] = (kind, obj["metadata"]["resourceVersion"])
            gone = set(last) - set(now)
            if all(last.get(n, ("", ""))[1] == v for n, v in now.items()) and all(
                last[n][0] == "DELETED" for n in gone
            ):
                return events
            assert time.monotonic() < deadline, f"the watch on {self.collection} did not catch up"
            time.sleep(0.2)
