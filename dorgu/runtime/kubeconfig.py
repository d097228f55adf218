"""Resolve how to reach the API server — in the supervisor only — into plain :class:`ConnectionSettings`.

The ``kubernetes`` package does what it is good at here: kubeconfig merging, exec plugins, auth providers
and every other credential form. Children never import it, and the supervisor imports it only when it is
needed: importing it costs about 0.3 CPU-seconds (it pulls in requests, oauthlib, dateutil, pydantic), which
is a third of the operator's start. The two plain cases are read directly with the same rules kubectl keeps:

* in-cluster: ``https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT`` (IPv6 in brackets), the
  ServiceAccount token file and CA file, both required and non-empty;
* a kubeconfig whose context names a cluster with only ``server``, ``certificate-authority``
  (-``data``) and ``insecure-skip-tls-verify``, and a user with only ``client-certificate``/``client-key``
  (-``data``), ``token`` and ``tokenFile``; relative file names are relative to the kubeconfig's directory.

Anything else (exec plugins, auth providers, proxies, basic auth,
impersonation, a missing context) goes to the package, which also words the errors.

Credential rules:

* In-cluster: the ServiceAccount token file is named, not read — kubelet rotates it, and every process
  re-reads it when it changes.
* A kubeconfig user with ``tokenFile``: named the same way.
* A kubeconfig user with ``exec`` or ``auth-provider`` (tokens that expire in minutes): the supervisor writes
  the current token to a file of its own (0600, replaced atomically) and refreshes it periodically with
  :class:`TokenRefresher`; children read that file like any token file. The file lives in ``run_dir``,
  which must be a private directory (:func:`private_dir`: a real directory, not a symlink, owned by this
  user, mode 0700 — created so when missing); each write goes through a fresh temporary file opened
  ``O_CREAT|O_EXCL|O_NOFOLLOW``, so nothing another user planted is ever opened or followed.
* A static ``token`` or client certificate: passed as data.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import secrets
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.config import ConnectionSettings

log = logging.getLogger("dorgu.kubeconfig")

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
SA_DIR_ENV = "DORGU_SA_DIR"
"""Overrides :data:`SA_DIR` (tests run the in-cluster path outside a pod with a token file of their own)."""


def _sa_dir() -> Path:
    return Path(os.environ.get(SA_DIR_ENV) or SA_DIR)


class ConfigError(Exception):
    """No usable cluster configuration; the message says what was tried."""


@dataclass(frozen=True, kw_only=True)
class ClusterAccess:
    """Where to connect, and (for expiring credentials) how to keep the token fresh."""

    connection: ConnectionSettings
    """What children get."""
    refresher: TokenRefresher | None = None
    """Run in the supervisor when the token comes from an exec plugin or auth provider."""
    namespace: str | None = None
    """The namespace of the context, or of the in-cluster ServiceAccount."""


def private_dir(path: Path) -> Path:
    """``path`` as a directory only this user can enter: created 0700 when missing; an existing one must be
    a real directory (not a symlink) owned by this user with no group or other permissions. Raises
    :class:`ConfigError` naming what is wrong (never repairs someone else's directory)."""
    try:
        path.mkdir(mode=0o700, parents=False)
    except FileExistsError:
        pass
    except OSError as e:
        raise ConfigError(f"cannot create the private directory {path}: {e}") from e
    st = os.lstat(path)
    refuse = "refusing to keep tokens there"
    if not stat.S_ISDIR(st.st_mode):
        raise ConfigError(f"{path} must be a directory, not a symlink or a file: {refuse}")
    if st.st_uid != os.getuid():
        raise ConfigError(f"{path} belongs to uid {st.st_uid}, not to this user: {refuse}")
    if st.st_mode & 0o077:
        raise ConfigError(f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; it must be 0700: {refuse}")
    return path


def in_cluster_available(*, token_file: Path | None = None) -> bool:
    token_file = token_file if token_file is not None else _sa_dir() / "token"
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and token_file.exists()


def resolve(
    *,
    kubeconfig: str | None = None,
    context: str | None = None,
    in_cluster: bool | None = None,
    run_dir: Path,
    user_agent: str = "dorgu",
    token_file: Path | None = None,
    ca_file: Path | None = None,
    namespace_file: Path | None = None,
) -> ClusterAccess:
    """In-cluster config when asked (or when no kubeconfig is given and we run in a pod), else kubeconfig
    (``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config``). The ServiceAccount files default to
    :data:`SA_DIR` (or ``$DORGU_SA_DIR``)."""
    sa = _sa_dir()
    token_file = token_file if token_file is not None else sa / "token"
    ca_file = ca_file if ca_file is not None else sa / "ca.crt"
    namespace_file = namespace_file if namespace_file is not None else sa / "namespace"
    if in_cluster or (
        in_cluster is None and kubeconfig is None and in_cluster_available(token_file=token_file)
    ):
        return _in_cluster(
            token_file=token_file, ca_file=ca_file, namespace_file=namespace_file, user_agent=user_agent
        )
    return _from_kubeconfig(kubeconfig=kubeconfig, context=context, run_dir=run_dir, user_agent=user_agent)


def _in_cluster(*, token_file: Path, ca_file: Path, namespace_file: Path, user_agent: str) -> ClusterAccess:
    host = os.environ.get("KUBERNETES_SERVICE_HOST", "")
    port = os.environ.get("KUBERNETES_SERVICE_PORT", "")
    if not host or not port:
        raise ConfigError(
            "in-cluster configuration failed: KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be set"
        )
    for what, f in (("token", token_file), ("CA", ca_file)):
        try:
            if not f.read_bytes().strip():
                raise ConfigError(f"in-cluster configuration failed: the {what} file {f} is empty")
        except OSError as e:
            raise ConfigError(f"in-cluster configuration failed: cannot read the {what} file {f}: {e}") from e
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    ns = namespace_file.read_text().strip() if namespace_file.exists() else None
    return ClusterAccess(
        connection=ConnectionSettings(
            server=f"https://{host}:{port}",
            ca_data=ca_file.read_bytes(),
            token_file=str(token_file),
            user_agent=user_agent,
        ),
        namespace=ns,
    )


_PLAIN_CLUSTER_KEYS = {
    "server",
    "certificate-authority",
    "certificate-authority-data",
    "insecure-skip-tls-verify",
}
_PLAIN_USER_KEYS = {
    "client-certificate", "client-certificate-data", "client-key", "client-key-data", "token", "tokenFile",
}  # fmt: skip


def _plain_kubeconfig(path: str, context: str | None, user_agent: str) -> ClusterAccess | None:
    """The connection of a kubeconfig that needs nothing but files and data (see the module's rules), or
    None when it needs the ``kubernetes`` package."""
    try:
        doc = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError):
        return None  # the package words the error
    if not isinstance(doc, dict):
        return None

    def entry(kind: str, name: object) -> dict[str, Any] | None:
        for item in doc.get(f"{kind}s") or []:
            if isinstance(item, dict) and item.get("name") == name:
                value = item.get(kind) or {}
                return value if isinstance(value, dict) else None
        return None

    ctx = entry("context", context or doc.get("current-context"))
    if ctx is None:
        return None
    cluster, user = entry("cluster", ctx.get("cluster")), entry("user", ctx.get("user"))
    if cluster is None or user is None or not isinstance(cluster.get("server"), str):
        return None
    if set(cluster) - _PLAIN_CLUSTER_KEYS or set(user) - _PLAIN_USER_KEYS:
        return None
    base = Path(path).parent

    def material(obj: dict[str, Any], key: str) -> bytes | None:
        # `<key>-data` is base64 of the PEM; `<key>` names a file, relative to the kubeconfig's directory.
        if obj.get(f"{key}-data"):
            return base64.b64decode(obj[f"{key}-data"])
        if obj.get(key):
            return (base / str(obj[key])).read_bytes()
        return None

    try:
        ca, cert, key = (
            material(cluster, "certificate-authority"),
            material(user, "client-certificate"),
            material(user, "client-key"),
        )
    except (OSError, ValueError):
        return None  # the package words the error
    token_file = str(base / str(user["tokenFile"])) if user.get("tokenFile") else None
    token = str(user["token"]) if user.get("token") and token_file is None else None
    return ClusterAccess(
        connection=ConnectionSettings(
            server=cluster["server"].rstrip("/"),
            ca_data=ca,
            insecure_skip_tls_verify=bool(cluster.get("insecure-skip-tls-verify")),
            client_cert_data=cert,
            client_key_data=key,
            token=token,
            token_file=token_file,
            user_agent=user_agent,
        ),
        namespace=ctx.get("namespace"),
    )


def _kubeconfig_user(path: str, context: str | None) -> tuple[dict[str, Any], str | None]:
    """The raw ``user`` entry and namespace of the active context (to see which kind of credential it is)."""
    doc = yaml.safe_load(Path(path).read_text()) or {}
    ctx_name = context or doc.get("current-context")
    ctx = next((c.get("context") or {} for c in doc.get("contexts") or [] if c.get("name") == ctx_name), {})
    user = next((u.get("user") or {} for u in doc.get("users") or [] if u.get("name") == ctx.get("user")), {})
    return user, ctx.get("namespace")


def _from_kubeconfig(
    *, kubeconfig: str | None, context: str | None, run_dir: Path, user_agent: str
) -> ClusterAccess:
    path = (
        kubeconfig
        or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0]
        or str(Path.home() / ".kube/config")
    )
    if not Path(path).exists():
        raise ConfigError(
            f"no kubeconfig at {path} and not running in a cluster; pass --kubeconfig or set KUBECONFIG"
        )
    plain = _plain_kubeconfig(path, context, user_agent)
    if plain is not None:
        return plain
    return _package_kubeconfig(path, context, run_dir=run_dir, user_agent=user_agent)


def _package_kubeconfig(path: str, context: str | None, *, run_dir: Path, user_agent: str) -> ClusterAccess:
    """The connection as the ``kubernetes`` package resolves the kubeconfig (every credential form)."""
    try:
        cfg = _load(path, context)
    except Exception as e:
        raise ConfigError(f"cannot load kubeconfig {path}: {e}") from e
    user, namespace = _kubeconfig_user(path, context)

    ca_data = Path(cfg.ssl_ca_cert).read_bytes() if cfg.ssl_ca_cert else None
    cert = Path(cfg.cert_file).read_bytes() if cfg.cert_file else None
    key = Path(cfg.key_file).read_bytes() if cfg.key_file else None
    token = _token(cfg)
    common: dict[str, Any] = {
        "server": cfg.host,
        "ca_data": ca_data,
        "insecure_skip_tls_verify": not cfg.verify_ssl,
        "client_cert_data": cert,
        "client_key_data": key,
        "user_agent": user_agent,
    }
    if user.get("tokenFile"):
        return ClusterAccess(
            connection=ConnectionSettings(token_file=str(user["tokenFile"]), **common), namespace=namespace
        )
    if token and ("exec" in user or "auth-provider" in user):
        tf = private_dir(run_dir) / "token"
        refresher = TokenRefresher(kubeconfig=path, context=context, token_file=tf)
        refresher.write(token)
        return ClusterAccess(
            connection=ConnectionSettings(token_file=str(tf), **common),
            refresher=refresher,
            namespace=namespace,
        )
    return ClusterAccess(connection=ConnectionSettings(token=token, **common), namespace=namespace)


@dataclass
class TokenRefresher:
    """Keeps an expiring kubeconfig token (exec plugin / auth provider) fresh in ``token_file``."""

    kubeconfig: str
    """The kubeconfig to re-load."""
    context: str | None
    """Its context."""
    token_file: Path
    """Where children read the token."""
    interval_s: float = 60.0
    """How often to re-run the plugin (exec tokens typically live 5-15 minutes)."""
    clock: Clock = field(default_factory=RealClock)
    """The clock ``interval_s`` is measured on."""

    def write(self, token: str) -> None:
        # A fresh name opened O_EXCL|O_NOFOLLOW: a file or symlink planted under any name is never opened.
        tmp = self.token_file.with_name(f".{self.token_file.name}.{secrets.token_hex(8)}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "w") as fh:
                fh.write(token)
            os.replace(tmp, self.token_file)  # atomic: a reader sees the old or the new token, never half
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def fetch(self) -> str | None:
        return _token(_load(self.kubeconfig, self.context))

    async def run(self) -> None:
        """Refresh forever (the blocking plugin call runs off the event loop)."""
        while True:
            await self.clock.sleep(self.interval_s)
            try:
                token = await asyncio.to_thread(self.fetch)
            except Exception as e:
                log.warning("token refresh failed: %s", e)
                continue
            if token and token != self.token_file.read_text():
                self.write(token)
                log.info("refreshed the API token from the kubeconfig's credential plugin")


def _load(path: str, context: str | None) -> Any:
    """The kubernetes package's resolution of a kubeconfig (runs exec plugins and auth providers)."""
    from kubernetes import client, config

    cfg = client.Configuration()
    config.load_kube_config(config_file=path, context=context, client_configuration=cfg, persist_config=False)
    return cfg


def _token(cfg: Any) -> str | None:
    """The bearer token the kubernetes package stored (its api_key key has changed across versions)."""
    keys = cfg.api_key or {}
    bearer = str(keys.get("BearerToken") or keys.get("authorization") or "")
    return bearer.removeprefix("Bearer ").strip() or None
