"""The analysis data model. JSON names are an interface (the LLM I/O schema, ``--dump-analysis``)."""

from __future__ import annotations

import msgspec


class _M(msgspec.Struct, kw_only=True, omit_defaults=False):
    pass


class Port(_M, kw_only=True):
    port: int
    protocol: str = "TCP"
    purpose: str = "HTTP"


class HealthCheck(_M, kw_only=True):
    path: str = ""
    port: int = 0
    readiness_path: str = ""
    initial_delay_seconds: int = 0
    period_seconds: int = 0
    source: str = ""  # code | dockerfile | compose | framework | config | llm
    origin: str = ""  # where the liveness path was found: "app/health.py:12", "Dockerfile:9", ".dorgu.yaml"
    readiness_origin: str = ""  # the same for the readiness path


class EnvVar(_M, kw_only=True):
    name: str
    value: str = ""
    required: bool = False
    secret: bool = False
    source: str = ""


class Scaling(_M, kw_only=True):
    min_replicas: int = 0
    max_replicas: int = 0
    target_cpu_percent: int = 0
    target_memory_percent: int = 0
    behavior: str = ""


class DockerfileInfo(_M, kw_only=True):
    path: str = ""
    base_image: str = ""
    build_stages: list[str] = msgspec.field(default_factory=list)
    ports: list[int] = msgspec.field(default_factory=list)
    env_vars: list[EnvVar] = msgspec.field(default_factory=list)
    args: dict[str, str] = msgspec.field(default_factory=dict)
    workdir: str = ""
    entrypoint: list[str] = msgspec.field(default_factory=list)
    cmd: list[str] = msgspec.field(default_factory=list)
    user: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    healthcheck: HealthCheck | None = None
    target: str = ""  # the stage that was read: the build target (compose ``build.target``), else the last
    base_chain: list[str] = msgspec.field(default_factory=list)  # the target's stages, outermost image first
    exposed: list[Port] = msgspec.field(default_factory=list)  # EXPOSE with protocols (ranges expanded)
    volumes: list[str] = msgspec.field(default_factory=list)  # VOLUME paths: where the image writes
    notes: list[str] = msgspec.field(default_factory=list)  # what the reader refused or changed, for warnings


class ComposePort(_M, kw_only=True):
    host: int = 0
    container: int
    protocol: str = "tcp"


class ComposeVolume(_M, kw_only=True):
    target: str
    source: str = ""  # a named volume, a host path (bind) or "" (anonymous)
    type: str = "volume"  # volume | bind | tmpfs
    read_only: bool = False


class ComposeSecret(_M, kw_only=True):
    source: str  # the top-level secret's name
    target: str  # the file name under /run/secrets/ (or an absolute path)


class ComposeService(_M, kw_only=True):
    name: str
    image: str = ""
    build: str = ""
    dockerfile: str = ""
    target: str = ""  # build.target: the Dockerfile stage compose builds
    mounts: list[ComposeVolume] = msgspec.field(default_factory=list)
    command: list[str] = msgspec.field(default_factory=list)
    replicas: int = 0  # deploy.replicas (0: not given)
    secrets: list[ComposeSecret] = msgspec.field(default_factory=list)
    ports: list[ComposePort] = msgspec.field(default_factory=list)
    expose: list[int] = msgspec.field(default_factory=list)
    expose_udp: list[int] = msgspec.field(default_factory=list)  # ``expose: ["53/udp"]``
    environment: list[EnvVar] = msgspec.field(default_factory=list)
    volumes: list[str] = msgspec.field(default_factory=list)
    depends_on: list[str] = msgspec.field(default_factory=list)
    healthcheck: HealthCheck | None = None
    healthcheck_command: list[str] = msgspec.field(default_factory=list)  # a test that is no HTTP URL


class ComposeInfo(_M, kw_only=True):
    path: str = ""
    services: list[ComposeService] = msgspec.field(default_factory=list)
    primary: str = ""
    notes: list[str] = msgspec.field(default_factory=list)  # what the reader refused or changed
    secret_files: dict[str, str] = msgspec.field(default_factory=dict)  # top-level secret → its file


class CodeInfo(_M, kw_only=True):
    language: str = "unknown"
    framework: str = ""
    manifest: str = ""
    dependencies: list[str] = msgspec.field(default_factory=list)
    health_path: str = ""
    readiness_path: str = ""
    health_origin: str = ""  # file:line (relative to the app directory) of the route health_path comes from
    readiness_origin: str = ""  # the same for readiness_path
    metrics_path: str = ""
    routes: list[str] = msgspec.field(default_factory=list)  # "GET /api/health" … : what the app serves
    route_finder: str = ""  # the finder that read the routes (cli.analyzer.routes.FINDERS); "": none
    files_scanned: int = 0


class CpuMemory(_M, kw_only=True):
    cpu: str = ""
    memory: str = ""


class Resources(_M, kw_only=True):
    """Requests and limits proposed by the LLM and checked against the type's profile (empty: unset)."""

    requests: CpuMemory = msgspec.field(default_factory=CpuMemory)
    limits: CpuMemory = msgspec.field(default_factory=CpuMemory)


class Dependency(_M, kw_only=True):
    name: str
    type: str = "service"
    required: bool = True
    source: str = ""
    health_check: str = ""


class AppAnalysis(_M, kw_only=True):
    name: str
    type: str = "api"
    language: str = "unknown"
    framework: str = ""
    description: str = ""
    ports: list[Port] = msgspec.field(default_factory=list)
    health_check: HealthCheck | None = None
    env_vars: list[EnvVar] = msgspec.field(default_factory=list)
    dependencies: list[Dependency] = msgspec.field(default_factory=list)
    resource_profile: str = "api"
    resources: Resources | None = None  # the LLM's checked proposal; None: the profile's (app config wins)
    scaling: Scaling = msgspec.field(default_factory=Scaling)
    dockerfile: DockerfileInfo | None = None
    compose: ComposeInfo | None = None
    code: CodeInfo = msgspec.field(default_factory=CodeInfo)
    team: str = ""
    owner: str = ""
    repository: str = ""
    environment: str = ""
    source_dir: str = ""


DEP_TYPES = ("database", "cache", "queue", "service", "external")
_DEP_SYNONYMS = {
    "db": "database",
    "sql": "database",
    "postgres": "database",
    "postgresql": "database",
    "mysql": "database",
    "mongodb": "database",
    "redis": "cache",
    "memcached": "cache",
    "broker": "queue",
    "messaging": "queue",
    "kafka": "queue",
    "rabbitmq": "queue",
    "stream": "queue",
    "api": "service",
    "http": "service",
    "saas": "external",
    "third-party": "external",
}
_CANONICAL = {"postgres": "postgresql", "pg": "postgresql", "mongo": "mongodb", "mariadb": "mysql"}


def dep_type(raw: str) -> str:
    """A dependency type on the persona CRD's enum (free text in .dorgu.yaml is mapped, else ``service``)."""
    raw = raw.strip().lower()
    return raw if raw in DEP_TYPES else _DEP_SYNONYMS.get(raw, "service")


def canonical_dep(name: str) -> str:
    name = name.strip().lower()
    return _CANONICAL.get(name, name)
