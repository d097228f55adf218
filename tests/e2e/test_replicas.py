"""Three replicas of `dorgu operator` (the StatefulSet's pods, as processes) against a real control plane.

Replicas ``dorgu-0..2`` have distinct identities (pod names), metrics, webhook and WebSocket addresses; a
round-robin TCP balancer stands in for the Services (no kube-proxy here), and the webhook configuration
points at it. The API server's audit log (Leases and persona status writes) is the judge of terms.

* start together: one leader per controller, and the three controllers end on three different replicas
  (spreading places free Leases; rebalancing hands a surplus one over, whatever the start order and the
  machine's load); the webhook and the WebSocket answer on every replica and behind the balancer;
* ``kill -9`` of the ApplicationPersona leader while personas change: another replica takes over (the time
  is printed; rule LeaseDuration + RetryPeriod = 17 s, measured by ``bench/leases.py``, not asserted);
  every persona converges; per persona, writers' terms never overlap;
* rolling restart (dorgu-2, -1, -0, as a StatefulSet does; each replica is taken out of the balancer
  first, as endpoints are, then SIGTERMed) under a stream of Deployment changes: every review answered
  (advisory: each violating write carries the webhook's warnings) and no persona change lost.
"""

from __future__ import annotations

import itertools
import json
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dorgu.envtest import ControlPlane, ControlPlaneSettings, HarnessClient
from dorgu.envtest.http import ApiError
from tests.e2e.kit import (
    DEPLOY,
    NS,
    WEBHOOK_PATH,
    Balancer,
    Replica,
    admin_env,
    app_deployment,
    app_persona,
    audit_entries,
    ensure_namespace,
    http_get,
    leases,
    poll,
    write_with_warnings,
)

CRDS = tuple(sorted((DEPLOY / "crds").glob("*.yaml")))
CONTROLLER_LEASES = ("dorgu-applicationpersona", "dorgu-clusterpersona", "dorgu-argocd")
FAILOVER_RULE_S = 17.0  # LeaseDuration 15 s + RetryPeriod 2 s
BALANCE_BOUND_S = 15.0 + 2 * 5.0 + 2 * 5.0
"""The leader election's rebalancing bound at the operator's defaults (lease 15 s, periods 5 s)."""
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  verbs: ["create", "update", "patch"]
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: dorgu.io
    resources: ["applicationpersonas/status"]
- level: None
"""
APPS = "replicas-apps"


@dataclass
class Cluster:
    cp: ControlPlane
    kube: HarnessClient
    audit_log: Path
    replicas: list[Replica]
    webhook_lb: Balancer
    ws_lb: Balancer


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    work = tmp_path_factory.mktemp("replicas")
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    settings = ControlPlaneSettings(
        crds=CRDS,
        extra_apiserver_flags=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
    )
    with ControlPlane(settings) as cp:
        kube = cp.client()
        ensure_namespace(kube, NS)
        ensure_namespace(kube, APPS, {"dorgu.io/validate": "true"})
        replicas = [
            Replica(identity=f"dorgu-{i}", args=[], env=admin_env(cp), log_dir=work) for i in range(3)
        ]
        webhook_lb = Balancer([("127.0.0.1", r.webhook_port) for r in replicas]).start()
        ws_lb = Balancer([("127.0.0.1", r.ws_port) for r in replicas]).start()
        options = {"webhook_check_interval_s": 5, "ws_auth_cache_ttl_s": 5}
        for r in replicas:
            r.args = [
                f"--kubeconfig={cp.kubeconfig}",
                "--lease-namespace=" + NS,
                "--components=applicationpersona,clusterpersona,argocd,webhook,websocket",
                f"--webhook-url=https://127.0.0.1:{webhook_lb.port}{WEBHOOK_PATH}",
                "--webhook-ip-addresses=127.0.0.1",
                "--ws-auth=none",
                "--revalidate-interval=5",
                f"--component-options={json.dumps(options)}",
            ]
        c = Cluster(cp, kube, audit_log, replicas, webhook_lb, ws_lb)
        try:
            yield c
        finally:
            for r in replicas:
                r.stop()
            webhook_lb.stop()
            ws_lb.stop()


def _review(port: int) -> int:
    body = {
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "e2e", "operation": "CREATE", "namespace": APPS,
            "kind": {"group": "apps", "version": "v1", "kind": "Deployment"},
            "resource": {"group": "apps", "version": "v1", "resource": "deployments"},
            "object": app_deployment("direct"),
        },
    }  # fmt: skip
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    req = urllib.request.Request(
        f"https://127.0.0.1:{port}{WEBHOOK_PATH}", data=json.dumps(body).encode(), method="POST"
    )
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        return int(resp.status)


def test_three_replicas_start_together(cluster: Cluster) -> None:
    t0 = time.monotonic()
    for r in cluster.replicas:
        r.start()
    for r in cluster.replicas:
        poll(r.ready, timeout=150, what=f"/readyz of {r.identity}\n{r.log_tail()}", every=0.5)
    print(f"\nthree replicas ready in {time.monotonic() - t0:.1f} s")

    def spread() -> dict[str, str] | None:
        held = {k: v for k, v in leases(cluster.kube).items() if k in CONTROLLER_LEASES and v}
        return held if len(held) == 3 else None

    holders = poll(spread, timeout=90, what="a leader for every controller")
    # A generous deadline (the bound plus process restarts on a loaded machine), not a speed claim.
    poll(lambda: len(set(leases(cluster.kube)[k] for k in CONTROLLER_LEASES)) == 3,
         timeout=BALANCE_BOUND_S + 120,
         what=f"the three controllers on three replicas (now {leases(cluster.kube)})")  # fmt: skip
    holders = {k: leases(cluster.kube)[k] for k in CONTROLLER_LEASES}
    print("leaders:", holders)

    def led(r: Replica) -> list[str]:
        _code, text = http_get(f"http://127.0.0.1:{r.metrics_port}/metrics")
        return [
            ln
            for ln in text.splitlines()
            if ln.startswith("leader_election_master_status") and ln.endswith(" 1.0")
        ]

    # Each replica leads exactly one controller (a receiver reports it once its own renewal landed).
    poll(lambda: all(len(led(r)) == 1 for r in cluster.replicas), timeout=60,
         what="one leader gauge per replica")  # fmt: skip
    for r in cluster.replicas:
        assert _review(r.webhook_port) == 200, r.identity
        assert http_get(f"http://127.0.0.1:{r.ws_port}/health") == (200, "ok"), r.identity
    for _ in range(6):
        assert _review(cluster.webhook_lb.port) == 200
        assert http_get(f"http://127.0.0.1:{cluster.ws_lb.port}/health")[0] == 200
    assert len(cluster.webhook_lb.connections) == 3, cluster.webhook_lb.connections
    assert len(cluster.ws_lb.connections) == 3, cluster.ws_lb.connections
    for r in cluster.replicas:
        n, rss, pss = r.memory()
        print(f"{r.identity}: {n} processes, RSS {rss:.0f} MiB, PSS {pss:.0f} MiB")


def _generation_converged(kube: HarnessClient, names: list[str]) -> bool:
    items = {
        p["metadata"]["name"]: p
        for p in kube.get(f"/apis/dorgu.io/v1/namespaces/{APPS}/applicationpersonas")["items"]
    }
    return all(
        (items[n].get("status") or {}).get("observedGeneration") == items[n]["metadata"]["generation"]
        for n in names
    )


def test_kill_9_of_the_persona_leader_fails_over(cluster: Cluster) -> None:
    kube = cluster.kube
    names = [f"app-{i}" for i in range(8)]
    for n in names:
        kube.post(f"/apis/dorgu.io/v1/namespaces/{APPS}/applicationpersonas", app_persona(n))
    poll(lambda: _generation_converged(kube, names), timeout=60, what="the personas' first status")

    stop = threading.Event()
    changes = [0]

    def change_personas() -> None:
        i = 0
        while not stop.is_set():
            n = names[i % len(names)]
            try:
                kube.patch(f"/apis/dorgu.io/v1/namespaces/{APPS}/applicationpersonas/{n}",
                           {"spec": {"scaling": {"minReplicas": 1 + (i // len(names)) % 5}}})  # fmt: skip
                changes[0] += 1
            except ApiError:
                pass
            i += 1
            time.sleep(0.2)

    by_id = {r.identity: r for r in cluster.replicas}
    leader = by_id[leases(kube)["dorgu-applicationpersona"]]
    writer = threading.Thread(target=change_personas, daemon=True)
    writer.start()
    try:
        time.sleep(2)
        t0 = time.monotonic()
        leader.kill()

        def new_leader() -> str | None:
            h = leases(kube).get("dorgu-applicationpersona")
            return h if h and h != leader.identity else None

        successor = poll(new_leader, timeout=FAILOVER_RULE_S + 90, what="a new ApplicationPersona leader")
        took = time.monotonic() - t0
        print(f"\nkill -9 {leader.identity} → {successor} leads ApplicationPersona after {took:.1f} s "
              f"(rule: {FAILOVER_RULE_S:.0f} s; a dead holder's Lease is taken over at its expiry, without "
              f"the spreading wait)")  # fmt: skip
        time.sleep(3)
    finally:
        stop.set()
        writer.join(10)
    poll(lambda: _generation_converged(kube, names), timeout=60, what="every persona to converge")
    print(f"{changes[0]} persona changes during the failover; all converged")
    leader.start()  # the StatefulSet recreates the pod
    poll(leader.ready, timeout=120, what=f"{leader.identity} back\n{leader.log_tail()}", every=0.5)

    # Terms: per persona, the writers' runs (first to last status write) never overlap.
    time.sleep(1)
    writes: dict[str, list[tuple[float, str]]] = {}
    for e in audit_entries(cluster.audit_log):
        if (
            e.resource == "applicationpersonas"
            and e.subresource == "status"
            and e.code < 300
            and e.namespace == APPS
        ):
            ident = e.user_agent.split("/", 1)[-1].split()[0]
            writes.setdefault(e.name, []).append((e.time, ident))
    assert set(writes) >= set(names)
    for name, ws in writes.items():
        spans: dict[str, tuple[float, float]] = {}
        for t, ident in sorted(ws):
            a, _ = spans.get(ident, (t, t))
            spans[ident] = (a, t)
        ordered = sorted(spans.items(), key=lambda kv: kv[1][0])
        for (i1, (_, end1)), (i2, (start2, _)) in itertools.pairwise(ordered):
            assert end1 <= start2, f"{name}: {i1} wrote until {end1} after {i2} began at {start2}"


def test_rolling_restart_under_deployment_changes(cluster: Cluster) -> None:
    kube = cluster.kube
    kube.post(f"/apis/dorgu.io/v1/namespaces/{APPS}/applicationpersonas", app_persona("web"))
    dep_path = f"/apis/apps/v1/namespaces/{APPS}/deployments"
    stop = threading.Event()
    results: list[tuple[int, list[str]]] = []
    persona_changes = [0]

    def stream() -> None:
        i = 0
        while not stop.is_set():
            name = f"web-{i % 4}"
            body = app_deployment(name, cpu="2")  # over the persona's 500m limit: always warned about
            body["metadata"]["labels"]["app.kubernetes.io/name"] = "web"
            body["metadata"]["annotations"] = {"e2e/i": str(i)}
            try:
                if i < 4:
                    _, warnings = write_with_warnings(kube, "POST", dep_path, body)
                else:
                    _, warnings = write_with_warnings(
                        kube, "PATCH", f"{dep_path}/{name}", {"metadata": {"annotations": {"e2e/i": str(i)}}},
                        content_type="application/merge-patch+json",
                    )  # fmt: skip
                results.append((i, warnings))
            except ApiError as e:
                results.append((i, [f"ERROR {e.code}"]))
            if i % 5 == 0:
                kube.patch(f"/apis/dorgu.io/v1/namespaces/{APPS}/applicationpersonas/web",
                           {"spec": {"scaling": {"minReplicas": 1 + persona_changes[0] % 3}}})  # fmt: skip
                persona_changes[0] += 1
            i += 1
            time.sleep(0.1)

    # The webhook is served before the stream starts (the configuration points at the balancer).
    poll(lambda: write_with_warnings(kube, "POST", dep_path, app_deployment("probe", cpu="2"))[1] or
         kube.delete(f"{dep_path}/probe"), timeout=60, what="the webhook answering")  # fmt: skip
    t = threading.Thread(target=stream, daemon=True)
    t.start()
    try:
        for r in reversed(cluster.replicas):
            backend = ("127.0.0.1", r.webhook_port)
            cluster.webhook_lb.backends.remove(backend)  # the endpoint goes first (and preStop waits)
            time.sleep(2)
            t0 = time.monotonic()
            assert r.stop() == 0, r.log_tail()
            r.start()
            poll(r.ready, timeout=150, what=f"{r.identity} ready again\n{r.log_tail()}", every=0.5)
            cluster.webhook_lb.backends.append(backend)
            print(f"\nrestarted {r.identity} in {time.monotonic() - t0:.1f} s")
        time.sleep(2)
    finally:
        stop.set()
        t.join(30)
    failed = [(i, w) for i, w in results if not any("web" in x for x in w)]
    print(f"{len(results)} Deployment writes during the rolling restart, {len(failed)} without the warnings; "
          f"{persona_changes[0]} persona changes")  # fmt: skip
    assert results and not failed, failed[:5]
    poll(lambda: _generation_converged(kube, ["web"]), timeout=60, what="the last persona change to be seen")
