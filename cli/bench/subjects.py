"""What a ``dorgu bench`` run measures: ``dorgu operator``, or a peer doing the same work another way.

Every subject is one process tree started by the bench, told the bench's namespace, workers and intervals,
and measured from outside: its CPU-seconds from ``/proc`` (every live process of the tree plus the children
it has reaped), its RSS per process. The peers live in ``bench/peers/`` (built by ``make bench-peers``) and
exist for comparisons only; the bench finds them by path and never imports them.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from cli import paths
from cli.bench.peerpaths import client_go_peer_binary
from cli.errors import Failure, InputError

CODE_ROOT = paths.code_root()
"""Working directory and PYTHONPATH of Python subjects: they import the checkout's own code."""
PEERS = ("client-go", "kopf")
"""The peers ``--peers`` accepts, in the order they are run."""
KOPF_PEER = CODE_ROOT / "bench" / "peers" / "kopf" / "peer.py"
_TICK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """What every subject is told."""

    kubeconfig: str
    """The cluster."""
    context: str | None
    """Its context, if not the current one."""
    namespace: str
    """The bench's throwaway namespace: the only one the subject watches."""
    workers: int
    """Concurrent reconciles."""
    heartbeat_s: float
    """Heartbeat of an unchanged status; re-validation every half of it."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pids(pid: int) -> list[int]:
    """``pid`` and its descendants (every thread's children), parents first."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop(0)
        out.append(p)
        try:
            for task in Path(f"/proc/{p}/task").iterdir():
                todo += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            continue
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU-seconds of the tree under ``pid``: each live process's own, plus what the root has
    collected from children it reaped (a restarted child's CPU is not lost)."""
    total = 0.0
    for p in tree_pids(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks = int(fields[11]) + int(fields[12])  # utime, stime
        if p == pid:
            ticks += int(fields[13]) + int(fields[14])  # cutime, cstime: reaped children
        total += ticks / _TICK
    return total


class Subject:
    """One operator process tree under test."""

    name = "subject"
    """How the report names it."""

    def __init__(self, config: RunConfig) -> None:
        self.config = config
        self.log = tempfile.NamedTemporaryFile(  # noqa: SIM115
            prefix=f"dorgu-bench-{self.name}-", suffix=".log", delete=False
        )
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def env(self) -> dict[str, str]:
        """The checkout's own code first on PYTHONPATH (harmless for a subject that is not Python)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(CODE_ROOT), env.get("PYTHONPATH")) if p)
        return env

    def start(self) -> None:
        self.proc = subprocess.Popen(
            self.argv(), cwd=CODE_ROOT, env=self.env(), stdin=subprocess.DEVNULL, stdout=self.log,
            stderr=self.log,
        )  # fmt: skip

    @property
    def pid(self) -> int:
        return self.proc.pid if self.proc is not None else 0

    def cpu_seconds(self) -> float:
        return cpu_seconds(self.pid) if self.proc is not None and self.proc.poll() is None else 0.0

    def check(self) -> None:
        if self.proc is not None and self.proc.poll() is not None:
            raise Failure(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(Path(self.log.name).read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def patch_requests(self) -> float | None:
        """PATCH requests the subject has sent, when it says (dorgu's /metrics), else None."""
        return None

    def process_names(self) -> dict[int, str]:
        """Report names of the tree's processes (RSS is reported per process)."""
        return {p: (self.name if p == self.pid else str(p)) for p in tree_pids(self.pid)}

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        with contextlib.suppress(OSError):
            os.unlink(self.log.name)
        return self.proc.returncode


class DorguOperator(Subject):
    """``dorgu operator`` as it runs in production: supervisor + one child for the ApplicationPersona
    controller (its own Lease in the bench's namespace)."""

    name = "dorgu"

    def __init__(self, config: RunConfig) -> None:
        super().__init__(config)
        self.metrics_port = _free_port()

    def argv(self) -> list[str]:
        c = self.config
        options = {"lease_name": f"{c.namespace}-applicationpersona", "namespaces": c.namespace}
        argv = [
            sys.executable, "-m", "cli.main", "operator", f"--kubeconfig={c.kubeconfig}",
            "--components=applicationpersona", f"--lease-namespace={c.namespace}", f"--workers={c.workers}",
            f"--heartbeat-interval={c.heartbeat_s:g}", f"--revalidate-interval={c.heartbeat_s / 2:g}",
            f"--metrics-bind-address=127.0.0.1:{self.metrics_port}", f"--identity={c.namespace}",
            f"--component-options={json.dumps(options)}", "--log-level=warning",
        ]  # fmt: skip
        return [*argv, f"--context={c.context}"] if c.context else argv

    def process_names(self) -> dict[int, str]:
        names = {}
        for p in tree_pids(self.pid):
            try:
                cmd = Path(f"/proc/{p}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
            except OSError:
                continue
            # A spawned child's last argument is its component; a forked child's process title (one string)
            # ends with it; the fork server's names its module.
            last = cmd[-1].decode(errors="replace").split()[-1] if cmd and cmd[-1].strip() else str(p)
            if p == self.pid:
                names[p] = "supervisor"
            else:
                names[p] = "fork server" if last == "dorgu.runtime.forkserver" else last
        return names

    async def patch_requests(self) -> float | None:
        try:
            async with (
                aiohttp.ClientSession() as s,
                s.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=aiohttp.ClientTimeout(5)) as r,
            ):
                text = await r.text()
        except (aiohttp.ClientError, TimeoutError):
            return None
        total = 0.0
        for line in text.splitlines():
            if line.startswith("rest_client_requests_total{") and 'method="PATCH"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total


class ClientGoPeer(Subject):
    """The client-go peer (``bench/peers/client-go``): shared informers, an indexer, a rate-limited
    workqueue, the same rules, status fields, conditions and Events; no client-side throttling."""

    name = "client-go"

    def argv(self) -> list[str]:
        c = self.config
        argv = [
            str(client_go_peer_binary()), f"--kubeconfig={c.kubeconfig}", f"--namespace={c.namespace}",
            f"--workers={c.workers}", f"--heartbeat-interval={c.heartbeat_s:g}",
            f"--revalidate-interval={c.heartbeat_s / 2:g}",
        ]  # fmt: skip
        return [*argv, f"--context={c.context}"] if c.context else argv


class KopfPeer(Subject):
    """The kopf peer (``bench/peers/kopf``): the same work through kopf's handlers, dorgu's rules."""

    name = "kopf"

    def argv(self) -> list[str]:
        c = self.config
        argv = [
            sys.executable, str(KOPF_PEER), f"--kubeconfig={c.kubeconfig}", f"--namespace={c.namespace}",
            f"--workers={c.workers}", f"--heartbeat-interval={c.heartbeat_s:g}",
            f"--revalidate-interval={c.heartbeat_s / 2:g}",
        ]  # fmt: skip
        return [*argv, f"--context={c.context}"] if c.context else argv


def parse_peers(raw: str | None) -> list[str]:
    """``--peers`` as a list, each checked to be runnable here (exit 2 with what to do otherwise)."""
    if not raw:
        return []
    names = [x.strip() for x in raw.split(",") if x.strip()]
    for name in names:
        if name not in PEERS:
            known = ", ".join(PEERS)
            raise InputError(f"unknown peer {name!r}; --peers takes a comma-separated list of: {known}")
        if name == "client-go" and not client_go_peer_binary().exists():
            raise InputError(
                f"the client-go peer is not built ({client_go_peer_binary()} is missing): "
                "run `make bench-peers` in a checkout of dorgu"
            )
        if name == "kopf":
            import importlib.util

            if not KOPF_PEER.exists():
                raise InputError(f"the kopf peer needs a checkout of dorgu ({KOPF_PEER} is missing)")
            if importlib.util.find_spec("kopf") is None:
                raise InputError("the kopf peer needs kopf: pip install 'dorgu[bench]'")
    return list(dict.fromkeys(names))


def make(name: str, config: RunConfig) -> Subject:
    kinds: dict[str, type[Subject]] = {"dorgu": DorguOperator, "client-go": ClientGoPeer, "kopf": KopfPeer}
    return kinds[name](config)


def rss_of(subject: Subject) -> dict[str, dict[str, float]]:
    """VmRSS and VmHWM (peak), in MiB, of each process of the subject's tree, by report name."""
    out: dict[str, dict[str, float]] = {}
    for p, name in subject.process_names().items():
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        fields: dict[str, Any] = {
            k: int(v.split()[0])
            for k, _, v in (ln.partition(":") for ln in status.splitlines())
            if k in ("VmRSS", "VmHWM")
        }
        out[name] = {"rss_mib": fields.get("VmRSS", 0) / 1024, "peak_mib": fields.get("VmHWM", 0) / 1024}
    return out
