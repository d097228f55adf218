"""Issue 20: configuration files written for (or by) the Go tool load as they are.

The global config as ``dorgu init --global`` of the Go tool writes it (4-space indent, default provider
gemini), an org ``.dorgu.yaml`` with the Go tool's whole schema and its empty blocks (``labels.custom:`` with
nothing under it), and keys no schema knows — a warning naming the key, file and line, never an error.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import yaml

from cli.settings import GlobalConfig, WorkspaceConfig, load_yaml_file
from tests.cli.conftest import Result, copy_app
from tests.cli.llm_standins import StandIn

GO_GLOBAL = """\
# Dorgu Global Configuration
# Location: {path}
# Edit with: dorgu config set <key> <value>

version: "1"
llm:
    provider: gemini
    api_key: {key}
    model: ""
defaults:
    namespace: default
    registry: ""
    org_name: Acme
"""
"""What the Go tool's ``init --global`` writes when every prompt is answered with its default."""

GO_ORG = """\
# Organization-wide dorgu settings
version: "1"
org:
  name: acme
naming:
  pattern: "{app}"
  dns_safe: true
resources:
  defaults:
    requests:
      cpu: 100m
      memory: 128Mi
    limits:
      cpu: 500m
      memory: 512Mi
  profiles:
    api:
      requests:
        cpu: 200m
        memory: 256Mi
      limits:
        cpu: 1000m
        memory: 1Gi
labels:
  required:
    - app.kubernetes.io/name
    - app.kubernetes.io/team
  custom:
annotations:
  custom:
security:
  pod_security_context:
    run_as_non_root: true
    seccomp_profile:
      type: RuntimeDefault
  container_security_context:
    allow_privilege_escalation: false
    read_only_root_filesystem: true
    capabilities:
      drop:
        - ALL
      add:
ingress:
  class: nginx
  domain_suffix: .apps.acme.example
  tls:
    enabled: false
    cluster_issuer:
argocd:
  project: platform
  destination:
    server: https://kubernetes.default.svc
    namespace:
  sync_policy:
    automated:
      prune: true
      self_heal: true
ci:
  provider: github-actions
  registry:
llm:
  provider:
  model:
"""
"""An org ``.dorgu.yaml`` over the Go tool's whole workspace schema, with its empty blocks."""


@pytest.fixture
def gemini() -> Iterator[StandIn]:
    server = StandIn("gemini")  # a stand-in for the Gemini API: the real one cannot be reached from a test
    yield server
    server.close()


def write_go_global(home: Path, key: str) -> Path:
    path = home / ".config" / "dorgu" / "config.yaml"
    path.parent.mkdir(parents=True)
    path.write_text(GO_GLOBAL.format(path=path, key=key or '""'))
    return path


def test_a_go_global_config_with_gemini_loads_and_generate_uses_it(
    run_cli: Callable[..., Result], cli_env: Path, gemini: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_go_global(cli_env.parent / "home", "AIza-go-written-key")
    monkeypatch.setenv("DORGU_LLM_BASE_URL", gemini.base_url)
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "-o", "k8s")

    assert r.code == 0, r.err
    assert "Warning" not in r.err, r.err
    assert [s.header("x-goog-api-key") for s in gemini.seen] == ["AIza-go-written-key"] * 2
    assert gemini.seen[0].path.endswith("/models/gemini-2.5-flash:generateContent")  # model "": the default
    assert "An order API for the shop." in (cli_env / "k8s" / "persona.yaml").read_text()
    listed = run_cli("config", "list")
    assert listed.code == 0 and "llm.provider       = gemini" in listed.out
    assert run_cli("config", "set", "llm.provider", "anthropic").code == 0
    assert run_cli("config", "get", "llm.provider").out.strip() == "anthropic"


def test_a_go_global_config_with_gemini_and_no_key_still_generates(
    run_cli: Callable[..., Result], cli_env: Path, gemini: StandIn, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_go_global(cli_env.parent / "home", "")  # the Go tool's init leaves the key empty: "use env var"
    monkeypatch.setenv("DORGU_LLM_BASE_URL", gemini.base_url)
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "-o", "k8s")

    assert r.code == 0, r.err
    assert gemini.seen == []
    assert (
        "Warning: LLM analysis failed, using basic analysis: Gemini API key not set. Set GEMINI_API_KEY "
        "(or GOOGLE_API_KEY) or run: dorgu config set llm.api_key <key>"
    ) in r.err
    assert (cli_env / "k8s" / "deployment.yaml").is_file() and (cli_env / "PERSONA.md").is_file()


def test_an_org_config_with_empty_blocks_loads(run_cli: Callable[..., Result], cli_env: Path) -> None:
    (cli_env / ".dorgu.yaml").write_text(GO_ORG)
    app = copy_app("flask", cli_env)

    r = run_cli("generate", str(app), "-o", "k8s")

    assert r.code == 0, r.err
    assert "unknown key" not in r.err and "Warning" not in r.err, r.err  # every key of the Go schema is known
    dep = yaml.safe_load((cli_env / "k8s" / "deployment.yaml").read_text())
    assert set(dep["metadata"]["labels"]) == {"app.kubernetes.io/name", "app.kubernetes.io/managed-by"}
    assert "annotations" not in dep["metadata"]
    resources = dep["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "200m", "memory": "256Mi"}  # the org's api profile was read
    ingress = yaml.safe_load((cli_env / "k8s" / "ingress.yaml").read_text())
    assert ingress["spec"]["rules"][0]["host"] == "flask.apps.acme.example"
    argo = yaml.safe_load((cli_env / "k8s" / "argocd" / "application.yaml").read_text())
    assert argo["spec"]["project"] == "platform"


def test_empty_labels_custom_alone_loads(run_cli: Callable[..., Result], cli_env: Path) -> None:
    """The issue's case: ``labels:`` / ``custom:`` with nothing under it used to exit 2."""
    (cli_env / ".dorgu.yaml").write_text("labels:\n  custom:\n")
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 0, r.err
    cfg = load_yaml_file(cli_env / ".dorgu.yaml", WorkspaceConfig, what="workspace config")
    assert cfg is not None and cfg.labels.custom == {}


def test_a_value_of_the_wrong_type_is_still_an_error(run_cli: Callable[..., Result], cli_env: Path) -> None:
    (cli_env / ".dorgu.yaml").write_text("labels:\n  custom: [a, b]\n")
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 2
    assert f"{cli_env / '.dorgu.yaml'}:2: invalid workspace config" in r.err


def test_unknown_keys_are_warned_naming_key_file_and_line(
    run_cli: Callable[..., Result], cli_env: Path
) -> None:
    (cli_env / ".dorgu.yaml").write_text(
        "version: '1'\ningres:\n  class: traefik\ningress:\n  klass: traefik\n"
        "resources:\n  profiles:\n    api:\n      limits:\n        cpus: 2\n"
    )
    app = copy_app("flask", cli_env)
    (app / ".dorgu.yaml").write_text(
        "app:\n  name: flask\n  teem: shop\ndependencies:\n  - name: db\n    kind: x\n"
    )
    home = cli_env.parent / "home"
    (home / ".config" / "dorgu").mkdir(parents=True)
    (home / ".config" / "dorgu" / "config.yaml").write_text("llm:\n  provider: ''\n  temperature: 0.2\n")

    r = run_cli("generate", str(app), "--dry-run")

    assert r.code == 0, r.err
    ws, appcfg, glob = (
        cli_env / ".dorgu.yaml",
        app / ".dorgu.yaml",
        home / ".config" / "dorgu" / "config.yaml",
    )
    warnings = [line for line in r.err.splitlines() if "unknown key" in line]
    assert warnings == [
        f"Warning: {glob}:3: unknown key 'llm.temperature' in the global config; ignored",
        f"Warning: {ws}:2: unknown key 'ingres' in the workspace config; ignored",
        f"Warning: {ws}:5: unknown key 'ingress.klass' in the workspace config; ignored",
        f"Warning: {ws}:10: unknown key 'resources.profiles.api.limits.cpus' in the workspace config; "
        "ignored",
        f"Warning: {appcfg}:3: unknown key 'app.teem' in the app config; ignored",
        f"Warning: {appcfg}:6: unknown key 'dependencies[0].kind' in the app config; ignored",
    ], r.err


def test_labels_and_annotations_keys_are_values_not_schema_keys(
    run_cli: Callable[..., Result], cli_env: Path
) -> None:
    """Keys of free-form maps (labels, annotations, profiles) are data: never "unknown"."""
    (cli_env / ".dorgu.yaml").write_text(
        yaml.safe_dump(
            {
                "labels": {"custom": {"company.com/team": "shop"}},
                "annotations": {"custom": {"prometheus.io/scrape": "true"}},
                "resources": {"profiles": {"batch": {"limits": {"cpu": "2"}}}},
            }
        )
    )
    r = run_cli("generate", str(copy_app("flask", cli_env)), "--dry-run")
    assert r.code == 0, r.err
    assert "unknown key" not in r.err
    assert "company.com/team: shop" in r.out


def test_config_set_accepts_every_go_provider(run_cli: Callable[..., Result], cli_env: Path) -> None:
    for name in ("openai", "anthropic", "gemini", "ollama", ""):
        r = run_cli("config", "set", "llm.provider", name)
        assert r.code == 0, r.err
    r = run_cli("config", "set", "llm.provider", "watson")
    assert r.code == 2
    assert "invalid LLM provider: watson (valid: openai, anthropic, gemini, ollama)" in r.err
    cfg = load_yaml_file(
        cli_env.parent / "home" / ".config" / "dorgu" / "config.yaml", GlobalConfig, what="x"
    )
    assert cfg is not None and json.dumps(cfg.llm.provider) == '""'
