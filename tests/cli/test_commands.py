"""Dispatcher, config commands, init, cluster init, config precedence, analyzer units."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cli.analyzer.compose import parse_compose
from cli.analyzer.dockerfile import parse_dockerfile
from cli.analyzer.git import git_remote
from tests.cli.conftest import ROOT, copy_app


def test_help_and_groups(run_cli):
    r = run_cli()
    assert r.code == 0 and "persona apply" in r.out and "Exit codes" in r.out
    r = run_cli("persona")
    assert r.code == 0 and "  apply [PATH]" in r.out and "dorgu persona <command>" in r.out
    r = run_cli("persona", "nope")
    assert r.code == 2 and 'unknown command "nope"' in r.err
    r = run_cli("version")
    assert r.code == 0 and r.out.startswith("dorgu ")
    r = run_cli("--no-color", "version")
    assert r.code == 0


def test_config_set_get_list_reset(run_cli):
    assert run_cli("config", "set", "defaults.registry", "ghcr.io/acme").code == 0
    assert run_cli("config", "get", "defaults.registry").out.strip() == "ghcr.io/acme"
    assert run_cli("config", "set", "llm.api_key", "sk-1234567890").out.strip().endswith("sk-1*****7890")
    r = run_cli("config", "list")
    assert "defaults.registry  = ghcr.io/acme" in r.out and "sk-1*****7890" in r.out
    r = run_cli("config", "set", "nope", "x")
    assert r.code == 2 and "unknown config key: nope" in r.err
    r = run_cli("config", "set", "llm.provider", "skynet")
    assert r.code == 2 and "invalid LLM provider" in r.err
    path = Path(run_cli("config", "path").out.strip())
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert run_cli("config", "reset").code == 0
    assert run_cli("config", "get", "defaults.registry").out.strip() == "(not set)"


def test_config_set_keeps_every_other_key(run_cli, monkeypatch):
    """One schema for the global config: ``operator.*`` is listed, read and set like every key; ``set``
    changes one key only — every other section survives, and so do keys the schema does not know (kept, by
    decision: a newer dorgu's keys or the user's own must survive an older one's edit); the live commands
    read ``operator.*`` through that schema."""
    from docopt import docopt

    from cli import live

    monkeypatch.delenv("DORGU_OPERATOR_URL", raising=False)
    monkeypatch.delenv("DORGU_OPERATOR_TOKEN", raising=False)
    path = Path(run_cli("config", "path").out.strip())
    before = {
        "version": "1",
        "llm": {"provider": "ollama", "api_key": "sk-abcdefghijkl", "model": "llama3",
                "base_url": "http://llm.example:11434/v1", "temperature": 0.2},
        "defaults": {"namespace": "a", "registry": "ghcr.io/acme", "org_name": "Acme"},
        "operator": {"url": "wss://dorgu.example:9090/ws", "token": "tok-0123456789"},
        "extra": {"anything": ["the", "user", "wrote"]},
    }  # fmt: skip
    path.parent.mkdir(parents=True)
    path.write_text(yaml.safe_dump(before))
    assert run_cli("config", "set", "defaults.namespace", "b").code == 0
    after = {**before, "defaults": {**before["defaults"], "namespace": "b"}}
    assert yaml.safe_load(path.read_text()) == after

    assert run_cli("config", "get", "operator.url").out.strip() == "wss://dorgu.example:9090/ws"
    assert run_cli("config", "get", "operator.token").out.strip() == "tok-******6789"
    listed = run_cli("config", "list").out
    assert "operator.url       = wss://dorgu.example:9090/ws" in listed and "tok-******6789" in listed
    r = run_cli("config", "set", "operator.url", "http://dorgu.example")
    assert r.code == 2 and "operator.url must be a ws:// or wss:// URL" in r.err
    assert run_cli("config", "set", "operator.token", "tok-new-0123").code == 0
    settings = live.client_settings(docopt(live.__doc__ or "", argv=["persona", "list"]))
    assert (settings.url, settings.token) == ("wss://dorgu.example:9090/ws", "tok-new-0123")
    assert yaml.safe_load(path.read_text())["extra"] == before["extra"]


def test_precedence_flag_app_workspace_global(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    run_cli("config", "set", "defaults.registry", "global.example/r")
    run_cli("config", "set", "defaults.namespace", "from-global")
    r = run_cli("persona", "generate", str(app), "--dry-run")
    doc = yaml.safe_load(r.out)
    assert doc["metadata"]["namespace"] == "from-global"
    r = run_cli("generate", str(app), "--dry-run", "--skip-validation")
    assert "image: global.example/r/flask:latest" in r.out
    # workspace beats global; app beats workspace; flags beat all
    (cli_env / ".dorgu.yaml").write_text(
        "ci:\n  registry: ws.example/r\nlabels:\n  custom:\n    company.com/team: ws\n"
    )
    (app / ".dorgu.yaml").write_text("labels:\n  company.com/team: app\napp:\n  name: from-app\n")
    r = run_cli("generate", str(app), "--dry-run", "--skip-validation")
    assert "Using config file:" in r.err
    assert "image: ws.example/r/from-app:latest" in r.out and "company.com/team: app" in r.out
    r = run_cli(
        "generate", str(app), "--dry-run", "--skip-validation", "--name", "from-flag", "--namespace", "ns1"
    )
    assert "name: from-flag" in r.out and "namespace: ns1" in r.out


def test_app_dir_is_cwd_its_file_is_not_also_workspace(run_cli, tmp_path, monkeypatch):
    app = copy_app("flask", tmp_path / "src")
    (app / ".dorgu.yaml").write_text("app:\n  name: solo\n")
    monkeypatch.chdir(app)
    r = run_cli("generate", ".", "--dry-run", "--skip-validation")
    assert r.code == 0 and "Using config file" not in r.err and "name: solo" in r.out


def test_init_minimal_full_and_interactive(run_cli, tmp_path, monkeypatch):
    app = copy_app("flask", tmp_path / "src")
    r = run_cli("init", str(app), "--minimal")
    assert r.code == 0 and yaml.safe_load((app / ".dorgu.yaml").read_text())["app"]["name"] == "flask"
    r = run_cli("init", str(app), "--full")
    assert r.code == 2 and "--force" in r.err
    assert run_cli("init", str(app), "--full", "--force").code == 0
    assert run_cli("generate", str(app), "--dry-run").code == 0  # the full example is a valid app config
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("svc\nA service\nteam-a\na@example.com\n\n\nstaging\n"))
    assert run_cli("init", str(app), "--force").code == 0
    doc = yaml.safe_load((app / ".dorgu.yaml").read_text())
    assert doc["app"]["name"] == "svc" and doc["app"]["type"] == "api" and doc["environment"] == "staging"


def test_cluster_init_dry_run_needs_no_cluster(run_cli):
    r = run_cli("cluster", "init", "--name", "prod", "--environment", "production", "--dry-run")
    assert r.code == 0
    doc = yaml.safe_load(r.out)
    assert doc["kind"] == "ClusterPersona" and doc["spec"]["environment"] == "production"
    assert run_cli("cluster", "init", "--name", "prod", "--environment", "moon").code == 2
    assert run_cli("cluster", "init").code == 2


ANSI = re.compile(rb"\x1b\[[0-9;]*m")


def _dorgu(argv: list[str], env: dict[str, str], *, tty: bool) -> bytes:
    """``dorgu`` in a process of its own, its stdout and stderr a pseudo-terminal (``tty``) or a pipe."""
    if not tty:
        return subprocess.run([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env,
                              stdin=subprocess.DEVNULL, capture_output=True, timeout=60).stdout  # fmt: skip
    leader, follower = os.openpty()
    try:
        proc = subprocess.Popen([sys.executable, "-m", "cli.main", *argv], cwd=ROOT, env=env,
                                stdin=subprocess.DEVNULL, stdout=follower, stderr=follower)  # fmt: skip
        os.close(follower)
        out = b""
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # EIO: the child's end of the terminal is closed
                break
            if not chunk:
                break
            out += chunk
        assert proc.wait(60) == 0, out
    finally:
        os.close(leader)
    return out


@pytest.mark.parametrize(
    ("no_color_env", "flag", "tty", "coloured"),
    [
        (None, False, True, True),  # a terminal: colour
        ("", False, True, True),  # NO_COLOR empty counts as unset (no-color.org)
        ("1", False, True, False),
        ("0", False, True, False),  # any non-empty value, even "0"
        (None, True, True, False),  # --no-color
        (None, False, False, False),  # a pipe: never colour
    ],
)
def test_colour_only_on_a_terminal_without_no_color(
    tmp_path: Path, no_color_env: str | None, flag: bool, tty: bool, coloured: bool
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "XDG_CONFIG_HOME", "KUBECONFIG")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    if no_color_env is not None:
        env["NO_COLOR"] = no_color_env
    argv = ["config", "set", "defaults.registry", "ghcr.io/acme", *(["--no-color"] if flag else [])]
    out = _dorgu(argv, env, tty=tty)
    if coloured:
        assert ANSI.search(out), out
    else:
        assert b"\x1b" not in out, out  # no escape sequence of any kind
    # the symbols and the text are the same either way
    assert ANSI.sub(b"", out).decode().strip() == "✓ Set defaults.registry = ghcr.io/acme"


def test_dockerfile_multistage_platform_healthcheck():
    info = parse_dockerfile(
        "ARG V=3.12\nFROM --platform=$BUILDPLATFORM python:${V} AS build\nEXPOSE 9999\n"
        "FROM python:${V}-slim\nENV PORT=8000 \\\n    B=2\nEXPOSE ${PORT}/tcp 9090/udp\nUSER 1000:1000\n"
        'HEALTHCHECK --interval=5s CMD ["curl", "-f", "http://localhost:8000/healthz"]\n'
    )
    assert info.base_image == "python:3.12-slim" and info.build_stages == ["build"]
    assert info.ports == [8000, 9090]  # the builder stage's 9999 is not the runtime's
    assert [e.name for e in info.env_vars] == ["B", "PORT"] and info.user == "1000:1000"
    assert info.healthcheck is not None and (info.healthcheck.path, info.healthcheck.port) == (
        "/healthz",
        8000,
    )


def test_compose_long_syntax():
    info = parse_compose(
        "services:\n  app:\n    build: {context: .}\n"
        "    ports:\n      - target: 80\n        published: 8080\n"
        "    environment: [A=1, B]\n    depends_on: {db: {condition: service_healthy}}\n"
        "    volumes:\n      - type: tmpfs\n        target: /cache\n  db:\n    image: postgres:16\n",
        path="compose.yaml",
        app_name="x",
    )
    app = info.services[0]
    assert info.primary == "app" and app.ports[0].container == 80 and app.ports[0].host == 8080
    assert [(e.name, e.value, e.required) for e in app.environment] == [("A", "1", False), ("B", "", True)]
    assert app.depends_on == ["db"] and app.volumes == ["/cache"]


def test_git_remote_only_at_repo_root(tmp_path):
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "config").write_text('[remote "origin"]\n\turl = git@github.com:acme/shop.git\n')
    (tmp_path / "sub").mkdir()
    assert git_remote(tmp_path) == "https://github.com/acme/shop"
    assert git_remote(tmp_path / "sub") == ""


def test_llm_provider_failure_falls_back(run_cli, tmp_path, monkeypatch):
    app = copy_app("flask", tmp_path / "src")
    monkeypatch.setenv("DORGU_LLM_BASE_URL", "http://127.0.0.1:9/v1")
    r = run_cli("persona", "generate", str(app), "--dry-run", "--llm-provider", "ollama")
    assert r.code == 0 and "Warning: LLM analysis failed, using basic analysis" in r.err
    assert "A containerized api application" in r.out
