"""Benchmark: the ApplicationPersona controller on N personas + Deployments, run as in production.

(`dorgu bench` is the full product version of this script: steady state, idle writes and the ceiling too;
both seed the same personas and Deployments, from ``cli/bench/workload.py``.)

    .venv/bin/python bench/personas.py [--personas 1000] [--json]

It starts its own local control plane, seeds N personas with one matching Deployment each (status written by
a "kubelet stand-in", as no kubelet runs here), then starts ``dorgu operator --components=applicationpersona``
as a separate process (supervisor + child, leader election on) and measures, **from a watch** (never by
polling LISTs):

* cold convergence: time from the operator's start until every persona has a validated status;
* change convergence: every Deployment's image changed at once; time until every persona's
  ``status.deployments.current`` shows the new image.

For reference, the same check written with Go client-go: ~2.8 s cold and ~3.6-5.2 s for the change on this
machine; kopf ~15 s and ~6 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cli.bench.workload import deployment, gather_bounded, persona  # noqa: E402
from dorgu.domain.resources import APPLICATION_PERSONAS  # noqa: E402
from dorgu.domain.types import ApplicationPersona  # noqa: E402
from dorgu.envtest import ControlPlane, ControlPlaneSettings  # noqa: E402
from dorgu.runtime.client import ApiClient  # noqa: E402
from dorgu.runtime.informer import Handlers, Informer  # noqa: E402
from dorgu.runtime.resource import DEPLOYMENTS, NAMESPACES  # noqa: E402

__all__ = ["deployment", "gather_bounded", "persona"]
NS = "bench"


async def seed(client: ApiClient, n: int) -> None:
    await client.create(NAMESPACES, {"metadata": {"name": NS}})
    await client.create(NAMESPACES, {"metadata": {"name": "dorgu-system"}})
    await gather_bounded([client.create(APPLICATION_PERSONAS, persona(i), namespace=NS) for i in range(n)])
    await gather_bounded([client.create(DEPLOYMENTS, deployment(i, "app:1"), namespace=NS) for i in range(n)])
    available = {"type": "Available", "status": "True", "reason": "KubeletStandIn"}
    status = {
        "status": {"replicas": 1, "readyReplicas": 1, "availableReplicas": 1, "conditions": [available]}
    }
    # kubelet stand-in: no kubelet runs here, so the bench marks every Deployment ready itself.
    await gather_bounded(
        [
            client.patch(DEPLOYMENTS, f"app{i}", status, namespace=NS, subresource="status", decode=False)
            for i in range(n)
        ]
    )


class Progress:
    """Counts personas that satisfy a predicate, from a watch (an informer's events)."""

    def __init__(self, informer: Informer[ApplicationPersona], n: int) -> None:
        self.informer, self.n = informer, n
        self.pred: Any = lambda p: False
        self.done: set[str] = set()
        self.complete = asyncio.Event()
        self.first_at: float | None = None
        informer.add_handlers(Handlers(on_add=self._see, on_update=lambda o, p: self._see(p)))

    def expect(self, pred: Any) -> None:
        self.pred, self.done, self.first_at = pred, set(), None
        self.complete.clear()
        for p in self.informer.store.list():
            self._see(p)

    def _see(self, p: ApplicationPersona) -> None:
        if self.pred(p):
            if self.first_at is None:
                self.first_at = time.monotonic()
            self.done.add(p.metadata.name or "")
            if len(self.done) >= self.n:
                self.complete.set()


def validated(p: ApplicationPersona) -> bool:
    return bool(p.status and p.status.validation and p.status.validation.last_checked and p.status.phase)


def shows(image: str) -> Any:
    return lambda p: bool(p.status and p.status.deployments and p.status.deployments.current == image)


def rss_of_tree(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    pids = [pid]
    for task in Path(f"/proc/{pid}/task").iterdir():
        pids += [int(x) for x in (task / "children").read_text().split()]
    for p in pids:
        try:
            status = Path(f"/proc/{p}/status").read_text()
            cmd = Path(f"/proc/{p}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        kb = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
        name = "supervisor" if p == pid else (cmd[-2].decode() if len(cmd) > 1 else str(p))
        out[name] = kb / 1024
    return out


async def run(n: int, workers: int = 16) -> dict[str, Any]:
    crds = tuple(sorted((ROOT / "deploy" / "crds").glob("*.yaml")))
    with ControlPlane(ControlPlaneSettings(crds=crds, controllers=())) as cp:
        async with ApiClient(cp.connection(user_agent="bench")) as client:
            t = time.monotonic()
            await seed(client, n)
            seed_s = time.monotonic() - t
            watcher: Informer[ApplicationPersona] = Informer(
                client, APPLICATION_PERSONAS, item_type=ApplicationPersona, namespace=NS
            )
            progress = Progress(watcher, n)
            wtask = asyncio.create_task(watcher.run())
            await watcher.wait_for_sync()
            progress.expect(validated)

            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            t0 = time.monotonic()
            op = subprocess.Popen(
                [sys.executable, "-m", "cli.main", "operator", f"--kubeconfig={cp.kubeconfig}",
                 "--components=applicationpersona", "--lease-namespace=dorgu-system", f"--workers={workers}",
                 f"--metrics-bind-address=127.0.0.1:{port}", "--identity=bench-0", "--log-level=warning"],
                cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            try:
                await asyncio.wait_for(progress.complete.wait(), timeout=600)
                cold_s = time.monotonic() - t0
                first_s = (progress.first_at or t0) - t0
                await asyncio.sleep(1.0)
                rss = rss_of_tree(op.pid)

                progress.expect(shows("app:2"))
                patch = {"spec": {"template": {"spec": {"containers": [{"name": "app", "image": "app:2"}]}}}}
                t1 = time.monotonic()
                await gather_bounded([
                    client.patch(DEPLOYMENTS, f"app{i}", patch, namespace=NS, patch_type="strategic",
                                 decode=False)
                    for i in range(n)
                ])  # fmt: skip
                sent_s = time.monotonic() - t1
                await asyncio.wait_for(progress.complete.wait(), timeout=600)
                change_s = time.monotonic() - t1
            finally:
                op.send_signal(signal.SIGTERM)
                op.wait(30)
                wtask.cancel()
    return {
        "personas": n,
        "workers": workers,
        "seed_s": round(seed_s, 2),
        "cold_convergence_s": round(cold_s, 2),
        "cold_personas_per_s": round(n / cold_s, 1),
        "cold_first_status_s": round(first_s, 2),
        "change_send_s": round(sent_s, 2),
        "change_convergence_s": round(change_s, 2),
        "change_personas_per_s": round(n / change_s, 1),
        "rss_mb": {k: round(v, 1) for k, v in rss.items()},
        "reference_go_client_go_s": {"cold": 2.8, "change": "3.6-5.2"},
        "reference_kopf_s": {"cold": 15, "change": 6},
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--personas", type=int, default=1000)
    ap.add_argument("--workers", type=int, default=16, help="the operator's --workers")
    ap.add_argument("--json", action="store_true", help="print one JSON object of the figures")
    args = ap.parse_args()
    r = asyncio.run(run(args.personas, args.workers))
    if args.json:
        print(json.dumps(r))
        return 0
    rows = [
        ("personas + Deployments", f"{r['personas']}", ""),
        ("cold start → all validated", f"{r['cold_convergence_s']} s ({r['cold_personas_per_s']}/s)",
         "Go ~2.8 s, kopf ~15 s"),
        ("every Deployment changed → all reflect it",
         f"{r['change_convergence_s']} s ({r['change_personas_per_s']}/s)", "Go ~3.6-5.2 s, kopf ~6 s"),
        ("  of which: start until the first status", f"{r['cold_first_status_s']} s", "process start, LIST"),
        ("  (time to send the 1,000 changes)", f"{r['change_send_s']} s", ""),
    ] + [(f"RSS {k}", f"{v} MB", "") for k, v in r["rss_mb"].items()]  # fmt: skip
    w = max(len(a) for a, _, _ in rows)
    print(f"{'figure'.ljust(w)}  {'dorgu'.ljust(24)}  reference")
    for a, b, c in rows:
        print(f"{a.ljust(w)}  {b.ljust(24)}  {c}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
