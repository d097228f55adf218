"""The three configuration files, loaded strictly, and their documented precedence.

Files (all YAML, all optional):

* **global** ``$XDG_CONFIG_HOME/dorgu/config.yaml`` (default ``~/.config/dorgu/config.yaml``): the user's
  LLM provider, defaults (namespace, registry, org name) and the operator the live commands talk to (URL,
  token); one schema, :class:`GlobalConfig`, managed by ``dorgu config``.
* **workspace** ``.dorgu.yaml`` in the current directory, or the file given with ``--config FILE``:
  org-wide conventions (resource profiles, labels, ingress, Argo CD, CI registry). When the current directory
  *is* the app directory, its ``.dorgu.yaml`` is the app config only — it is not read twice.
* **app** ``<app path>/.dorgu.yaml``: what the app's owners say about it (name, team, type, scaling, health…).

Precedence, for every setting more than one source can give (highest first)::

    command-line flags > app .dorgu.yaml > workspace .dorgu.yaml > global config > built-in defaults

**A workspace file is not trusted with credentials.** It comes with a cloned repository, so it may choose the
LLM provider and model (as the Go tool allows) but never where requests go or with which key: its
``llm.base_url`` and ``llm.api_key`` are ignored with a warning (:data:`WORKSPACE_IGNORED_LLM_KEYS`);
endpoints and keys come only from the global config, flags or the environment. Otherwise a repository
could send the user's API key to a URL of its choosing.

A file that cannot be read, is not valid YAML, or has a value of the wrong type is an error naming the file
and line (exit 2) — never silently ignored. The Go tool's files load as they are: a key with no value (an
empty block such as ``labels:`` / ``custom:`` with nothing under it) is the same as an absent key, every
provider name it writes (``openai``, ``anthropic``, ``gemini``, ``ollama``) is known, and so is every key of
its schemas, used or not (``naming.*``, ``security.*`` …). A key no schema knows is a warning naming the key,
the file and its line (:func:`unknown_keys`), never an error; ``dorgu config set`` keeps such keys in the
global config (a newer dorgu's keys, or the user's own, survive an older one's edit). Keys are taken
literally: dots in label/annotation keys (``prometheus.io/scrape``) are just characters.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import msgspec
import yaml

from cli.errors import InputError
from cli.inputfile import read_bounded

T = TypeVar("T")

LLM_PROVIDERS = ("openai", "anthropic", "gemini", "ollama")
"""The LLM providers, every name the Go tool writes in ``llm.provider`` (their details, API-key variables
included: :data:`cli.analyzer.llm.providers.PROVIDERS`)."""


class _Cfg(msgspec.Struct, kw_only=True, forbid_unknown_fields=False):
    pass


# --------------------------------------------------------------------------- global


class GlobalLLM(_Cfg):
    """``llm.*``: the model the app analysis asks (``--llm-provider`` and the workspace file win)."""

    provider: str = ""
    """One of :data:`LLM_PROVIDERS`; empty: no LLM."""
    api_key: str = ""
    """The provider's API key (shown masked; the provider's variable, e.g. ``ANTHROPIC_API_KEY``, wins).
    Used only for :attr:`provider` (any provider when that is empty), as are ``model`` and ``base_url``."""
    model: str = ""
    """Model name; empty: the provider's default."""
    base_url: str = ""
    """The provider's endpoint; empty: its default (``OLLAMA_HOST`` and ``DORGU_LLM_BASE_URL`` win)."""


class GlobalDefaults(_Cfg):
    """``defaults.*``: values the commands use when neither a flag nor a workspace/app file gives one."""

    namespace: str = "default"
    """Namespace for generated manifests and personas, and for the live commands."""
    registry: str = ""
    """Image registry prefix for generated manifests (the workspace's ``ci.registry`` wins)."""
    org_name: str = ""
    """Organisation name (asked by ``dorgu init --global``; kept for the user, no command reads it)."""


class GlobalOperator(_Cfg):
    """``operator.*``: the operator the live commands (``persona watch``, ``sync`` …) talk to."""

    url: str = ""
    """The operator's WebSocket URL (``ws://`` or ``wss://``); empty: ``ws://localhost:9090/ws``.
    ``--operator-url`` and ``DORGU_OPERATOR_URL`` win over it."""
    token: str = ""
    """Bearer token for the operator (shown masked); empty: the kubeconfig's. ``--token`` and
    ``DORGU_OPERATOR_TOKEN`` win over it."""


class GlobalConfig(_Cfg):
    """The global config file, the one schema every command reads it through."""

    version: str = "1"
    """Schema version of the file."""
    llm: GlobalLLM = msgspec.field(default_factory=GlobalLLM)
    """The LLM provider."""
    defaults: GlobalDefaults = msgspec.field(default_factory=GlobalDefaults)
    """Defaults for the commands."""
    operator: GlobalOperator = msgspec.field(default_factory=GlobalOperator)
    """The operator the live commands talk to."""


GLOBAL_KEYS = (
    "llm.provider",
    "llm.api_key",
    "llm.model",
    "llm.base_url",
    "defaults.namespace",
    "defaults.registry",
    "defaults.org_name",
    "operator.url",
    "operator.token",
)
"""Every ``section.field`` of :class:`GlobalConfig` that ``dorgu config get|set`` accepts, in list order."""

SECRET_GLOBAL_KEYS = frozenset({"llm.api_key", "operator.token"})
"""Keys ``dorgu config`` shows masked."""

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


class WsLabels(WsCustom):
    required: list[str] = msgspec.field(default_factory=list)
    """Labels the Go tool's schema lists as required; accepted, not used (as in the Go tool)."""


class WsNaming(_Cfg):
    """``naming.*`` of the Go tool's schema: accepted, not used (as in the Go tool)."""

    pattern: str = ""
    dns_safe: bool = True


class WsSeccomp(_Cfg):
    type: str = ""


class WsPodSecurity(_Cfg):
    run_as_non_root: bool = False
    seccomp_profile: WsSeccomp = msgspec.field(default_factory=WsSeccomp)


class WsCapabilities(_Cfg):
    drop: list[str] = msgspec.field(default_factory=list)
    add: list[str] = msgspec.field(default_factory=list)


class WsContainerSecurity(_Cfg):
    allow_privilege_escalation: bool = False
    read_only_root_filesystem: bool = False
    capabilities: WsCapabilities = msgspec.field(default_factory=WsCapabilities)


class WsSecurity(_Cfg):
    """``security.*`` of the Go tool's schema: accepted so its files load; dorgu does not use it yet."""

    pod_security_context: WsPodSecurity = msgspec.field(default_factory=WsPodSecurity)
    container_security_context: WsContainerSecurity = msgspec.field(default_factory=WsContainerSecurity)


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
    namespace: str = ""
    """Accepted, not used: the destination namespace is the effective namespace (as in the Go tool)."""


class WsArgo(_Cfg):
    project: str = "default"
    namespace: str = "argocd"
    destination: WsDestination = msgspec.field(default_factory=WsDestination)
    sync_policy: WsSyncPolicy = msgspec.field(default_factory=WsSyncPolicy)


class WsCI(_Cfg):
    provider: str = "github-actions"
    registry: str = ""


class WsLLM(_Cfg):
    """A workspace's ``llm.*``: the provider and model only."""

    provider: str = ""
    """Provider for the analysis (after ``--llm-provider`` and before the global config)."""
    model: str = ""
    """Model name."""
    base_url: str = ""
    """Read only to be refused: :func:`load_all` warns and clears it (an endpoint is never a workspace's)."""
    api_key: str = ""
    """Read only to be refused: :func:`load_all` warns and clears it (a key is never a workspace's)."""


WORKSPACE_IGNORED_LLM_KEYS = ("base_url", "api_key")
"""``llm.*`` keys a workspace file may not set: where the API key goes, and the key itself."""


class WsOrg(_Cfg):
    name: str = ""


class WorkspaceConfig(_Cfg):
    version: str = "1"
    org: WsOrg = msgspec.field(default_factory=WsOrg)
    naming: WsNaming = msgspec.field(default_factory=WsNaming)
    resources: WsResources = msgspec.field(default_factory=WsResources)
    labels: WsLabels = msgspec.field(default_factory=WsLabels)
    security: WsSecurity = msgspec.field(default_factory=WsSecurity)
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


def without_nulls(value: Any) -> Any:
    """``value`` with every mapping entry whose value is null removed, at every depth: ``custom:`` with
    nothing under it (as the Go tool's own example has) means "not set", as an absent key does."""
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(v) for v in value]
    return value


def _struct_of(tp: Any) -> Any:
    """The Struct type, ``dict[str, X]`` or ``list[X]`` inside ``tp`` (``X | None`` unwrapped), else None."""
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _struct_of(inner[0]) if len(inner) == 1 else None
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    if typing.get_origin(tp) in (dict, list):
        return tp
    return None


def _dotted(where: str, key: object) -> str:
    return f"{where}.{key}" if where else str(key)


def unknown_keys(data: Any, type_: Any, node: yaml.Node | None, where: str = "") -> list[tuple[str, int]]:
    """``(dotted key, line)`` of every key in ``data`` that the schema ``type_`` does not know, at every
    depth (into nested structs, and into the values and items of ``dict[str, Struct]`` / ``list[Struct]``)."""
    tp = _struct_of(type_)
    found: list[tuple[str, int]] = []
    if tp is None:
        return found
    origin = typing.get_origin(tp)
    if origin is list and isinstance(data, list):
        nodes = node.value if isinstance(node, yaml.SequenceNode) else []
        for i, item in enumerate(data):
            sub = nodes[i] if i < len(nodes) else None
            found += unknown_keys(item, typing.get_args(tp)[0], sub, f"{where}[{i}]")
        return found
    if not isinstance(data, dict):
        return found
    children = (
        {getattr(k, "value", None): (k, v) for k, v in node.value}
        if isinstance(node, yaml.MappingNode)
        else {}
    )
    if origin is dict:
        for key, value in data.items():
            sub = children.get(key, (None, None))[1]
            found += unknown_keys(value, typing.get_args(tp)[1], sub, _dotted(where, key))
        return found
    fields = {f.encode_name: f.type for f in msgspec.structs.fields(tp)}
    for key, value in data.items():
        knode, vnode = children.get(key, (None, None))
        if key not in fields:
            found.append((_dotted(where, key), knode.start_mark.line + 1 if knode is not None else 0))
        else:
            found += unknown_keys(value, fields[key], vnode, _dotted(where, key))
    return found


def load_yaml_file(
    path: Path, type_: type[T], *, what: str, on_unknown: Callable[[str], None] | None = None
) -> T | None:
    """Decode ``path`` into ``type_`` (``None``: absent or empty). Errors name the file and line; each key
    the schema does not know is passed to ``on_unknown`` as a warning naming it, the file and the line."""
    try:
        text = read_bounded(path, what=what).decode("utf-8")
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
    data = without_nulls(data)
    if on_unknown is not None:
        for key, line in unknown_keys(data, type_, node):
            on_unknown(f"{path}:{line}: unknown key {key!r} in the {what}; ignored")
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
    notes: tuple[str, ...] = ()
    """Warnings for the user (a config that could not even be looked for, keys no schema knows)."""
    workspace_ignored: tuple[str, ...] = ()
    """Keys the workspace file set that were ignored (``llm.base_url``, ``llm.api_key``)."""


def unreachable(path: Path) -> str | None:
    """Why dorgu cannot even tell whether ``path`` exists (a directory above it is not searchable, e.g. an
    unreachable ``$HOME``), else ``None`` — also when it exists but is unreadable (that is reading's
    error)."""
    try:
        os.stat(path)
    except PermissionError as e:
        return e.strerror or str(e)
    except OSError:
        pass
    return None


def ignored_workspace_keys(ws: WorkspaceConfig) -> tuple[str, ...]:
    """The ``llm.*`` keys of :data:`WORKSPACE_IGNORED_LLM_KEYS` that ``ws`` sets."""
    return tuple(f"llm.{k}" for k in WORKSPACE_IGNORED_LLM_KEYS if getattr(ws.llm, k))


def workspace_warning(path: Path | None, ignored: tuple[str, ...]) -> str:
    """The warning for a workspace file that set endpoint or key settings."""
    return (
        f"{path or 'the workspace config'} sets {', '.join(ignored)}; ignored: a workspace file may choose "
        "the LLM provider and model, but endpoints and keys come only from the global config "
        "(dorgu config set llm.base_url|llm.api_key), flags or the environment "
        "(DORGU_LLM_BASE_URL, OLLAMA_HOST, OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, GOOGLE_API_KEY)"
    )


def load_all(app_dir: Path, *, config_flag: str | None = None) -> Configs:
    gpath = global_config_path()
    notes: list[str] = []
    if (why := unreachable(gpath)) is not None:
        # no config can be read from a directory dorgu cannot enter: run on the defaults and say so
        notes.append(f"cannot look for the global config {gpath} ({why}); using the built-in defaults")
        g = GlobalConfig()
    else:
        g = (
            load_yaml_file(gpath, GlobalConfig, what="global config", on_unknown=notes.append)
            or GlobalConfig()
        )
    app_file = (app_dir / ".dorgu.yaml").resolve()
    ws_path = find_workspace_file(config_flag)
    if ws_path is not None and ws_path == app_file and not config_flag:
        ws_path = None  # the app's own file is read once, as the app config, never also as the workspace
    ws = (
        load_yaml_file(ws_path, WorkspaceConfig, what="workspace config", on_unknown=notes.append)
        if ws_path
        else None
    ) or WorkspaceConfig()
    ignored = ignored_workspace_keys(ws)
    if ignored:  # cleared here, so no reader of the workspace config can use them
        ws = msgspec.structs.replace(ws, llm=msgspec.structs.replace(ws.llm, base_url="", api_key=""))
    app = load_yaml_file(app_file, AppConfig, what="app config", on_unknown=notes.append)
    return Configs(
        global_=g,
        workspace=ws,
        app=app or AppConfig(),
        global_path=gpath,
        workspace_path=ws_path,
        app_path=app_file if app is not None else None,
        notes=tuple(notes),
        workspace_ignored=ignored,
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
    """Write ``cfg`` as the whole global config file (mode 0600, replaced atomically)."""
    _write_global(msgspec.to_builtins(cfg), path)


def set_global(key: str, value: str, *, path: Path) -> GlobalConfig:
    """Set one ``section.field`` (one of :data:`GLOBAL_KEYS`) in the global config file and return the result.

    Every other key in the file is kept: the known ones with their values, and the ones the schema does not
    know (at the top level or inside a section) as they were. Comments are not kept (the file is rewritten).
    """
    cfg = load_global(path)  # a malformed file is an error naming it, before anything is written
    section, field = key.split(".", 1)
    updated = msgspec.structs.replace(
        cfg, **{section: msgspec.structs.replace(getattr(cfg, section), **{field: value})}
    )
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None
    _write_global(_keep_unknown(msgspec.to_builtins(updated), raw if isinstance(raw, dict) else {}), path)
    return updated


def _keep_unknown(known: dict[str, Any], raw: dict[str, Any]) -> dict[str, Any]:
    """``known`` plus the keys of ``raw`` it lacks, recursively into mappings both have."""
    merged = dict(known)
    for k, v in raw.items():
        if k not in merged:
            merged[k] = v
        elif isinstance(merged[k], dict) and isinstance(v, dict):
            merged[k] = _keep_unknown(merged[k], v)
    return merged


def _write_global(data: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    header = (
        f"# dorgu global configuration\n# Location: {path}\n# Edit with: dorgu config set <key> <value>\n\n"
    )
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(header + body)
    os.replace(tmp, path)
