"""The three configuration files, loaded strictly, and their documented precedence.

Files (all YAML, all optional):

* **global** ``$XDG_CONFIG_HOME/dorgu/config.yaml`` (default ``~/.config/dorgu/config.yaml``): the user's
  LLM provider and defaults (namespace, registry, org name); managed by ``dorgu config``.
* **workspace** ``.dorgu.yaml`` in the current directory, or the file given with ``--config FILE``:
  org-wide conventions (resource profiles, labels, ingress, Argo CD, CI registry). When the current directory
  *is* the app directory, its ``.dorgu.yaml`` is the app config only — it is not read twice.
* **app** ``<app path>/.dorgu.yaml``: what the app's owners say about it (name, team, type, scaling, health…).

Precedence, for every setting more than one source can give (highest first)::

    command-line flags > app .dorgu.yaml > workspace .dorgu.yaml > global config > built-in defaults

A file that cannot be read, is not valid YAML, or has a value of the wrong type is an error naming the file
and line (exit 2) — never silently ignored. Unknown keys are ignored. Keys are taken literally: dots in
label/annotation keys (``prometheus.io/scrape``) are just characters.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from cli.errors import InputError

T = TypeVar("T")

LLM_PROVIDERS = ("openai", "ollama")
"""Providers speaking the OpenAI-compatible chat-completions API (``ollama`` serves it at ``/v1``)."""


class _Cfg(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


# --------------------------------------------------------------------------- global


class GlobalLLM(_Cfg):
    provider: str = ""
    api_key: str = ""
    model: str = ""
    base_url: str = ""


class GlobalDefaults(_Cfg):
    namespace: str = "default"
    registry: str = ""
    org_name: str = ""


class GlobalConfig(_Cfg):
    version: str = "1"
    llm: GlobalLLM = msgspec.field(default_factory=GlobalLLM)
    defaults: GlobalDefaults = msgspec.field(default_factory=GlobalDefaults)


GLOBAL_KEYS = (
    "llm.provider",
    "llm.api_key",
    "llm.model",
    "llm.base_url",
    "defaults.namespace",
    "defaults.registry",
    "defaults.org_name",
)

# --------------------------------------------------------------------------- workspace


class CpuMem(_Cfg):
    cpu: int | str = ""
    memory: int | str = ""


class ResourceProfile(_Cfg):
    requests: CpuMem = msgspec.field(default_factory=CpuMem)
    limits: CpuMem = msgspec.field(default_factory=CpuMem)


def _profile(rc: str, rm: str, lc: str, lm: str) -> ResourceProfile:
    return ResourceProfile(requests=CpuMem(cpu=rc, memory=rm), limits=CpuMem(cpu=lc, memory=lm))


DEFAULT_PROFILES = {
    "api": _profile("100m", "256Mi", "1000m", "1Gi"),
    "worker": _profile("500m", "512Mi", "2000m", "2Gi"),
    "web": _profile("50m", "128Mi", "500m", "512Mi"),
}
FALLBACK_PROFILE = _profile("100m", "128Mi", "500m", "512Mi")


class WsResources(_Cfg):
    defaults: ResourceProfile | None = None
    profiles: dict[str, ResourceProfile] | None = None


class WsCustom(_Cfg):
    custom: dict[str, str] = msgspec.field(default_factory=dict)


class WsTLS(_Cfg):
    enabled: bool = False
    cluster_issuer: str = ""


class WsIngress(_Cfg):
    enabled: bool = True
    class_: str = msgspec.field(default="nginx", name="class")
    domain_suffix: str = ".local"
    tls: WsTLS = msgspec.field(default_factory=WsTLS)


class WsAutomated(_Cfg):
    prune: bool = False
    self_heal: bool = False


class WsSyncPolicy(_Cfg):
    automated: WsAutomated = msgspec.field(default_factory=WsAutomated)


class WsDestination(_Cfg):
    server: str = "https://kubernetes.default.svc"


class WsArgo(_Cfg):
    project: str = "default"
    namespace: str = "argocd"
    destination: WsDestination = msgspec.field(default_factory=WsDestination)
    sync_policy: WsSyncPolicy = msgspec.field(default_factory=WsSyncPolicy)


class WsCI(_Cfg):
    provider: str = "github-actions"
    registry: str = ""


class WsLLM(_Cfg):
    provider: str = ""
    model: str = ""
    base_url: str = ""


class WsOrg(_Cfg):
    name: str = ""


class WorkspaceConfig(_Cfg):
    version: str = "1"
    org: WsOrg = msgspec.field(default_factory=WsOrg)
    resources: WsResources = msgspec.field(default_factory=WsResources)
    labels: WsCustom = msgspec.field(default_factory=WsCustom)
    annotations: WsCustom = msgspec.field(default_factory=WsCustom)
    ingress: WsIngress = msgspec.field(default_factory=WsIngress)
    argocd: WsArgo = msgspec.field(default_factory=WsArgo)
    ci: WsCI = msgspec.field(default_factory=WsCI)
    llm: WsLLM = msgspec.field(default_factory=WsLLM)


# --------------------------------------------------------------------------- app


class AppInfo(_Cfg):
    name: str = ""
    description: str = ""
    team: str = ""
    owner: str = ""
    repository: str = ""
    type: str = ""
    tier: str = ""
    instructions: str = ""


class AppScaling(_Cfg):
    min_replicas: int = 0
    max_replicas: int = 0
    target_cpu: int = 0
    target_memory: int = 0
    behavior: str = ""


class AppPath(_Cfg):
    path: str
    path_type: str = "Prefix"


class AppTLS(_Cfg):
    enabled: bool = False
    secret_name: str = ""


class AppIngress(_Cfg):
    enabled: bool | None = None
    host: str = ""
    paths: list[AppPath] = msgspec.field(default_factory=list)
    tls: AppTLS = msgspec.field(default_factory=AppTLS)


class AppProbe(_Cfg):
    path: str = ""
    port: int = 0
    initial_delay: int = 0
    period: int = 0


class AppHealth(_Cfg):
    liveness: AppProbe | None = None
    readiness: AppProbe | None = None
    startup_grace_period: str = ""


class AppDependency(_Cfg):
    name: str
    type: str = ""
    required: bool = True
    health_check: str = ""


class AppOperations(_Cfg):
    runbook: str = ""
    alerts: list[str] = msgspec.field(default_factory=list)
    maintenance_window: str = ""
    on_call: str = ""
    auto_restart: bool = False


class AppDeploymentPolicy(_Cfg):
    strategy: str = ""
    max_surge: str = ""
    max_unavailable: str = ""


class AppConfig(_Cfg):
    version: str = "1"
    app: AppInfo = msgspec.field(default_factory=AppInfo)
    environment: str = ""
    resources: ResourceProfile | None = None
    scaling: AppScaling | None = None
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    annotations: dict[str, str] = msgspec.field(default_factory=dict)
    ingress: AppIngress | None = None
    health: AppHealth | None = None
    dependencies: list[AppDependency] = msgspec.field(default_factory=list)
    operations: AppOperations = msgspec.field(default_factory=AppOperations)
    deployment_policy: AppDeploymentPolicy = msgspec.field(default_factory=AppDeploymentPolicy)


# --------------------------------------------------------------------------- loading


def global_config_path() -> Path:
    xdg = os.environ.get("XDG_CONFIG_HOME")
    if xdg:
        return Path(xdg) / "dorgu" / "config.yaml"
    home = os.environ.get("HOME")
    if home:
        return Path(home) / ".config" / "dorgu" / "config.yaml"
    return Path(".dorgu") / "config.yaml"


_PATH_RE = re.compile(r"at `\$(.*)`")


def _line_of(node: yaml.Node | None, path: str) -> int | None:
    """The 1-based line of the YAML node at a msgspec error path like ``.scaling.min_replicas[0]``."""
    if node is None:
        return None
    line = node.start_mark.line + 1
    for key, idx in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path):
        if key and isinstance(node, yaml.MappingNode):
            found = next((v for k, v in node.value if getattr(k, "value", None) == key), None)
        elif idx and isinstance(node, yaml.SequenceNode) and int(idx) < len(node.value):
            found = node.value[int(idx)]
        else:
            found = None
        if found is None:
            break
        node, line = found, found.start_mark.line + 1
    return line


def load_yaml_file(path: Path, type_: type[T], *, what: str) -> T | None:
    """Decode ``path`` into ``type_`` (``None``: absent or empty). Errors name the file and line."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise InputError(f"cannot read {what} {path}: {reason} (make it readable, or remove it)") from e
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        ctx = f" ({e.context} at line {e.context_mark.line + 1})" if e.context and e.context_mark else ""
        raise InputError(f"{where}: {what} is not valid YAML: {e.problem or e}{ctx}") from e
    except yaml.YAMLError as e:
        raise InputError(f"{path}: {what} is not valid YAML: {e}") from e
    if data is None:
        return None
    if not isinstance(data, dict):
        raise InputError(f"{path}:1: {what} must be a YAML mapping, not {type(data).__name__}")
    try:
        return msgspec.convert(data, type_, str_keys=True)
    except msgspec.ValidationError as e:
        m = _PATH_RE.search(str(e))
        line = _line_of(node, m.group(1)) if m else None
        loc = f"{path}:{line}" if line else str(path)
        raise InputError(f"{loc}: invalid {what}: {e}") from e


def load_global(path: Path | None = None) -> GlobalConfig:
    return load_yaml_file(path or global_config_path(), GlobalConfig, what="global config") or GlobalConfig()


def find_workspace_file(config_flag: str | None, *, cwd: Path | None = None) -> Path | None:
    if config_flag:
        p = Path(config_flag)
        if not p.exists():
            raise InputError(f"config file {p} does not exist (check --config)")
        return p.resolve()
    base = cwd or Path.cwd()
    for name in (".dorgu.yaml", ".dorgu.yml"):
        if (base / name).is_file():
            return (base / name).resolve()
    return None


@dataclass(frozen=True)
class Configs:
    """The loaded files (defaults where absent) and where they came from."""

    global_: GlobalConfig
    workspace: WorkspaceConfig
    app: AppConfig
    global_path: Path
    workspace_path: Path | None
    app_path: Path | None


def load_all(app_dir: Path, *, config_flag: str | None = None) -> Configs:
    gpath = global_config_path()
    g = load_global(gpath)
    app_file = (app_dir / ".dorgu.yaml").resolve()
    ws_path = find_workspace_file(config_flag)
    if ws_path is not None and ws_path == app_file and not config_flag:
        ws_path = None  # the app's own file is not also the workspace file (the original read it twice)
    ws = (load_yaml_file(ws_path, WorkspaceConfig, what="workspace config") if ws_path else None) or (
        WorkspaceConfig()
    )
    app = load_yaml_file(app_file, AppConfig, what="app config")
    return Configs(
        global_=g,
        workspace=ws,
        app=app or AppConfig(),
        global_path=gpath,
        workspace_path=ws_path,
        app_path=app_file if app is not None else None,
    )


def first(*values: Any) -> Any:
    """The first value that is set (not None, not empty) — precedence in one call."""
    for v in values:
        if v not in (None, "", 0, [], {}):
            return v
    return values[-1] if values else None


def profile_for(ws: WorkspaceConfig, name: str) -> ResourceProfile:
    profiles = ws.resources.profiles if ws.resources.profiles is not None else DEFAULT_PROFILES
    if name in profiles:
        return profiles[name]
    return ws.resources.defaults or FALLBACK_PROFILE


def dump_global(cfg: GlobalConfig, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = yaml.safe_dump(msgspec.to_builtins(cfg), sort_keys=False, default_flow_style=False)
    header = (
        f"# dorgu global configuration\n# Location: {path}\n# Edit with: dorgu config set <key> <value>\n\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(header + body)
    os.replace(tmp, path)
