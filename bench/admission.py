"""Benchmark of the admission webhook (``webhook.server``), directly and through a real kube-apiserver.

Run ``.venv/bin/python bench/admission.py [--duration 10] [--rate 500] [--concurrency 64] [--json]``.
It starts its own control plane (etcd + kube-apiserver 1.20, no controller-manager) with dorgu's CRDs, one
ApplicationPersona in an opted-in namespace, and **one webhook replica in a process of its own** (the real
``webhook.server.run`` entry point on uvloop, as the supervisor runs it). The load generators are other
processes, so they never take the server's event loop: ``wrk`` (Debian package ``wrk``, with a Lua POST
script) for the maximum rate, and an open-loop Python generator (``--load``, aiohttp in its own process)
for the fixed rate.

Figures:

1. **Direct, max reviews/s at concurrency 64**: ``wrk -t1 -c64`` POSTs one AdmissionReview (a CREATE of a
   Deployment that matches the persona and breaks three of its rules, so every rule runs and three warnings
   come back) to ``https://127.0.0.1:<port>/validate-deployment`` over keep-alive TLS connections.
2. **Direct, p50/p99 at a fixed open-loop 500 reviews/s**: request *i* is sent at ``t0 + i/rate`` whether
   or not earlier ones have finished, and its latency is measured from that scheduled moment (so a stall
   is not hidden by the generator waiting: no coordinated omission).
3. and 4. **Through the API server**: the same two measurements for ``POST .../deployments?dryRun=All``
   (admission runs, nothing is stored) in the opted-in namespace, so each write costs one webhook call;
   and the same rate in a namespace that is *not* opted in as the baseline, to show what the webhook adds.

Targets (direct, one process): ≥ 1,500 reviews/s at c=64; p99 ≤ 10 ms at 500/s. Everything shares the
machine's cores (etcd, kube-apiserver, the webhook and the load generator): compare figures only between
runs on the same machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(REPO_ROOT))

from bench.report import emit  # noqa: E402

TARGET_MAX_RPS = 1500.0
TARGET_P99_MS = 10.0
NS_CHECKED = "bench-checked"
NS_PLAIN = "bench-plain"

PERSONA_SPEC: dict[str, Any] = {
    "name": "shop",
    "type": "api",
    "resources": {"limits": {"cpu": "500m", "memory": "512Mi"}},
    "scaling": {"minReplicas": 2, "maxReplicas": 5},
    "health": {"livenessPath": "/healthz", "readinessPath": "/ready"},
    "policies": {
        "security": {"runAsNonRoot": True, "readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False}
    },
}


def deployment(namespace: str) -> dict[str, Any]:
    container = {
        "name": "app",
        "image": "registry.local/shop:1",
        "resources": {
            "limits": {"cpu": "1", "memory": "256Mi"},
            "requests": {"cpu": "100m", "memory": "64Mi"},
        },
        "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": True},
        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080}},
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
    }
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "shop", "namespace": namespace, "labels": {"app.kubernetes.io/name": "shop"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "shop"}},
            "template": {
                "metadata": {"labels": {"app": "shop"}},
                "spec": {"securityContext": {"runAsNonRoot": True}, "containers": [container]},
            },
        },
    }


def admission_review(namespace: str) -> bytes:
    request = {
        "uid": "3f1e6c1e-0000-4000-8000-000000000001",
        "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
        "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
        "name": "shop",
        "namespace": namespace,
        "operation": "CREATE",
        "userInfo": {"username": "bench", "groups": ["system:authenticated"]},
        "object": deployment(namespace),
        "dryRun": False,
    }
    body = {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}
    return json.dumps(body).encode()


# --------------------------------------------------------------------------- child: the webhook replica


def serve(spec_file: str) -> None:
    """``--serve``: run ``webhook.server.run`` in this process (uvloop) until SIGTERM; print READY."""
    import logging

    import msgspec
    import uvloop

    from dorgu.runtime.component import ComponentContext
    from dorgu.runtime.config import ConnectionSettings
    from webhook.server import run

    logging.basicConfig(level=logging.WARNING)
    spec = json.loads(Path(spec_file).read_text())
    connection = msgspec.convert(spec["connection"], ConnectionSettings)

    async def main() -> None:
        stopping = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stopping.set)

        def report(msg: Any) -> None:
            if msg.get("ready"):
                print("READY", flush=True)

        ctx = ComponentContext(
            name="webhook", connection=connection, options=spec["options"], identity="bench",
            stopping=stopping, report=report,
        )  # fmt: skip
        await run(ctx)

    uvloop.run(main())


# --------------------------------------------------------------------------- child: the open-loop generator


def load(spec_file: str) -> None:
    """``--load``: open-loop POSTs at a fixed rate; prints one JSON object of latencies (ms)."""
    import aiohttp
    import uvloop

    spec = json.loads(Path(spec_file).read_text())
    body = Path(spec["body_file"]).read_bytes()
    rate, duration, url = float(spec["rate"]), float(spec["duration"]), spec["url"]
    headers = {"Content-Type": "application/json", **spec.get("headers", {})}
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE

    async def main() -> None:
        latencies: list[float] = []
        statuses: dict[int, int] = {}
        errors = 0
        connector = aiohttp.TCPConnector(ssl=ctx, limit=256)
        async with aiohttp.ClientSession(connector=connector) as session:
            # Warm-up: open connections before the clock starts.
            await asyncio.gather(*(_drain(session.post(url, data=body, headers=headers)) for _ in range(64)))

            async def one(at: float) -> None:
                nonlocal errors
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        statuses[resp.status] = statuses.get(resp.status, 0) + 1
                except Exception:
                    errors += 1
                    return
                latencies.append(time.perf_counter() - at)

            loop = asyncio.get_running_loop()
            n = int(rate * duration)
            t0 = time.perf_counter() + 0.05
            tasks = []
            for i in range(n):
                at = t0 + i / rate
                delay = at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(loop.create_task(one(at)))
            await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - t0
        latencies.sort()
        out = {
            "sent": n,
            "completed": len(latencies),
            "errors": errors,
            "statuses": statuses,
            "achieved_rps": len(latencies) / elapsed,
            "p50_ms": _pct(latencies, 0.50) * 1000,
            "p90_ms": _pct(latencies, 0.90) * 1000,
            "p99_ms": _pct(latencies, 0.99) * 1000,
            "max_ms": (latencies[-1] if latencies else 0.0) * 1000,
        }
        print(json.dumps(out), flush=True)

    uvloop.run(main())


async def _drain(request: Any) -> None:
    async with request as resp:
        await resp.read()


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


# --------------------------------------------------------------------------- the driver


def _wrk(
    url: str, body_file: Path, *, concurrency: int, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    lua = body_file.with_suffix(".lua")
    header_lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    lua.write_text(
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        f"{header_lines}"
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*a")\nf:close()\n'
    )
    cmd = ["wrk", "-t1", f"-c{concurrency}", f"-d{int(duration)}s", "--latency", "-s", str(lua), url]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=True).stdout
    rps = float(next(line.split()[1] for line in out.splitlines() if line.startswith("Requests/sec:")))
    non_2xx = 0
    for line in out.splitlines():
        if "Non-2xx or 3xx responses:" in line:
            non_2xx = int(line.split(":")[1])
    errors = next((line.strip() for line in out.splitlines() if line.strip().startswith("Socket errors")), "")
    pct = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in ("50%", "99%"):
            pct[parts[0]] = _ms(parts[1])
    return {
        "rps": rps,
        "non_2xx": non_2xx,
        "socket_errors": errors,
        "p50_ms": pct.get("50%"),
        "p99_ms": pct.get("99%"),
    }


def _ms(text: str) -> float:
    for unit, factor in (("us", 0.001), ("ms", 1.0), ("s", 1000.0)):
        if text.endswith(unit):
            return float(text[: -len(unit)]) * factor
    return float(text)


def _open_loop(
    tmp: Path, url: str, body_file: Path, *, rate: float, duration: float, headers: dict[str, str]
) -> dict[str, Any]:
    spec = tmp / f"load-{time.monotonic_ns()}.json"
    spec.write_text(
        json.dumps(
            {"url": url, "body_file": str(body_file), "rate": rate, "duration": duration, "headers": headers}
        )
    )
    out = subprocess.run(
        [sys.executable, __file__, "--load", str(spec)],
        capture_output=True,
        text=True,
        timeout=duration + 120,
        check=True,
    ).stdout
    return dict(json.loads(out.strip().splitlines()[-1]))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measurement")
    p.add_argument("--rate", type=float, default=500.0, help="open-loop rate (reviews/s)")
    p.add_argument(
        "--low-rate",
        type=float,
        default=200.0,
        help="a second open-loop rate through the API server (reviews/s)",
    )
    p.add_argument("--concurrency", type=int, default=64, help="connections for the max-rate measurement")
    p.add_argument("--direct-only", action="store_true", help="skip the measurements through the API server")
    p.add_argument("--json", action="store_true", help="print one JSON object (the table goes to stderr)")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--load", help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.serve:
        serve(a.serve)
        return 0
    if a.load:
        load(a.load)
        return 0
    if shutil.which("wrk") is None:
        print("wrk is needed for the max-rate figures: apt-get install -y wrk", file=sys.stderr)
        return 2

    import msgspec

    from dorgu.envtest import ControlPlane, ControlPlaneSettings

    crds = tuple(sorted((REPO_ROOT / "deploy" / "crds").glob("*.yaml")))
    log = (lambda m: print(m, file=sys.stderr, flush=True)) if a.json else print
    figures: dict[str, Any] = {"machine_cpus": os.cpu_count(), "duration_s": a.duration}
    tmp = Path(tempfile.mkdtemp(prefix="dorgu-bench-webhook-"))
    settings = ControlPlaneSettings(
        crds=crds, controllers=(), wait_for_default_service_account=False, log=lambda m: None
    )
    with ControlPlane(settings) as cp:
        kube = cp.client()
        for ns, labels in ((NS_CHECKED, {"dorgu.io/validate": "true"}), (NS_PLAIN, {})):
            kube.post(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": labels}},
            )
            kube.post(
                f"/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas",
                {
                    "apiVersion": "dorgu.io/v1",
                    "kind": "ApplicationPersona",
                    "metadata": {"name": "shop"},
                    "spec": PERSONA_SPEC,
                },
            )
        port = _free_port()
        spec_file = tmp / "serve.json"
        options = {
            "webhook_host": "127.0.0.1", "webhook_port": port, "webhook_namespace": "default",
            "webhook_url": f"https://127.0.0.1:{port}/validate-deployment",
            "webhook_ip_addresses": ["127.0.0.1"],
        }  # fmt: skip
        spec_file.write_text(
            json.dumps(
                {
                    "connection": msgspec.to_builtins(cp.connection(user_agent="bench-webhook")),
                    "options": options,
                }
            )
        )
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(spec_file)], stdout=subprocess.PIPE, text=True
        )
        try:
            assert server.stdout is not None
            line = server.stdout.readline()
            if line.strip() != "READY":
                raise RuntimeError(f"webhook did not start: {line!r}")
            review_file = tmp / "review.json"
            review_file.write_bytes(admission_review(NS_CHECKED))
            url = f"https://127.0.0.1:{port}/validate-deployment"
            log("direct: max rate ...")
            _wrk(url, review_file, concurrency=a.concurrency, duration=2, headers={})  # warm-up
            figures["direct_max"] = _wrk(
                url, review_file, concurrency=a.concurrency, duration=a.duration, headers={}
            )
            log("direct: open loop ...")
            figures["direct_open_loop"] = _open_loop(
                tmp, url, review_file, rate=a.rate, duration=a.duration, headers={}
            )

            auth = {"Authorization": f"Bearer {cp.admin_token}"}
            through = () if a.direct_only else (("apiserver", NS_CHECKED), ("apiserver_no_webhook", NS_PLAIN))
            for label, ns in through:
                body_file = tmp / f"deployment-{ns}.json"
                body_file.write_text(json.dumps(deployment(ns)))
                api_url = f"{cp.server}/apis/apps/v1/namespaces/{ns}/deployments?dryRun=All"
                log(f"{label}: max rate ...")
                _wrk(api_url, body_file, concurrency=a.concurrency, duration=2, headers=auth)
                figures[f"{label}_max"] = _wrk(
                    api_url, body_file, concurrency=a.concurrency, duration=a.duration, headers=auth
                )
                log(f"{label}: open loop ...")
                figures[f"{label}_open_loop"] = _open_loop(
                    tmp, api_url, body_file, rate=a.rate, duration=a.duration, headers=auth
                )
                figures[f"{label}_open_loop_low"] = _open_loop(
                    tmp, api_url, body_file, rate=a.low_rate, duration=a.duration, headers=auth
                )
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(20)
            except subprocess.TimeoutExpired:
                server.kill()
            shutil.rmtree(tmp, ignore_errors=True)

    d_max, d_open = figures["direct_max"], figures["direct_open_loop"]
    figures["targets"] = {
        "direct_max_rps": {
            "target": TARGET_MAX_RPS,
            "met": d_max["rps"] >= TARGET_MAX_RPS and d_max["non_2xx"] == 0,
        },
        "direct_p99_ms_at_rate": {
            "target": TARGET_P99_MS,
            "met": d_open["p99_ms"] <= TARGET_P99_MS and d_open["errors"] == 0,
        },
    }
    rows = [
        (
            "measurement",
            f"max rps (c={a.concurrency})",
            "non-2xx",
            f"p50 ms @{a.rate:.0f}/s",
            f"p99 ms @{a.rate:.0f}/s",
            "achieved/s",
        )
    ]
    labels = ("direct",) if a.direct_only else ("direct", "apiserver", "apiserver_no_webhook")
    for label in labels:
        m, o = figures[f"{label}_max"], figures[f"{label}_open_loop"]
        rows.append(
            (
                label,
                f"{m['rps']:.0f}",
                str(m["non_2xx"]),
                f"{o['p50_ms']:.2f}",
                f"{o['p99_ms']:.2f}",
                f"{o['achieved_rps']:.0f}",
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    table = "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)
    met = {k: "met" if v["met"] else "NOT met" for k, v in figures["targets"].items()}
    table += (
        f"\ntargets (direct): >= {TARGET_MAX_RPS:.0f} reviews/s: {met['direct_max_rps']}; "
        f"p99 <= {TARGET_P99_MS:.0f} ms at {a.rate:.0f}/s: {met['direct_p99_ms_at_rate']}"
    )
    for label in labels[1:]:
        o = figures[f"{label}_open_loop_low"]
        table += (
            f"\n{label} at {a.low_rate:.0f}/s: p50 {o['p50_ms']:.2f} ms, p99 {o['p99_ms']:.2f} ms, "
            f"achieved {o['achieved_rps']:.0f}/s"
        )
    emit(table, figures, as_json=a.json)
    return 0


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


if __name__ == "__main__":
    sys.exit(main())
