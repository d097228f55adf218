"""Benchmark of the API server's ceiling for a persona's status write, per request type.

Run ``.venv/bin/python bench/status_write.py [--personas 1000] [--in-flight 32] [--seconds 8]
[--rounds 2] [--json]``. It starts its own control plane (etcd + kube-apiserver with dorgu's CRDs), creates
``--personas`` personas, then writes their ``/status`` in a tight loop (``--in-flight`` requests at once, for
``--seconds``, round-robin over the personas, every write a changed status shaped like the controller's:
phase, deployments, health, validation with an issue on every other write, three conditions) with each of:

* ``apply``: server-side apply (the controller's request: field manager, ``force``, the whole status it owns);
* ``merge``: a JSON merge patch of ``status`` (no precondition: it would replace ``conditions`` whole,
  whoever else wrote them);
* ``merge-rv``: the same merge patch carrying the ``resourceVersion`` of the previous write of that persona
  (a guarded merge patch: a conflict instead of overwriting a write it has not seen).

Rounds alternate the order (ABC, CBA, …) so drift hits every type alike. Figures: writes per second of each
type per round, their median, and each median ÷ apply's. The client is this Python process on the same
cores as the server, as the operator's is: the ceiling is the operator's, not the server's alone.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import aligned_table, emit, load_before_start, machine, progress  # noqa: E402
from cli.bench import workload as w  # noqa: E402
from dorgu.domain.resources import APPLICATION_PERSONAS  # noqa: E402
from dorgu.envtest import ControlPlane, ControlPlaneSettings  # noqa: E402
from dorgu.runtime.client import ApiClient  # noqa: E402
from dorgu.runtime.errors import ApiError  # noqa: E402
from dorgu.runtime.kubeconfig import resolve  # noqa: E402
from dorgu.runtime.resource import NAMESPACES  # noqa: E402

TYPES = ("apply", "merge", "merge-rv")
NAMESPACE = "bench-status-write"
FIELD_MANAGER = "dorgu-bench-status-write"


class _Meta(msgspec.Struct, rename="camel"):
    resource_version: str = ""


class _Answer(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


def status(i: int, k: int) -> dict[str, Any]:
    """Write ``k``'s status of persona ``i``: always different from the one before (a real write)."""
    failing = k % 2 == 1
    message = f"CPU limit 2 exceeds the persona's maximum 500m ({k})"
    issues = [{"severity": "error", "rule": "R-1", "deployment": f"app{i}", "message": message}]
    return {
        "observedGeneration": 1, "phase": "Degraded" if failing else "Active",
        "lastUpdated": "2026-12-04T21:00:00Z", "deployments": {"current": f"app{i}"},
        "health": {"status": "Healthy", "lastCheck": "2026-12-04T21:00:00Z"},
        "validation": {"passed": not failing, "lastChecked": "2026-12-04T21:00:00Z",
                       "issues": issues if failing else []},
        "conditions": [
            {"type": t, "status": "True", "reason": "Checked", "message": f"{t} ({k})",
             "lastTransitionTime": "2026-12-04T21:00:00Z", "observedGeneration": 1}
            for t in ("Validated", "DeploymentFound", "Ready")
        ],
    }  # fmt: skip


async def ceiling(client: ApiClient, kind: str, n: int, in_flight: int, seconds: float) -> dict[str, Any]:
    rvs: dict[str, str] = {}
    counter = ok = errors = 0
    stop_at = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal counter, ok, errors
        while time.monotonic() < stop_at:
            counter += 1
            i = counter % n
            name = f"app{i}"
            try:
                if kind == "apply":
                    body: dict[str, Any] = {
                        "apiVersion": "dorgu.io/v1", "kind": "ApplicationPersona",
                        "metadata": {"name": name, "namespace": NAMESPACE}, "status": status(i, counter),
                    }  # fmt: skip
                    await client.apply(
                        APPLICATION_PERSONAS, body, name=name, namespace=NAMESPACE,
                        field_manager=FIELD_MANAGER, subresource="status", type=_Answer,
                    )  # fmt: skip
                else:
                    body = {"status": status(i, counter)}
                    if kind == "merge-rv" and name in rvs:
                        body["metadata"] = {"resourceVersion": rvs[name]}
                    answer = await client.patch(
                        APPLICATION_PERSONAS, name, body, namespace=NAMESPACE,
                        patch_type="merge", subresource="status", type=_Answer,
                    )  # fmt: skip
                    rvs[name] = answer.metadata.resource_version
                ok += 1
            except ApiError:
                errors += 1  # a conflict of merge-rv (another worker wrote the persona first): not counted
                rvs.pop(name, None)

    t = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    return {"writes_per_s": ok / (time.monotonic() - t), "errors": errors}


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    crds = tuple(sorted((ROOT / "deploy" / "crds").glob("*.yaml")))
    settings = ControlPlaneSettings(crds=crds, controllers=(), wait_for_default_service_account=False)
    fig: dict[str, Any] = {"personas": args.personas, "in_flight": args.in_flight, "seconds": args.seconds}
    with ControlPlane(settings) as cp:
        access = resolve(kubeconfig=str(cp.kubeconfig), run_dir=Path(tempfile.mkdtemp()),
                         user_agent="dorgu-bench-status-write")  # fmt: skip
        async with ApiClient(access.connection) as client:
            await client.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace",
                                             "metadata": {"name": NAMESPACE}})  # fmt: skip
            progress(f"creating {args.personas} personas")
            await w.gather_bounded(
                [client.create(APPLICATION_PERSONAS, w.persona(i), namespace=NAMESPACE)
                 for i in range(args.personas)]
            )  # fmt: skip
            runs: dict[str, list[dict[str, Any]]] = {k: [] for k in TYPES}
            for r in range(args.rounds):
                for kind in TYPES if r % 2 == 0 else tuple(reversed(TYPES)):
                    res = await ceiling(client, kind, args.personas, args.in_flight, args.seconds)
                    progress(f"round {r + 1} {kind}: {res['writes_per_s']:.1f} writes/s")
                    runs[kind].append(res)
    fig["types"] = {}
    for kind in TYPES:
        rates = [r["writes_per_s"] for r in runs[kind]]
        fig["types"][kind] = {"writes_per_s": rates, "median": statistics.median(rates),
                              "errors": sum(r["errors"] for r in runs[kind])}  # fmt: skip
    base = fig["types"]["apply"]["median"]
    for kind in TYPES:
        fig["types"][kind]["ratio_to_apply"] = fig["types"][kind]["median"] / base
    return fig


def table(fig: dict[str, Any]) -> str:
    head = ["request", "writes/s per round", "median", "÷ apply", "errors"]
    rows = [
        [kind, ", ".join(f"{x:.0f}" for x in t["writes_per_s"]), f"{t['median']:.0f}/s",
         f"{t['ratio_to_apply']:.2f}", str(t["errors"])]
        for kind, t in fig["types"].items()
    ]  # fmt: skip
    return aligned_table(head, rows)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--personas", type=int, default=1000)
    p.add_argument("--in-flight", type=int, default=32)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--json", action="store_true", help="print one JSON object of the figures on stdout")
    args = p.parse_args(argv)
    load = load_before_start()
    t0 = time.monotonic()
    fig = asyncio.run(measure(args))
    emit(table(fig) + machine(fig, started=t0, load=load), fig, as_json=args.json)


if __name__ == "__main__":
    main()
