"""Bad input → exit 2 (1 for failures), a message that says what to fix, nothing half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.cli.conftest import ROOT, copy_app


def test_missing_path(run_cli, tmp_path):
    r = run_cli("generate", str(tmp_path / "nope"))
    assert r.code == 2 and f"Error: path does not exist: {tmp_path / 'nope'}" in r.err
    assert not Path("k8s").exists()


def test_no_dockerfile_or_compose(run_cli, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "main.py").write_text("print('hi')\n")
    r = run_cli("generate", str(app))
    assert r.code == 2
    assert "no Dockerfile or compose file found" in r.err and "add one" in r.err
    assert not Path("k8s").exists() and not Path("PERSONA.md").exists()


def test_usage_error_exit_2(run_cli):
    r = run_cli("generate", "--bogus")
    assert r.code == 2 and r.err.startswith("Error:")
    r = run_cli("nope")
    assert r.code == 2 and 'unknown command "nope"' in r.err


@pytest.mark.parametrize(
    ("where", "text", "expect"),
    [
        ("app", "app:\n  name: [oops\n", "parsing a flow sequence at line 2"),
        ("app", "app:\n  name: x\nscaling:\n  min_replicas: lots\n", ".dorgu.yaml:4: invalid app config"),
        ("workspace", "ingress:\n  tls:\n    enabled: maybe\n", ".dorgu.yaml:3: invalid workspace config"),
        ("global", "llm:\n\tprovider: x\n", "config.yaml:2:"),
    ],
)
def test_malformed_config_names_file_and_line(run_cli, tmp_path, cli_env, where, text, expect):
    app = copy_app("flask", tmp_path / "src")
    if where == "app":
        (app / ".dorgu.yaml").write_text(text)
    elif where == "workspace":
        (cli_env / ".dorgu.yaml").write_text(text)
    else:
        g = Path(os.environ["HOME"]) / ".config" / "dorgu" / "config.yaml"
        g.parent.mkdir(parents=True)
        g.write_text(text)
    r = run_cli("generate", str(app))
    assert r.code == 2, r.err
    assert expect in r.err
    assert not Path("k8s").exists()


def test_malformed_compose_is_an_error(run_cli, tmp_path):
    app = tmp_path / "app"
    app.mkdir()
    (app / "compose.yaml").write_text("services:\n  web:\n    ports: [\n")
    r = run_cli("generate", str(app))
    assert r.code == 2 and "compose.yaml:" in r.err


def test_unwritable_output_leaves_nothing_half_written(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    (cli_env / "PERSONA.md").mkdir()  # a directory where a file must go: the last rename target fails
    (cli_env / "PERSONA.md" / "x").write_text("")
    r = run_cli("generate", str(app))
    assert r.code == 1 and "Error:" in r.err
    leftovers = [p for p in cli_env.rglob("*") if p.is_file() and p.name != "x"]
    assert leftovers == [], leftovers


SETPRIV = shutil.which("setpriv")


@pytest.fixture
def world_tmp():
    """A temp dir outside pytest's (root-only) basetemp, so that `nobody` can reach it."""
    d = Path(tempfile.mkdtemp(prefix="dorgu-cli-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv")
@pytest.mark.parametrize("victim", ["Dockerfile", "requirements.txt", ".dorgu.yaml"])
def test_unreadable_file_as_unprivileged_user(world_tmp, victim):
    base = world_tmp
    app = copy_app("flask", base)
    (app / ".dorgu.yaml").write_text("app:\n  team: t\n")
    out = base / "out"
    out.mkdir()
    home = base / "home"
    home.mkdir()
    for p in [*base.rglob("*"), base]:
        p.chmod(0o777 if p.is_dir() else 0o644)
    (app / victim).chmod(0o600)  # root-owned, unreadable for nobody
    env = {"PATH": os.environ["PATH"], "HOME": str(home), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    cmd = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "cli.main"]
    p = subprocess.run(
        [*cmd, "generate", str(app)], cwd=out, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 2, p.stderr
    assert "cannot read" in p.stderr and str(app / victim) in p.stderr and "make it readable" in p.stderr
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv")
def test_unreadable_source_file_is_skipped_with_a_warning(world_tmp):
    base = world_tmp
    app = copy_app("flask", base)
    (app / "secret.py").write_text("x = '/healthz'\n")
    out = base / "out"
    out.mkdir()
    for p in [*base.rglob("*"), base]:
        p.chmod(0o777 if p.is_dir() else 0o644)
    (app / "secret.py").chmod(0o600)
    env = {"PATH": os.environ["PATH"], "HOME": str(base), "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    cmd = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "cli.main"]
    p = subprocess.run(
        [*cmd, "generate", str(app)], cwd=out, env=env, capture_output=True, text=True, timeout=60
    )
    assert p.returncode == 0, p.stderr
    assert "Warning: skipped unreadable" in p.stderr and "secret.py" in p.stderr
    assert (out / "k8s" / "deployment.yaml").exists()
