"""The phases of ``dorgu bench``: seed, start the operator, cold, steady, burst, idle, RSS, ceiling.

Everything happens in one namespace (created by the bench, refused when it already exists, deleted at the
end) and every time is taken from this process's watches (informers), never by polling LISTs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from cli.bench import subjects
from cli.bench import workload as w
from cli.bench.progress import ProgressBar
from cli.errors import Failure, InputError
from dorgu.domain.resources import APPLICATION_PERSONAS
from dorgu.runtime.client import ApiClient, ssl_context
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.errors import ApiError, NotFound
from dorgu.runtime.informer import Handlers
from dorgu.runtime.resource import DEPLOYMENTS, LEASES, NAMESPACES

FIELD_MANAGER = "dorgu-bench"
"""The bench's own writes (seeding, Deployment changes, the kubelet stand-in)."""
CEILING_FIELD_MANAGER = "dorgu-bench-ceiling"
"""The ceiling's status applies: a field manager of the operator's kind, the bench's own name."""


@dataclass(kw_only=True)
class BenchSettings:
    personas: int = 1000
    changes_per_s: float = 200.0
    duration_s: float = 20.0
    heartbeat_s: float = 15.0
    workers: int = 16
    ceiling_s: float = 6.0
    namespace: str | None = None
    timeout_s: float = 600.0
    keep_namespace: bool = False


@dataclass
class Timeline:
    """Event times (monotonic) seen by the bench's watches, for throughput over time."""

    t0: float = field(default_factory=time.monotonic)
    persona_writes: list[float] = field(default_factory=list)
    deployment_changes: list[float] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)

    def per_second(self, times: list[float]) -> list[int]:
        if not times:
            return []
        out = [0] * (int(max(times) - self.t0) + 1)
        for t in times:
            out[int(t - self.t0)] += 1
        return out

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.monotonic()
        try:
            yield
        finally:
            self.phases.append((name, round(start - self.t0, 3), round(time.monotonic() - self.t0, 3)))


def percentiles(values: list[float]) -> dict[str, float | None]:
    """p50/p90/p99/max (nearest rank), in milliseconds."""
    if not values:
        return {"p50": None, "p90": None, "p99": None, "max": None}
    s = sorted(values)

    def rank(q: float) -> float:
        return s[min(len(s) - 1, max(0, int(q * len(s) + 0.999999) - 1))]

    return {k: round(rank(q) * 1000, 1) for k, q in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99), ("max", 1.0))}


class Bench:
    def __init__(
        self,
        client: ApiClient,
        connection: ConnectionSettings,
        *,
        kubeconfig: str,
        context: str | None,
        namespace: str,
        settings: BenchSettings,
        bar: ProgressBar,
        subject: str = "dorgu",
    ) -> None:
        self.client, self.conn, self.ns, self.s, self.bar = client, connection, namespace, settings, bar
        self.n = settings.personas
        config = subjects.RunConfig(kubeconfig=kubeconfig, context=context, namespace=namespace,
                                    workers=settings.workers, heartbeat_s=settings.heartbeat_s)  # fmt: skip
        self.operator = subjects.make(subject, config)
        self.cpu: dict[str, float] = {}  # CPU-seconds of the subject at the end of each phase
        self.timeline = Timeline()
        self.report: dict[str, Any] = {}
        self.personas = w.persona_informer(client, namespace)
        self.deployments = w.deployment_informer(client, namespace)
        self.progress = w.Progress(self.personas, self.n)
        # steady state: change bookkeeping, keyed by Deployment name
        self._seq: dict[str, int] = {}  # image -> sequence number
        self._pending: dict[str, list[tuple[int, str, float]]] = {}  # deployment -> [(seq, image, sent_at)]
        self._seen: dict[str, float] = {}  # image -> when the bench's Deployment watch saw it
        self.latencies: list[float] = []
        self.latencies_from_send: list[float] = []
        self.reflected = 0
        self.coalesced = 0
        self._reflected_at: list[float] = []
        # idle: every persona write in the window, classified
        self._idle: list[tuple[float, bool]] | None = None
        self.personas.add_handlers(Handlers(on_update=self._persona_updated))
        self.deployments.add_handlers(Handlers(on_update=self._deployment_updated))

    # -- watch handlers -------------------------------------------------------------------------------------

    def _deployment_updated(self, old: w.DeploymentView, new: w.DeploymentView) -> None:
        image = w.image_of(new)
        if image != w.image_of(old) and image is not None:
            now = time.monotonic()
            self.timeline.deployment_changes.append(now)
            self._seen.setdefault(image, now)

    def _persona_updated(self, old: w.PersonaView, new: w.PersonaView) -> None:
        if old.metadata.resource_version == new.metadata.resource_version:
            return
        now = time.monotonic()
        self.timeline.persona_writes.append(now)
        if self._idle is not None:
            heartbeat = False
            if w.substance(old) == w.substance(new):
                a, b = w.last_checked(old), w.last_checked(new)
                # lastChecked is stored in whole seconds: a heartbeat moves it by at least the interval - 1 s.
                heartbeat = bool(a and b and b - a >= timedelta(seconds=self.s.heartbeat_s - 1))
            self._idle.append((now, heartbeat))
        current = w.current_of(new)
        if current is None or current == w.current_of(old):
            return
        name = new.metadata.name or ""
        pending = self._pending.get(name)
        seq = self._seq.get(current)
        if not pending or seq is None:
            return
        keep = []
        for entry in pending:
            eseq, image, sent = entry
            if eseq > seq:
                keep.append(entry)
                continue
            if eseq == seq:
                self.reflected += 1
                self._reflected_at.append(now)
                self.latencies.append(now - self._seen.get(image, sent))
                self.latencies_from_send.append(now - sent)
            else:
                self.coalesced += 1  # a later change of the same Deployment was reflected first
        self._pending[name] = keep

    # -- helpers --------------------------------------------------------------------------------------------

    async def _wait(self, event: asyncio.Event, what: str, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not event.is_set():
            self.operator.check()
            if time.monotonic() > deadline:
                raise Failure(
                    f"{what} ({self.operator.name}): not converged after {timeout_s:.0f} s "
                    f"({len(self.progress.done)}/{self.n} personas)\n{self.operator.log_tail()}"
                )
            self.bar.update(len(self.progress.done))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(event.wait()), 0.1)
        self.bar.update(len(self.progress.done))

    def _pending_count(self) -> int:
        return sum(len(v) for v in self._pending.values())

    async def _change(self, name: str, image: str) -> None:
        await self.client.patch(
            DEPLOYMENTS, name, w.image_patch(image), namespace=self.ns, patch_type="strategic",
            field_manager=FIELD_MANAGER, decode=False,
        )  # fmt: skip

    # -- phases ---------------------------------------------------------------------------------------------

    async def run(self) -> dict[str, Any]:
        n = self.n
        self.bar.phase("seed", n * 3)
        t = time.monotonic()
        with self.timeline.phase("seed"):
            await w.seed(self.client, self.ns, n, progress=self.bar.update)
        self.report["seed"] = {"objects": n * 2, "seconds": round(time.monotonic() - t, 2)}
        tasks = [asyncio.create_task(self.personas.run()), asyncio.create_task(self.deployments.run())]
        try:
            await self.personas.wait_for_sync()
            await self.deployments.wait_for_sync()
            return await self._measure()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _measure(self) -> dict[str, Any]:
        n, r = self.n, self.report
        try:
            # cold: from the operator's start until every persona is validated
            self.bar.phase("cold start", n)
            self.progress.expect(w.validated)
            t0 = time.monotonic()
            with self.timeline.phase("cold"):
                self.operator.start()
                await self._wait(self.progress.complete, "cold convergence", self.s.timeout_s)
            cold = (self.progress.last_at or time.monotonic()) - t0
            self.cpu["cold"] = self.operator.cpu_seconds()
            r["cold"] = {
                "validated": len(self.progress.done),
                "seconds": round(cold, 2),
                "personas_per_s": round(n / cold, 1),
                "first_validated_s": round((self.progress.first_at or t0) - t0, 2),
            }
            await asyncio.sleep(1.0)
            r["steady"] = await self._steady()
            self.cpu["before_burst"] = self.operator.cpu_seconds()
            r["burst"] = await self._burst()
            self.cpu["burst"] = self.operator.cpu_seconds()
            r["idle"] = await self._idle_phase()
            self.cpu["idle"] = self.operator.cpu_seconds()
            rss = subjects.rss_of(self.operator)
            r["rss_mib"] = {k: {kk: round(vv, 1) for kk, vv in v.items()} for k, v in rss.items()}
            c = self.cpu
            burst_cpu = c["burst"] - c["before_burst"]
            r["cpu_seconds"] = {
                "cold": round(c["cold"], 2),
                "steady": round(c["before_burst"] - c["cold"], 2),
                "burst": round(burst_cpu, 2),
                "idle": round(c["idle"] - c["burst"], 2),
                "cold_plus_burst": round(c["cold"] + burst_cpu, 2),
                "note": "user + system CPU of the operator's processes (from /proc), the start included",
            }
            self.operator.check()
            if self.s.ceiling_s > 0:
                r["ceiling"] = await self._ceiling()
        finally:
            code = self.operator.stop()
        r["operator_exit_code"] = code
        return r

    async def _steady(self) -> dict[str, Any]:
        n, rate, duration = self.n, self.s.changes_per_s, self.s.duration_s
        total = int(rate * duration)
        self.bar.phase(f"steady {rate:g}/s", total)
        sem = asyncio.Semaphore(64)
        inflight: set[asyncio.Task[None]] = set()
        errors = 0
        seq = 0

        async def send(name: str, image: str) -> None:
            nonlocal errors
            try:
                await self._change(name, image)
            except ApiError:
                errors += 1
            finally:
                sem.release()

        with self.timeline.phase("steady"):
            start = time.monotonic()
            for k in range(total):
                due = start + k / rate
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                await sem.acquire()  # blocks when the server falls 64 requests behind: the rate drops
                seq += 1
                name, image = f"app{k % n}", f"app:s{seq}"
                self._seq[image] = seq
                self._pending.setdefault(name, []).append((seq, image, time.monotonic()))
                task = asyncio.create_task(send(name, image))
                inflight.add(task)
                task.add_done_callback(inflight.discard)
                if k % 16 == 0:
                    self.bar.update(self.reflected + self.coalesced)
                    self.operator.check()
            send_s = time.monotonic() - start
            await asyncio.gather(*inflight)
            deadline = time.monotonic() + min(self.s.timeout_s, 120)
            while self._pending_count() and time.monotonic() < deadline:
                self.operator.check()
                self.bar.update(self.reflected + self.coalesced)
                await asyncio.sleep(0.05)
            end = max(self._reflected_at[-1] if self._reflected_at else start, start + send_s)
        elapsed = time.monotonic() - start
        lost = self._pending_count()
        self._pending.clear()
        return {
            "target_changes_per_s": rate,
            "duration_s": duration,
            "changes_sent": total,
            "send_errors": errors,
            "send_seconds": round(send_s, 2),
            "achieved_changes_per_s": round(total / send_s, 1) if send_s else None,
            "reflected": self.reflected,
            "coalesced": self.coalesced,
            "not_reflected": lost,
            "reflected_per_s": round(self.reflected / max(end - start, 1e-9), 1),
            "drain_seconds": round(max(0.0, elapsed - send_s), 2),
            "latency_ms": percentiles(self.latencies),
            "latency_from_send_ms": percentiles(self.latencies_from_send),
            "latencies_s": [round(x, 4) for x in self.latencies],
        }

    async def _burst(self) -> dict[str, Any]:
        n = self.n
        self.bar.phase("burst", n)
        image = "app:burst"
        self.progress.expect(w.shows(image))
        with self.timeline.phase("burst"):
            t1 = time.monotonic()
            await w.gather_bounded([self._change(f"app{i}", image) for i in range(n)], limit=64)
            sent = time.monotonic() - t1
            await self._wait(self.progress.complete, "burst", self.s.timeout_s)
            took = (self.progress.last_at or time.monotonic()) - t1
        return {
            "changes": n,
            "converged": len(self.progress.done),
            "send_seconds": round(sent, 2),
            "seconds": round(took, 2),
            "personas_per_s": round(n / took, 1),
        }

    async def _idle_phase(self) -> dict[str, Any]:
        window = 2 * self.s.heartbeat_s
        self.bar.phase(f"idle {window:g} s", int(window * 10))
        await asyncio.sleep(1.0)
        before = await self.operator.patch_requests()
        self._idle = []
        with self.timeline.phase("idle"):
            t = time.monotonic()
            while (left := t + window - time.monotonic()) > 0:
                self.operator.check()
                self.bar.update(int((window - left) * 10))
                await asyncio.sleep(min(0.1, left))
        after = await self.operator.patch_requests()
        writes = self._idle
        self._idle = None
        beats = sum(1 for _, hb in writes if hb)
        other = len(writes) - beats
        return {
            "window_s": window,
            "heartbeat_interval_s": self.s.heartbeat_s,
            "revalidate_interval_s": self.s.heartbeat_s / 2,
            "status_writes": len(writes),
            "heartbeat_writes": beats,
            "other_writes": other,
            "writes_per_s": round(len(writes) / window, 3),
            "beyond_heartbeat_per_s": round(other / window, 3),
            "operator_patch_requests": None if before is None or after is None else int(after - before),
        }

    async def _ceiling(self) -> dict[str, Any]:
        """A tight loop of status applies (PATCH application/apply-patch+yaml on ``/status``), the request
        the operator makes, against the same server with the same watchers (operator and bench) attached."""
        names = sorted(p.metadata.name or "" for p in self.personas.store.list())
        sample = await self.client.get(APPLICATION_PERSONAS, names[0], namespace=self.ns)
        status = dict(sample.get("status") or {}) if isinstance(sample, dict) else {}
        status.pop("recommendations", None)
        size = len(json.dumps({"status": status}))
        best: dict[str, Any] | None = None
        runs = []
        per_run = self.s.ceiling_s / 2
        for conc in (32, 64):
            self.bar.phase(f"ceiling ({conc} in flight)", int(per_run * 10))
            with self.timeline.phase(f"ceiling-{conc}"):
                res = await _ceiling_run(self.conn, self.ns, names, conc, per_run, size, self.bar)
            runs.append(res)
            if best is None or res["writes_per_s"] > best["writes_per_s"]:
                best = res
        assert best is not None
        return {
            "request": "PATCH .../applicationpersonas/<name>/status (server-side apply)",
            "field_manager": CEILING_FIELD_MANAGER,
            "body_bytes": size,
            "writes_per_s": best["writes_per_s"],
            "concurrency": best["concurrency"],
            "runs": runs,
        }


async def _ceiling_run(
    conn: ConnectionSettings,
    ns: str,
    names: list[str],
    conc: int,
    seconds: float,
    size: int,
    bar: ProgressBar,
) -> dict[str, Any]:
    headers = {"Content-Type": "application/apply-patch+yaml", "Accept": "application/json"}
    token = conn.token or (Path(conn.token_file).read_text().strip() if conn.token_file else None)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    base = f"{conn.server.rstrip('/')}/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/"
    params = {"fieldManager": CEILING_FIELD_MANAGER, "force": "true"}
    stamp = datetime.now(UTC).strftime("%H%M%S")
    pad = "x" * max(0, size - 200)
    counter = 0
    ok = errors = 0
    stop_at = time.monotonic() + seconds
    enc = msgspec.json.Encoder()

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal counter, ok, errors
        while time.monotonic() < stop_at:
            counter += 1
            name = names[counter % len(names)]
            body = enc.encode({
                "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
                "metadata": {"name": name, "namespace": ns},
                "status": {"recommendations": [{
                    "type": "performance", "priority": "low",
                    "message": f"dorgu bench ceiling {stamp}-{conc}-{counter} {pad}",
                }]},
            })  # fmt: skip
            async with session.patch(base + name + "/status", params=params, data=body, headers=headers) as r:
                await r.read()
                if r.status < 300:
                    ok += 1
                else:
                    errors += 1

    connector = aiohttp.TCPConnector(ssl=ssl_context(conn), limit=conc)
    async with aiohttp.ClientSession(connector=connector) as session:
        t = time.monotonic()

        async def ticker() -> None:
            while time.monotonic() < stop_at:
                bar.update(int((time.monotonic() - t) * 10))
                await asyncio.sleep(0.1)

        await asyncio.gather(ticker(), *(worker(session) for _ in range(conc)))
        took = time.monotonic() - t
    return {"concurrency": conc, "writes": ok, "errors": errors, "seconds": round(took, 2),
            "writes_per_s": round(ok / took, 1)}  # fmt: skip


# -- the cluster side: a throwaway namespace ---------------------------------------------------------------


async def prepare_namespace(client: ApiClient, requested: str | None) -> str:
    """Create the bench's namespace; refuse one that exists (the bench touches nothing of anyone else's)."""
    if not await client.served(group="dorgu.io", version="v1", plural="applicationpersonas"):
        raise Failure(
            "the cluster does not serve applicationpersonas.dorgu.io/v1; install the CRDs first "
            "(kubectl apply -f deploy/crds/) — dorgu bench changes nothing outside its own namespace"
        )
    name = requested or f"dorgu-bench-{os.urandom(3).hex()}"
    try:
        await client.get(NAMESPACES, name)
    except NotFound:
        pass
    else:
        raise InputError(
            f"namespace {name} already exists; dorgu bench runs only in a namespace it creates "
            "(and deletes afterwards): name a new one with --namespace, or leave it out"
        )
    labels = {"app.kubernetes.io/managed-by": "dorgu-bench"}
    await client.create(NAMESPACES, {"metadata": {"name": name, "labels": labels}})
    return name


async def delete_namespace(client: ApiClient, name: str) -> None:
    with contextlib.suppress(NotFound):
        await client.delete(NAMESPACES, name)


async def wait_namespace_gone(client: ApiClient, name: str, *, timeout_s: float) -> bool:
    """Until the namespace (and so everything in it) is deleted, at most ``timeout_s``; whether it went. A
    cluster without a namespace controller (the bench's own local control plane) never finishes: the next
    run then goes on in a namespace of its own."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            await client.get(NAMESPACES, name)
        except NotFound:
            return True
        await asyncio.sleep(0.5)
    return False


async def other_controller(client: ApiClient) -> str | None:
    """The holder of a live ``dorgu-applicationpersona`` Lease in ``dorgu-system``, if any (its writes to the
    bench's personas would be counted too)."""
    try:
        lease = await client.get(LEASES, "dorgu-applicationpersona", namespace="dorgu-system")
    except (ApiError, NotFound):
        return None
    spec = lease.get("spec", {}) if isinstance(lease, dict) else {}
    holder, renew = spec.get("holderIdentity"), spec.get("renewTime")
    if not holder or not renew:
        return None
    try:
        age = datetime.now(UTC) - datetime.fromisoformat(renew.replace("Z", "+00:00"))
    except ValueError:
        return None
    return str(holder) if age < timedelta(seconds=60) else None
