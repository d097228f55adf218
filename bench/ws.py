"""Benchmark of the WebSocket server (``webhook/websocket.py``) against a real local control plane.

Run ``.venv/bin/python bench/ws.py [--subscribers 500] [--namespaces 10] [--rate 100] [--duration 20]
[--procs 4] [--json]``. It starts its own control plane with dorgu's CRDs, creates ``--namespaces``
namespaces with 10 personas each, and starts, each in a process of its own:

* the **server**: a :class:`WebSocketServer` on a :class:`Manager` (``--ws-auth=none``), as the operator's
  ``websocket`` component runs it;
* ``--procs`` **subscriber** processes holding ``--subscribers`` msgpack connections between them;
* one **writer** process patching persona labels at ``--rate`` changes/s, round-robin over the namespaces.

Two scenarios, each after a 3 s warm-up: **filtered** — subscriber *i* subscribes to namespace *i mod 10*
(so ≈ rate × subscribers / namespaces frames/s: 5,000 with the defaults) — and **unfiltered**, every
subscriber sees every change (50,000 frames/s): the worst case, for the record.

Figures: **delivery latency** per frame = the subscriber's receive time − the frame's ``timestamp`` (the
moment the server's informer delivered the change), p50/p99/max over all frames; frames delivered vs
expected; ``lagging`` resyncs; the server's VmRSS (peak and at the end). Target: filtered p99 ≤ 100 ms.
Everything shares the machine's cores with etcd and kube-apiserver; compare figures from the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0]: its modules (bench/webhook.py) would shadow the packages.
sys.path[:] = [x for x in sys.path if Path(x or ".").resolve() != ROOT / "bench"]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from dorgu.domain import protocol as p  # noqa: E402

PERSONAS_PER_NS = 10


class _Env(msgspec.Struct):
    type: str = ""
    timestamp: str = ""
    payload: Any = None


def _ts_ns(ts: str) -> int:
    base, _, frac = ts.rstrip("Z").partition(".")
    secs = calendar.timegm(time.strptime(base, "%Y-%m-%dT%H:%M:%S"))
    return secs * 1_000_000_000 + int((frac + "000000000")[:9])


# --------------------------------------------------------------------------- child roles


def serve(cfg: dict[str, Any]) -> None:
    from dorgu.runtime.config import ConnectionSettings
    from dorgu.runtime.manager import Manager
    from webhook.websocket import WebSocketServer, WebSocketSettings

    async def main() -> None:
        conn = msgspec.convert(cfg["connection"], ConnectionSettings)
        m = Manager(connection=conn)
        server = WebSocketServer(m, WebSocketSettings(host="127.0.0.1", port=cfg["port"], auth="none"))
        stop = asyncio.Event()
        ready = asyncio.Event()
        serving = asyncio.create_task(server.serve(stop, ready=lambda r: r and ready.set()))
        run = asyncio.create_task(m.run(stop))
        await ready.wait()
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        stop.set()
        await asyncio.gather(serving, run, return_exceptions=True)

    _run(main())


def subscribe(cfg: dict[str, Any]) -> None:
    async def one(
        session: aiohttp.ClientSession, ns: str | None, lat: list[int], counts: dict[str, int]
    ) -> None:
        dec = msgspec.msgpack.Decoder(_Env)
        async with session.ws_connect(cfg["url"], protocols=(p.SUBPROTOCOL_MSGPACK,), max_msg_size=0) as ws:
            sub = p.Subscribe(topic="personas", request_id="s", payload=p.SubscribeOptions(namespace=ns))
            await ws.send_bytes(msgspec.msgpack.encode(sub))
            counts["connected"] += 1
            measuring = False
            async for msg in ws:
                now = time.time_ns()
                env = dec.decode(msg.data)
                if env.type == "event":
                    if not measuring and now >= cfg["measure_from_ns"]:
                        measuring = True
                    if now > cfg["measure_until_ns"]:
                        return
                    if measuring:
                        lat.append(now - _ts_ns(env.timestamp))
                elif env.type == "error":
                    counts["errors"] += 1
                    if (env.payload or {}).get("code") == p.LAGGING:
                        counts["lagging"] += 1

    async def main() -> None:
        lat: list[int] = []
        counts = {"connected": 0, "errors": 0, "lagging": 0}
        conn = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=conn) as session:
            tasks = [
                asyncio.create_task(one(session, ns, lat, counts)) for ns in cfg["namespaces"]
            ]  # one per connection
            deadline = (cfg["measure_until_ns"] - time.time_ns()) / 1e9 + 5
            await asyncio.wait(tasks, timeout=max(deadline, 1))
            for t in tasks:
                t.cancel()
        print(json.dumps({"latencies_ns": lat, **counts}), flush=True)

    _run(main())


def write(cfg: dict[str, Any]) -> None:
    async def main() -> None:
        import ssl

        ctx = ssl.create_default_context(cadata=cfg["ca"])
        headers = {"Authorization": f"Bearer {cfg['token']}", "Content-Type": "application/merge-patch+json"}
        targets = [(ns, f"p{i}") for i in range(PERSONAS_PER_NS) for ns in cfg["all_namespaces"]]
        sent = 0
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=ctx, limit=32)) as s:
            t0 = time.monotonic()
            inflight: set[asyncio.Task[Any]] = set()

            async def patch(ns: str, name: str, n: int) -> None:
                url = f"{cfg['server']}/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas/{name}"
                async with s.patch(url, data=json.dumps({"metadata": {"labels": {"bench": str(n)}}}),
                                   headers=headers) as r:  # fmt: skip
                    await r.read()

            while time.monotonic() - t0 < cfg["seconds"]:
                due = int((time.monotonic() - t0) * cfg["rate"])
                while sent < due:
                    ns, name = targets[sent % len(targets)]
                    t = asyncio.create_task(patch(ns, name, sent))
                    inflight.add(t)
                    t.add_done_callback(inflight.discard)
                    sent += 1
                await asyncio.sleep(0.005)
            await asyncio.gather(*inflight, return_exceptions=True)
        print(json.dumps({"sent": sent}), flush=True)

    _run(main())


def _run(coro: Any) -> None:
    try:
        import uvloop

        uvloop.run(coro)
    except ImportError:
        asyncio.run(coro)


# --------------------------------------------------------------------------- orchestration


def _spawn(role: str, cfg: dict[str, Any], **kw: Any) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen(
        [sys.executable, __file__, f"--role={role}", json.dumps(cfg)], env=env, text=True,
        stdout=subprocess.PIPE, **kw,
    )  # fmt: skip


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def scenario(
    args: argparse.Namespace, cp: Any, url: str, server_pid: int, *, filtered: bool
) -> dict[str, Any]:
    namespaces = [f"bench-{i}" for i in range(args.namespaces)]
    warm, seconds = 3.0, float(args.duration)
    start = time.time_ns() + int(4e9)  # subscribers connect during the first seconds
    measure_from = start + int(warm * 1e9)
    measure_until = start + int((warm + seconds) * 1e9)
    subs = [namespaces[i % len(namespaces)] if filtered else None for i in range(args.subscribers)]
    procs = []
    for k in range(args.procs):
        part = subs[k :: args.procs]
        cfg = {
            "url": url,
            "namespaces": part,
            "measure_from_ns": measure_from,
            "measure_until_ns": measure_until,
        }
        procs.append(_spawn("subscribe", cfg))
    time.sleep(max(0.0, (start - time.time_ns()) / 1e9))
    writer = _spawn(
        "write",
        {"server": cp.server, "token": cp.admin_token, "ca": cp.ca_file.read_text(), "rate": args.rate,
         "seconds": warm + seconds + 1.0, "all_namespaces": namespaces},
    )  # fmt: skip
    peak = 0
    while writer.poll() is None:
        peak = max(peak, rss_kib(server_pid))
        time.sleep(0.5)
    sent = json.loads(writer.stdout.read() or "{}").get("sent", 0) if writer.stdout else 0
    results = [json.loads(pr.communicate(timeout=60)[0].strip().splitlines()[-1]) for pr in procs]
    lat = sorted(x for r in results for x in r["latencies_ns"])
    per_sub = args.rate * (1 / len(namespaces) if filtered else 1)
    expected = int(per_sub * seconds * args.subscribers)

    def pct(q: float) -> float:
        return round(lat[min(len(lat) - 1, int(q * len(lat)))] / 1e6, 1) if lat else float("nan")

    return {
        "scenario": "filtered" if filtered else "unfiltered",
        "subscribers": args.subscribers,
        "connected": sum(r["connected"] for r in results),
        "changes_sent": sent,
        "frames_measured": len(lat),
        "frames_expected": expected,
        "frames_per_s": round(len(lat) / seconds),
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "max_ms": pct(1.0) if lat else float("nan"),
        "mean_ms": round(statistics.fmean(lat) / 1e6, 1) if lat else float("nan"),
        "lagging_resyncs": sum(r["lagging"] for r in results),
        "server_rss_peak_mib": round(peak / 1024, 1),
        "server_rss_end_mib": round(rss_kib(server_pid) / 1024, 1),
    }


def table(rows: list[dict[str, Any]]) -> str:
    cols = list(rows[0])
    widths = [max(len(c), *(len(str(r[c])) for r in rows)) for c in cols]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines += ["  ".join(str(r[c]).ljust(w) for c, w in zip(cols, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--subscribers", type=int, default=500)
    ap.add_argument("--namespaces", type=int, default=10)
    ap.add_argument("--rate", type=float, default=100.0, help="persona changes per second")
    ap.add_argument("--duration", type=float, default=20.0, help="measured seconds per scenario")
    ap.add_argument("--procs", type=int, default=4, help="subscriber processes")
    ap.add_argument("--only", choices=("filtered", "unfiltered"))
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--role")
    ap.add_argument("config", nargs="?")
    args = ap.parse_args(argv)
    if args.role:
        {"serve": serve, "subscribe": subscribe, "write": write}[args.role](json.loads(args.config))
        return 0

    from dorgu.envtest import ControlPlane, ControlPlaneSettings
    from dorgu.envtest.controlplane import free_port

    crds = tuple(sorted((ROOT / "deploy" / "crds").glob("*.yaml")))
    with ControlPlane(ControlPlaneSettings(crds=crds)) as cp:
        kube = cp.client()
        for i in range(args.namespaces):
            ns = f"bench-{i}"
            kube.post(
                "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}
            )
            for j in range(PERSONAS_PER_NS):
                kube.post(f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas", {
                    "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona", "metadata": {"name": f"p{j}"},
                    "spec": {"name": f"p{j}", "type": "api"},
                })  # fmt: skip
        port = free_port()
        conn = msgspec.to_builtins(cp.connection(user_agent="bench-ws"))
        server = _spawn("serve", {"connection": conn, "port": port}, stdin=subprocess.PIPE)
        assert server.stdout is not None
        if server.stdout.readline().strip() != "READY":
            raise SystemExit("the server did not start")
        url = f"ws://127.0.0.1:{port}/ws"
        idle = round(rss_kib(server.pid) / 1024, 1)
        rows = []
        try:
            for filtered in (True, False):
                if args.only and args.only != ("filtered" if filtered else "unfiltered"):
                    continue
                print(f"running the {'filtered' if filtered else 'unfiltered'} scenario...", file=sys.stderr)
                rows.append(scenario(args, cp, url, server.pid, filtered=filtered))
        finally:
            if server.stdin:
                server.stdin.close()
            try:
                server.wait(15)
            except subprocess.TimeoutExpired:
                server.kill()
    result = {
        "server_rss_idle_mib": idle,
        "target": "filtered p99 <= 100 ms",
        # None when the filtered scenario did not run (--only unfiltered): there is nothing to judge.
        "target_met": (
            None
            if not any(r["scenario"] == "filtered" for r in rows)
            else any(r["scenario"] == "filtered" and r["p99_ms"] <= 100 for r in rows)
        ),
        "scenarios": rows,
        "cpus": os.cpu_count(),
    }
    if args.json:
        print(table(rows), file=sys.stderr)
        print(json.dumps(result))
    else:
        print(table(rows))
        print(
            f"server RSS idle: {idle} MiB; target {result['target']}: "
            f"{ {True: 'met', False: 'MISSED', None: 'not measured'}[result['target_met']] }"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
