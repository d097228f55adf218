"""Cluster access as the operator resolves it, rotated credentials, and children that come back synced."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dorgu.envtest import ApiError, ControlPlane, ControlPlaneSettings
from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import Unauthorized
from dorgu.runtime.kubeconfig import ConfigError, resolve
from tests.runtime.kit import create_configmaps, wait_until

ROOT = Path(__file__).resolve().parents[2]
KUBE_COMPONENTS = "tests.runtime.programs.kube_components"


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneSettings(controllers=("serviceaccount", "serviceaccount-token"))) as plane:
        yield plane


def version_via(conn) -> str:
    async def go() -> str:
        async with ApiClient(conn) as c:
            return str((await c.server_version())["gitVersion"])

    return asyncio.run(go())


def test_resolve_static_token_kubeconfig(cp: ControlPlane, tmp_path: Path) -> None:
    access = resolve(kubeconfig=str(cp.kubeconfig), run_dir=tmp_path)
    assert access.connection.token == cp.admin_token and access.refresher is None
    assert access.namespace == "default"
    assert version_via(access.connection) == "v1.20.2"


def test_resolve_in_cluster(cp: ControlPlane, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(cp.service_account_token("incluster", "op"))
    (sa / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    (sa / "namespace").write_text("incluster")
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(cp.apiserver_port))
    access = resolve(
        run_dir=tmp_path, token_file=sa / "token", ca_file=sa / "ca.crt", namespace_file=sa / "namespace"
    )
    assert access.connection.token_file == str(sa / "token") and access.connection.token is None
    assert access.namespace == "incluster"
    assert version_via(access.connection) == "v1.20.2"


def test_resolve_exec_plugin_refreshes_into_a_file(cp: ControlPlane, tmp_path: Path) -> None:
    source = tmp_path / "current-token"
    source.write_text(cp.admin_token)
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json, sys\n"
        f"tok = open({str(source)!r}).read().strip()\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
        " 'status': {'token': tok}}))\n"
    )
    kc = yaml.safe_load(cp.kubeconfig.read_text())
    kc["users"][0]["user"] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [str(plugin)],
        }
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kc))
    access = resolve(kubeconfig=str(path), run_dir=tmp_path / "run")
    assert access.refresher is not None and access.connection.token_file
    assert Path(access.connection.token_file).read_text() == cp.admin_token
    assert version_via(access.connection) == "v1.20.2"
    source.write_text("rotated-token")
    assert access.refresher.fetch() == "rotated-token"


def test_resolve_without_any_config_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no kubeconfig"):
        resolve(kubeconfig=str(tmp_path / "missing"), run_dir=tmp_path, in_cluster=False)


def _bound_token(cp: ControlPlane, ns: str, sa: str, secret: str) -> str:
    admin = cp.client()
    s = admin.post(
        f"/api/v1/namespaces/{ns}/secrets", {"metadata": {"name": secret}, "stringData": {"k": "v"}}
    )
    resp = admin.post(
        f"/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "expirationSeconds": 3600,
                "boundObjectRef": {
                    "kind": "Secret",
                    "apiVersion": "v1",
                    "name": secret,
                    "uid": s["metadata"]["uid"],
                },
            },
        },
    )
    return str(resp["status"]["token"])


def _supervisor(kubeconfig: Path, components: list[dict[str, object]]) -> tuple[subprocess.Popen[bytes], int]:
    port_probe = __import__("socket").socket()
    port_probe.bind(("127.0.0.1", 0))
    port = port_probe.getsockname()[1]
    port_probe.close()
    cfg = {
        "kubeconfig": str(kubeconfig),
        "components": components,
        "settings": {"metrics_host": "127.0.0.1", "metrics_port": port, "restart_backoff_initial_s": 0.1},
    }
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.runtime.programs.operator_main", json.dumps(cfg)],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    return proc, port


def _ready(port: int) -> bool:
    try:
        # A slow answer is not a "not ready": only a refusal or a non-200 answer is.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=30) as r:
            return r.status == 200
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    """The supervisor's component processes (not its fork server)."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(x) for x in (task / "children").read_text().split()]
    return [p for p in out if b"dorgu.runtime.child" in Path(f"/proc/{p}/cmdline").read_bytes()]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()


def test_rotated_token_file_keeps_every_child_working(cp: ControlPlane, tmp_path: Path) -> None:
    ns, sa = "rotation", "rotator"
    admin = cp.client()
    cp.service_account_token(ns, sa)  # creates the namespace and the account
    admin.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        {
            "metadata": {"name": "cm"},
            "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["*"]}],
        },
    )
    admin.post(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
        {
            "metadata": {"name": "cm"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm"},
            "subjects": [{"kind": "ServiceAccount", "name": sa, "namespace": ns}],
        },
    )
    old, new = _bound_token(cp, ns, sa, "bind-old"), _bound_token(cp, ns, sa, "bind-new")
    token_file = tmp_path / "token"
    token_file.write_text(old)
    kc = yaml.safe_load(cp.kubeconfig.read_text())
    kc["users"][0]["user"] = {"tokenFile": str(token_file)}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kc))

    comps = [
        {
            "name": n,
            "target": f"{KUBE_COMPONENTS}:heartbeat",
            "options": {"namespace": ns, "period": 0.2},
        }
        for n in ("one", "two")
    ]
    proc, _port = _supervisor(kubeconfig, comps)

    def beats() -> dict[str, int]:
        items = admin.get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
        return {
            i["metadata"]["name"]: int(i["data"]["n"])
            for i in items
            if i["metadata"]["name"].startswith("hb-")
        }

    try:
        wait_until(lambda: len(beats()) == 2 and min(beats().values()) >= 3, timeout=60, what="heartbeats")
        pids_before = sorted(_children(proc.pid))
        tmp = token_file.with_suffix(".new")
        tmp.write_text(new)
        os.replace(tmp, token_file)  # kubelet-style rotation: a new file in place
        admin.delete(f"/api/v1/namespaces/{ns}/secrets/bind-old")  # the old token is now invalid
        wait_until(lambda: _rejected(cp, old), timeout=60, what="the old token to be refused")
        after = beats()
        wait_until(
            lambda: all(beats()[k] >= after[k] + 5 for k in after),
            timeout=60,
            what="writes with the new token",
        )
        assert sorted(_children(proc.pid)) == pids_before  # the same processes: nobody crashed
    finally:
        _stop(proc)


def _rejected(cp: ControlPlane, token: str) -> bool:
    try:
        cp.client(token=token).get("/api/v1/namespaces/rotation/configmaps")
    except ApiError as e:
        return e.code == 401
    return False


def test_killed_child_comes_back_synced(cp: ControlPlane, tmp_path: Path) -> None:
    ns = "children"

    async def seed() -> None:
        async with ApiClient(cp.connection()) as c:
            await c.create(
                __import__("dorgu.runtime.resource", fromlist=["NAMESPACES"]).NAMESPACES,
                {"metadata": {"name": ns}},
            )
            await create_configmaps(c, namespace=ns, n=1000)

    asyncio.run(seed())
    proc, port = _supervisor(
        cp.kubeconfig,
        [{"name": "cache", "target": f"{KUBE_COMPONENTS}:informer", "options": {"namespace": ns}}],
    )
    try:
        wait_until(lambda: _ready(port), timeout=60, what="the first sync")
        (child,) = _children(proc.pid)
        os.kill(child, signal.SIGKILL)
        t0 = time.monotonic()
        wait_until(lambda: not _ready(port), timeout=60, what="readiness to drop")
        wait_until(
            lambda: _ready(port) and _children(proc.pid) not in ([], [child]),
            timeout=120,
            what="a new child to be up and synced",
        )
        took = time.monotonic() - t0
        print(f"\nkill -9 of a child caching 1,000 objects: back and synced in {took:.2f} s")
        assert _children(proc.pid) != [child]
    finally:
        _stop(proc)
    assert proc.returncode == 0


def test_unauthorized_is_typed(cp: ControlPlane) -> None:
    async def go() -> None:
        async with ApiClient(cp.connection(token="not-a-token")) as c:
            with pytest.raises(Unauthorized):  # a bad token is refused even where anonymous access is allowed
                await c.request("GET", "/api/v1/namespaces")

    asyncio.run(go())
