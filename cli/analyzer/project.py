"""A project as a set of workloads: one per compose service (as ``kompose`` converts a compose file), or the
one app of a directory without a compose file.

Rules:

* **No compose file**, or a compose file with a single service that builds from source: one workload, the
  app (:func:`cli.analyzer.analyze`), named like the app.
* **Otherwise every service is a workload**, named after the service (the Kubernetes Service keeps the
  compose host name, so ``http://api:5000`` in another service's environment still resolves). ``--service
  NAME`` keeps only that one.
* A service **built from source** is analyzed from its own build context: its Dockerfile (compose's
  ``build.dockerfile``), the ``build.target`` stage with what it inherits, its code (routes, probes), its
  compose ports, environment and dependencies. Its image is the registry's ``<name>``, built by CI.
* An **image-only** service (database, cache, proxy, Grafana…) runs its compose ``image`` with its compose
  ports, environment, healthcheck (an HTTP URL → an HTTP probe, another command → an exec probe) and
  volumes; one replica, no autoscaler. A database, cache or queue with a volume is a StatefulSet (its named
  volumes become ``volumeClaimTemplates``); everything else a Deployment.
* **Volumes**: a named or anonymous compose volume → a PersistentVolumeClaim (named) or an ``emptyDir``
  (anonymous; ``tmpfs`` → memory); a bind mount (host files) cannot be carried over: a warning says to
  put the files in a ConfigMap or the image. Paths the image writes (its ``VOLUME`` s, those of
  well-known images) get an ``emptyDir`` when no compose volume covers them.
* **Dependencies** are the consumer's: a service depends on what it ``depends_on`` and on the services its
  environment names as hosts — never on the services that use it.
* **Ingress** only for a web/api Deployment whose compose service publishes ``ports`` (``expose`` is
  internal), or the single app (as before).
* **Project configuration**: the app's ``.dorgu.yaml`` gives every workload its team, owner, repository,
  labels, annotations, resources, scaling and operations; its per-app parts (name, type, description,
  health, ingress, dependencies) apply only to a single workload (no compose, or ``--service``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from cli.analyzer import analyze, dns_name, is_secret
from cli.analyzer.compose import COMPOSE_NAMES, compose_dependencies, image_kind, parse_compose
from cli.analyzer.dockerfile import DOCKERFILE_NAMES
from cli.analyzer.model import AppAnalysis, ComposeInfo, ComposeService, EnvVar, HealthCheck, Port, Scaling
from cli.analyzer.security import SecurityPlan, known_image, plan_security
from cli.analyzer.walk import read_text
from cli.errors import InputError
from cli.settings import AppConfig

_STATEFUL_KINDS = ("database", "cache", "queue")


@dataclass(frozen=True)
class Mount:
    """A volume of the pod and where the container mounts it."""

    name: str
    path: str
    claim: str = ""
    """The PersistentVolumeClaim's name ("": an ``emptyDir``)."""
    memory: bool = False
    """An ``emptyDir`` in memory (compose ``tmpfs``)."""
    read_only: bool = False
    secret: str = ""
    """A Secret's name (compose ``secrets``): its key ``key`` is mounted as the file ``path``."""
    key: str = ""


@dataclass
class Workload:
    """One Deployment or StatefulSet with its Service, persona and the rest."""

    analysis: AppAnalysis
    """Its analysis; ``analysis.name`` is the workload's name."""
    security: SecurityPlan
    service: str = ""
    """The compose service ("" for a directory's single app)."""
    image: str = ""
    """The image to run for an image-only service; "" when built from source (CI builds it)."""
    build_context: str = "."
    """The build context, relative to the app directory (POSIX)."""
    dockerfile: str = ""
    """The Dockerfile, relative to the app directory ("" when none)."""
    target: str = ""
    """The build target stage ("" for the last)."""
    kind: str = "Deployment"
    """``Deployment`` or ``StatefulSet``."""
    ingress: bool = True
    """Whether an Ingress may be written (still subject to the config and the app type)."""
    mounts: list[Mount] = field(default_factory=list)
    command: list[str] = field(default_factory=list)
    """compose ``command`` (the container's args)."""
    exec_probe: list[str] = field(default_factory=list)
    """A compose healthcheck that is no HTTP URL, as an exec probe."""
    notes: list[str] = field(default_factory=list)
    """What was done for the workload that the user should know (paths given a volume)."""
    fixed_replicas: int = 0
    """Replicas of an image-only service (no autoscaler); 0 for a built one (the scaling settings)."""
    claim_size: str = "1Gi"

    @property
    def name(self) -> str:
        return self.analysis.name

    @property
    def built(self) -> bool:
        return not self.image


@dataclass
class Project:
    name: str
    """The project's name (the directory's, ``app.name`` or ``--name``): the Argo CD Application's."""
    workloads: list[Workload]
    compose_path: str = ""
    primary: str = ""
    """The compose file's primary service (what ``persona generate|apply`` describe); "" without one."""
    notes: list[str] = field(default_factory=list)
    """Lines for the output: what was generated and why."""

    @property
    def multi(self) -> bool:
        return len(self.workloads) > 1


def _scoped(config: AppConfig) -> AppConfig:
    """The project's config without its per-app parts (see the module docstring)."""
    app = msgspec.structs.replace(config.app, name="", type="", description="", instructions="")
    return msgspec.structs.replace(config, app=app, health=None, ingress=None, dependencies=[])


def _mounts(svc: ComposeService, workload: str, warn: Callable[[str], None]) -> list[Mount]:
    out: list[Mount] = []
    for i, m in enumerate(svc.mounts):
        if m.type == "bind":
            warn(
                f"service {svc.name}: bind mount {m.source}:{m.target} (host files) is not carried to "
                "Kubernetes; put those files in the image or a ConfigMap"
            )
            continue
        name = f"vol-{i}"
        if m.type == "volume" and m.source:
            name = dns_name(m.source)
            out.append(Mount(name=name, path=m.target, claim=f"{workload}-{name}", read_only=m.read_only))
        else:
            out.append(Mount(name=name, path=m.target, memory=m.type == "tmpfs", read_only=m.read_only))
    return out


def _secret_mounts(svc: ComposeService, info: ComposeInfo | None, notes: list[str]) -> list[Mount]:
    """compose ``secrets``: the file ``/run/secrets/<target>`` from the Secret named like the compose secret
    (key: that name), which the user creates from the compose secret's file."""
    out = []
    for s in svc.secrets:
        name = dns_name(s.source)
        path = s.target if s.target.startswith("/") else f"/run/secrets/{s.target}"
        out.append(Mount(name=f"secret-{name}", path=path, secret=name, key=s.source, read_only=True))
        source = (info.secret_files.get(s.source) if info else "") or "<file>"
        notes.append(
            f"{path} comes from the Secret {name} (key {s.source}); create it: kubectl create secret "
            f"generic {name} --from-file={s.source}={source}"
        )
    return out


def _unique(mounts: list[Mount]) -> list[Mount]:
    """Volume names unique within the pod (a named volume called ``tmp`` and the ``/tmp`` emptyDir…)."""
    seen: set[str] = set()
    out = []
    for m in mounts:
        name, n = m.name, 1
        while name in seen:
            n += 1
            name = f"{m.name[:60]}-{n}"
        seen.add(name)
        out.append(m if name == m.name else dataclasses.replace(m, name=name))
    return out


def _with_writes(mounts: list[Mount], plan: SecurityPlan, notes: list[str]) -> list[Mount]:
    """An ``emptyDir`` for each path the image writes that no mount covers, when the root filesystem is
    read-only (and ``/tmp``, always)."""
    out = list(mounts)
    for path in ["/tmp", *(plan.writes if plan.read_only_root else [])]:
        covered = any(path == m.path or path.startswith(m.path.rstrip("/") + "/") for m in out)
        if not covered:
            out.append(Mount(name="tmp" if path == "/tmp" else dns_name(path), path=path))
            if path != "/tmp":
                notes.append(
                    f"{path} is written by the image: an emptyDir is mounted there (its data does not "
                    "survive a restart; declare a named volume in the compose file to keep it)"
                )
    return out


def _image_only(
    svc: ComposeService, info: ComposeInfo, name: str, config: AppConfig, warn: Callable[[str], None]
) -> Workload:
    kind = image_kind(svc.image)
    ports = [Port(port=p.container, protocol=p.protocol.upper(), purpose=kind) for p in svc.ports]
    ports += [Port(port=p, purpose=kind) for p in svc.expose]
    ports += [Port(port=p, protocol="UDP", purpose=kind) for p in svc.expose_udp]
    ports = list({(p.port, p.protocol): p for p in ports}.values())
    known = known_image(svc.image)
    if not ports and known is not None:  # what other services reach it on (compose needs no ports for that)
        ports = [Port(port=p, purpose=kind) for p in known.ports]
    a = AppAnalysis(name=name, source_dir="")
    a.compose = info
    a.ports = ports
    a.type = "web" if kind == "service" and ports else "daemon" if ports else "worker"
    a.resource_profile = "api" if a.type == "daemon" else a.type
    a.description = f"{svc.image} (image-only compose service {svc.name})"
    a.env_vars = [
        EnvVar(name=e.name, value=e.value, required=e.required, secret=is_secret(e), source=e.source)
        for e in svc.environment
    ]
    a.dependencies = compose_dependencies(info, svc.name)
    if svc.healthcheck is not None and svc.healthcheck.path:
        tcp = [p.port for p in ports if p.protocol == "TCP"]
        a.health_check = HealthCheck(
            path=svc.healthcheck.path,
            port=svc.healthcheck.port or (tcp[0] if tcp else 80),
            readiness_path=svc.healthcheck.path,
            source="compose",
            origin=svc.healthcheck.origin or info.path,
            readiness_origin=svc.healthcheck.origin or info.path,
        )
    replicas = svc.replicas or 1
    a.scaling = Scaling(min_replicas=replicas, max_replicas=replicas, behavior="conservative")
    app = config.app
    a.team, a.owner, a.environment, a.repository = app.team, app.owner, config.environment, app.repository
    plan = plan_security(
        who=f"service {svc.name}", image=svc.image, user="", ports=[p.port for p in ports], volumes=[]
    )
    notes: list[str] = []
    mounts = _unique(_with_writes(_mounts(svc, name, warn), plan, notes) + _secret_mounts(svc, info, notes))
    stateful = kind in _STATEFUL_KINDS and any(m.claim for m in mounts)
    return Workload(
        analysis=a,
        security=plan,
        service=svc.name,
        image=svc.image,
        kind="StatefulSet" if stateful else "Deployment",
        ingress=bool(svc.ports) and a.type == "web",
        mounts=mounts,
        command=svc.command,
        exec_probe=[] if a.health_check else svc.healthcheck_command,
        fixed_replicas=replicas,
        notes=notes,
    )


def built_workload(a: AppAnalysis, *, service: str = "", ingress: bool = True, warn: Callable[[str], None],
                   svc: ComposeService | None = None) -> Workload:  # fmt: skip
    df = a.dockerfile
    ports = [p.port for p in a.ports]
    plan = plan_security(
        who=f"service {service}" if service else a.name,
        image=df.base_image if df else "",
        user=df.user if df else "",
        ports=ports,
        volumes=df.volumes if df else [],
    )
    notes: list[str] = []
    mounts = _with_writes(_mounts(svc, a.name, warn) if svc else [], plan, notes)
    if svc is not None:
        mounts = _unique(mounts + _secret_mounts(svc, a.compose, notes))
    if df is not None and not df.user and plan.run_as_non_root:
        notes.append(
            f"{df.path} sets no USER: the pod runs as uid {plan.run_as_user} with a read-only root "
            "filesystem (/tmp writable); if the app writes elsewhere, declare a VOLUME for that path in "
            "the Dockerfile, or set USER"
        )
    claims = [m.claim for m in mounts if m.claim]
    if claims:
        notes.append(
            f"volume {', '.join(claims)} is a ReadWriteOnce claim: replicas on other nodes cannot mount it "
            "(use a ReadWriteMany storage class, or one replica)"
        )
    return Workload(
        analysis=a,
        security=plan,
        service=service,
        build_context=a.source_dir or ".",
        dockerfile=df.path if df else "",
        target=(svc.target if svc else "") or "",
        ingress=ingress,
        mounts=mounts,
        command=svc.command if svc else [],
        exec_probe=svc.healthcheck_command if svc and not (a.health_check and a.health_check.path) else [],
        notes=notes,
    )


def _check_build(svc: ComposeService, app_dir: Path, compose: str) -> None:
    """A built service's context must be a directory inside the app directory, holding its Dockerfile."""
    context = (app_dir / svc.build).resolve()
    where = f"{compose}: service {svc.name}: build context {svc.build!r}"
    if not context.is_relative_to(app_dir):
        raise InputError(f"{where} is outside {app_dir}; point dorgu at the directory that holds both")
    if not context.is_dir():
        raise InputError(f"{where} is not a directory ({context})")
    names = ((svc.dockerfile,) if svc.dockerfile else ()) + DOCKERFILE_NAMES
    if not any((context / n).is_file() for n in names):
        raise InputError(f"{where} holds no {svc.dockerfile or 'Dockerfile'} (looked in {context})")


def analyze_project(
    path: Path,
    *,
    app_config: AppConfig,
    warn: Callable[[str], None] = lambda _m: None,
    service: str = "",
) -> Project:
    app_dir = path.resolve()
    compose_file = next((app_dir / n for n in COMPOSE_NAMES if (app_dir / n).is_file()), None)
    info: ComposeInfo | None = None
    if compose_file is not None:
        info = parse_compose(
            read_text(compose_file, what="compose file") or "",
            path=compose_file.name,
            app_name=app_config.app.name or dns_name(app_dir.name),
        )
        for note in info.notes:
            warn(note)
    if service and info is None:
        raise InputError(
            f"--service {service}: {app_dir} has no compose file (looked for {', '.join(COMPOSE_NAMES)})"
        )
    single = info is None or (not service and len(info.services) == 1 and bool(info.services[0].build))
    if single:
        a = analyze(app_dir, app_config=app_config, warn=warn)
        svc = None
        if info is not None:
            svc = next((s for s in info.services if s.name == info.primary), None)
        w = built_workload(a, warn=warn, svc=svc, service=svc.name if svc else "")
        return Project(
            name=a.name,
            workloads=[w],
            compose_path=compose_file.name if compose_file else "",
            primary=svc.name if svc else "",
        )
    assert info is not None and compose_file is not None
    by_name = {s.name: s for s in info.services}
    if service and service not in by_name:
        raise InputError(
            f"--service {service}: no such service in {compose_file.name} "
            f"(services: {', '.join(sorted(by_name))})"
        )
    project = Project(
        name=app_config.app.name or dns_name(app_dir.name),
        workloads=[],
        compose_path=compose_file.name,
        primary=info.primary,
    )
    chosen = [by_name[service]] if service else info.services
    config = app_config if service else _scoped(app_config)
    if not service:
        config = msgspec.structs.replace(config, app=msgspec.structs.replace(config.app, name=""))
    taken: dict[str, str] = {}
    for svc in chosen:
        name = dns_name(svc.name)
        if name in taken:
            raise InputError(
                f"{compose_file.name}: services {taken[name]!r} and {svc.name!r} both become the Kubernetes "
                f"name {name!r}; rename one"
            )
        taken[name] = svc.name
        if name != svc.name:
            warn(
                f"service {svc.name!r} is not a valid Kubernetes name; using {name!r} (other services that "
                f"name it as a host must use {name!r})"
            )
        if svc.build:
            _check_build(svc, app_dir, compose_file.name)
            a = analyze(app_dir, app_config=config, warn=warn, service=svc.name, name=name)
            project.workloads.append(
                built_workload(
                    a, service=svc.name, ingress=bool(svc.ports) or bool(service), warn=warn, svc=svc
                )
            )
        else:
            if not svc.image:
                raise InputError(f"{compose_file.name}: service {svc.name} has neither build nor image")
            project.workloads.append(_image_only(svc, info, name, config, warn))
    for w in project.workloads:  # dependencies name the workloads as Kubernetes names them
        for d in w.analysis.dependencies:
            if d.source == "compose":
                d.name = dns_name(d.name)
    built = [w for w in project.workloads if w.built]
    images = [w for w in project.workloads if not w.built]
    if not built:
        project.notes.append(
            f"No service of {compose_file.name} builds from source: generated workloads from their images "
            f"({', '.join(f'{w.service}: {w.image}' for w in images)}) and no CI workflow (nothing to build)"
        )
    return project
