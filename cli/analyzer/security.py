"""The pod security a workload's image allows: non-root and a read-only root filesystem where the image
supports them, and a warning with the fix where it cannot (instead of a pod that cannot start).

Rules, in order:

1. **Root.** The image runs as root when its ``USER`` (the Dockerfile's, through stage inheritance) is
   ``root``/``0``, or — no ``USER`` given — when it is a well-known image whose process must start as root
   (nginx's and httpd's default images, the official database images whose entrypoint drops privileges
   itself, WordPress). Then the pod runs as the image says: no ``runAsNonRoot``, no read-only root, the
   runtime's default capabilities; the warning names the fix (an unprivileged image variant, or ``USER``).
2. **Ports below 1024.** A process without ``CAP_NET_BIND_SERVICE`` cannot bind them, and a non-root
   process in Kubernetes never has it. Such a pod runs as uid 0 with all capabilities dropped but
   ``NET_BIND_SERVICE`` (the root filesystem stays read-only); the warning names the fix: listen on a port
   ≥ 1024.
3. **Otherwise non-root**: ``runAsNonRoot``, the image's numeric ``USER`` (else the image's known uid, else
   :data:`NON_ROOT_UID`), read-only root, all capabilities dropped.

Paths the image writes (its ``VOLUME`` s, the known ones of well-known images, compose volumes) get a
volume each (an ``emptyDir``, or a PersistentVolumeClaim for a named compose volume) — see
:mod:`cli.analyzer.project` — so a read-only root filesystem does not stop them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NON_ROOT_UID = 65532
"""The uid given to an image that names no numeric non-root user (distroless's ``nonroot``)."""


@dataclass(frozen=True)
class KnownImage:
    """What the well-known image does when the Dockerfile or compose file says nothing."""

    root: bool = False
    """Its process must start as root."""
    uid: int = 0
    """Its non-root uid (0: none known)."""
    writes: tuple[str, ...] = ()
    """Paths it writes at run time."""
    fix: str = ""
    """How to run it unprivileged (for the warning)."""
    ports: tuple[int, ...] = ()
    """The TCP ports it listens on by default (for a compose service that lists none)."""


_DB_FIX = "use a non-root image such as bitnami's (uid 1001)"
KNOWN_IMAGES: dict[str, KnownImage] = {
    "nginx": KnownImage(
        ports=(80,),
        root=True,
        writes=("/var/cache/nginx", "/var/run"),
        fix="use nginxinc/nginx-unprivileged (uid 101, listens on 8080) and a port ≥ 1024",
    ),
    "nginxinc/nginx-unprivileged": KnownImage(ports=(8080,), uid=101, writes=("/var/cache/nginx", "/tmp")),
    "httpd": KnownImage(
        ports=(80,), root=True, writes=("/usr/local/apache2/logs",), fix="use a port ≥ 1024 and USER"
    ),
    "postgres": KnownImage(
        ports=(5432,), root=True, writes=("/var/lib/postgresql/data", "/var/run/postgresql"), fix=_DB_FIX
    ),
    "mysql": KnownImage(ports=(3306,), root=True, writes=("/var/lib/mysql", "/var/run/mysqld"), fix=_DB_FIX),
    "mariadb": KnownImage(ports=(3306,), root=True, writes=("/var/lib/mysql", "/run/mysqld"), fix=_DB_FIX),
    "mongo": KnownImage(ports=(27017,), root=True, writes=("/data/db", "/data/configdb"), fix=_DB_FIX),
    "redis": KnownImage(ports=(6379,), root=True, writes=("/data",), fix=_DB_FIX),
    "rabbitmq": KnownImage(ports=(5672,), root=True, writes=("/var/lib/rabbitmq",), fix=_DB_FIX),
    "wordpress": KnownImage(
        ports=(80,), root=True, writes=("/var/www/html",), fix="use bitnami/wordpress (uid 1001, port 8080)"
    ),
    "mcr.microsoft.com/mssql/server": KnownImage(ports=(1433,), uid=10001, writes=("/var/opt/mssql",)),
    "grafana/grafana": KnownImage(ports=(3000,), uid=472, writes=("/var/lib/grafana",)),
    "grafana/grafana-oss": KnownImage(ports=(3000,), uid=472, writes=("/var/lib/grafana",)),
    "prom/prometheus": KnownImage(ports=(9090,), uid=65534, writes=("/prometheus",)),
    "memcached": KnownImage(ports=(11211,), uid=11211),
}


def image_repository(image: str) -> str:
    """``docker.io/library/nginx:1.25@sha256:…`` → ``nginx``; ``ghcr.io/a/b:1`` → ``ghcr.io/a/b``."""
    ref = image.split("@", 1)[0]
    last = ref.rsplit("/", 1)
    if ":" in last[-1]:
        ref = ref[: ref.rindex(":")]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/", "library/"):
        if ref.startswith(prefix):
            ref = ref[len(prefix) :]
    return ref.lower()


def known_image(image: str) -> KnownImage | None:
    return KNOWN_IMAGES.get(image_repository(image))


@dataclass
class SecurityPlan:
    """The pod's and container's security settings, and why."""

    run_as_non_root: bool = True
    run_as_user: int | None = NON_ROOT_UID
    """``None``: as the image says (a root image)."""
    read_only_root: bool = True
    drop_all: bool = True
    add_capabilities: list[str] = field(default_factory=list)
    writes: list[str] = field(default_factory=list)
    """Paths the image writes (each gets a volume)."""
    warnings: list[str] = field(default_factory=list)


def _is_root(user: str) -> bool:
    return user.split(":", 1)[0] in ("root", "0")


def plan_security(*, who: str, image: str, user: str, ports: list[int], volumes: list[str]) -> SecurityPlan:
    """``who``: how warnings name the workload; ``image``: the external image the container descends from;
    ``user``: the Dockerfile's ``USER`` ("" when none); ``volumes``: the Dockerfile's ``VOLUME`` paths."""
    known = known_image(image) if image else None
    writes = list(dict.fromkeys([*volumes, *(known.writes if known else ())]))
    low = sorted({p for p in ports if p < 1024})
    if _is_root(user) or (not user and known is not None and known.root):
        why = f"USER {user}" if user else f"the image {image} starts as root"
        fix = (known.fix if known and known.fix else "") or "add a non-root USER (e.g. USER 10001)"
        if low and "port" not in fix:
            fix += f"; listen on a port ≥ 1024 instead of {', '.join(map(str, low))}"
        return SecurityPlan(
            run_as_non_root=False,
            run_as_user=None,
            read_only_root=False,
            drop_all=False,
            writes=writes,
            warnings=[
                f"{who}: runs as root ({why}), so the pod is not run as non-root and its root filesystem "
                f"is writable; to harden it, {fix}"
            ],
        )
    if low:
        return SecurityPlan(
            run_as_non_root=False,
            run_as_user=0,
            add_capabilities=["NET_BIND_SERVICE"],
            writes=writes,
            warnings=[
                f"{who}: port {', '.join(map(str, low))} < 1024 needs root with NET_BIND_SERVICE, so the "
                "pod runs as uid 0 (read-only root, all other capabilities dropped); to run it as non-root, "
                "listen on a port ≥ 1024 (e.g. 8080)"
            ],
        )
    uid = user.split(":", 1)[0]
    run_as = int(uid) if uid.isdigit() else (known.uid if known and known.uid and not user else NON_ROOT_UID)
    return SecurityPlan(run_as_user=run_as, writes=writes)
