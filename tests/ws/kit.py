"""Helpers of the WebSocket tests: a real operator (supervisor + websocket children) and a real CLI."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

ROOT = Path(__file__).resolve().parents[2]
if TYPE_CHECKING:
    from dorgu.envtest import ControlPlane
    from tests.runtime.kit import LoopThread
    from webhook.ws.server import WebSocketServer, WebSocketSettings
DEADLINE_S = 60.0


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(x for x in (str(ROOT), e.get("PYTHONPATH")) if x)
    e.pop("PROMETHEUS_MULTIPROC_DIR", None)
    e["NO_COLOR"] = "1"
    return e


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def poll(pred: Callable[[], Any], what: str, timeout: float = DEADLINE_S, every: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        r = pred()
        if r:
            return r
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)


class Operator:
    """``tests/runtime/programs/operator_main.py``: a Supervisor whose children are websocket servers (one per
    entry of ``servers``: name → options), against the real control plane."""

    def __init__(self, kubeconfig: Path, servers: dict[str, dict[str, Any]], tmp: Path) -> None:
        self.ports = {name: free_port() for name in servers}
        components = [
            {
                "name": name,
                "target": "webhook.ws.server:run",
                "options": {"ws_host": "127.0.0.1", "ws_port": self.ports[name], **opts},
            }
            for name, opts in servers.items()
        ]
        config = {
            "kubeconfig": str(kubeconfig),
            "components": components,
            "settings": {
                "metrics_host": "127.0.0.1", "metrics_port": 0, "identity": "ws-test",
                "restart_backoff_initial_s": 0.2,
            },
        }  # fmt: skip
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.runtime.programs.operator_main", json.dumps(config)],
            cwd=ROOT, env=env(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, start_new_session=True,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if isinstance(rec, dict):
                self.records.append(rec)

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.ports[name]}/ws"

    def pids(self, name: str) -> list[int]:
        started = [r for r in list(self.records) if str(r.get("msg", "")).startswith("component started")]
        return [int(r["child_pid"]) for r in started if r.get("child") == name]

    def ready(self, name: str, *, after: int = 0) -> None:
        """Wait until the ``after``-th start of ``name`` serves (health answers and caches synced)."""

        def ok() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError("the supervisor exited:\n" + "\n".join(self.lines[-20:]))
            if len(self.pids(name)) <= after:
                return False
            starts = [r for r in list(self.records) if r.get("msg") == "serving websocket"
                      and r.get("component") == name]  # fmt: skip
            synced = [r for r in list(self.records) if str(r.get("msg", "")).startswith("caches synced")
                      and r.get("component") == name]  # fmt: skip
            return len(starts) > after and len(synced) > after

        try:
            poll(ok, f"websocket {name} to serve")
        except AssertionError:
            raise AssertionError("\n".join(self.lines[-40:])) from None

    def kill_child(self, name: str) -> int:
        pid = self.pids(name)[-1]
        os.kill(pid, signal.SIGKILL)
        return pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for name in self.ports:
            for pid in self.pids(name):
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)


def dorgu(*args: str, timeout: float = 60, **kw: Any) -> subprocess.CompletedProcess[str]:
    """Run the real CLI (``python -m cli.main``) to completion."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env(), capture_output=True, text=True,
        timeout=timeout, **kw,
    )  # fmt: skip


class CliStream:
    """A long-running CLI process (``dorgu persona watch …``) whose stdout lines are collected."""

    def __init__(self, *args: str) -> None:
        self.lines: list[str] = []
        self.err: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", *args], cwd=ROOT, env=env(), stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._pump, args=(self.proc.stdout, self.lines), daemon=True).start()
        threading.Thread(target=self._pump, args=(self.proc.stderr, self.err), daemon=True).start()

    @staticmethod
    def _pump(stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line.rstrip("\n"))

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for line in list(self.lines):
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                return self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait()


@dataclass
class InProcess:
    """A WebSocket server in this process (a real Manager against the real control plane), so a test can
    read its connections' state."""

    lt: LoopThread
    server: WebSocketServer
    port: int


@contextlib.contextmanager
def in_process(cp: ControlPlane, settings: WebSocketSettings) -> Iterator[InProcess]:
    """Serve ``settings`` (its port: 0 picks one) on an event loop in a thread until the block ends."""
    import asyncio

    from dorgu.runtime.manager import Manager
    from tests.runtime.kit import LoopThread, wait_until
    from webhook.ws.server import WebSocketServer

    lt = LoopThread()
    stop = asyncio.Event()
    holder: dict[str, Any] = {}

    async def start() -> None:
        manager = Manager(connection=cp.connection(user_agent="ws-in-process"))
        holder["server"] = WebSocketServer(manager, settings)
        holder["task"] = asyncio.create_task(manager.run(stop))

    lt.run(start())
    server: WebSocketServer = holder["server"]
    wait_until(lambda: server.listening.is_set() and server.personas.has_synced(), what="the server to serve")
    assert server.port is not None
    try:
        yield InProcess(lt=lt, server=server, port=server.port)
    finally:
        lt.loop.call_soon_threadsafe(stop.set)
        lt.close()
