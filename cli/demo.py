"""``dorgu dev demo``: the whole system on this machine, narrated.

A real local control plane; ``dorgu operator`` with all five components as processes (webhook advisory);
``dorgu generate`` and ``dorgu persona apply`` on the bundled sample app (deploy/demo-app); a Deployment
that breaks its persona (the API server shows the webhook's warnings, as kubectl prints them); ``dorgu persona
watch`` following the persona while the Deployment is fixed. No kubelet runs here, so a clearly labelled
*kubelet stand-in* writes the Deployment's status.

Every step waits for what it shows, so the transcript is the same on every run (apart from timestamps,
ports and paths). Ctrl-C or SIGTERM stop everything: the watch, the operator (SIGTERM, its children follow),
the control plane.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from cli import paths
from dorgu.envtest import ApiError, ControlPlane, ControlPlaneSettings, HarnessClient, format_table

ROOT = paths.code_root()
"""Working directory and PYTHONPATH of the ``python -m cli.main`` children: they import our own code."""
APP_DIR = paths.demo_app_dir()
APP = "order-service"
NS = "shop"
SYSTEM_NS = "dorgu-system"
STEP_TIMEOUT_S = 60.0


class DemoError(Exception):
    """A step did not happen in time (the message says which)."""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _say(text: str = "") -> None:
    print(text, flush=True)


def _step(n: int, text: str) -> None:
    _say(f"\n=== {n}. {text}")


def _until(pred: Callable[[], Any], what: str, timeout: float = STEP_TIMEOUT_S) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ApiError, OSError, KeyError):
            got = pred()
            if got:
                return got
        time.sleep(0.2)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


def _dorgu(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--no-color"],
        cwd=ROOT, capture_output=True, text=True, env=_env(), timeout=STEP_TIMEOUT_S,
    )  # fmt: skip


_KUBECONFIG: list[str] = []


def _env() -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    if _KUBECONFIG:
        env["KUBECONFIG"] = _KUBECONFIG[0]
    return env


def _show(cmd: str, proc: subprocess.CompletedProcess[str], *, strip: str = "") -> None:
    _say(f"$ {cmd}")
    out = (proc.stdout + proc.stderr).rstrip()
    if strip:
        out = out.replace(strip, ".")
    if out:
        _say(out)
    if proc.returncode != 0:
        raise DemoError(f"`{cmd}` failed (exit {proc.returncode})")


class Watch:
    """``dorgu persona watch`` in the background; its lines are collected and shown at the demo's pace."""

    def __init__(self, url: str) -> None:
        self.cmd = f"dorgu persona watch {APP} -n {NS}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "persona", "watch", APP, "-n", NS, f"--operator-url={url}",
             "--no-color"],
            cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.header = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def until(self, *words: str) -> str:
        """Wait for a line that has all ``words`` (as columns) and return it."""
        deadline = time.monotonic() + STEP_TIMEOUT_S
        seen: list[str] = []
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.5)
                seen.append(line)
            except queue.Empty:
                if self.proc.poll() is not None:
                    raise DemoError(f"`{self.cmd}` exited ({self.proc.returncode})") from None
                continue
            cols = line.split()
            if cols and cols[0] == "NAMESPACE":
                self.header = line
            elif all(w in cols for w in words):
                return line
        shown = "\n".join(seen[-10:])
        raise DemoError(f"`{self.cmd}` never showed {' '.join(words)}; it showed:\n{shown}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Operator:
    """``dorgu operator`` with all components, as a process group of its own (stopped with SIGTERM)."""

    def __init__(self, cp: ControlPlane, log: Path) -> None:
        self.metrics_port, self.webhook_port, self.ws_port = _port(), _port(), _port()
        self.log = log
        fh = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable, "-m", "cli.main", "operator", f"--kubeconfig={cp.kubeconfig}",
                "--components=applicationpersona,clusterpersona,argocd,webhook,websocket",
                f"--lease-namespace={SYSTEM_NS}", "--identity=dorgu-0",
                f"--metrics-bind-address=127.0.0.1:{self.metrics_port}",
                f"--webhook-bind-address=127.0.0.1:{self.webhook_port}",
                f"--webhook-url=https://127.0.0.1:{self.webhook_port}/validate-deployment",
                "--webhook-ip-addresses=127.0.0.1", "--webhook-mode=advisory",
                f"--websocket-addr=127.0.0.1:{self.ws_port}", "--ws-auth=none",
                "--revalidate-interval=10",
            ],
            cwd=ROOT, env=_env(), stdout=fh, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        fh.close()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}/ws"

    def ready(self) -> bool:
        if self.proc.poll() is not None:
            tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-20:])
            raise DemoError(f"dorgu operator exited ({self.proc.returncode}):\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/readyz", timeout=2) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                return self.proc.wait(5)
        return int(self.proc.returncode)


def _warnings_of(kube: HarnessClient, method: str, path: str, body: Any) -> list[str]:
    """Write as kubectl does and return the API server's ``Warning`` headers (the webhook's findings)."""
    req = urllib.request.Request(kube.server + path, data=json.dumps(body).encode(), method=method)
    req.add_header("Authorization", f"Bearer {kube.token}")
    req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, context=kube._ctx, timeout=30) as resp:
        headers = resp.headers.get_all("Warning") or []
    return [h.partition('"')[2].rsplit('"', 1)[0].replace('\\"', '"') for h in headers]


def _kubelet_stand_in(kube: HarnessClient, name: str, ready: int) -> None:
    _say(f"[kubelet stand-in] no kubelet runs here: writing deployment/{name} status ({ready}/{ready} ready)")
    kube.patch(
        f"/apis/apps/v1/namespaces/{NS}/deployments/{name}/status",
        {"status": {"replicas": ready, "readyReplicas": ready, "availableReplicas": ready,
                    "updatedReplicas": ready,
                    "conditions": [{"type": "Available", "status": "True",
                                    "reason": "MinimumReplicasAvailable"}]}},
    )  # fmt: skip


def _persona(kube: HarnessClient) -> dict[str, Any]:
    return dict(kube.get(f"/apis/dorgu.io/v1/namespaces/{NS}/applicationpersonas/{APP}"))


def run_demo(*, wait: bool) -> int:
    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C is installed explicitly, not left to Python's default: a process started from a shell without
    # job control (a background job, `make test &`, some CI runners) inherits SIGINT *ignored*, and Python
    # then never raises KeyboardInterrupt — the demo would not stop on Ctrl-C.
    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    work = Path(tempfile.mkdtemp(prefix="dorgu-demo-"))
    operator: Operator | None = None
    watch: Watch | None = None
    stack = contextlib.ExitStack()
    try:
        _say("dorgu demo: the whole system on this machine (Ctrl-C stops everything)")
        _step(1, "A local Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager 1.20.2)")
        # Entered on a stack closed last: the control plane stops after the watch and the operator.
        cp = stack.enter_context(ControlPlane(ControlPlaneSettings(crds=tuple(paths.crd_files()))))
        _KUBECONFIG[:] = [str(cp.kubeconfig)]
        kube = cp.client()
        _say("control plane ready; CRDs installed: applicationpersonas.dorgu.io, clusterpersonas.dorgu.io")
        for ns, labels in ((SYSTEM_NS, {}), (NS, {"dorgu.io/validate": "true"})):
            meta = {"name": ns, "labels": labels}
            kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": meta})
        _say(f"namespace/{NS} created (label dorgu.io/validate=true: the webhook checks it)")

        _step(2, "dorgu operator: five components, one process each (webhook in advisory mode)")
        operator = Operator(cp, work / "operator.log")
        _until(operator.ready, "the operator's /readyz")
        _say("operator ready: applicationpersona, clusterpersona, argocd (leader-elected), webhook,")
        _say("  websocket")

        _step(3, "dorgu generate on the sample app (deploy/demo-app)")
        out = work / APP / "k8s"
        _show(f"dorgu generate deploy/demo-app -o {APP}/k8s --name {APP} --namespace {NS}",
              _dorgu("generate", str(APP_DIR), "-o", str(out), "--name", APP, "--namespace", NS),
              strip=str(work))  # fmt: skip

        _step(4, "dorgu persona apply")
        _show(f"dorgu persona apply deploy/demo-app -n {NS} --name {APP}",
              _dorgu("persona", "apply", str(APP_DIR), "-n", NS, "--name", APP))  # fmt: skip

        _step(5, f"dorgu persona watch {APP} -n {NS} (in the background, over the operator's WebSocket)")
        watch = Watch(operator.ws_url)
        watch.until(f"{NS}/{APP}")
        _say(f"[persona watch] following {NS}/{APP}")

        _step(6, "A Deployment that breaks its persona: 1 replica (minimum 2), CPU limit 4 (maximum 1)")
        dep = yaml.safe_load((out / "deployment.yaml").read_text())
        bad = json.loads(json.dumps(dep))
        bad["spec"]["replicas"] = 1
        bad["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = "4"
        path = f"/apis/apps/v1/namespaces/{NS}/deployments"
        _say(f"$ kubectl apply -f {APP}/k8s/deployment.yaml   # edited: replicas 1, cpu limit 4")
        for w in _warnings_of(kube, "POST", path, bad):
            _say(f"Warning: {w}")
        _say(f"deployment.apps/{APP} created")
        _kubelet_stand_in(kube, APP, 1)
        _until(lambda: (_persona(kube).get("status") or {}).get("validation", {}).get("passed") is False,
               "the persona to fail validation")  # fmt: skip
        line = watch.until(f"{NS}/{APP}", "phase=Degraded", "health=Healthy")
        _say(f"[persona watch] {line}")

        _step(7, "Fix the Deployment as generated (2 replicas, CPU limit 1)")
        _say(f"$ kubectl apply -f {APP}/k8s/deployment.yaml")
        cur = kube.get(f"{path}/{APP}")
        cur["spec"] = dep["spec"]
        warnings = _warnings_of(kube, "PUT", f"{path}/{APP}", cur)
        for w in warnings:
            _say(f"Warning: {w}")
        _say(f"deployment.apps/{APP} configured" + ("" if warnings else " (no warnings)"))
        _kubelet_stand_in(kube, APP, 2)
        _until(lambda: (_persona(kube).get("status") or {}).get("phase") == "Active", "the persona Active")
        line = watch.until(f"{NS}/{APP}", "phase=Active", "health=Healthy", "validation=passed")
        _say(f"[persona watch] {line}")
        watch.stop()

        _step(8, "What the cluster says (kubectl get)")
        for api_version, kind, resource in (
            ("dorgu.io/v1", "ApplicationPersona", "applicationpersonas.dorgu.io"),
            ("apps/v1", "Deployment", "deployments.apps"),
        ):
            _say(f"$ kubectl get {resource} -n {NS}")
            _say(_without_age(format_table(kube.table(api_version, kind, namespace=NS))))
        v = (_persona(kube).get("status") or {}).get("validation") or {}
        _say(f"persona {APP}: validation passed={v.get('passed')}, {len(v.get('issues') or [])} issue(s)")

        _say("\nThe demo is done.")
        if wait:
            _say(
                "Everything stays up until Ctrl-C. In another shell:\n"
                f"  export KUBECONFIG={cp.kubeconfig}\n"
                f"  dorgu persona watch -A --operator-url={operator.ws_url}"
            )
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        _say("\nstopping: persona watch, dorgu operator, control plane")
    except DemoError as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    finally:
        if watch is not None:
            watch.stop()
        if operator is not None:
            rc = operator.stop()
            _say(f"dorgu operator stopped (exit {rc})")
        stack.close()
        _say("control plane stopped")
        with contextlib.suppress(OSError):
            for f in sorted(work.rglob("*"), reverse=True):
                f.unlink() if f.is_file() else f.rmdir()
            work.rmdir()
    return 0


def _without_age(table: str) -> str:
    """``table`` without its AGE column (the transcript must not depend on timing)."""
    lines = table.splitlines()
    if not lines or "AGE" not in lines[0].split():
        return table
    start = lines[0].index("AGE")
    end = start + len(lines[0][start:]) - len(lines[0][start:].lstrip("AGE").lstrip())
    return "\n".join((ln[:start] + ln[end:]).rstrip() for ln in lines)
