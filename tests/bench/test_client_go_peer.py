"""The client-go benchmark peer (bench/peers/client-go) does dorgu's work: against the real control plane, its
statuses are what dorgu's own rules (``dorgu.domain.health.assess``) compute for the same objects, and its
Events are the controller's.

Skipped when the peer has not been built (``make bench-peers``; it needs Go and is kept out of ``make
test``'s set-up) or was built from other sources than these.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from bench.peers.build import CLIENT_GO_DIR, go_files, source_key
from cli.bench.peerpaths import client_go_peer_binary
from dorgu.domain.health import assess
from dorgu.domain.kube import Deployment
from dorgu.domain.rules import matching_deployments
from dorgu.domain.types import ApplicationPersona, ApplicationPersonaStatus
from dorgu.envtest import ControlPlane, HarnessClient
from tests import builders
from tests.runtime.kit import wait_until

BINARY = client_go_peer_binary()


def _skip_reason() -> str | None:
    if not BINARY.is_file():
        return f"the client-go peer is not built ({BINARY} is missing): run `make bench-peers`"
    key_file = BINARY.with_name(BINARY.name + ".key")
    key = key_file.read_text().strip() if key_file.is_file() else None
    if key != source_key(go_files(CLIENT_GO_DIR)):
        return f"{BINARY} was built from other sources than bench/peers/client-go: run `make bench-peers`"
    return None


pytestmark = pytest.mark.skipif(_skip_reason() is not None, reason=_skip_reason() or "")

AP = "/apis/dorgu.io/v1/namespaces/{ns}/applicationpersonas"
DEP = "/apis/apps/v1/namespaces/{ns}/deployments"


def persona(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "dorgu.io/v1",
        "kind": "ApplicationPersona",
        "metadata": {"name": name},
        "spec": {"name": name, "type": "api", **spec},
    }


def deployment(name: str, **kw: Any) -> dict[str, Any]:
    """:func:`tests.builders.deployment` with one replica unless told otherwise."""
    return builders.deployment(name, **{"replicas": 1, **kw})


def set_deployment_status(
    kube: HarnessClient, ns: str, name: str, *, ready: int, total: int, available: bool
) -> None:
    # No kubelet or deployment controller runs on the test control plane: the test writes the status.
    conditions = [{"type": "Available", "status": "True" if available else "False", "reason": "Test"}]
    if not available:
        conditions.append({"type": "Progressing", "status": "True", "reason": "Test"})
    kube.patch(
        f"{DEP.format(ns=ns)}/{name}/status",
        {"status": {"replicas": total, "readyReplicas": ready, "conditions": conditions}},
    )


def _strip_times(status: dict[str, Any]) -> dict[str, Any]:
    """A status without its timestamps (they differ between two writers by construction)."""
    s = json.loads(json.dumps(status))
    s.pop("lastUpdated", None)
    (s.get("health") or {}).pop("lastCheck", None)
    (s.get("validation") or {}).pop("lastChecked", None)
    for c in s.get("conditions") or []:
        c.pop("lastTransitionTime", None)
    return s


def dorgu_status(kube: HarnessClient, ns: str, name: str) -> dict[str, Any]:
    """What dorgu's controller writes for this persona from the objects on the server now (no earlier
    status: conditions in first-write order), timestamps stripped."""
    p = msgspec.json.decode(json.dumps(kube.get(f"{AP.format(ns=ns)}/{name}")), type=ApplicationPersona)
    deps = [msgspec.json.decode(json.dumps(d), type=Deployment) for d in kube.get(DEP.format(ns=ns))["items"]]
    gen = p.metadata.generation
    a = assess(
        p.spec,
        matching_deployments(p.spec.name, deps),
        now=datetime.now(UTC),
        conditions=None,
        generation=gen,
    )
    old = p.status.deployments if p.status else None
    tracking = a.deployments if a.deployments is not None else old  # the Pending path re-sends it
    st = ApplicationPersonaStatus(
        observed_generation=gen,
        phase=a.phase,
        last_updated=a.last_updated,
        deployments=tracking,
        health=a.health,
        validation=a.validation,
        conditions=a.conditions,
    )
    return _strip_times(msgspec.to_builtins(st))


def peer_status(kube: HarnessClient, ns: str, name: str) -> dict[str, Any]:
    return kube.get(f"{AP.format(ns=ns)}/{name}").get("status") or {}


def persona_events(kube: HarnessClient, ns: str) -> list[tuple[str, str, str, str, int]]:
    out = []
    for e in kube.get(f"/api/v1/namespaces/{ns}/events")["items"]:
        o = e["involvedObject"]
        if o.get("kind") == "ApplicationPersona":
            out.append((o["name"], e["type"], e["reason"], e["message"], e.get("count", 1)))
    return sorted(out)


class Peer:
    """The built peer as a child process, its stderr kept."""

    def __init__(
        self, cp: ControlPlane, ns: str, *, heartbeat_s: float = 3600, revalidate_s: float = 1
    ) -> None:
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (closed with the process)
        self.proc = subprocess.Popen(
            [
                str(BINARY),
                f"--kubeconfig={cp.kubeconfig}",  # both flag spellings: --x=v and -x v
                "-namespace",
                ns,
                f"--revalidate-interval={revalidate_s:g}",
                "--heartbeat-interval",
                f"{heartbeat_s:g}",
                "--workers=4",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace")

    def errors(self) -> list[str]:
        """klog's error lines (``E<mmdd> …``): the peer logs errors only, and none should occur here
        (client-go's own warnings, e.g. a watch the server closed early, are not the peer's errors)."""
        return [line for line in self.output().splitlines() if line.startswith("E")]

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise


@pytest.fixture
def peer_ns(kube: HarnessClient) -> Iterator[str]:
    name = f"peer-{int(time.time() * 1000) % 10**9}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    kube.delete(f"/api/v1/namespaces/{name}")


def _converged(kube: HarnessClient, ns: str, names: list[str]) -> bool:
    return all(_strip_times(peer_status(kube, ns, n)) == dorgu_status(kube, ns, n) for n in names)


def _explain(kube: HarnessClient, ns: str, names: list[str], peer: Peer) -> str:
    lines = []
    for n in names:
        lines.append(f"{n}: peer  {json.dumps(_strip_times(peer_status(kube, ns, n)), sort_keys=True)}")
        lines.append(f"{n}: dorgu {json.dumps(dorgu_status(kube, ns, n), sort_keys=True)}")
    return "\n".join(lines) + "\npeer output:\n" + peer.output()


def wait_converged(kube: HarnessClient, ns: str, names: list[str], peer: Peer, what: str) -> None:
    try:
        wait_until(lambda: _converged(kube, ns, names), timeout=90, what=what)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{_explain(kube, ns, names, peer)}") from None


def test_peer_statuses_and_events_match_dorgu(
    control_plane: ControlPlane, kube: HarnessClient, peer_ns: str
) -> None:
    ns = peer_ns
    limits = {"limits": {"cpu": 1, "memory": "1Gi"}}  # an int quantity: its raw text is "1"
    kube.post(
        AP.format(ns=ns),
        persona(
            "good",
            resources=limits,
            scaling={"minReplicas": 1, "maxReplicas": 3},
            health={"livenessPath": "/healthz", "readinessPath": "/ready"},
            policies={"security": {}},
        ),
    )
    kube.post(
        AP.format(ns=ns),
        persona(
            "bad",
            resources=limits,
            scaling={"minReplicas": 2},
            health={"livenessPath": "/live", "readinessPath": "/ready"},
            policies={"security": {}},
        ),
    )
    kube.post(AP.format(ns=ns), persona("lonely", policies={"security": {}}))
    kube.post(AP.format(ns=ns), persona("multi", scaling={"maxReplicas": 1}))
    kube.post(DEP.format(ns=ns), deployment("good"))
    kube.post(
        DEP.format(ns=ns),
        deployment(
            "bad",
            label="app",  # matched through the fallback label
            pod_security={},  # P-1 (error)
            container={
                "resources": {"limits": {"cpu": "2", "memory": "2048Mi"}},  # R-1, R-2 (canonical 2Gi), R-3
                "readinessProbe": None,  # H-3
                "securityContext": {"allowPrivilegeEscalation": True},  # P-2, P-3 (error)
            },
        ),
    )
    kube.post(DEP.format(ns=ns), deployment("multi-b", app="multi", replicas=2))
    kube.post(DEP.format(ns=ns), deployment("multi-a", app="multi", label="app", image="api:2"))
    set_deployment_status(kube, ns, "good", ready=1, total=1, available=True)
    set_deployment_status(kube, ns, "bad", ready=1, total=1, available=True)
    set_deployment_status(kube, ns, "multi-a", ready=1, total=1, available=True)
    set_deployment_status(kube, ns, "multi-b", ready=0, total=2, available=False)
    names = ["good", "bad", "lonely", "multi"]

    # The domain's own verdicts for these objects, so the test cannot pass on a trivial status.
    assert dorgu_status(kube, ns, "good")["phase"] == "Active"
    bad = dorgu_status(kube, ns, "bad")
    assert bad["phase"] == "Degraded" and bad["validation"]["passed"] is False
    assert {i["field"] for i in bad["validation"]["issues"]} >= {
        "containers[app].resources.limits.cpu",
        "containers[app].resources.limits.memory",
        "spec.replicas",
        "containers[app].livenessProbe.httpGet.path",
        "containers[app].readinessProbe",
        "spec.template.spec.securityContext.runAsNonRoot",
        "containers[app].securityContext.readOnlyRootFilesystem",
        "containers[app].securityContext.allowPrivilegeEscalation",
    }
    assert dorgu_status(kube, ns, "lonely")["phase"] == "Pending"
    assert dorgu_status(kube, ns, "multi")["health"]["message"].startswith("multi-a: 1/1 replicas ready; ")

    peer = Peer(control_plane, ns)
    try:
        wait_converged(kube, ns, names, peer, "the peer's first statuses to equal dorgu's")
        sts = {n: peer_status(kube, ns, n) for n in names}
        bad_issues = sts["bad"]["validation"]["issues"]
        assert {
            "severity": "warning",
            "field": "containers[app].resources.limits.memory",
            "message": "Container memory limit (2Gi) exceeds persona limit (1Gi)",
            "suggestion": "Set memory limit to at most 1Gi",
            "deployment": "bad",
        } in bad_issues
        for st in sts.values():  # one instant for every timestamp of a write
            assert st["lastUpdated"] == st["health"]["lastCheck"] == st["validation"]["lastChecked"]
            assert all(c["lastTransitionTime"] == st["lastUpdated"] for c in st["conditions"])

        # Events of the first statuses: ValidationFailed only (no PhaseChanged from nothing).
        n_errors = sum(1 for i in bad_issues if i["severity"] == "error")
        first = [("bad", "Warning", "ValidationFailed", f"{n_errors} validation error(s) found", 1)]
        wait_until(lambda: persona_events(kube, ns) == first, what=f"the Events {first}")
        ev = next(
            e
            for e in kube.get(f"/api/v1/namespaces/{ns}/events")["items"]
            if e["reason"] == "ValidationFailed"
        )
        assert ev["source"]["component"] == "applicationpersona"
        assert ev["involvedObject"]["apiVersion"] == "dorgu.io/v1"
        assert ev["involvedObject"]["uid"] == kube.get(f"{AP.format(ns=ns)}/bad")["metadata"]["uid"]

        # Settled: re-validations (every second) write nothing and emit nothing.
        rvs = {n: kube.get(f"{AP.format(ns=ns)}/{n}")["metadata"]["resourceVersion"] for n in names}
        time.sleep(3)
        assert {n: kube.get(f"{AP.format(ns=ns)}/{n}")["metadata"]["resourceVersion"] for n in names} == rvs
        assert persona_events(kube, ns) == first

        # Recovery: ValidationPassed and PhaseChanged Degraded -> Active (the Deployment's status, written
        # by the test, stays available through the spec change).
        fixed = deployment(
            "bad", label="app", replicas=2, container={"readinessProbe": {"tcpSocket": {"port": 1}}}
        )
        fixed["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["path"] = "/live"
        current = kube.get(f"{DEP.format(ns=ns)}/bad")
        kube.put(f"{DEP.format(ns=ns)}/bad", {**fixed, "metadata": current["metadata"]})
        # A persona's spec change (generation 2), then a ready Deployment relabelled to it (the update is
        # mapped through the new label): Pending -> Active.
        kube.patch(f"{AP.format(ns=ns)}/lonely", {"spec": {"scaling": {"maxReplicas": 4}}})
        kube.post(DEP.format(ns=ns), deployment("lonely", app="nobody", image="lonely:7"))
        set_deployment_status(kube, ns, "lonely", ready=1, total=1, available=True)
        kube.patch(
            f"{DEP.format(ns=ns)}/lonely", {"metadata": {"labels": {"app.kubernetes.io/name": "lonely"}}}
        )
        wait_converged(kube, ns, names, peer, "the peer's statuses after the changes to equal dorgu's")
        assert peer_status(kube, ns, "bad")["phase"] == "Active"
        lonely = peer_status(kube, ns, "lonely")
        assert lonely["observedGeneration"] == 2 and lonely["deployments"] == {"current": "lonely:7"}
        assert {c["observedGeneration"] for c in lonely["conditions"]} == {2}
        after = sorted(
            [
                *first,
                ("bad", "Normal", "ValidationPassed", "All validations passed", 1),
                ("bad", "Normal", "PhaseChanged", "Phase changed from Degraded to Active", 1),
                ("lonely", "Normal", "PhaseChanged", "Phase changed from Pending to Active", 1),
            ]
        )
        wait_until(lambda: persona_events(kube, ns) == after, what=f"the Events {after}")
    finally:
        code = peer.stop()
    assert code == 0, peer.output()
    assert not peer.errors(), peer.output()


def test_peer_rewrites_an_unchanged_status_once_per_heartbeat(
    control_plane: ControlPlane, kube: HarnessClient, peer_ns: str
) -> None:
    """With re-validation every 0.2 s and a 2 s heartbeat, an unchanged status is rewritten (lastChecked
    moves) but never twice within the heartbeat, and its substance never changes."""
    ns = peer_ns
    kube.post(AP.format(ns=ns), persona("beat"))
    kube.post(DEP.format(ns=ns), deployment("beat"))
    set_deployment_status(kube, ns, "beat", ready=1, total=1, available=True)
    peer = Peer(control_plane, ns, heartbeat_s=2, revalidate_s=0.2)
    try:
        wait_converged(kube, ns, ["beat"], peer, "the peer's status to equal dorgu's")
        seen: list[datetime] = []

        def beats() -> bool:
            checked = peer_status(kube, ns, "beat")["validation"]["lastChecked"]
            t = datetime.fromisoformat(checked.replace("Z", "+00:00"))
            if not seen or seen[-1] != t:
                seen.append(t)
            return len(seen) >= 3

        wait_until(beats, timeout=90, what="two heartbeat writes")
        assert all((b - a).total_seconds() >= 2 for a, b in itertools.pairwise(seen)), seen
        assert _converged(kube, ns, ["beat"]), _explain(kube, ns, ["beat"], peer)
        assert persona_events(kube, ns) == []
    finally:
        code = peer.stop()
    assert code == 0, peer.output()
    assert not peer.errors(), peer.output()
