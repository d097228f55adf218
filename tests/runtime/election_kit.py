"""Leader candidates as OS processes against a control plane whose audit log is the judge.

What ``tests/runtime/test_leaderelection.py`` and ``bench/leases.py`` share: the control plane with an audit
log of Lease and ConfigMap requests (Metadata level, one line per finished request), the
``tests/runtime/programs/leader_candidate.py`` process wrapper (its JSON-line events collected by a reader
thread), waiting for a leader, and reading the audit log back as requests.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from dorgu.envtest import ControlPlane, ControlPlaneSettings, HarnessClient
from dorgu.runtime.resource import LEASES

ROOT = Path(__file__).resolve().parents[2]
TEST_DURATIONS = (3.0, 2.0, 0.5)  # lease, renew deadline, retry period
DEFAULT_DURATIONS = (15.0, 10.0, 2.0)
AUDIT_POLICY = """\
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
- level: Metadata
  resources:
  - group: coordination.k8s.io
    resources: ["leases"]
  - group: ""
    resources: ["configmaps"]
- level: None
"""

T = TypeVar("T")


class ScenarioFailed(AssertionError):
    """A run did not reach the state it waits for (the message says what and shows the candidates)."""


# -- the control plane -------------------------------------------------------------------------------------


@dataclass
class Plane:
    cp: ControlPlane
    kube: HarnessClient
    audit_log: Path
    logs: Path

    def namespace(self, name: str) -> str:
        self.kube.post(
            "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        )
        return name

    def lease_holder(self, namespace: str, name: str) -> str:
        lease = self.kube.get(LEASES.path(namespace=namespace, name=name))
        return str((lease.get("spec") or {}).get("holderIdentity") or "")

    def holders(self, namespace: str, names: Sequence[str]) -> dict[str, str]:
        """Lease name → holder ("" when free or missing), from one LIST."""
        items = self.kube.get(LEASES.path(namespace=namespace)).get("items") or []
        found = {i["metadata"]["name"]: str((i.get("spec") or {}).get("holderIdentity") or "") for i in items}
        return {n: found.get(n, "") for n in names}


@contextmanager
def audited_plane(work: Path, *, user_agent: str = "dorgu-envtest") -> Iterator[Plane]:
    """A control plane (no controller-manager) auditing Leases and ConfigMaps into ``work``/audit.log; the
    candidates' logs go to ``work`` too. ``user_agent`` is the harness client's."""
    policy = work / "audit-policy.yaml"
    policy.write_text(AUDIT_POLICY)
    audit_log = work / "audit.log"
    settings = ControlPlaneSettings(
        controllers=(),
        extra_apiserver_flags=(f"--audit-policy-file={policy}", f"--audit-log-path={audit_log}"),
    )
    with ControlPlane(settings) as cp:
        yield Plane(cp=cp, kube=cp.client(user_agent=user_agent), audit_log=audit_log, logs=work)


# -- candidates --------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CandidateSettings:
    """What one ``leader_candidate`` process is started with."""

    identity: str
    """The holder identity it contends as (the processes of one replica share it)."""
    lease: str
    """The Lease it contends for."""
    namespace: str
    """The namespace of the Lease and of the ConfigMap it writes."""
    durations: tuple[float, float, float]
    """Lease duration, renew deadline and retry period, in seconds."""
    user_agent: str | None = None
    """The User-Agent the audit log knows its requests by; None: ``dorgu-test/<identity>``."""
    configmap: str = "leader-writes"
    """The ConfigMap it merge-patches every 0.2 s while it leads."""
    spread_delay_s: float = 0.0
    """How long it leaves a free Lease to a replica leading none of the group's Leases."""
    balance_period_s: float | None = None
    """Presence and rebalance period; given, the candidate hands surplus Leases of its group over."""

    @property
    def ua(self) -> str:
        return self.user_agent or f"dorgu-test/{self.identity}"

    def args(self, plane: Plane) -> list[str]:
        args = [
            # --token=X as one word: a random token may start with "-", which argparse takes for an option
            "--server", plane.cp.server, "--ca", str(plane.cp.ca_file), f"--token={plane.cp.admin_token}",
            "--identity", self.identity, "--lease", self.lease, "--namespace", self.namespace,
            "--durations", ",".join(f"{d:g}" for d in self.durations), "--user-agent", self.ua,
            "--configmap", self.configmap, "--spread-delay", f"{self.spread_delay_s:g}",
        ]  # fmt: skip
        if self.balance_period_s is not None:
            args += ["--rebalance", "--balance-period", f"{self.balance_period_s:g}"]
        return args


class Candidate:
    """One ``leader_candidate`` process; its JSON-line events are collected by a reader thread. Its stderr
    is appended to ``<namespace>.<identity>.<lease>.log`` in the plane's log folder (a restarted candidate
    adds to its predecessor's)."""

    def __init__(self, plane: Plane, settings: CandidateSettings) -> None:
        self.settings = settings
        self.identity = settings.identity
        self.ua = settings.ua
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self.stderr_path = plane.logs / f"{settings.namespace}.{settings.identity}.{settings.lease}.log"
        with open(self.stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.runtime.programs.leader_candidate", *settings.args(plane)],
                cwd=ROOT,
                env={**os.environ, "PYTHONPATH": str(ROOT)},
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=err,
                text=True,
            )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            with self._lock:
                self.events.append(event)

    def of(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def first(self, kind: str) -> dict[str, Any] | None:
        found = self.of(kind)
        return found[0] if found else None

    def observed_leader(self, identity: str) -> bool:
        return any(e.get("holder") == identity for e in self.of("leader"))

    def send(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)

    def wait_exit(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(10)
        return code

    def close(self) -> None:
        """Kill the process if it still runs (SIGCONT first, for one left SIGSTOP-ed), and join the reader."""
        if self.proc.poll() is None:
            for sig in (signal.SIGCONT, signal.SIGKILL):
                self.proc.send_signal(sig)
            self.proc.wait(30)
        self._reader.join(10)

    def describe(self) -> str:
        with self._lock:
            kinds = [e["event"] for e in self.events]
        try:
            tail = "\n    ".join(self.stderr_path.read_text(errors="replace").splitlines()[-8:])
        except OSError:
            tail = ""
        return (
            f"  {self.ua} (rc={self.proc.poll()}): {len(kinds)} events, last {kinds[-6:]}\n    stderr: {tail}"
        )


def wait_until(
    pred: Callable[[], T | None], *, timeout: float, what: str, cands: Sequence[Candidate] = ()
) -> T:
    """``pred()``'s first true value, asked every 20 ms; ScenarioFailed (showing ``cands``) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            state = "\n".join(c.describe() for c in cands)
            raise ScenarioFailed(f"timed out after {timeout:.0f} s waiting for {what}\n{state}")
        time.sleep(0.02)


def wait_for_leader(cands: Sequence[Candidate], *, timeout: float, writes: int = 3) -> Candidate:
    """The candidate that wrote ``writes`` times, once every other one observed it as the holder, and three
    writes later (the followers' Lease watches are open by then). Each of the three waits may take
    ``timeout`` seconds."""
    leader = wait_until(
        lambda: next((c for c in cands if len(c.of("write")) >= writes), None),
        timeout=timeout, what="a leader's writes", cands=cands,
    )  # fmt: skip
    wait_until(
        lambda: all(c.observed_leader(leader.identity) for c in cands if c is not leader),
        timeout=timeout, what=f"the followers to observe {leader.identity}", cands=cands,
    )  # fmt: skip
    n = len(leader.of("write")) + 3
    wait_until(lambda: len(leader.of("write")) >= n, timeout=timeout, what="more writes", cands=cands)
    return leader


def successor(cands: Sequence[Candidate], leader: Candidate, *, timeout: float) -> Candidate:
    """The first candidate other than ``leader`` to write (once ``leader`` was killed, stopped or told to
    release)."""
    followers = [c for c in cands if c is not leader]
    return wait_until(
        lambda: next((c for c in followers if c.of("write")), None),
        timeout=timeout, what="a new leader's first write", cands=cands,
    )  # fmt: skip


# -- the audit log -----------------------------------------------------------------------------------------


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass(frozen=True)
class Req:
    """One finished request, as the audit log saw it (server-side timestamps, seconds since the epoch)."""

    ua: str
    verb: str
    resource: str
    code: int
    received: float
    done: float

    @property
    def ok(self) -> bool:
        return 200 <= self.code < 300

    @property
    def write(self) -> bool:
        return self.verb in ("create", "update", "patch")


def audit(plane: Plane, namespace: str) -> list[Req]:
    """The namespace's finished requests, in the order the server received them."""
    out = []
    for line in plane.audit_log.read_text().splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue  # a line being written
        ref = e.get("objectRef") or {}
        if ref.get("namespace") != namespace or e.get("stage") != "ResponseComplete":
            continue
        out.append(
            Req(
                ua=e.get("userAgent", ""),
                verb=e["verb"],
                resource=ref.get("resource", ""),
                code=int((e.get("responseStatus") or {}).get("code", 0)),
                received=_ts(e["requestReceivedTimestamp"]),
                done=_ts(e["stageTimestamp"]),
            )
        )
    return sorted(out, key=lambda r: r.received)


def ok_writes(reqs: list[Req], resource: str, ua: str | None = None) -> list[Req]:
    """The successful writes of ``resource`` (of the client ``ua`` if given)."""
    return [r for r in reqs if r.resource == resource and r.write and r.ok and (ua is None or r.ua == ua)]
