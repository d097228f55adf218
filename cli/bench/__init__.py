"""``dorgu bench``: the operator's reconciliation throughput and latency, against the API server's ceiling.

Usage:
  dorgu bench [options]

Seeds N ApplicationPersonas with one Deployment each in a namespace of its own, starts `dorgu operator` as it
runs in production (supervisor + one process per component), and measures from its own watches (never by
polling LISTs): cold convergence, steady state at R Deployment changes/s (latency from each change to the
persona's status reflecting it), a burst (every Deployment changed at once), idle writes over two heartbeat
periods, the RSS of each operator process, and the ceiling: a tight loop of the operator's own request (a
server-side apply of a persona's status) against the same server with the same watchers attached.

Options:
  --personas=N                Personas, each with one Deployment [default: 1000].
  --changes-per-sec=R         Deployment changes per second in the steady-state phase [default: 200].
  --duration=S                Seconds of steady state [default: 20].
  --local                     Start a local control plane for the bench and stop it afterwards (the
                              default when --kubeconfig is not given; $KUBECONFIG is never used).
  --kubeconfig=FILE           Run against this cluster instead: everything happens in a throwaway namespace
                              that the bench creates and deletes (the CRDs must be installed).
  --context=NAME              Kubeconfig context.
  --namespace=NS              Name of the throwaway namespace; it must not exist (default:
                              dorgu-bench-<random>).
  --heartbeat-interval=S      The operator's heartbeat for the bench (revalidation every half of it; idle
                              is measured over two of them) [default: 15].
  --workers=N                 The operator's concurrent reconciles [default: 16].
  --ceiling-duration=S        Seconds of the ceiling's tight loops (half at 32, half at 64 requests in
                              flight; the faster counts) [default: 6].
  --timeout=S                 Fail a phase that has not converged after this long [default: 600].
  --peers=LIST                Also run these peers, each in turn with the same seeded workload in a fresh
                              namespace, and compare: client-go (built by `make bench-peers`), kopf (the
                              `bench` extra). The table gives each figure and the ratio dorgu / peer.
  --repeat=N                  Rounds of dorgu and every peer; even rounds run in the reverse order
                              (ABBA), so drift of the machine hits both sides [default: 1].
  --settle=S                  Between runs: after the namespace is gone, wait this long for the server to
                              finish (deleting 10,000 objects disturbs the next run) [default: 10].
  -o FORMAT --output=FORMAT   table or json [default: table].
  --plot=FILE                 Also write a PNG: latency CDF and throughput over time (needs matplotlib,
                              the `bench` extra: pip install 'dorgu[bench]').
  --config FILE               Ignored (accepted by every command).
  --no-color                  No colours.
  -h --help                   Show this help.

Exit codes: 0 the bench ran (whether or not it met the targets), 1 it failed (cluster, operator,
convergence timeout), 2 bad flags, --plot without matplotlib (checked before anything runs) or a namespace
that already exists.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from cli.errors import Failure, InputError


def _number(args: dict[str, Any], flag: str, *, integer: bool = False, minimum: float = 0.0) -> Any:
    raw = str(args[flag])
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        raise InputError(f"{flag} must be a {'whole ' if integer else ''}number, not {raw!r}") from None
    if value <= minimum:
        raise InputError(f"{flag} must be greater than {minimum:g}")
    return value


def settings_from(args: dict[str, Any]) -> Any:
    """The bench's settings from the flags (exit 2 on a bad one)."""
    from cli.bench.engine import BenchSettings

    if args["--local"] and args["--kubeconfig"]:
        raise InputError("--local and --kubeconfig exclude each other")
    if args["--output"] not in ("table", "json"):
        raise InputError(f"-o must be table or json, not {args['--output']!r}")
    if args["--plot"] and not str(args["--plot"]).endswith(".png"):
        raise InputError("--plot must name a .png file")
    if args["--plot"]:
        from cli.bench.report import require_matplotlib

        require_matplotlib()
    return BenchSettings(
        personas=_number(args, "--personas", integer=True),
        changes_per_s=_number(args, "--changes-per-sec"),
        duration_s=_number(args, "--duration"),
        heartbeat_s=_number(args, "--heartbeat-interval", minimum=1.0),
        workers=_number(args, "--workers", integer=True),
        ceiling_s=_number(args, "--ceiling-duration"),
        namespace=args["--namespace"] or None,
        timeout_s=_number(args, "--timeout"),
    )


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory": mem, "python": sys.version.split()[0],
            "load_average_start": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip


async def _bench(
    connection: Any, kubeconfig: str, context: str | None, s: Any, bar: Any, subject: str = "dorgu"
) -> dict[str, Any]:
    from cli.bench import engine
    from dorgu.runtime.client import ApiClient
    from dorgu.runtime.errors import ApiError

    async with ApiClient(connection) as client:
        try:
            ns = await engine.prepare_namespace(client, s.namespace)
        except ApiError as e:
            raise Failure(f"cannot create the bench's namespace: {e}") from None
        other = await engine.other_controller(client)
        try:
            b = engine.Bench(client, connection, kubeconfig=kubeconfig, context=context, namespace=ns,
                             settings=s, bar=bar, subject=subject)  # fmt: skip
            figures = await b.run()
        finally:
            await engine.delete_namespace(client, ns)
        figures["namespace"] = ns
        figures["subject"] = subject
        figures["timeline"] = {
            "phases": [{"name": n, "start_s": a, "end_s": e} for n, a, e in b.timeline.phases],
            "persona_writes_per_s": b.timeline.per_second(b.timeline.persona_writes),
            "deployment_changes_per_s": b.timeline.per_second(b.timeline.deployment_changes),
        }
        figures["warnings"] = (
            [f"another ApplicationPersona controller ({other}) is running in this cluster; its writes to the "
             "bench's personas are counted too"] if other else []
        )  # fmt: skip
        return figures


async def _rounds(
    connection: Any,
    kubeconfig: str,
    context: str | None,
    s: Any,
    bar: Any,
    *,
    peers: list[str],
    repeat: int,
    settle_s: float,
) -> list[dict[str, Any]]:
    """dorgu and each peer in turn, ``repeat`` rounds, odd rounds in the reverse order (ABBA); each run in a
    fresh namespace, the next one only after it is gone and the server had ``settle_s`` more."""
    from cli.bench import engine
    from dorgu.runtime.client import ApiClient

    order = ["dorgu", *peers]
    runs: list[dict[str, Any]] = []
    for k in range(repeat):
        for subject in order if k % 2 == 0 else order[::-1]:
            bar.note(f"round {k + 1}/{repeat}: {subject}")
            figures = await _bench(connection, kubeconfig, context, s, bar, subject=subject)
            figures["round"] = k + 1
            runs.append(figures)
            async with ApiClient(connection) as client:
                bar.note(f"waiting for namespace {figures['namespace']} to be gone, then {settle_s:g} s")
                ns = figures["namespace"]
                await engine.wait_namespace_gone(client, ns, timeout_s=min(s.timeout_s, 120))
            await asyncio.sleep(settle_s)
    return runs


def run(argv: list[str]) -> int:
    from docopt import docopt

    from cli.bench import report
    from cli.bench.progress import ProgressBar

    args = docopt(__doc__ or "", argv=argv)
    s = settings_from(args)
    from cli.bench.subjects import parse_peers

    peers = parse_peers(args["--peers"])
    repeat = _number(args, "--repeat", integer=True)
    settle_s = float(args["--settle"] or 0)
    if args["--namespace"] and (peers or repeat > 1):
        raise InputError("--namespace names one run's namespace; it cannot be used with --peers or --repeat")
    if peers and args["--plot"]:
        raise InputError("--plot draws one run; it cannot be used with --peers")
    bar = ProgressBar()
    info = machine()
    started = time.time()
    try:
        if args["--kubeconfig"]:
            from dorgu.runtime.kubeconfig import ConfigError, resolve

            try:
                run_dir = Path(tempfile.mkdtemp(prefix="dorgu-bench-"))
                access = resolve(kubeconfig=args["--kubeconfig"], context=args["--context"], run_dir=run_dir,
                                 user_agent="dorgu-bench")  # fmt: skip
            except ConfigError as e:
                raise Failure(str(e)) from None
            cluster = {"kind": "kubeconfig", "server": access.connection.server}
            if peers or repeat > 1:
                runs = asyncio.run(_rounds(access.connection, args["--kubeconfig"], args["--context"], s, bar,
                                           peers=peers, repeat=repeat, settle_s=settle_s))  # fmt: skip
            else:
                kc, ctx = args["--kubeconfig"], args["--context"]
                figures = asyncio.run(_bench(access.connection, kc, ctx, s, bar))
        else:
            from cli import paths
            from dorgu.envtest import ControlPlane, ControlPlaneSettings

            bar.note("starting a local control plane (etcd, kube-apiserver 1.20)…")
            with ControlPlane(ControlPlaneSettings(crds=tuple(paths.crd_files()), controllers=())) as cp:
                cluster = {"kind": "local", "server": cp.server, "note": "control plane on this machine"}
                conn = cp.connection(user_agent="dorgu-bench")
                if peers or repeat > 1:
                    runs = asyncio.run(_rounds(conn, str(cp.kubeconfig), None, s, bar, peers=peers,
                                               repeat=repeat, settle_s=settle_s))  # fmt: skip
                else:
                    figures = asyncio.run(_bench(conn, str(cp.kubeconfig), None, s, bar))
    finally:
        bar.close()
    info["load_average_end"] = [round(x, 2) for x in os.getloadavg()]
    if peers or repeat > 1:
        from cli.bench import compare

        result = compare.assemble(s, runs, peers=peers, cluster=cluster, machine=info,
                                  wall_s=time.time() - started)  # fmt: skip
        if args["--output"] == "json":
            print(json.dumps(result))
        else:
            print(compare.table(result))
        return 0
    result = report.assemble(s, figures, cluster=cluster, machine=info, wall_s=time.time() - started)
    if args["--plot"]:
        report.plot(result, Path(args["--plot"]))
    if args["--output"] == "json":
        print(json.dumps(result))
    else:
        print(report.table(result, color=not args["--no-color"]))
        if args["--plot"]:
            print(f"plot: {args['--plot']}")
    return 0
