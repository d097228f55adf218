"""A long-lived local control plane for a developer's shell: ``up`` / ``down`` / ``env``.

``up`` starts a detached holder process (``python -m dorgu.envtest serve``) that runs the control plane and
writes a state file once it is ready; ``down`` sends the holder SIGTERM and waits until it has torn
everything down; ``env`` prints ``export KUBECONFIG=...``. The holder owns every child process, so its
teardown (and ``PR_SET_PDEATHSIG`` if it is killed) leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType

from dorgu.envtest.binaries import cache_root
from dorgu.envtest.controlplane import ControlPlane, ControlPlaneSettings


def state_file() -> Path:
    return cache_root() / "dev-cluster.json"


def _read_state() -> dict[str, object] | None:
    try:
        state = json.loads(state_file().read_text())
    except (OSError, ValueError):
        return None
    pid = state.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return None
    return dict(state)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def export_line(kubeconfig: str) -> str:
    return f"export KUBECONFIG={kubeconfig}"


def up(*, crds: list[Path], timeout_s: float = 900.0) -> str:
    """Start the dev cluster (or find the running one); returns the ``export KUBECONFIG=...`` line."""
    state = _read_state()
    if state:
        return export_line(str(state["kubeconfig"]))
    sf = state_file()
    sf.parent.mkdir(parents=True, exist_ok=True)
    sf.unlink(missing_ok=True)
    log = sf.with_suffix(".log")
    cmd = [sys.executable, "-m", "dorgu.envtest", "serve", "--state", str(sf), *[str(c) for c in crds]]
    with open(log, "wb") as logf:
        holder = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + timeout_s
    shown = 0
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        sys.stderr.write(text[shown:])  # relay progress (the first run builds the binaries)
        shown = len(text)
        state = _read_state()
        if state:
            return export_line(str(state["kubeconfig"]))
        if holder.poll() is not None:
            raise SystemExit(f"Error: the dev cluster failed to start (see {log})")
        time.sleep(0.2)
    holder.terminate()
    raise SystemExit(f"Error: the dev cluster did not become ready in {timeout_s:.0f} s (see {log})")


def down(*, timeout_s: float = 30.0) -> bool:
    """Stop the dev cluster; False if none was running."""
    state = _read_state()
    if not state:
        state_file().unlink(missing_ok=True)
        return False
    pid = int(str(state["pid"]))
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    state_file().unlink(missing_ok=True)
    return True


def env() -> str | None:
    state = _read_state()
    return export_line(str(state["kubeconfig"])) if state else None


def serve(*, state: Path, crds: list[Path]) -> None:
    """Run a control plane until SIGTERM/SIGINT, publishing its kubeconfig in ``state`` once ready."""

    def _stop(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with ControlPlane(ControlPlaneSettings(crds=tuple(crds))) as cp:
        tmp = state.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"pid": os.getpid(), "kubeconfig": str(cp.kubeconfig), "server": cp.server})
        )
        tmp.rename(state)
        try:
            while True:
                time.sleep(3600)
        finally:
            with contextlib.suppress(OSError):
                state.unlink()
