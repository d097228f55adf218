"""A real, local Kubernetes control plane: etcd + kube-apiserver + kube-controller-manager on loopback.

Like controller-runtime's envtest, but with a controller-manager, because dorgu's tests need what it does:
namespaces that finish terminating, owner-reference garbage collection, and the ``default`` ServiceAccount
(without the two serviceaccount controllers every Pod is rejected). The ``deployment`` and ``replicaset``
controllers never run, so a test owns a Deployment's ``status``.

Rules this module keeps:

* Every child process dies with us: each is started in its own session (so a terminal's Ctrl-C reaches only
  us, and we stop them in order) with ``PR_SET_PDEATHSIG=SIGKILL`` (so a ``kill -9`` of Python leaves no
  orphan).
* Nothing is left behind: ``stop()`` is idempotent, runs at interpreter exit, and removes the work directory
  and etcd's data (on ``/dev/shm`` by default: it is memory-backed, so fsync costs nothing).
* Ports are free loopback ports chosen at start; a clash (a port taken between choosing and binding) is
  detected from the process's own log and retried with new ports.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import datetime as dt
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from certs.pki import KeyPair, make_ca, make_rsa_key_pem, make_serving_cert
from dorgu.envtest.binaries import Binaries, ensure_binaries
from dorgu.envtest.http import ApiError, HarnessClient
from dorgu.runtime.config import ConnectionSettings

DEFAULT_CONTROLLERS = ("namespace", "garbagecollector", "serviceaccount", "serviceaccount-token")
"""kube-controller-manager controllers the harness runs; never ``deployment``/``replicaset``."""

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # runs in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ControlPlaneError(RuntimeError):
    """The control plane could not start (or restart); the message says what failed and what to do."""


class PortClash(ControlPlaneError):
    """A component could not bind its port."""


@dataclass(frozen=True, kw_only=True)
class ControlPlaneSettings:
    """How to run a local control plane. All fields have test-friendly defaults."""

    crds: tuple[Path, ...] = ()
    """CRD manifest files (YAML, may hold several documents) installed and waited for at start."""
    extra_apiserver_flags: tuple[str, ...] = ()
    """More ``--flag=value`` arguments for kube-apiserver, e.g. an audit policy and log."""
    controllers: tuple[str, ...] = DEFAULT_CONTROLLERS
    """kube-controller-manager's ``--controllers``; empty means do not run it at all."""
    etcd_on_shm: bool = True
    """Keep etcd's data on ``/dev/shm`` (memory-backed) when it exists; otherwise in the work directory."""
    work_dir_parent: Path | None = None
    """Where the throwaway work directory is created (default: the system temp directory)."""
    ready_timeout_s: float = 90.0
    """How long each component may take to become ready."""
    wait_for_default_service_account: bool = True
    """Block start() until ``default/default`` ServiceAccount exists, so Pods can be created at once."""
    binaries: Binaries | None = None
    """Use these executables instead of the cached (built on first use) ones."""
    log: Callable[[str], None] | None = None
    """Progress messages (default: stderr)."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class _Proc:
    name: str
    args: list[str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        logf = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child, closed right after
        try:
            self.popen = subprocess.Popen(
                self.args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            logf.close()

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, *, sig: signal.Signals = signal.SIGTERM, grace_s: float = 10.0) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                p.send_signal(sig)
            try:
                p.wait(grace_s)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.popen = None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


@dataclass
class ControlPlane:
    """One local control plane. Use as a context manager, or call :meth:`start` and :meth:`stop`.

    After start: :attr:`server` (``https://127.0.0.1:<port>``), :attr:`kubeconfig` (admin), :attr:`ca_file`,
    :attr:`admin_token`, :meth:`client` for a harness client, :meth:`service_account_token` for other
    identities, and :meth:`restart_apiserver` / :meth:`stop_apiserver` / :meth:`start_apiserver` for faults.
    """

    settings: ControlPlaneSettings = field(default_factory=ControlPlaneSettings)
    work_dir: Path = field(init=False)
    server: str = field(init=False, default="")
    kubeconfig: Path = field(init=False)
    ca_file: Path = field(init=False)
    admin_token: str = field(init=False, default="")
    etcd_url: str = field(init=False, default="")
    apiserver_port: int = field(init=False, default=0)
    _procs: dict[str, _Proc] = field(init=False, default_factory=dict)
    _etcd_dir: Path | None = field(init=False, default=None)
    _ca: KeyPair | None = field(init=False, default=None)
    _started: bool = field(init=False, default=False)
    _client: HarnessClient | None = field(init=False, default=None)

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _log(self, msg: str) -> None:
        (self.settings.log or (lambda m: print(f"[dorgu envtest] {m}", file=sys.stderr, flush=True)))(msg)

    def start(self) -> ControlPlane:
        if self._started:
            return self
        bins = self.settings.binaries or ensure_binaries()
        t0 = time.monotonic()
        parent = self.settings.work_dir_parent
        _sweep_stale(Path(str(parent) if parent else tempfile.gettempdir()), "dorgu-envtest-")
        _sweep_stale(Path("/dev/shm"), "dorgu-etcd-")
        self.work_dir = Path(tempfile.mkdtemp(prefix="dorgu-envtest-", dir=str(parent) if parent else None))
        (self.work_dir / _OWNER).write_text(str(os.getpid()))
        self._started = True
        atexit.register(self.stop)
        try:
            self._write_pki()
            for attempt in range(3):
                try:
                    self._start_etcd(bins)
                    self._start_apiserver(bins, port=free_port())
                    break
                except PortClash as e:
                    self._log(f"{e}; retrying with other ports (attempt {attempt + 2}/3)")
                    for name in ("kube-apiserver", "etcd"):
                        if name in self._procs:
                            self._procs.pop(name).stop(sig=signal.SIGKILL)
            else:
                raise ControlPlaneError("could not find free loopback ports after 3 attempts")
            self._write_kubeconfig(self.kubeconfig, token=self.admin_token, user="admin")
            self._wait_for_default_namespace()
            if self.settings.controllers:
                self._start_controller_manager(bins)
            if self.settings.crds:
                self.install_crds(self.settings.crds)
            if self.settings.controllers and self.settings.wait_for_default_service_account:
                self._wait_for_default_service_account()
        except BaseException:
            self.stop()
            raise
        self._log(
            f"control plane up at {self.server} in {time.monotonic() - t0:.1f} s "
            f"(kubeconfig {self.kubeconfig})"
        )
        return self

    def stop(self) -> None:
        """Stop every component and remove every file; safe to call twice."""
        if not self._started:
            return
        self._started = False
        for name in ("kube-controller-manager", "kube-apiserver", "etcd"):
            proc = self._procs.pop(name, None)
            if proc:
                proc.stop()
        if self._etcd_dir:
            shutil.rmtree(self._etcd_dir, ignore_errors=True)
        shutil.rmtree(self.work_dir, ignore_errors=True)
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running components, by name."""
        return {n: p.popen.pid for n, p in self._procs.items() if p.popen is not None and p.alive()}

    # -- components --------------------------------------------------------------------------------

    def _write_pki(self) -> None:
        pki = self.work_dir / "pki"
        pki.mkdir()
        self._ca = make_ca(common_name="dorgu-envtest-ca", validity=dt.timedelta(days=2))
        serving = make_serving_cert(
            ca=self._ca,
            dns_names=["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"],
            ip_addresses=["127.0.0.1", "10.0.0.1"],
            validity=dt.timedelta(days=2),
        )
        sa_private, sa_public = make_rsa_key_pem()
        self.admin_token = secrets.token_urlsafe(32)
        files = {
            "ca.crt": self._ca.cert_pem,
            "ca.key": self._ca.key_pem,
            "apiserver.crt": serving.cert_pem,
            "apiserver.key": serving.key_pem,
            "sa.key": sa_private,
            "sa.pub": sa_public,
            "tokens.csv": f'{self.admin_token},admin,admin-uid,"system:masters"\n'.encode(),
        }
        for name, data in files.items():
            (pki / name).write_bytes(data)
            (pki / name).chmod(0o600)
        self.ca_file = pki / "ca.crt"
        self.kubeconfig = self.work_dir / "kubeconfig"

    def _start_etcd(self, bins: Binaries) -> None:
        shm = Path("/dev/shm")
        if self.settings.etcd_on_shm and shm.is_dir() and os.access(shm, os.W_OK):
            self._etcd_dir = Path(tempfile.mkdtemp(prefix="dorgu-etcd-", dir=shm))
            (self._etcd_dir / _OWNER).write_text(str(os.getpid()))
        else:
            self._etcd_dir = self.work_dir / "etcd"
            self._etcd_dir.mkdir(exist_ok=True)
        client, peer = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client}"
        proc = _Proc(
            "etcd",
            [
                str(bins.etcd),
                f"--data-dir={self._etcd_dir / 'data'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--log-level=warn",
                "--logger=zap",
            ],
            self.work_dir / "etcd.log",
        )
        self._procs["etcd"] = proc
        proc.start()
        self._wait(proc, lambda: _http_ok(f"{self.etcd_url}/health"), what="etcd /health")

    def _apiserver_args(self, bins: Binaries) -> list[str]:
        pki = self.work_dir / "pki"
        return [
            str(bins.kube_apiserver),
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.apiserver_port}",
            "--insecure-port=0",
            f"--tls-cert-file={pki / 'apiserver.crt'}",
            f"--tls-private-key-file={pki / 'apiserver.key'}",
            f"--client-ca-file={pki / 'ca.crt'}",
            f"--token-auth-file={pki / 'tokens.csv'}",
            f"--service-account-key-file={pki / 'sa.pub'}",
            f"--service-account-signing-key-file={pki / 'sa.key'}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            "--api-audiences=https://kubernetes.default.svc.cluster.local",
            "--service-cluster-ip-range=10.0.0.0/24",
            "--authorization-mode=RBAC",
            "--allow-privileged=true",
            "--profiling=false",
            f"--cert-dir={self.work_dir / 'apiserver-certs'}",
            *self.settings.extra_apiserver_flags,
        ]

    def _start_apiserver(self, bins: Binaries, *, port: int) -> None:
        self.apiserver_port = port
        self.server = f"https://127.0.0.1:{port}"
        self._run_apiserver(bins)

    def _run_apiserver(self, bins: Binaries) -> None:
        proc = _Proc("kube-apiserver", self._apiserver_args(bins), self.work_dir / "kube-apiserver.log")
        self._procs["kube-apiserver"] = proc
        proc.start()
        self._client = None
        self._wait(proc, self._apiserver_ready, what="kube-apiserver /readyz")

    def _apiserver_ready(self) -> bool:
        try:
            return self.client().request_raw("GET", "/readyz", accept="text/plain").strip() == b"ok"
        except (ApiError, OSError):
            return False

    def _start_controller_manager(self, bins: Binaries) -> None:
        pki = self.work_dir / "pki"
        kcm_kubeconfig = self.work_dir / "kube-controller-manager.kubeconfig"
        self._write_kubeconfig(kcm_kubeconfig, token=self.admin_token, user="admin")
        proc = _Proc(
            "kube-controller-manager",
            [
                str(bins.kube_controller_manager),
                f"--kubeconfig={kcm_kubeconfig}",
                f"--controllers={','.join(self.settings.controllers)}",
                "--leader-elect=false",
                "--port=0",
                "--secure-port=0",
                f"--service-account-private-key-file={pki / 'sa.key'}",
                f"--root-ca-file={pki / 'ca.crt'}",
                "--use-service-account-credentials=false",
                "--concurrent-gc-syncs=5",
                "--namespace-sync-period=5s",
            ],
            self.work_dir / "kube-controller-manager.log",
        )
        self._procs["kube-controller-manager"] = proc
        proc.start()

    def _wait(self, proc: _Proc, ready: Callable[[], bool], *, what: str) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            if not proc.alive():
                tail = proc.log_tail()
                if "address already in use" in tail:
                    raise PortClash(f"{proc.name} could not bind its port (address already in use)")
                raise ControlPlaneError(
                    f"{proc.name} exited before {what} answered; last lines of {proc.log_path}:\n{tail}"
                )
            if ready():
                return
            time.sleep(0.1)
        raise ControlPlaneError(
            f"{what} not ready after {self.settings.ready_timeout_s:.0f} s; last lines of {proc.log_path}:\n"
            f"{proc.log_tail()}"
        )

    def _wait_for_default_namespace(self) -> None:
        # /readyz can answer before the apiserver's bootstrap controller has created `default`.
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            try:
                self.client().get("/api/v1/namespaces/default")
                return
            except ApiError as e:
                if e.code != 404:
                    raise
            time.sleep(0.05)
        raise ControlPlaneError("kube-apiserver did not create the default namespace")

    def _wait_for_default_service_account(self) -> None:
        deadline = time.monotonic() + self.settings.ready_timeout_s
        while time.monotonic() < deadline:
            # 1.20's ServiceAccount admission also wants the account's token Secret before it admits a Pod.
            try:
                if self.client().get("/api/v1/namespaces/default/serviceaccounts/default").get("secrets"):
                    return
            except ApiError as e:
                if e.code != 404:
                    raise
            if not self._procs["kube-controller-manager"].alive():
                p = self._procs["kube-controller-manager"]
                raise ControlPlaneError(
                    f"kube-controller-manager exited; last lines of {p.log_path}:\n{p.log_tail()}"
                )
            time.sleep(0.1)
        raise ControlPlaneError(
            "the default ServiceAccount did not appear: is kube-controller-manager running?"
        )

    # -- faults ------------------------------------------------------------------------------------

    def stop_apiserver(self, *, sig: signal.Signals = signal.SIGKILL) -> None:
        """Stop kube-apiserver (SIGKILL by default: a crash, every watch breaks at once)."""
        proc = self._procs.pop("kube-apiserver", None)
        if proc:
            proc.stop(sig=sig)
        self._client = None

    def start_apiserver(self) -> None:
        """Start kube-apiserver again on the same port and etcd; returns once it is ready."""
        if "kube-apiserver" in self._procs:
            raise ControlPlaneError("kube-apiserver is already running")
        self._run_apiserver(self.settings.binaries or ensure_binaries())

    def restart_apiserver(self, *, sig: signal.Signals = signal.SIGKILL) -> float:
        """Kill and start kube-apiserver in place; returns how long it was unavailable (seconds)."""
        t0 = time.monotonic()
        self.stop_apiserver(sig=sig)
        self.start_apiserver()
        return time.monotonic() - t0

    # -- access ------------------------------------------------------------------------------------

    def client(self, *, token: str | None = None, user_agent: str = "dorgu-envtest") -> HarnessClient:
        """A harness client; the admin's unless ``token`` is given."""
        if token is not None or user_agent != "dorgu-envtest":
            return HarnessClient(
                self.server, token or self.admin_token, str(self.ca_file), user_agent=user_agent
            )
        if self._client is None:
            self._client = HarnessClient(self.server, self.admin_token, str(self.ca_file))
        return self._client

    def connection(self, *, token: str | None = None, user_agent: str = "dorgu-test") -> ConnectionSettings:
        """Plain connection settings for the runtime's client (admin unless ``token`` is given)."""
        return ConnectionSettings(
            server=self.server,
            ca_data=self.ca_file.read_bytes(),
            token=token or self.admin_token,
            user_agent=user_agent,
        )

    def env(self) -> dict[str, str]:
        """Environment for a child process that should talk to this control plane."""
        return {"KUBECONFIG": str(self.kubeconfig)}

    def _write_kubeconfig(self, path: Path, *, token: str, user: str) -> None:
        cfg = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "envtest",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": user, "user": {"token": token}}],
            "contexts": [
                {
                    "name": f"{user}@envtest",
                    "context": {"cluster": "envtest", "user": user, "namespace": "default"},
                }
            ],
            "current-context": f"{user}@envtest",
        }
        path.write_text(yaml.safe_dump(cfg, sort_keys=False))
        path.chmod(0o600)

    def write_kubeconfig(self, path: Path, *, token: str, user: str) -> Path:
        """Write a kubeconfig for another identity (e.g. a ServiceAccount token)."""
        self._write_kubeconfig(path, token=token, user=user)
        return path

    def service_account_token(
        self,
        namespace: str,
        name: str,
        *,
        expiration_seconds: int = 3600,
        audiences: Sequence[str] = (),
        create: bool = True,
    ) -> str:
        """A bound token for a ServiceAccount from the TokenRequest API (creating the account if needed)."""
        c = self.client()
        if create:
            with contextlib.suppress(ApiError):
                c.post(
                    "/api/v1/namespaces",
                    {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
                )
            try:
                c.post(
                    f"/api/v1/namespaces/{namespace}/serviceaccounts",
                    {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}},
                )
            except ApiError as e:
                if e.code != 409:
                    raise
        spec: dict[str, Any] = {"expirationSeconds": expiration_seconds}
        if audiences:
            spec["audiences"] = list(audiences)
        resp = c.post(
            f"/api/v1/namespaces/{namespace}/serviceaccounts/{name}/token",
            {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec},
        )
        return str(resp["status"]["token"])

    def install_crds(self, paths: Iterable[Path], *, timeout_s: float = 30.0) -> list[str]:
        """Create or update the CRDs in ``paths`` and wait until each is Established; returns their names."""
        c = self.client()
        names = []
        for path in paths:
            for doc in yaml.safe_load_all(Path(path).read_text()):
                if not doc:
                    continue
                if doc.get("kind") != "CustomResourceDefinition":
                    raise ControlPlaneError(
                        f"{path}: expected CustomResourceDefinition, found {doc.get('kind')}"
                    )
                c.apply(doc)
                names.append(doc["metadata"]["name"])
        deadline = time.monotonic() + timeout_s
        for name in names:
            while True:
                crd = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
                conds = {x["type"]: x["status"] for x in (crd.get("status") or {}).get("conditions") or []}
                if conds.get("Established") == "True":
                    break
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"CRD {name} not Established after {timeout_s:.0f} s: {conds}")
                time.sleep(0.05)
        # Discovery for the new groups lags Established by a moment; wait so callers can use them at once.
        for name in names:
            crd = c.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
            for v in crd["spec"]["versions"]:
                while True:
                    try:
                        c.resource(f"{group}/{v['name']}", kind, refresh=True)
                        break
                    except (LookupError, ApiError):
                        if time.monotonic() > deadline:
                            raise ControlPlaneError(
                                f"{kind} not in discovery after {timeout_s:.0f} s"
                            ) from None
                        time.sleep(0.05)
        return names

    def apply_manifests(self, paths: Iterable[Path]) -> list[dict[str, Any]]:
        """Create or replace every object in the YAML files (harness use: fixtures and samples)."""
        c = self.client()
        out = []
        for path in paths:
            for doc in yaml.safe_load_all(Path(path).read_text()):
                if doc:
                    out.append(c.apply(doc))
        return out


_OWNER = "owner.pid"


def _sweep_stale(parent: Path, prefix: str) -> None:
    """Remove work directories left by a control plane whose owner was killed (kill -9 cannot clean up)."""
    if not parent.is_dir():
        return
    for d in parent.glob(f"{prefix}*"):
        try:
            pid = int((d / _OWNER).read_text())
        except (OSError, ValueError):
            continue
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            shutil.rmtree(d, ignore_errors=True)
        except PermissionError:
            pass


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@contextlib.contextmanager
def control_plane(settings: ControlPlaneSettings | None = None) -> Iterator[ControlPlane]:
    """``with control_plane(...) as cp:`` — start one, and always stop it."""
    cp = ControlPlane(settings or ControlPlaneSettings())
    with cp:
        yield cp
