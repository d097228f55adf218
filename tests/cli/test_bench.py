"""``dorgu bench`` end to end: a tiny bench through the real CLI entry, its report's structure and counts
(never its speed), and the throwaway namespace on a cluster given by kubeconfig: refused when it exists,
deleted afterwards. On that cluster the test watches the bench's namespace itself and holds the report's
counts against what the server did; the local control plane is the bench's own and gone when it ends."""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cli.main import main
from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.envtest.http import ApiError
from tests.cli.server_watch import Event, ServerWatch

ROOT = Path(__file__).resolve().parents[2]
RATE, DURATION = 20, 3  # the steady phase: RATE Deployment changes a second for DURATION seconds
TINY = ["--changes-per-sec", str(RATE), "--duration", str(DURATION), "--heartbeat-interval", "2",
        "--ceiling-duration", "2", "--timeout", "120"]  # fmt: skip
CEILING_PHASES = ["ceiling-32", "ceiling-64"]


def bench(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def check_report(r: dict[str, Any], n: int) -> None:
    """The report's shape, the counts the flags fix, and the relations its figures must keep."""
    assert r["personas"] == n
    for key in ("settings", "cluster", "machine", "seed", "cold", "steady", "burst", "idle", "rss_mib",
                "ceiling", "fraction_of_ceiling", "targets", "timeline", "namespace"):  # fmt: skip
        assert key in r, key
    assert r["seed"]["objects"] == 2 * n
    assert r["cold"]["validated"] == n
    assert 0 <= r["cold"]["first_validated_s"] <= r["cold"]["seconds"] and r["cold"]["personas_per_s"] > 0

    st = r["steady"]
    assert st["changes_sent"] == RATE * DURATION
    assert st["send_errors"] == 0
    assert st["reflected"] + st["coalesced"] + st["not_reflected"] == st["changes_sent"]
    assert st["not_reflected"] == 0
    assert len(st["latencies_s"]) == st["reflected"] > 0 and min(st["latencies_s"]) >= 0
    lat = st["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]

    b = r["burst"]
    assert b["changes"] == b["converged"] == n
    assert b["send_seconds"] >= 0 and b["seconds"] > 0

    idle = r["idle"]
    assert idle["window_s"] == 2 * idle["heartbeat_interval_s"] == 4
    assert idle["status_writes"] == idle["heartbeat_writes"] + idle["other_writes"]

    assert set(r["rss_mib"]) == {"supervisor", "fork server", "applicationpersona"}
    assert all(v["rss_mib"] > 0 and v["peak_mib"] >= v["rss_mib"] for v in r["rss_mib"].values())

    ce = r["ceiling"]
    assert [x["concurrency"] for x in ce["runs"]] == [32, 64] and all(x["errors"] == 0 for x in ce["runs"])
    assert ce["writes_per_s"] > 0 and ce["writes_per_s"] == max(x["writes_per_s"] for x in ce["runs"])
    assert set(r["fraction_of_ceiling"]) == {"cold", "steady", "burst", "idle"}

    assert len(r["targets"]) == 5 and all({"name", "value", "met", "applies"} <= set(t) for t in r["targets"])
    tl = r["timeline"]
    phases = tl["phases"]
    assert [p["name"] for p in phases] == ["seed", "cold", "steady", "burst", "idle", *CEILING_PHASES]
    assert all(0 <= p["start_s"] <= p["end_s"] for p in phases)
    assert all(a["end_s"] <= b["start_s"] for a, b in itertools.pairwise(phases))
    assert r["operator_exit_code"] == 0


def _status(obj: dict[str, Any]) -> dict[str, Any]:
    return obj.get("status") or {}


def check_against_server(r: dict[str, Any], n: int, personas: list[Event], deployments: list[Event]) -> None:
    """The report's counts against what this test's own watches saw the server do in the bench's namespace.

    Every write is a watch event of its own (the server never merges them), so the counts the bench reports
    from its watches must equal the ones seen here; where the bench only sees part of a stream (its watches
    stop with it), the server's figure bounds the report's.
    """
    names = sorted(f"app{i}" for i in range(n))
    # seed: the objects the server created
    p_added = sorted(o["metadata"]["name"] for k, o in personas if k == "ADDED")
    d_added = sorted(o["metadata"]["name"] for k, o in deployments if k == "ADDED")
    assert p_added == names and d_added == names
    assert r["seed"]["objects"] == len(p_added) + len(d_added)

    # Deployment changes: an event whose image differs from the Deployment's previous one
    image: dict[str, str] = {}
    changes: list[str] = []
    for kind, o in deployments:
        if kind == "DELETED":
            continue
        name, img = o["metadata"]["name"], o["spec"]["template"]["spec"]["containers"][0]["image"]
        if kind == "MODIFIED" and img != image[name]:
            changes.append(img)
        image[name] = img
    steady_sent = [c for c in changes if c.startswith("app:s")]
    assert r["steady"]["changes_sent"] == len(steady_sent) == len(set(steady_sent))
    assert r["burst"]["changes"] == changes.count("app:burst") == n
    assert sum(r["timeline"]["deployment_changes_per_s"]) == len(changes)

    # persona status writes while the namespace lived (its deletion is not the bench's)
    writes = [o for k, o in personas if k == "MODIFIED" and not o["metadata"].get("deletionTimestamp")]
    validated: set[str] = set()
    reflected: set[str] = set()
    shown_burst: set[str] = set()
    ceiling_messages: set[str] = set()
    burst_done = first_ceiling = None
    for i, o in enumerate(writes):
        st, name = _status(o), o["metadata"]["name"]
        if (st.get("validation") or {}).get("lastChecked") and st.get("phase"):
            validated.add(name)
        current = (st.get("deployments") or {}).get("current") or ""
        if current.startswith("app:s"):
            reflected.add(current)
        if current == "app:burst":
            shown_burst.add(name)
            if burst_done is None and len(shown_burst) == n:
                burst_done = i
        for rec in st.get("recommendations") or []:
            if rec.get("message", "").startswith("dorgu bench ceiling "):  # unique per ceiling request
                ceiling_messages.add(rec["message"])
                first_ceiling = i if first_ceiling is None else first_ceiling
    assert burst_done is not None and first_ceiling is not None and burst_done < first_ceiling
    assert r["cold"]["validated"] == len(validated) == n
    st = r["steady"]
    assert st["reflected"] == len(reflected)  # each steady change's image shown by its persona at least once
    assert st["coalesced"] == len(steady_sent) - len(reflected)
    assert r["burst"]["converged"] == len(shown_burst) == n
    assert sum(x["writes"] for x in r["ceiling"]["runs"]) == len(ceiling_messages)
    # idle lies between the burst's convergence and the ceiling's first write
    assert r["idle"]["status_writes"] <= first_ceiling - burst_done - 1
    # the bench's watch sees every write up to the ceiling and at most all of them
    assert first_ceiling <= sum(r["timeline"]["persona_writes_per_s"]) <= len(writes)


def test_tiny_bench_on_a_local_control_plane(tmp_path: Path) -> None:
    plot = tmp_path / "bench.png"
    with_plot = importlib.util.find_spec("matplotlib") is not None
    p = bench(
        "--local", "--personas", "20", *TINY, "-o", "json", *(["--plot", str(plot)] if with_plot else [])
    )
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    check_report(r, 20)
    assert r["cluster"]["kind"] == "local"
    assert r["namespace"].startswith("dorgu-bench-")
    if with_plot:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "█" not in p.stderr  # the progress bar is for terminals only


def test_refuses_a_namespace_that_exists(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["bench", "--kubeconfig", str(control_plane.kubeconfig), "--namespace", namespace,
                 "--personas", "5"])  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"namespace {namespace} already exists" in err
    items = kube.get(f"/apis/dorgu.io/v1/namespaces/{namespace}/applicationpersonas")["items"]
    assert items == []  # nothing was created in it
    assert kube.get(f"/api/v1/namespaces/{namespace}")["status"]["phase"] == "Active"


def test_local_and_kubeconfig_exclude_each_other(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--local", "--kubeconfig", "/nonexistent"]) == 2
    assert "exclude each other" in capsys.readouterr().err


def test_tiny_bench_on_a_cluster_runs_in_a_throwaway_namespace(
    control_plane: ControlPlane, kube: HarnessClient
) -> None:
    ns = f"dorgu-bench-t{os.getpid()}"
    leases_before = kube.get("/apis/coordination.k8s.io/v1/leases")["items"]
    with (
        ServerWatch(kube, "/apis/dorgu.io/v1/applicationpersonas", ns) as personas,
        ServerWatch(kube, "/apis/apps/v1/deployments", ns) as deployments,
    ):
        p = bench("--kubeconfig", str(control_plane.kubeconfig), "--namespace", ns, "--personas", "10",
                  *TINY, "-o", "json")  # fmt: skip
        assert p.returncode == 0, p.stderr[-3000:]
        seen_personas, seen_deployments = personas.catch_up(), deployments.catch_up()
    r = json.loads(p.stdout)
    check_report(r, 10)
    check_against_server(r, 10, seen_personas, seen_deployments)
    assert r["cluster"]["kind"] == "kubeconfig" and r["namespace"] == ns
    # the namespace is deleted (terminating, or already gone) ...
    try:
        assert kube.get(f"/api/v1/namespaces/{ns}")["metadata"].get("deletionTimestamp")
    except ApiError as e:
        assert e.code == 404
    # ... and no Lease outside it was created or taken
    leases_after = kube.get("/apis/coordination.k8s.io/v1/leases")["items"]
    outside = {(x["metadata"]["namespace"], x["metadata"]["name"]) for x in leases_after
               if x["metadata"]["namespace"] != ns}  # fmt: skip
    before = {(x["metadata"]["namespace"], x["metadata"]["name"]) for x in leases_before}
    assert outside <= before
