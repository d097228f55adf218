"""Helpers for the webhook tests: run replicas in-process, talk to the API server reading `Warning` headers,
a round-robin TCP balancer, and the objects the tests create."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import itertools
import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, TypeVar

from dorgu.envtest import ControlPlane
from dorgu.runtime.component import ComponentContext
from tests.runtime.kit import LoopThread
from webhook import server

R = TypeVar("R")
_counter = itertools.count()


def poll(fn: Callable[[], R], pred: Callable[[R], bool], *, timeout: float = 90.0, what: str = "it") -> R:
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = fn()
            if pred(last):
                return last
        except Exception as e:  # transient: keep polling
            last = e
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}; last: {last!r}")
        time.sleep(0.05)


# --------------------------------------------------------------------------- talking to the API server


@dataclass
class Answer:
    status: int
    warnings: list[str]
    body: dict[str, Any]

    @property
    def message(self) -> str:
        return str(self.body.get("message", ""))


_WARNING = re.compile(r'^\s*299\s+\S+\s+"(.*)"\s*$', re.S)


def _unquote_warning(value: str) -> str:
    m = _WARNING.match(value)
    text = m.group(1) if m else value
    return text.replace('\\"', '"').replace("\\\\", "\\")


class Api:
    """A tiny client over http.client that keeps the response's `Warning` headers (urllib drops them)."""

    def __init__(self, cp: ControlPlane) -> None:
        host, port = cp.server.removeprefix("https://").rsplit(":", 1)
        self.host, self.port = host, int(port)
        self.token = cp.admin_token
        self.ctx = ssl.create_default_context(cafile=str(cp.ca_file))
        self._local = threading.local()

    def _conn(self) -> http.client.HTTPSConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPSConnection(
                self.host, self.port, context=self.ctx, timeout=30
            )
        return conn

    def request(
        self, method: str, path: str, body: Any = None, *, content_type: str = "application/json"
    ) -> Answer:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        if data is not None:
            headers["Content-Type"] = content_type
        for attempt in range(2):
            conn = self._conn()
            try:
                conn.request(method, path, body=data, headers=headers)
                resp = conn.getresponse()
                raw = resp.read()
                break
            except (http.client.HTTPException, OSError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        warnings = [_unquote_warning(v) for v in resp.headers.get_all("Warning") or []]
        return Answer(resp.status, warnings, json.loads(raw) if raw else {})

    def create(self, namespace: str, obj: dict[str, Any]) -> Answer:
        return self.request("POST", f"/apis/apps/v1/namespaces/{namespace}/deployments", obj)

    def replace(self, namespace: str, obj: dict[str, Any]) -> Answer:
        name = obj["metadata"]["name"]
        return self.request("PUT", f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}", obj)


# --------------------------------------------------------------------------- objects


def namespace(kube: Any, *, labels: dict[str, str] | None = None, prefix: str = "wh") -> str:
    name = f"{prefix}-{next(_counter)}"
    kube.post(
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}},
    )
    return name


OPT_IN = {"dorgu.io/validate": "true"}


def persona(
    kube: Any, ns: str, *, name: str = "shop", app: str = "shop", spec: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"name": app, "type": "api", **(spec or PERSONA_SPEC)},
    }
    return kube.post(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas", body)


PERSONA_SPEC: dict[str, Any] = {
    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    "scaling": {"minReplicas": 2, "maxReplicas": 5},
    "health": {"livenessPath": "/healthz", "readinessPath": "/ready"},
    "policies": {
        "security": {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    },
}


def deployment(
    name: str,
    *,
    app: str = "shop",
    replicas: int = 2,
    cpu: str = "250m",
    memory: str = "256Mi",
    non_root: bool = True,
    read_only: bool = True,
    escalation: bool | None = False,
    probes: bool = True,
    containers: int = 1,
    label: str = "app.kubernetes.io/name",
) -> dict[str, Any]:
    """A Deployment; the defaults comply with PERSONA_SPEC."""
    cs = []
    for i in range(containers):
        sc: dict[str, Any] = {"readOnlyRootFilesystem": read_only}
        if escalation is not None:
            sc["allowPrivilegeEscalation"] = escalation
        c: dict[str, Any] = {
            "name": f"c{i}",
            "image": "registry.local/shop:1",
            "resources": {
                "limits": {"cpu": cpu, "memory": memory},
                "requests": {"cpu": "100m", "memory": "64Mi"},
            },
            "securityContext": sc,
        }
        if probes:
            c["livenessProbe"] = {"httpGet": {"path": "/healthz", "port": 8080}}
            c["readinessProbe"] = {"httpGet": {"path": "/ready", "port": 8080}}
        cs.append(c)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {label: app}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"pod": name}},
            "template": {
                "metadata": {"labels": {"pod": name}},
                "spec": {"securityContext": {"runAsNonRoot": non_root}, "containers": cs},
            },
        },
    }


# --------------------------------------------------------------------------- replicas in-process


@dataclass
class Replica:
    ctx: ComponentContext
    task: asyncio.Task[None]
    server: server.WebhookServer | None = None
    ready: list[bool] = field(default_factory=list)


class Replicas:
    """Webhook replicas (``webhook.server.run``, the real entry point) on one event loop in a thread."""

    def __init__(self, cp: ControlPlane) -> None:
        self.cp = cp
        self.lt = LoopThread()
        self.replicas: list[Replica] = []

    def start(self, *options: dict[str, Any]) -> list[Replica]:
        """Start one replica per options dict, all at once; wait until every one is ready."""
        created: list[Replica] = []

        async def go() -> None:
            for i, o in enumerate(options):
                stopping = asyncio.Event()
                ready: list[bool] = []

                def report(msg: Any, ready: list[bool] = ready) -> None:
                    ready.append(bool(msg.get("ready")))

                ctx = ComponentContext(
                    name="webhook",
                    connection=self.cp.connection(user_agent=f"webhook-test-{i}"),
                    options=o,
                    identity=f"replica-{i}",
                    stopping=stopping,
                    report=report,
                )
                rep = Replica(ctx=ctx, task=None, ready=ready)  # type: ignore[arg-type]
                created.append(rep)
            for rep in created:  # at once
                rep.task = asyncio.create_task(_run(rep))

        self.lt.run(go())
        self.replicas.extend(created)
        poll(lambda: [r.ctx.ready for r in created], all, timeout=60, what="replicas ready")
        for r in created:
            assert not r.task.done(), r.task
        return created

    def stop(self, rep: Replica | None = None) -> None:
        reps = [rep] if rep else list(self.replicas)

        async def go() -> None:
            for r in reps:
                r.ctx.stopping.set()
            for r in reps:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(r.task, 20)

        self.lt.run(go(), timeout=60)
        for r in reps:
            self.replicas.remove(r)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.stop()
        self.lt.close()

    def call(self, fn: Callable[[], R]) -> R:
        return self.lt.call(fn)


async def _run(rep: Replica) -> None:
    """``webhook.server.run(ctx)``, keeping the WebhookServer it builds for the test's inspection."""
    manager, rep.server = server.build(rep.ctx)
    await manager.run(rep.ctx.stopping)


@contextlib.contextmanager
def replicas(cp: ControlPlane) -> Iterator[Replicas]:
    r = Replicas(cp)
    try:
        yield r
    finally:
        r.close()


def options(port: int, **extra: Any) -> dict[str, Any]:
    """Options of a local replica: the API server calls ``https://127.0.0.1:<port>``."""
    o: dict[str, Any] = {
        "webhook_host": "127.0.0.1",
        "webhook_port": port,
        "webhook_namespace": "default",
        "webhook_url": f"https://127.0.0.1:{port}/validate-deployment",
        "webhook_ip_addresses": ["127.0.0.1"],
        "webhook_check_interval_s": 2.0,
        "webhook_retry_interval_s": 0.2,
    }
    o.update(extra)
    return o


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def peer_cert(host: str, port: int) -> bytes:
    """The DER certificate a TLS server presents (not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection((host, port), timeout=5) as raw, ctx.wrap_socket(raw) as tls:
        der = tls.getpeercert(binary_form=True)
    assert der
    return der


# --------------------------------------------------------------------------- a round-robin TCP balancer


class Balancer:
    """Forwards each new TCP connection to the next backend in turn (TLS passes through untouched)."""

    def __init__(self, backends: list[tuple[str, int]], *, host: str = "127.0.0.1") -> None:
        self.backends = backends
        self.host = host
        self.port = free_port(host)
        self.connections = [0] * len(backends)
        self._next = 0
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def start(self) -> Balancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        i = self._next
        self._next = (i + 1) % len(self.backends)
        self.connections[i] += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.backends[i])
        except OSError:
            writer.transport.abort()
            return
        pipes = [asyncio.ensure_future(_pipe(reader, up_w)), asyncio.ensure_future(_pipe(up_r, writer))]
        try:
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for p in pipes:
                p.cancel()
            await asyncio.gather(*pipes, return_exceptions=True)
            for w in (writer, up_w):
                with contextlib.suppress(Exception):
                    w.transport.abort()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    while True:
        try:
            data = await r.read(65536)
        except OSError:
            return
        if not data:
            return
        w.write(data)
        await w.drain()
