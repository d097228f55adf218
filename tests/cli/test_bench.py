"""``dorgu bench`` end to end: a tiny bench through the real CLI entry, its report's structure and counts
(never its speed), and the throwaway namespace on a cluster given by kubeconfig: refused when it exists,
deleted afterwards."""

from __future__ import annotations

import importlib.util
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

ROOT = Path(__file__).resolve().parents[2]
TINY = ["--changes-per-sec", "20", "--duration", "3", "--heartbeat-interval", "2",
        "--ceiling-duration", "2", "--timeout", "120"]  # fmt: skip


def bench(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, NO_COLOR="1", PYTHONPATH=str(ROOT))
    env.pop("KUBECONFIG", None)
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "bench", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


def check_report(r: dict[str, Any], n: int) -> None:
    assert r["personas"] == n
    for key in ("settings", "cluster", "machine", "seed", "cold", "steady", "burst", "idle", "rss_mib",
                "ceiling", "fraction_of_ceiling", "targets", "timeline", "namespace"):  # fmt: skip
        assert key in r, key
    assert r["seed"]["objects"] == 2 * n
    assert r["cold"]["validated"] == n
    assert r["cold"]["seconds"] > 0 and r["cold"]["personas_per_s"] > 0

    st = r["steady"]
    assert st["changes_sent"] == int(st["target_changes_per_s"] * st["duration_s"])
    assert st["send_errors"] == 0
    assert st["reflected"] + st["coalesced"] + st["not_reflected"] == st["changes_sent"]
    assert st["not_reflected"] == 0
    assert len(st["latencies_s"]) == st["reflected"] > 0
    lat = st["latency_ms"]
    assert lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
    assert lat["max"] == pytest.approx(max(st["latencies_s"]) * 1000, abs=0.1)

    b = r["burst"]
    assert b["changes"] == b["converged"] == n

    idle = r["idle"]
    assert idle["window_s"] >= idle["heartbeat_interval_s"]
    assert idle["status_writes"] == idle["heartbeat_writes"] + idle["other_writes"]
    assert idle["writes_per_s"] == pytest.approx(idle["status_writes"] / idle["window_s"], abs=0.001)

    assert set(r["rss_mib"]) == {"supervisor", "applicationpersona"}
    assert all(v["rss_mib"] > 0 and v["peak_mib"] >= v["rss_mib"] for v in r["rss_mib"].values())

    ce = r["ceiling"]
    assert ce["writes_per_s"] > 0 and ce["writes_per_s"] == max(x["writes_per_s"] for x in ce["runs"])
    assert all(x["errors"] == 0 for x in ce["runs"])
    assert set(r["fraction_of_ceiling"]) == {"cold", "steady", "burst", "idle"}
    assert r["fraction_of_ceiling"]["burst"] == pytest.approx(
        b["personas_per_s"] / ce["writes_per_s"], abs=0.001
    )

    assert len(r["targets"]) == 5 and all({"name", "value", "met", "applies"} <= set(t) for t in r["targets"])
    tl = r["timeline"]
    # every persona was written at least at cold start and at the burst; every Deployment changed in the burst
    assert sum(tl["persona_writes_per_s"]) >= 2 * n + st["reflected"]
    assert sum(tl["deployment_changes_per_s"]) >= n + st["changes_sent"]
    assert [p["name"] for p in tl["phases"]][:5] == ["seed", "cold", "steady", "burst", "idle"]
    assert r["operator_exit_code"] == 0


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
    p = bench("--kubeconfig", str(control_plane.kubeconfig), "--namespace", ns, "--personas", "10", *TINY,
              "-o", "json")  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    r = json.loads(p.stdout)
    check_report(r, 10)
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
