"""Every probe path `dorgu generate` writes for a Python or Node fixture app is served: the app is started
with its real framework (Flask's server, uvicorn, Django's runserver, node + Express from Debian's
node-express) and each liveness/readiness path must answer 2xx. The fixtures carry the traps real projects
have (a POST-only health hook, a test asserting /status is 404, a comment naming an old health path, a React
front end fetching /api/health, routers under prefixes), so a finder that takes any quoted string, drops a
prefix or ignores the method writes a path that answers 404/405 here.

Node fixtures that need packages Debian does not ship (NestJS, Fastify) are checked through the route
finder's output only (tests/cli/test_routes.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.cli.conftest import copy_app

DEADLINE_S = 120.0
"""How long an app may take to start listening on a busy machine."""
NODE_PATH = "/usr/share/nodejs"
"""Where Debian's node-* packages (node-express) install their modules."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server(app: str, port: int) -> list[str]:
    py = sys.executable
    return {
        "flask": [py, "-m", "flask", "--app", "app", "run", "--host", "127.0.0.1", "--port", str(port)],
        "fastapi": [py, "-m", "uvicorn", "main:app", "--host", "127.0.0.1", "--port", str(port)],
        "django": [py, "manage.py", "runserver", f"127.0.0.1:{port}", "--noreload"],
        "monorepo/services/billing": [
            py,
            "-m",
            "uvicorn",
            "billing:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        "express": ["node", "server.js"],
    }[app]


APPS = ("flask", "fastapi", "django", "monorepo/services/billing", "express")
EXPECTED = {
    # (liveness, readiness) that the fixtures' real routes give
    "flask": ("/api/v1/health", "/api/v1/ready"),
    "fastapi": ("/api/v1/health", "/api/v1/health"),
    "django": ("/api/healthz/", "/api/ready/"),
    "monorepo/services/billing": ("/healthz", "/healthz"),
    "express": ("/api/healthz", "/api/ready"),
}

TRAPS = {
    # paths a careless finder would take from these fixtures; the running app must not answer them with 2xx
    # (else the fixture would not catch that finder)
    "flask": ("/healthz", "/status", "/hooks/health", "/webhooks/health", "/health"),
    "fastapi": ("/health", "/api/health", "/api/v1/readiness", "/v1/health"),
    "django": ("/healthz/", "/api/hooks/health/"),
    "monorepo/services/billing": ("/health",),
    "express": ("/api/health", "/health", "/status", "/healthcheck", "/healthz"),
}


def _probe_paths(deployment: Path) -> tuple[str, str]:
    doc = yaml.safe_load(deployment.read_text())
    c = doc["spec"]["template"]["spec"]["containers"][0]
    return c["livenessProbe"]["httpGet"]["path"], c["readinessProbe"]["httpGet"]["path"]


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the app exited with {proc.returncode} before listening:\n{log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            time.sleep(0.2)
    pytest.fail(f"the app did not listen on {port} within {DEADLINE_S}s:\n{log.read_text()}")


def _get(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=30) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


@pytest.mark.parametrize("app", APPS)
def test_every_generated_probe_path_is_served(app: str, run_cli, tmp_path: Path) -> None:
    if app == "express" and (shutil.which("node") is None or not Path(NODE_PATH, "express").is_dir()):
        pytest.fail("node and Debian's node-express are needed (Makefile APT_PACKAGES installs them)")
    src = copy_app(app, tmp_path / "src")
    # the Express fixture's node_modules/express is a decoy for the source walk (it must not be read);
    # the real Express comes from NODE_PATH
    shutil.rmtree(src / "node_modules", ignore_errors=True)
    out = tmp_path / "out"
    r = run_cli("generate", str(src), "-o", str(out / "k8s"), "--kube-version", "1.20", "--skip-validation")
    assert r.code == 0, r.err
    paths = _probe_paths(out / "k8s" / "deployment.yaml")
    assert paths == EXPECTED[app]
    assert "Probes:" in r.out and "liveness   GET " + paths[0] in r.out

    port = _free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "PORT": str(port), "NODE_PATH": NODE_PATH, "PYTHONPATH": str(src)}
    with log.open("wb") as fh:
        proc = subprocess.Popen(_server(app, port), cwd=src, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_listening(proc, port, log)
        for path in dict.fromkeys(paths):
            status = _get(port, path)
            assert 200 <= status < 300, f"GET {path} answered {status}:\n{log.read_text()}"
        for path in TRAPS[app]:
            status = _get(port, path)
            assert not 200 <= status < 300, (
                f"the trap GET {path} answered {status}: the fixture lost its point"
            )
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)
