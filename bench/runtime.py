"""Benchmark of the controller runtime (``dorgu.runtime``) against a real local control plane.

Run ``.venv/bin/python bench/runtime.py [--objects 10000] [--reconcile-objects 1000] [--workers 8,32,64]
[--ceiling-concurrency 32,64] [--trials 3] [--queue-keys 20000] [--only workqueue|events] [--json]
[--profile DIR]``. It starts its own control plane (etcd + kube-apiserver 1.20, no controller-manager) with
the ``Widget`` CRD of ``bench/crds/widgets.yaml``, measures, prints a table (or, with ``--json``, one JSON
object on stdout; the table then goes to stderr) and stops everything.

Figures:

1. **Cold LIST + sync** of ``--objects`` Widgets in one namespace: (a) one bare LIST at RV "0" with
   :class:`ApiClient` (``list_all``: the raw bytes, then msgspec decoding into the typed struct), (b) a new
   :class:`Informer` (typed partial struct, a transform dropping ``managedFields``) from ``run()`` to
   ``has_synced()``. The informer's first LIST is at RV "0" too, so both are served from the apiserver's
   watch cache and (b) − (a) is the informer's own cost (transform, store, indices). Median of 7 each,
   in alternating order, after one warm-up LIST. Target: (b) ≤ 1.5 × (a). Both are mostly the server's
   time, which other load on the machine makes jump: the ratio of the fastest runs and this process's CPU
   time for each are shown too.
2. **RSS per cached object**: a fresh ``python`` child imports the runtime, opens its client (one request),
   ``gc.collect()``, reads VmRSS; builds the same informer over the same objects, waits for sync, lets the
   watch start, ``gc.collect()``, reads VmRSS again. (after − before) / objects. Target ≤ 4 KiB.
3. **Child baseline RSS**: a :class:`Supervisor` spawns one component the way the operator does
   (``python -m dorgu.runtime.child``); the component imports the runtime, creates an ApiClient, makes one
   request, reports ready and idles. VmRSS of that child from ``/proc/<pid>/status``. Target ≤ 50 MB
   (decimal megabytes, the stricter reading).
4. **Reconcile throughput**: for each ``--workers`` count, ``--reconcile-objects`` fresh Widgets in their own
   namespace; a controller in a child process (a fresh interpreter, as in the operator) whose reconcile
   merge-patches ``/status`` with ``{"status": {"observed": spec.value}}`` when they differ. The clock starts
   when the child (imported, client created, caches empty) is told to go, and stops when the bench's own
   watch (an informer in this process; never polling LISTs) has seen every object with
   ``status.observed == spec.value``. Then the **ceiling**: the same request (merge patch of ``/status`` of
   the same objects, with a value that differs) from tight loops with nothing else running: raw aiohttp
   (no ApiClient, no metrics, headers built once) at each ``--ceiling-concurrency`` (32 and 64) in flight,
   and ``ApiClient.patch`` at the largest; the fastest is the ceiling. Each configuration runs ``--trials``
   times (alternating, medians). Targets: best reconcile rate ≥ 35 % of the
   ceiling; stretch ≥ 500 objects/s (client-go converges 1,000 such objects in ~2.8 s on the reference
   2-core machine).
5. **Work queue**: one :class:`WorkQueue` on a :class:`FakeClock` (no sleeps: the queue's own CPU cost),
   ``--queue-keys`` keys each added twice (the second add collapses) and taken/done; as many delayed keys
   each scheduled twice with ``add_after`` (the second, earlier time replaces the first), the clock
   advanced past them all and every key taken/done. Median of 5 runs, in the bench's own process (no
   control plane needed: ``--only workqueue`` runs this figure alone). Target: 20,000 keys ≤ 5 s.
6. **Event recorder** (``--only events`` runs this figure alone): an :class:`EventRecorder` writing
   Events about one object each (so neither the spam filter nor the aggregation applies): (a) 200 recorded
   one at a time, each from ``record()`` until it is written (nothing pending); (b) 500 recorded at once,
   until all are written; (c) ``stop()`` while the writer waits to retry (a server that refuses
   connections, a 10-minute retry interval on a clock that stands still), 5 times. Target: (c) ≤ 5 s.

Everything shares the machine's cores with etcd and kube-apiserver: figures are relative to this machine,
compare them only between runs on the same one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import gc
import json
import logging
import os
import ssl
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from dorgu.runtime import events as events_module
from dorgu.runtime.client import ApiClient, ClientSettings
from dorgu.runtime.clock import FakeClock
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.controller import Controller, ControllerSettings, Request, Result
from dorgu.runtime.errors import Conflict
from dorgu.runtime.events import EventRecorder, EventRecorderSettings, ObjectReference
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.meta import ObjectMeta, decode_list_page
from dorgu.runtime.resource import NAMESPACES, Resource
from dorgu.runtime.workqueue import WorkQueue

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
# Run as a script, bench/ is sys.path[0]; no module here is named like a package of ours (none shadows
# one). The repository root is added for bench.report.
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.report import aligned_table, check, emit, load_before_start, machine, progress, verdicts  # noqa: E402

CRD_PATH = BENCH_DIR / "crds" / "widgets.yaml"
WIDGETS = Resource(group="bench.dorgu.io", version="v1", plural="widgets", kind="Widget", namespaced=True)
LIST_NAMESPACE = "bench-list"

TARGET_SYNC_RATIO = 1.5
TARGET_RSS_PER_OBJECT_KIB = 4.0
TARGET_CHILD_RSS_MB = 50.0
TARGET_CEILING_FRACTION = 0.35
STRETCH_RECONCILE_PER_S = 500.0
GO_REFERENCE_S = 2.8  # client-go, 1,000 objects, reference machine
TARGET_WORKQUEUE_S = 5.0  # 20,000 keys through the queue (the scenario of figure 5)
TARGET_EVENT_STOP_S = 5.0  # stop() while the event writer waits to retry
EVENTS_NAMESPACE = "bench-events"
EVENT_WRITES = 200
EVENT_BURST = 500
EVENT_STOP_TRIALS = 5


# -- the resource ------------------------------------------------------------------------------------------


class WidgetSpec(msgspec.Struct, omit_defaults=True):
    value: int = 0


class WidgetStatus(msgspec.Struct, omit_defaults=True):
    observed: int | None = None


class Widget(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A partial Widget: what a controller reads (no apiVersion/kind)."""

    metadata: ObjectMeta
    spec: WidgetSpec = msgspec.field(default_factory=WidgetSpec)
    status: WidgetStatus | None = None


def drop_managed_fields(w: Widget) -> Widget:
    """The informer transform: cached objects keep no ``managedFields`` (nor the buffer they point into)."""
    meta = w.metadata
    if meta.managed_fields is None:
        return w
    return msgspec.structs.replace(w, metadata=msgspec.structs.replace(meta, managed_fields=None))


def widget_informer(client: ApiClient, namespace: str) -> Informer[Widget]:
    return Informer(client, WIDGETS, item_type=Widget, namespace=namespace, transform=drop_managed_fields)


# -- helpers -----------------------------------------------------------------------------------------------


def proc_status_kib(pid: int | str, *fields: str) -> dict[str, int]:
    """Memory fields (``VmRSS``, ``RssAnon``, ...) of a process, in KiB, from ``/proc/<pid>/status``."""
    found = {}
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            name, _, rest = line.partition(":")
            if name in fields:
                found[name] = int(rest.split()[0])
    if len(found) != len(fields):
        raise RuntimeError(f"/proc/{pid}/status lacks {set(fields) - set(found)}")
    return found


def rss_kib(pid: int | str = "self") -> int:
    """VmRSS of a process, in KiB."""
    return proc_status_kib(pid, "VmRSS")["VmRSS"]


SERVER_PIDS: list[int] = []
"""kube-apiserver's and etcd's pids (set by :func:`main`), for the server's CPU time per request."""


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time the processes have used so far (``/proc/<pid>/stat``)."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / os.sysconf("SC_CLK_TCK")


async def ensure_namespace(client: ApiClient, name: str) -> None:
    with contextlib.suppress(Conflict):
        await client.request("POST", NAMESPACES.path(), body={"metadata": {"name": name}})


async def seed_widgets(client: ApiClient, namespace: str, n: int, *, concurrency: int = 64) -> float:
    """Create ``n`` Widgets ``w-00000``… with ``spec.value = i`` and no status; returns the seconds taken."""
    await ensure_namespace(client, namespace)
    path = WIDGETS.path(namespace=namespace)
    todo = iter(range(n))
    t0 = time.monotonic()

    async def creator() -> None:
        for i in todo:
            body = {
                "apiVersion": WIDGETS.api_version,
                "kind": WIDGETS.kind,
                "metadata": {"name": f"w-{i:05d}"},
                "spec": {"value": i},
            }
            await client.request("POST", path, body=body)

    await asyncio.gather(*(creator() for _ in range(concurrency)))
    return time.monotonic() - t0


async def wait_served_from_cache(client: ApiClient, namespace: str, n: int) -> None:
    """Wait until a LIST at RV "0" (the watch cache) holds all ``n`` objects."""
    deadline = time.monotonic() + 30
    while True:
        page = await client.list_all(WIDGETS, type=Widget, namespace=namespace, resource_version="0")
        if len(page.items) >= n:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"watch cache holds {len(page.items)} of {n} widgets after 30 s")
        await asyncio.sleep(0.1)


# -- 1. cold LIST + sync -----------------------------------------------------------------------------------


async def bench_list_and_sync(client: ApiClient, namespace: str, n: int, *, reps: int = 7) -> dict[str, Any]:
    await wait_served_from_cache(client, namespace, n)  # doubles as the warm-up LIST
    list_s: list[float] = []
    sync_s: list[float] = []
    # This process's CPU time for each (the server's share excluded): shows the informer's own cost even when
    # other work on the machine makes the wall-clock times jump.
    list_cpu_s: list[float] = []
    sync_cpu_s: list[float] = []

    async def bare_list() -> None:
        gc.collect()
        t0, cpu0 = time.perf_counter(), time.process_time()
        page = await client.list_all(WIDGETS, type=Widget, namespace=namespace, resource_version="0")
        list_s.append(time.perf_counter() - t0)
        list_cpu_s.append(time.process_time() - cpu0)
        if len(page.items) != n or page.errors:
            raise RuntimeError(f"LIST returned {len(page.items)} items, {len(page.errors)} errors")

    async def informer_sync() -> None:
        gc.collect()
        informer = widget_informer(client, namespace)
        t0, cpu0 = time.perf_counter(), time.process_time()
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        sync_s.append(time.perf_counter() - t0)
        sync_cpu_s.append(time.process_time() - cpu0)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        if len(informer.store) != n:
            raise RuntimeError(f"informer synced {len(informer.store)} of {n} objects")

    # Alternate the order (AB BA AB ...): a LIST right after another 4 MB LIST pays for the apiserver's
    # garbage collection of the first, so a fixed order would bias whichever always comes second.
    for i in range(reps):
        first, second = (bare_list, informer_sync) if i % 2 == 0 else (informer_sync, bare_list)
        await first()
        await second()

    # Where the bare LIST's time goes: the decode alone, on one fetched body (pure CPU, no server).
    raw = await client.request("GET", WIDGETS.path(namespace=namespace), params={"resourceVersion": "0"})
    decode_s = []
    for _ in range(reps):
        gc.collect()
        t0 = time.perf_counter()
        decode_list_page(raw, Widget)
        decode_s.append(time.perf_counter() - t0)
    body_bytes = len(raw)
    del raw
    gc.collect()

    # For reference only: a quorum LIST (RV "", paginated by 500 as the informer's fallback does).
    t0 = time.perf_counter()
    await client.list_all(WIDGETS, type=Widget, namespace=namespace)
    quorum_s = time.perf_counter() - t0

    lst, syn = statistics.median(list_s), statistics.median(sync_s)
    return {
        "list_s": lst,
        "list_runs_s": list_s,
        "list_decode_s": statistics.median(decode_s),
        "list_body_bytes": body_bytes,
        "informer_sync_s": syn,
        "informer_sync_runs_s": sync_s,
        "sync_to_list_ratio": syn / lst,
        "sync_to_list_ratio_of_minima": min(sync_s) / min(list_s),
        "list_client_cpu_s": statistics.median(list_cpu_s),
        "informer_sync_client_cpu_s": statistics.median(sync_cpu_s),
        "quorum_list_s": quorum_s,
    }


# -- 2. RSS per cached object (child) ----------------------------------------------------------------------


class ChildConfig(msgspec.Struct, kw_only=True):
    connection: ConnectionSettings
    namespace: str
    objects: int = 0
    workers: int = 1
    profile: str | None = None


async def child_rss(cfg: ChildConfig) -> dict[str, Any]:
    client = ApiClient(cfg.connection)
    try:
        await client.server_version()  # the session and a TLS connection exist before the baseline
        gc.collect()
        before = rss_kib()
        informer = widget_informer(client, cfg.namespace)
        task = asyncio.create_task(informer.run())
        await informer.wait_for_sync()
        await asyncio.sleep(0.5)  # the watch is open too, as in a running controller
        gc.collect()
        after = rss_kib()
        cached = len(informer.store)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await client.close()
    return {"rss_before_kib": before, "rss_after_kib": after, "cached": cached}


async def run_child(mode: str, cfg: ChildConfig, *, timeout_s: float = 120) -> dict[str, Any]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", mode,
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(msgspec.json.encode(cfg) + b"\n"), timeout_s)
    if proc.returncode != 0:
        raise RuntimeError(f"{mode} child exited with {proc.returncode}")
    return dict(json.loads(out.splitlines()[-1]))


async def bench_rss(conn: ConnectionSettings, namespace: str, n: int) -> dict[str, Any]:
    r = await run_child("rss", ChildConfig(connection=conn, namespace=namespace, objects=n))
    if r["cached"] != n:
        raise RuntimeError(f"rss child cached {r['cached']} of {n} objects")
    r["rss_per_object_kib"] = (r["rss_after_kib"] - r["rss_before_kib"]) / n
    return r


# -- 3. child baseline RSS (via the supervisor) ------------------------------------------------------------


async def idle_component(ctx: ComponentContext) -> None:
    """The trivial component: the runtime imported (this module), a client, one request, ready, idle."""
    client = ApiClient(ctx.connection)
    try:
        await client.server_version()
        ctx.set_ready(True)
        await ctx.stopping.wait()
    finally:
        await client.close()


def _children_running(module: bytes) -> list[int]:
    me = str(os.getpid())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                ppid = fh.read().rsplit(")", 1)[1].split()[1]
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().split(b"\0")
        except OSError:
            continue
        # a spawned child has it as an argument; a forked one in its process title (one string)
        if ppid == me and any(module in part for part in cmdline):
            pids.append(int(entry))
    return pids


async def bench_child_baseline(conn: ConnectionSettings) -> dict[str, Any]:
    from dorgu.runtime.component import ComponentSpec
    from dorgu.runtime.supervisor import Supervisor, SupervisorSettings

    saved_env = dict(os.environ)
    # The child imports this module as bench.runtime; the supervisor hands children its environment.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")]))
    # prometheus_client is already imported here (the bench is not the operator): the supervisor says so.
    logging.getLogger("dorgu.runtime.supervisor").setLevel(logging.ERROR)
    supervisor = Supervisor(
        components=[ComponentSpec(name="bench-idle", target="bench.runtime:idle_component")],
        connection=conn,
        settings=SupervisorSettings(
            metrics_host="127.0.0.1", metrics_port=0, log_level="warning", shutdown_timeout_s=5
        ),
    )
    task = asyncio.create_task(supervisor.run())
    try:
        deadline = time.monotonic() + 60
        async with aiohttp.ClientSession() as http:
            while True:
                if task.done():
                    task.result()
                    raise RuntimeError("the supervisor returned early")
                if supervisor.port is not None:
                    with contextlib.suppress(aiohttp.ClientError):
                        async with http.get(f"http://127.0.0.1:{supervisor.port}/readyz") as resp:
                            if resp.status == 200:
                                break
                if time.monotonic() > deadline:
                    raise RuntimeError("the idle component did not become ready in 60 s")
                await asyncio.sleep(0.05)
        pids = _children_running(b"dorgu.runtime.child")
        if len(pids) != 1:
            raise RuntimeError(f"expected one child process, found {pids}")
        await asyncio.sleep(1.0)  # let it settle (lazy imports, first GC)
        kib = proc_status_kib(pids[0], "VmRSS", "RssAnon", "RssFile")
    finally:
        supervisor.stop()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 15)
        os.environ.clear()
        os.environ.update(saved_env)
    return {
        "child_rss_mb": kib["VmRSS"] * 1024 / 1e6,
        "child_rss_kib": kib["VmRSS"],
        "child_rss_anon_kib": kib["RssAnon"],
        "child_rss_file_kib": kib["RssFile"],
    }


# -- 4. reconcile throughput and ceiling -------------------------------------------------------------------


async def child_controller(cfg: ChildConfig) -> None:
    """The controller under test, in a process of its own; driven by lines on stdin ("go", "stop")."""
    loop = asyncio.get_running_loop()

    def emit(msg: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(msg) + "\n")
        sys.stdout.flush()

    client = ApiClient(cfg.connection, settings=ClientSettings(max_connections=max(64, cfg.workers + 8)))
    informer = widget_informer(client, cfg.namespace)
    counts = {"reconciles": 0, "patches": 0}

    async def reconcile(req: Request) -> Result | None:
        counts["reconciles"] += 1
        w = informer.store.get(req.key)
        if w is None:
            return None
        value = w.spec.value
        if w.status is not None and w.status.observed == value:
            return None
        await client.patch(
            WIDGETS, req.name, {"status": {"observed": value}},
            namespace=req.namespace, subresource="status", decode=False,
        )  # fmt: skip
        counts["patches"] += 1
        return None

    controller = Controller(
        settings=ControllerSettings(name="bench-widgets", workers=cfg.workers), reconcile=reconcile
    )
    controller.watch_for(informer)
    emit({"event": "ready"})
    await loop.run_in_executor(None, sys.stdin.readline)  # "go"
    t_go = time.monotonic()
    cpu_go = time.process_time()
    profiler = cProfile.Profile() if cfg.profile else None
    if profiler:
        profiler.enable()
    tasks = [asyncio.create_task(informer.run()), asyncio.create_task(controller.run())]
    synced_at: list[float] = []

    async def note_sync() -> None:
        await informer.wait_for_sync()
        synced_at.append(time.monotonic())

    tasks.append(asyncio.create_task(note_sync()))
    await loop.run_in_executor(None, sys.stdin.readline)  # "stop"
    t_stop = time.monotonic()
    cpu_s = time.process_time() - cpu_go
    if profiler:
        profiler.disable()
        profiler.dump_stats(cfg.profile)
    for t in tasks:
        t.cancel()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 10)
    await client.close()
    emit(
        {
            "event": "done",
            "t_go": t_go,
            "t_synced": synced_at[0] if synced_at else None,
            "t_stop": t_stop,
            "cpu_s": cpu_s,
            "rss_kib": rss_kib(),
            **counts,
        }
    )


class Convergence:
    """Tracks, from watch events, which objects have ``status.observed == spec.value``."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.done: set[str] = set()
        self.event = asyncio.Event()
        self.at: float | None = None

    def see(self, w: Widget) -> None:
        name = w.metadata.name or ""
        if w.status is not None and w.status.observed == w.spec.value:
            self.done.add(name)
            if len(self.done) >= self.n and self.at is None:
                self.at = time.monotonic()
                self.event.set()
        else:
            self.done.discard(name)

    def handlers(self) -> Handlers[Widget]:
        return Handlers(on_add=self.see, on_update=lambda _old, new: self.see(new))


async def bench_reconcile(
    client: ApiClient, conn: ConnectionSettings, namespace: str, n: int, workers: int, profile: str | None
) -> dict[str, Any]:
    await seed_widgets(client, namespace, n)
    await wait_served_from_cache(client, namespace, n)  # both informers start from the same full LIST
    conv = Convergence(n)
    observer = widget_informer(client, namespace)
    observer.add_handlers(conv.handlers())
    obs_task = asyncio.create_task(observer.run())
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__).resolve()), "--child", "controller",
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None and proc.stdout is not None
    try:
        await asyncio.wait_for(observer.wait_for_sync(), 30)
        if len(observer.store) != n or conv.done:
            raise RuntimeError(f"observer: {len(observer.store)} objects, {len(conv.done)} already converged")
        cfg = ChildConfig(connection=conn, namespace=namespace, workers=workers, profile=profile)
        proc.stdin.write(msgspec.json.encode(cfg) + b"\n")
        await proc.stdin.drain()
        ready = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        assert ready["event"] == "ready", ready
        t_go = time.monotonic()
        server_cpu0, bench_cpu0 = cpu_seconds(SERVER_PIDS), time.process_time()
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        try:
            await asyncio.wait_for(conv.event.wait(), 120)
        except TimeoutError:
            raise RuntimeError(f"only {len(conv.done)} of {n} converged in 120 s") from None
        assert conv.at is not None
        elapsed = conv.at - t_go
        server_cpu, bench_cpu = cpu_seconds(SERVER_PIDS) - server_cpu0, time.process_time() - bench_cpu0
        await asyncio.sleep(0.3)  # let the controller see its own last events (counts no-op reconciles)
        proc.stdin.write(b"stop\n")
        await proc.stdin.drain()
        done = json.loads(await asyncio.wait_for(proc.stdout.readline(), 30))
        await asyncio.wait_for(proc.wait(), 30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        obs_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await obs_task
    return {
        "workers": workers,
        "seconds": elapsed,
        "per_s": n / elapsed,
        "sync_s": (done["t_synced"] - t_go) if done.get("t_synced") else None,
        "reconciles": done["reconciles"],
        "patches": done["patches"],
        "controller_rss_kib": done["rss_kib"],
        "controller_cpu_ms_per_object": done["cpu_s"] * 1000 / n,
        "server_cpu_ms_per_object": server_cpu * 1000 / n,
        "observer_cpu_ms_per_object": bench_cpu * 1000 / n,
    }


class PatchSender:
    """Sends ``merge-patch`` requests to Widgets' ``/status``: through :class:`ApiClient` (``"apiclient"``),
    or (``"raw"``) the tightest loop aiohttp allows — one session, headers built once, the body pre-encoded,
    no metrics — so the server, not the client, bounds it as far as Python can."""

    def __init__(self, kind: str, conn: ConnectionSettings, namespace: str, *, connections: int) -> None:
        self.kind = kind
        self.namespace = namespace
        self._client: ApiClient | None = None
        self._session: aiohttp.ClientSession | None = None
        if kind == "apiclient":
            self._client = ApiClient(conn, settings=ClientSettings(max_connections=connections))
            return
        ctx = ssl.create_default_context(cadata=conn.ca_data.decode() if conn.ca_data else None)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ctx, limit=connections), skip_auto_headers=("Content-Type",)
        )
        self._base = conn.server.rstrip("/")
        self._headers = {
            "Accept": "application/json",
            "Content-Type": "application/merge-patch+json",
            "Authorization": f"Bearer {conn.token}",
            "User-Agent": "dorgu-bench-raw",
        }

    async def send(self, name: str, body: bytes, value: int) -> None:
        if self._client is not None:
            await self._client.patch(
                WIDGETS, name, {"status": {"observed": value}},
                namespace=self.namespace, subresource="status", decode=False,
            )  # fmt: skip
            return
        assert self._session is not None
        url = self._base + WIDGETS.path(namespace=self.namespace, name=name, subresource="status")
        async with self._session.patch(url, data=body, headers=self._headers) as resp:
            await resp.read()
            if resp.status >= 300:
                raise RuntimeError(f"PATCH {url}: HTTP {resp.status}")

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
        if self._session is not None:
            await self._session.close()


async def bench_ceiling(
    kind: str, conn: ConnectionSettings, namespace: str, n: int, concurrency: int, *, rounds: int, salt: int
) -> dict[str, Any]:
    """Merge-patch ``/status`` of the ``n`` objects ``rounds`` times, ``concurrency`` at a time; patches/s.
    Each patch sets a value that differs from the stored one (an unchanged object is not written)."""
    sender = PatchSender(kind, conn, namespace, connections=concurrency)

    def work(rounds: int, base: int) -> list[tuple[str, bytes, int]]:
        out = []
        for r in range(rounds):
            for i in range(n):
                value = -(base + r) * 1_000_000 - i
                out.append((f"w-{i:05d}", b'{"status":{"observed":%d}}' % value, value))
        return out

    async def drain(todo: list[tuple[str, bytes, int]]) -> None:
        it = iter(todo)

        async def worker() -> None:
            for name, body, value in it:
                await sender.send(name, body, value)

        await asyncio.gather(*(worker() for _ in range(concurrency)))

    try:
        await drain(work(1, salt)[: 2 * concurrency])  # warm-up: open the connections
        todo = work(rounds, salt + 1)
        gc.collect()
        t0, cpu0, server_cpu0 = time.perf_counter(), time.process_time(), cpu_seconds(SERVER_PIDS)
        await drain(todo)
        elapsed, cpu_s = time.perf_counter() - t0, time.process_time() - cpu0
        server_cpu = cpu_seconds(SERVER_PIDS) - server_cpu0
    finally:
        await sender.close()
    return {
        "client": kind,
        "concurrency": concurrency,
        "patches": len(todo),
        "seconds": elapsed,
        "per_s": len(todo) / elapsed,
        "client_cpu_ms_per_patch": cpu_s * 1000 / len(todo),
        "server_cpu_ms_per_patch": server_cpu * 1000 / len(todo),
    }


# -- 5. work queue ----------------------------------------------------------------------------------------


async def workqueue_pass(n: int, name: str) -> tuple[float, float]:
    """One run of the scenario of figure 5; returns (wall seconds, this process's CPU seconds)."""
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue(
        name=name, controller="bench", clock=clock, unfinished_work_update_period=None
    )
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(n):
        q.add(f"k{i}")
        q.add(f"k{i}")
    for i in range(n):
        q.add_after(f"d{i}", 1.0 + (i % 100) / 10)
        q.add_after(f"d{i}", 0.5 + (i % 50) / 10)  # earlier: replaces the first
    for _ in range(n):
        q.done(await q.get())
    await clock.advance(20.0)
    for _ in range(20):  # let the delaying loop hand over what the advance released
        await asyncio.sleep(0)
    if len(q) != n or q.waiting:
        raise RuntimeError(f"work queue: {len(q)} keys queued and {q.waiting} waiting, expected {n} and 0")
    for _ in range(n):
        q.done(await q.get())
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    q.shutdown()
    return wall, cpu


async def bench_workqueue(n: int, *, reps: int = 5) -> dict[str, Any]:
    await workqueue_pass(min(n, 2_000), "bench-warmup")
    runs = [await workqueue_pass(n, f"bench-{r}") for r in range(reps)]
    wall = statistics.median(w for w, _ in runs)
    # Per key: 2 adds, 2 add_after, 2 get + done (one of each kind of key).
    return {
        "queue_keys": n,
        "workqueue_s": wall,
        "workqueue_runs_s": [w for w, _ in runs],
        "workqueue_cpu_s": statistics.median(c for _, c in runs),
        "workqueue_us_per_key": wall * 1e6 / (2 * n),
        # The target is for 20,000 keys; other sizes are judged in proportion.
        "workqueue_target_s": TARGET_WORKQUEUE_S * n / 20_000,
    }


def workqueue_checks(fig: dict[str, Any]) -> dict[str, Any]:
    return {"workqueue_s": check(fig["workqueue_s"], fig["workqueue_target_s"])}


# -- 6. event recorder -------------------------------------------------------------------------------------


async def _drained(rec: EventRecorder) -> None:
    give_up = time.monotonic() + 120  # a hang guard
    while rec.pending:
        if time.monotonic() > give_up:
            raise RuntimeError(f"event recorder: {rec.pending} events still pending after 120 s")
        await asyncio.sleep(0.0005)


def _event_ref(name: str) -> ObjectReference:
    # One object per event: neither the spam filter nor the aggregation (both per object) applies.
    return ObjectReference(api_version="v1", kind="ConfigMap", name=name, namespace=EVENTS_NAMESPACE)


async def _stop_trials(dead: ConnectionSettings, stops: list[float]) -> None:
    """Figure 6c: the seconds each stop() takes while the writer waits to retry, appended to ``stops``."""
    slow = EventRecorderSettings(max_tries=12, retry_interval_s=600, stop_timeout_s=60)
    async with ApiClient(dead) as dead_client:
        for i in range(EVENT_STOP_TRIALS):
            clock = FakeClock()
            rec = EventRecorder(
                dead_client, component="dorgu-bench", host="bench", clock=clock, settings=slow
            )
            await rec.start()
            rec.record(_event_ref(f"unreachable-{i}"), type="Warning", reason="Unreachable", message="m")
            give_up = time.monotonic() + 120  # a hang guard
            while clock.sleepers == 0:
                if time.monotonic() > give_up:
                    raise RuntimeError("event recorder: the writer never waited to retry")
                await asyncio.sleep(0.001)
            t0 = time.perf_counter()
            await rec.stop()
            stops.append(time.perf_counter() - t0)


async def bench_events(client: ApiClient, conn: ConnectionSettings) -> dict[str, Any]:
    from dorgu.envtest.controlplane import free_port

    await ensure_namespace(client, EVENTS_NAMESPACE)
    rec = EventRecorder(client, component="dorgu-bench", host="bench")
    await rec.start()
    try:
        writes: list[float] = []
        for i in range(EVENT_WRITES + 10):  # the first 10 warm up
            t0 = time.perf_counter()
            rec.record(_event_ref(f"one-{i}"), type="Normal", reason="Bench", message=f"event {i}")
            await _drained(rec)
            if i >= 10:
                writes.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        for i in range(EVENT_BURST):
            rec.record(_event_ref(f"burst-{i}"), type="Normal", reason="Bench", message=f"event {i}")
        await _drained(rec)
        burst_s = time.perf_counter() - t0
    finally:
        await rec.stop()

    # stop() while the writer waits to retry: a server that refuses connections, a retry interval of 10
    # minutes on a clock that stands still; timed from when the writer is seen waiting.
    stops: list[float] = []
    dead = msgspec.structs.replace(conn, server=f"https://127.0.0.1:{free_port()}")
    # The refused writes are what this part is about: their warnings and errors would only fill the output.
    level = events_module.log.level
    events_module.log.setLevel(logging.CRITICAL)
    try:
        await _stop_trials(dead, stops)
    finally:
        events_module.log.setLevel(level)
    writes.sort()
    return {
        "event_write_ms": {
            "n": len(writes),
            "p50": statistics.median(writes) * 1000,
            "p99": writes[min(len(writes) - 1, int(0.99 * len(writes)))] * 1000,
            "max": writes[-1] * 1000,
        },
        "event_burst": EVENT_BURST,
        "event_burst_s": burst_s,
        "event_burst_per_s": EVENT_BURST / burst_s,
        "event_stop_runs_s": stops,
        "event_stop_max_s": max(stops),
    }


def events_checks(fig: dict[str, Any]) -> dict[str, Any]:
    return {"event_stop_max_s": check(fig["event_stop_max_s"], TARGET_EVENT_STOP_S)}


# -- the run -----------------------------------------------------------------------------------------------


async def figures_1_to_4(
    client: ApiClient, conn: ConnectionSettings, args: argparse.Namespace
) -> dict[str, Any]:
    fig: dict[str, Any] = {"objects": args.objects, "reconcile_objects": args.reconcile_objects}
    progress(f"seeding {args.objects} widgets in {LIST_NAMESPACE}")
    fig["seed_s"] = await seed_widgets(client, LIST_NAMESPACE, args.objects)
    progress(f"seeded in {fig['seed_s']:.1f} s; 1. LIST vs informer sync")
    fig.update(await bench_list_and_sync(client, LIST_NAMESPACE, args.objects))

    progress("2. RSS per cached object (child process)")
    fig.update(await bench_rss(conn, LIST_NAMESPACE, args.objects))

    progress("3. child baseline RSS (supervisor → python -m dorgu.runtime.child)")
    fig.update(await bench_child_baseline(conn))

    # Trials of every configuration alternate, so a slow spell of the machine (shared cores) hits
    # all of them alike; each configuration's figure is its median over the trials.
    runs: list[dict[str, Any]] = []
    ceilings: list[dict[str, Any]] = []
    ceiling_configs = [("raw", c) for c in args.ceiling_concurrency]
    ceiling_configs.append(("apiclient", max(args.ceiling_concurrency)))
    for t in range(args.trials):
        for w in args.workers:
            ns = f"bench-rec-w{w}-t{t}"
            progress(
                f"4. trial {t + 1}/{args.trials}: reconcile {args.reconcile_objects} widgets, {w} workers"
            )
            profile = str(Path(args.profile) / f"controller-w{w}-t{t}.prof") if args.profile else None
            runs.append(await bench_reconcile(client, conn, ns, args.reconcile_objects, w, profile))
            progress(f"   {runs[-1]['seconds']:.2f} s, {runs[-1]['per_s']:.0f} objects/s")
        for i, (kind, c) in enumerate(ceiling_configs):
            progress(f"4. trial {t + 1}/{args.trials}: ceiling, {kind} merge-patch /status, {c} in flight")
            ns = f"bench-rec-w{args.workers[0]}-t0"
            salt = 100 * t + 10 * (i + 1)
            ceilings.append(
                await bench_ceiling(kind, conn, ns, args.reconcile_objects, c, rounds=2, salt=salt)
            )
            progress(f"   {ceilings[-1]['per_s']:.0f} patches/s")
    fig["reconcile_runs"] = runs
    fig["ceiling_runs"] = ceilings
    fig["reconcile"] = {
        str(w): _summary([r for r in runs if r["workers"] == w], "per_s", *_RECONCILE_CPU)
        for w in args.workers
    }
    fig["ceiling"] = {
        f"{kind}-{c}": _summary(
            [r for r in ceilings if (r["client"], r["concurrency"]) == (kind, c)],
            "per_s",
            "client_cpu_ms_per_patch",
            "server_cpu_ms_per_patch",
        )
        for kind, c in ceiling_configs
    }
    best_w = max(args.workers, key=lambda w: fig["reconcile"][str(w)]["per_s"])
    fig["reconcile_best_workers"] = best_w
    fig["reconcile_per_s"] = fig["reconcile"][str(best_w)]["per_s"]
    fig["reconcile_s"] = args.reconcile_objects / fig["reconcile_per_s"]
    # The ceiling is the fastest tight loop, whichever client it used (the stricter comparison).
    top = max(fig["ceiling"], key=lambda config: fig["ceiling"][config]["per_s"])
    fig["ceiling_config"] = top
    fig["ceiling_per_s"] = fig["ceiling"][top]["per_s"]
    fig["reconcile_fraction_of_ceiling"] = fig["reconcile_per_s"] / fig["ceiling_per_s"]
    targets = {
        "sync_to_list_ratio": ("<=", TARGET_SYNC_RATIO),
        "rss_per_object_kib": ("<=", TARGET_RSS_PER_OBJECT_KIB),
        "child_rss_mb": ("<=", TARGET_CHILD_RSS_MB),
        "reconcile_fraction_of_ceiling": (">=", TARGET_CEILING_FRACTION),
        "reconcile_per_s": (">=", STRETCH_RECONCILE_PER_S),  # the stretch target
    }
    fig["checks"] = {name: check(fig[name], target, op) for name, (op, target) in targets.items()}
    return fig


async def run_all(conn: ConnectionSettings, args: argparse.Namespace) -> dict[str, Any]:
    """Every figure, or (``--only events``) figure 6 alone."""
    fig: dict[str, Any] = {"checks": {}}
    client = ApiClient(conn, settings=ClientSettings(max_connections=128))
    try:
        if args.only is None:
            part = await figures_1_to_4(client, conn, args)
            fig["checks"].update(part.pop("checks"))
            fig.update(part)
            progress(f"5. work queue, {args.queue_keys} keys")
            fig.update(await bench_workqueue(args.queue_keys))
            fig["checks"].update(workqueue_checks(fig))
        progress("6. event recorder")
        fig.update(await bench_events(client, conn))
        fig["checks"].update(events_checks(fig))
    finally:
        await client.close()
    return fig


_RECONCILE_CPU = ("controller_cpu_ms_per_object", "server_cpu_ms_per_object", "observer_cpu_ms_per_object")


def _runs_ms(runs: list[float]) -> str:
    return "runs " + "/".join(f"{x * 1000:.0f}" for x in runs) + " ms"


def _summary(runs: list[dict[str, Any]], key: str, *also: str) -> dict[str, Any]:
    """The median of ``key`` over the trials (and the trials' values); medians of the ``also`` keys."""
    values = [r[key] for r in runs]
    out = {key: statistics.median(values), "trials": values}
    out.update({k: statistics.median(r[k] for r in runs) for k in also})
    return out


Row = tuple[str, str, str, str]


def table(fig: dict[str, Any]) -> str:
    verdict = verdicts(fig["checks"])
    # Each part is there unless --only left it out.
    rows = _control_plane_rows(fig, verdict) if "list_s" in fig else []
    if "workqueue_s" in fig:
        rows += _workqueue_rows(fig, verdict)
    if "event_write_ms" in fig:
        rows += _events_rows(fig, verdict)
    return aligned_table(("figure", "value", "target", "result"), rows)


def _events_rows(fig: dict[str, Any], verdict: Callable[[str], str]) -> list[Row]:
    w = fig["event_write_ms"]
    return [
        (
            f"6.  event: record → written, one at a time (n {w['n']})",
            f"p50 {w['p50']:.1f} ms",
            "",
            f"p99 {w['p99']:.1f} ms, max {w['max']:.1f} ms",
        ),
        (
            f"6.  event: {fig['event_burst']} recorded at once → all written",
            f"{fig['event_burst_s'] * 1000:.0f} ms",
            "",
            f"{fig['event_burst_per_s']:.0f} events/s",
        ),
        (
            "6.  event: stop() while the writer waits to retry",
            f"max {fig['event_stop_max_s'] * 1000:.1f} ms",
            f"≤ {TARGET_EVENT_STOP_S * 1000:.0f} ms",
            verdict("event_stop_max_s")
            + "; runs "
            + "/".join(f"{x * 1000:.1f}" for x in fig["event_stop_runs_s"])
            + " ms",
        ),
    ]


def _workqueue_rows(fig: dict[str, Any], verdict: Callable[[str], str]) -> list[Row]:
    return [
        (
            f"5.  work queue: {fig['queue_keys']} keys + {fig['queue_keys']} delayed keys",
            f"{fig['workqueue_s'] * 1000:.0f} ms",
            f"≤ {fig['workqueue_target_s'] * 1000:.0f} ms",
            verdict("workqueue_s") + "; " + _runs_ms(fig["workqueue_runs_s"]),
        ),
        (
            "      per key (2 adds or add_afters, get, done)",
            f"{fig['workqueue_us_per_key']:.1f} µs",
            "",
            f"CPU {fig['workqueue_cpu_s'] * 1000:.0f} ms",
        ),
    ]


def _control_plane_rows(fig: dict[str, Any], verdict: Callable[[str], str]) -> list[Row]:
    n, rn = fig["objects"], fig["reconcile_objects"]
    rows: list[Row] = [
        (
            f"1a. LIST {n} widgets, RV 0 (ApiClient.list_all)",
            f"{fig['list_s'] * 1000:.0f} ms",
            "",
            _runs_ms(fig["list_runs_s"]),
        ),
        (
            "      of which msgspec decode (typed)",
            f"{fig['list_decode_s'] * 1000:.0f} ms",
            "",
            f"{fig['list_body_bytes'] / 1e6:.1f} MB",
        ),
        ("      quorum LIST (RV '', pages of 500)", f"{fig['quorum_list_s'] * 1000:.0f} ms", "", "info"),
        (
            "1b. Informer run() → has_synced()",
            f"{fig['informer_sync_s'] * 1000:.0f} ms",
            "",
            _runs_ms(fig["informer_sync_runs_s"]),
        ),
        (
            "1.  sync / LIST",
            f"{fig['sync_to_list_ratio']:.2f}×",
            f"≤ {TARGET_SYNC_RATIO}×",
            verdict("sync_to_list_ratio"),
        ),
        ("      ratio of the fastest runs", f"{fig['sync_to_list_ratio_of_minima']:.2f}×", "", "info"),
        (
            "      this process's CPU: LIST → sync",
            f"{fig['list_client_cpu_s'] * 1000:.0f} → {fig['informer_sync_client_cpu_s'] * 1000:.0f} ms",
            "",
            "info: the informer's own cost",
        ),
        (
            "2.  RSS per cached object",
            f"{fig['rss_per_object_kib']:.2f} KiB",
            f"≤ {TARGET_RSS_PER_OBJECT_KIB:g} KiB",
            verdict("rss_per_object_kib"),
        ),
        (
            "      child RSS before → after sync",
            f"{fig['rss_before_kib'] / 1024:.1f} → {fig['rss_after_kib'] / 1024:.1f} MiB",
            "",
            "",
        ),
        (
            "3.  child baseline RSS (supervisor child)",
            f"{fig['child_rss_mb']:.1f} MB",
            f"≤ {TARGET_CHILD_RSS_MB:g} MB",
            verdict("child_rss_mb"),
        ),
        (
            "      anonymous + file-backed",
            f"{fig['child_rss_anon_kib'] / 1024:.1f} + {fig['child_rss_file_kib'] / 1024:.1f} MiB",
            "",
            "",
        ),
    ]
    for w, summary in fig["reconcile"].items():
        mine = [r for r in fig["reconcile_runs"] if str(r["workers"]) == w]
        rows.append(
            (
                f"4.  reconcile {rn} widgets, {w} workers",
                f"{rn / summary['per_s']:.2f} s = {summary['per_s']:.0f}/s",
                "",
                "trials " + "/".join(f"{x:.0f}" for x in summary["trials"]) + "/s; "
                f"sync {statistics.median(r['sync_s'] for r in mine) * 1000:.0f} ms; "
                f"{mine[0]['reconciles']} reconciles; CPU ms/obj: "
                f"ctl {summary['controller_cpu_ms_per_object']:.2f} "
                f"srv {summary['server_cpu_ms_per_object']:.2f}",
            )
        )
    for config, summary in fig["ceiling"].items():
        kind, _, c = config.partition("-")
        label = "raw aiohttp loop" if kind == "raw" else "ApiClient.patch loop"
        rows.append(
            (
                f"4.  {label}: patch /status, {c} in flight",
                f"{summary['per_s']:.0f}/s",
                "",
                "trials " + "/".join(f"{x:.0f}" for x in summary["trials"]) + "/s; "
                f"CPU ms/patch: client {summary['client_cpu_ms_per_patch']:.2f} "
                f"srv {summary['server_cpu_ms_per_patch']:.2f}"
                + (" ← ceiling" if config == fig["ceiling_config"] else ""),
            )
        )  # fmt: skip
    rows += [
        (
            f"4.  best reconcile ({fig['reconcile_best_workers']} workers) / ceiling",
            f"{fig['reconcile_fraction_of_ceiling'] * 100:.0f} %",
            f"≥ {TARGET_CEILING_FRACTION * 100:.0f} %",
            verdict("reconcile_fraction_of_ceiling"),
        ),
        (
            "4.  best reconcile rate (stretch)",
            f"{fig['reconcile_per_s']:.0f}/s",
            f"≥ {STRETCH_RECONCILE_PER_S:.0f}/s",
            verdict("reconcile_per_s"),
        ),
        ("      client-go reference (1,000 objects)", f"{GO_REFERENCE_S} s = {1000 / GO_REFERENCE_S:.0f}/s",
         "", "info"),
    ]  # fmt: skip
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--objects", type=int, default=10_000, help="widgets for the LIST/sync/RSS figures")
    p.add_argument("--reconcile-objects", type=int, default=1_000, help="widgets per reconcile run")
    p.add_argument(
        "--workers",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[8, 32, 64],
        help="comma-separated worker counts to try (the best counts); default 8,32,64",
    )
    p.add_argument(
        "--ceiling-concurrency",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[32, 64],
        help="comma-separated in-flight counts for the patch ceiling (the best counts); default 32,64",
    )
    p.add_argument("--trials", type=int, default=3, help="trials of each reconcile/ceiling configuration")
    p.add_argument("--queue-keys", type=int, default=20_000, help="keys (and delayed keys) for figure 5")
    p.add_argument(
        "--only",
        choices=["workqueue", "events"],
        help="figure 5 alone (the work queue, no control plane) or figure 6 alone (the event recorder)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON object of the figures on stdout")
    p.add_argument("--profile", metavar="DIR", help="write a cProfile of each controller child into DIR")
    p.add_argument("--child", choices=["rss", "controller"], help=argparse.SUPPRESS)
    return p.parse_args(argv)


def install_crd(cp: Any, attempts: int = 5) -> None:
    """``cp.install_crds`` with retries: right after creation a CRD's ``status.conditions`` can be ``null``,
    which ``install_crds`` (dorgu/envtest/controlplane.py) does not expect and fails on with a TypeError."""
    for attempt in range(attempts):
        try:
            cp.install_crds([CRD_PATH])
            return
        except TypeError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import uvloop

    if args.child:
        cfg = msgspec.json.decode(sys.stdin.buffer.readline(), type=ChildConfig)
        if args.child == "rss":
            print(json.dumps(uvloop.run(child_rss(cfg))), flush=True)
        else:
            uvloop.run(child_controller(cfg))
        return 0

    from dorgu.envtest.controlplane import ControlPlane, ControlPlaneSettings

    if args.profile:
        Path(args.profile).mkdir(parents=True, exist_ok=True)
    load = load_before_start()
    t0 = time.monotonic()
    if args.only == "workqueue":
        progress(f"5. work queue, {args.queue_keys} keys")
        fig = uvloop.run(bench_workqueue(args.queue_keys))
        fig["checks"] = workqueue_checks(fig)
    else:
        with ControlPlane(ControlPlaneSettings(controllers=())) as cp:
            if args.only is None:
                install_crd(cp)
            SERVER_PIDS[:] = [cp.pids["kube-apiserver"], cp.pids["etcd"]]
            fig = uvloop.run(run_all(cp.connection(user_agent="dorgu-bench"), args))
    seeding = f", seeding {fig['seed_s']:.0f} s of it" if "seed_s" in fig else ""
    footer = machine(fig, started=t0, load=load, note=seeding)
    emit(table(fig) + footer, fig, as_json=args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
