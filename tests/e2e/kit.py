"""Helpers of the end-to-end tests: `dorgu operator` replicas as real processes, a TCP balancer standing
in for kube-proxy, the API server's audit log, RSS of a process tree, writes that return the warnings."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.envtest.http import ApiError
from tests.builders import deployment

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
NS = "dorgu-system"
SA_USER = f"system:serviceaccount:{NS}:dorgu"
WEBHOOK_PATH = "/validate-deployment"

AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()
    except OSError:
        return 0, ""


def poll(pred: Callable[[], Any], *, timeout: float, what: str, every: float = 0.1) -> Any:
    """Call ``pred`` until it returns something truthy (returned); API errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            got = pred()
            if got:
                return got
        except (ApiError, OSError, KeyError) as e:
            last = e
        time.sleep(every)
    why = f" ({last})" if last else ""
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}{why}")


def ensure_namespace(kube: HarnessClient, name: str, labels: dict[str, str] | None = None) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels or {}}}
    try:
        kube.post("/api/v1/namespaces", body)
    except ApiError as e:
        if e.code != 409:
            raise
        if labels:
            kube.patch(f"/api/v1/namespaces/{name}", {"metadata": {"labels": labels}})


def write_with_warnings(
    kube: HarnessClient, method: str, path: str, body: Any, *, content_type: str = "application/json"
) -> tuple[dict[str, Any], list[str]]:
    """One write as the admin; returns (the object, the ``Warning`` headers' texts) as kubectl shows them."""
    req = urllib.request.Request(kube.server + path, data=json.dumps(body).encode(), method=method)
    req.add_header("Authorization", f"Bearer {kube.token}")
    req.add_header("Content-Type", content_type)
    req.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(req, context=kube._ctx, timeout=30) as resp:
            warnings = [_warning_text(w) for w in resp.headers.get_all("Warning") or []]
            return json.loads(resp.read()), warnings
    except urllib.error.HTTPError as e:
        raise ApiError(e.code, e.read(), method=method, path=path) from None


def _warning_text(header: str) -> str:
    # RFC 7234: 299 - "text" (the API server escapes quotes and backslashes).
    _, _, rest = header.partition('"')
    return rest.rsplit('"', 1)[0].replace('\\"', '"').replace("\\\\", "\\")


# -- kustomize, enough of it for deploy/ ---------------------------------------------------------------------


def render(directory: Path) -> list[dict[str, Any]]:
    """The objects ``kubectl kustomize`` makes of ``directory`` for what deploy/ uses: ``resources`` (files
    and directories) and ``images``; overlays' patches are left to kubectl (tests/e2e/test_rbac.py checks
    the result against kubectl's where one is installed)."""
    k = yaml.safe_load((directory / "kustomization.yaml").read_text())
    objs: list[dict[str, Any]] = []
    for entry in k.get("resources") or []:
        p = directory / entry
        if p.is_dir():
            objs += render(p)
        else:
            objs += [d for d in yaml.safe_load_all(p.read_text()) if d]
    for image in k.get("images") or []:
        new = f"{image.get('newName', image['name'])}:{image.get('newTag', 'latest')}"
        for o in objs:
            for c in _containers(o):
                if c.get("image") == image["name"]:
                    c["image"] = new
    return objs


def _containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    spec = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    return list(spec.get("containers") or [])


def rbac_rules(objs: Iterable[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """(scope, rule) of the ClusterRole and Role bound to the operator's ServiceAccount."""
    out = []
    for o in objs:
        if o["kind"] in ("ClusterRole", "Role"):
            scope = "cluster" if o["kind"] == "ClusterRole" else o["metadata"]["namespace"]
            out += [(scope, r) for r in o.get("rules") or []]
    return out


READ = "read"


def normalise(verb: str) -> str:
    """get, list and watch are one permission here ("read"); the others stand as they are."""
    return READ if verb in ("get", "list", "watch") else verb


def granted(rules: Iterable[tuple[str, dict[str, Any]]]) -> set[tuple[str, str, str, str]]:
    """``kubectl auth``-style expansion of rules into (verb, group, resource, subresource)."""
    out = set()
    for _scope, r in rules:
        for verb, group, res in itertools.product(r["verbs"], r["apiGroups"], r["resources"]):
            resource, _, sub = res.partition("/")
            out.add((normalise(verb), group, resource, sub))
    return out


@dataclass(frozen=True)
class AuditEntry:
    user: str
    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    code: int
    user_agent: str
    name: str = ""
    time: float = 0.0
    """When the server finished the request (``stageTimestamp``), seconds since the epoch."""


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() if text else 0.0


def audit_entries(path: Path) -> list[AuditEntry]:
    out = []
    for line in path.read_text().splitlines():
        e = json.loads(line)
        ref = e.get("objectRef")
        if not ref or e.get("stage") != "ResponseComplete":
            continue
        out.append(
            AuditEntry(
                user=e["user"]["username"],
                verb=e["verb"],
                group=ref.get("apiGroup", ""),
                resource=ref.get("resource", ""),
                subresource=ref.get("subresource", ""),
                namespace=ref.get("namespace", ""),
                code=int((e.get("responseStatus") or {}).get("code", 0)),
                user_agent=e.get("userAgent", ""),
                name=ref.get("name", ""),
                time=_ts(e.get("stageTimestamp", "")),
            )
        )
    return out


# -- RSS -----------------------------------------------------------------------------------------------------


def process_tree(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            with contextlib.suppress(OSError, ValueError, IndexError):
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pss_mib(pid: int) -> float:
    """Proportional set size (shared pages split between sharers): closest to what a cgroup charges."""
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    return rss_mib(pid)


# -- a TCP balancer (kube-proxy's part: spread connections over the ready backends) -------------------------


class Balancer:
    """Round-robin TCP balancer on 127.0.0.1 over the backends' ports; a backend that refuses the connection
    is skipped (as a Service routes to ready endpoints only). Runs its own event loop in a thread."""

    def __init__(self, backends: Sequence[tuple[str, int]]) -> None:
        self.backends = list(backends)
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self._rr = itertools.count()
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.connections: dict[tuple[str, int], int] = {}

    def start(self) -> Balancer:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)

    def stop(self) -> None:
        async def _stop() -> None:
            if self._server:
                self._server.close()

        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        start = next(self._rr)
        for i in range(len(self.backends)):
            backend = self.backends[(start + i) % len(self.backends)]
            try:
                up_r, up_w = await asyncio.open_connection(*backend)
            except OSError:
                continue
            self.connections[backend] = self.connections.get(backend, 0) + 1
            pipes = [asyncio.ensure_future(_pipe(reader, up_w)), asyncio.ensure_future(_pipe(up_r, writer))]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            for p in pipes:
                p.cancel()
            for w in (writer, up_w):
                with contextlib.suppress(Exception):
                    w.close()
            return
        writer.transport.abort()


async def _pipe(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError, ConnectionError):
        while data := await r.read(65536):
            w.write(data)
            await w.drain()


# -- `dorgu operator` replicas -------------------------------------------------------------------------------


@dataclass
class Replica:
    """One `dorgu operator` process (a "pod" of the StatefulSet: its identity is the pod name)."""

    identity: str
    args: list[str]
    env: dict[str, str]
    log_dir: Path
    metrics_port: int = field(default_factory=free_port)
    webhook_port: int = field(default_factory=free_port)
    ws_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def log(self) -> Path:
        return self.log_dir / f"{self.identity}.log"

    def start(self) -> Replica:
        self.starts += 1
        fh = self.log.open("ab")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "cli.main", "operator",
                f"--identity={self.identity}",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                f"--webhook-bind-address=127.0.0.1:{self.webhook_port}",
                f"--websocket-addr=127.0.0.1:{self.ws_port}",
                *self.args,
            ],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), **self.env},
            stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        fh.close()
        return self

    def ready(self) -> bool:
        return http_get(f"http://127.0.0.1:{self.metrics_port}/readyz")[0] == 200

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """``kill -9`` of the supervisor (its children die with it: PR_SET_PDEATHSIG)."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self, timeout: float = 40.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
            return -9

    def memory(self) -> tuple[int, float, float]:
        """(processes, RSS MiB, PSS MiB) of the supervisor and its children."""
        assert self.proc is not None
        pids = process_tree(self.proc.pid)
        return len(pids), sum(rss_mib(p) for p in pids), sum(pss_mib(p) for p in pids)

    def log_tail(self, n: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        return ""


def leases(kube: HarnessClient, namespace: str = NS) -> dict[str, str]:
    items = kube.get(f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases")["items"]
    return {i["metadata"]["name"]: (i["spec"].get("holderIdentity") or "") for i in items}


def admin_env(cp: ControlPlane) -> dict[str, str]:
    return {"KUBECONFIG": str(cp.kubeconfig)}


# -- workload builders ---------------------------------------------------------------------------------------


def app_persona(name: str, min_replicas: int = 1) -> dict[str, Any]:
    """An api persona for app ``name``: limits 500m / 512Mi, 1–10 replicas (``min_replicas``)."""
    return {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": name},
        "spec": {
            "name": name,
            "type": "api",
            "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
            "scaling": {"minReplicas": min_replicas, "maxReplicas": 10},
        },
    }


def app_deployment(name: str, *, cpu: str = "250m", replicas: int = 2) -> dict[str, Any]:
    """A Deployment of app ``name`` that passes :func:`app_persona`'s rules unless ``cpu`` exceeds 500m."""
    resources = {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"cpu": cpu, "memory": "256Mi"}}
    return deployment(name, replicas=replicas, container={"resources": resources})
