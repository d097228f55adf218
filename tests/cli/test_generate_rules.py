"""`dorgu generate`'s input rules and write rules (issue 19; security item 7): DNS-label names, no FROM, the
size cap, error messages naming the real cause, the checksum header (edited files kept without --force),
nothing left behind on failure, and no writing through symbolic links (a malicious repository)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from cli.errors import Failure
from cli.generator.stamp import stamp
from cli.names import RULE
from cli.writer import plan, write
from tests.cli.conftest import ROOT, copy_app, tree

SETPRIV = shutil.which("setpriv")
needs_root = pytest.mark.skipif(os.geteuid() != 0 or SETPRIV is None, reason="needs root and setpriv")


def _nothing_written(work: Path, *keep: str) -> None:
    left = sorted(p.relative_to(work).as_posix() for p in work.rglob("*") if p.name not in keep)
    assert left == [], left


# --------------------------------------------------------------------------- names


@pytest.mark.parametrize(
    ("flags", "config", "what"),
    [
        (["--namespace", "Bad_NS"], None, "--namespace 'Bad_NS'"),
        (["--namespace", "x" * 64], None, "--namespace 'xxxx"),
        (["--namespace", "-lead"], None, "--namespace '-lead'"),
        (["--name", "My_App"], None, "--name 'My_App'"),
        ([], ("app", "app:\n  name: Shop.API\n"), "app.name in "),
        ([], ("global", "defaults:\n  namespace: Prod_1\n"), "defaults.namespace in "),
    ],
)
def test_names_and_namespaces_must_be_dns_labels(run_cli, tmp_path, cli_env, flags, config, what):
    app = copy_app("flask", tmp_path / "src")
    if config and config[0] == "app":
        (app / ".dorgu.yaml").write_text(config[1])
    elif config:
        g = Path(os.environ["HOME"]) / ".config" / "dorgu" / "config.yaml"
        g.parent.mkdir(parents=True)
        g.write_text(config[1])
    r = run_cli("generate", str(app), *flags)
    assert r.code == 2, r.err
    assert what in r.err and "is not a valid Kubernetes name" in r.err and RULE in r.err
    _nothing_written(cli_env)


def test_a_suggestion_is_offered_for_a_fixable_name(run_cli, tmp_path):
    app = copy_app("flask", tmp_path / "src")
    r = run_cli("generate", str(app), "--namespace", "Team_A")
    assert r.code == 2 and "try 'team-a'" in r.err


# --------------------------------------------------------------------------- the Dockerfile


@pytest.mark.parametrize(
    "content",
    [b"RUN echo hi\nEXPOSE 80\n", os.urandom(4096), b"# only a comment\n", b""],
    ids=["no-from", "random-bytes", "comment-only", "empty"],
)
def test_a_dockerfile_without_from_is_an_input_error(run_cli, tmp_path, cli_env, content):
    app = copy_app("flask", tmp_path / "src")
    (app / "Dockerfile").write_bytes(content)
    r = run_cli("generate", str(app))
    assert r.code == 2, r.err
    assert f"Error: {app / 'Dockerfile'}: no FROM instruction" in r.err
    _nothing_written(cli_env)


@pytest.mark.parametrize(("victim", "what"), [("Dockerfile", "Dockerfile"), (".dorgu.yaml", "app config")])
def test_input_files_above_the_size_cap_are_refused(run_cli, tmp_path, cli_env, victim, what):
    app = copy_app("flask", tmp_path / "src")
    big = app / victim
    with big.open("ab") as fh:  # 50 MB, sparse: the point is that dorgu refuses to read it
        fh.truncate(50 * 1024 * 1024)
    r = run_cli("generate", str(app))
    assert r.code == 2, r.err
    assert f"{what} {big} is too large (52428800 bytes; dorgu reads at most 1048576 bytes)" in r.err
    _nothing_written(cli_env)


# ------------------------------------------------------------------------ messages that name the real cause


@pytest.fixture
def world_tmp():
    """A temp dir outside pytest's (root-only) basetemp, so that `nobody` can reach it."""
    d = Path(tempfile.mkdtemp(prefix="dorgu-cli-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def _as_nobody(args: list[str], *, cwd: Path, home: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ["PATH"], "HOME": home, "NO_COLOR": "1", "PYTHONPATH": str(ROOT)}
    cmd = [SETPRIV, "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable, "-m", "cli.main"]
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _open_up(base: Path) -> None:
    for p in [*base.rglob("*"), base]:
        p.chmod(0o777 if p.is_dir() else 0o644)


@needs_root
def test_an_unreadable_app_directory_is_named_as_such(world_tmp):
    app = copy_app("flask", world_tmp)
    out = world_tmp / "out"
    out.mkdir()
    _open_up(world_tmp)
    app.chmod(0o700)  # root's: nobody can neither list nor enter it
    p = _as_nobody(["generate", str(app)], cwd=out, home=str(world_tmp))
    assert p.returncode == 2, p.stderr
    assert f"cannot read the application directory {app}: Permission denied" in p.stderr
    assert ".dorgu.yaml" not in p.stderr
    assert list(out.iterdir()) == []


@needs_root
def test_an_unreachable_home_is_no_global_config(world_tmp):
    app = copy_app("flask", world_tmp)
    out = world_tmp / "out"
    out.mkdir()
    _open_up(world_tmp)
    home = world_tmp / "home"
    home.mkdir(mode=0o700)  # root's: nobody cannot even look for ~/.config/dorgu/config.yaml
    p = _as_nobody(["generate", str(app)], cwd=out, home=str(home))
    assert p.returncode == 0, p.stderr
    assert (
        f"cannot look for the global config {home}/.config/dorgu/config.yaml (Permission denied)" in p.stderr
    )
    assert "cannot read global config" not in p.stderr
    assert (out / "k8s" / "deployment.yaml").is_file()


# --------------------------------------------------------------------------- the checksum header


def _summary(out: str) -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    current = None
    for line in out.splitlines():
        if line.startswith("Files "):
            current = line.split()[1].rstrip(":")
            groups[current] = []
        elif current and line.startswith("  "):
            groups[current].append(line.strip())
        elif not line.strip():
            current = None
    return groups


def test_edited_files_are_kept_without_force(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    r = run_cli("generate", str(app))
    assert r.code == 0 and len(_summary(r.out)["created"]) == 8, r.out
    first = tree(cli_env)
    assert all(data.startswith((b"# dorgu: generated, sha256:", b"<!-- dorgu:")) for data in first.values())

    r = run_cli("generate", str(app))
    assert r.code == 0 and list(_summary(r.out)) == ["unchanged"] and tree(cli_env) == first

    persona_md = cli_env / "PERSONA.md"
    persona_md.write_text(persona_md.read_text() + "\n## Runbook\nPage the on-call.\n")
    deployment = cli_env / "k8s" / "deployment.yaml"
    deployment.write_text(deployment.read_text().split("\n", 1)[1])  # header removed: not dorgu's any more
    r = run_cli("generate", str(app), "--namespace", "shop")  # every file's content changes
    assert r.code == 0, r.err
    summary = _summary(r.out)
    assert sorted(summary["kept"]) == ["PERSONA.md", "k8s/deployment.yaml"], r.out
    assert len(summary["updated"]) == 5 and summary["unchanged"] == [".github/workflows/deploy.yaml"], r.out
    assert "rerun with --force" in r.out
    assert "Page the on-call." in persona_md.read_text()
    assert "namespace: shop" not in deployment.read_text()
    assert "namespace: shop" in (cli_env / "k8s" / "service.yaml").read_text()

    r = run_cli("generate", str(app), "--namespace", "shop", "--force")
    assert r.code == 0 and sorted(_summary(r.out)["updated"]) == ["PERSONA.md", "k8s/deployment.yaml"], r.out
    assert "Page the on-call." not in persona_md.read_text()
    assert "namespace: shop" in deployment.read_text()


def test_a_file_dorgu_did_not_write_is_kept(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    (cli_env / "PERSONA.md").write_text("# Our own persona notes\n")
    r = run_cli("generate", str(app))
    assert r.code == 0 and _summary(r.out)["kept"] == ["PERSONA.md"], r.out
    assert (cli_env / "PERSONA.md").read_text() == "# Our own persona notes\n"


def test_persona_generate_keeps_an_edited_persona_too(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    assert run_cli("persona", "generate", str(app)).code == 0
    target = cli_env / "persona.yaml"
    yaml.safe_load(target.read_text())  # the header is a YAML comment
    target.write_text(target.read_text() + "# reviewed by the payments team\n")
    edited = target.read_text()
    r = run_cli("persona", "generate", str(app))
    assert r.code == 0 and "Kept persona.yaml" in r.out and target.read_text() == edited
    assert run_cli("persona", "generate", str(app), "--force").code == 0 and target.read_text() != edited


# --------------------------------------------------------------------------- failures leave nothing behind


def test_a_failed_write_leaves_no_directory_behind(run_cli, tmp_path, cli_env):
    app = copy_app("flask", tmp_path / "src")
    (cli_env / "PERSONA.md").mkdir()  # a directory where a file must go
    (cli_env / "PERSONA.md" / "x").write_text("")
    r = run_cli("generate", str(app))
    assert r.code == 1 and "nothing was written" in r.err
    assert sorted(p.relative_to(cli_env).as_posix() for p in cli_env.rglob("*")) == [
        "PERSONA.md",
        "PERSONA.md/x",
    ]


@needs_root
def test_a_write_failing_part_way_changes_nothing(world_tmp):
    """k8s/ is made unwritable after the first run: the second run's temporaries there cannot be created, so
    nothing changes — not even PERSONA.md and the workflow, whose directories were writable."""
    app = copy_app("flask", world_tmp / "src")
    out = world_tmp / "out"
    out.mkdir()
    _open_up(world_tmp)
    p = _as_nobody(["generate", str(app)], cwd=out, home=str(world_tmp))
    assert p.returncode == 0, p.stderr
    before = tree(out)
    os.chown(out / "k8s", 0, 0)  # root's now, and not writable for nobody
    (out / "k8s").chmod(0o755)
    p = _as_nobody(["generate", str(app), "--namespace", "other"], cwd=out, home=str(world_tmp))
    assert p.returncode == 1 and "Permission denied (nothing was written)" in p.stderr, p.stderr
    assert tree(out) == before
    assert not [q for q in out.rglob("*") if q.name.endswith((".dorgu-tmp", ".dorgu-old"))]


def test_a_failed_rename_puts_back_what_was_renamed(tmp_path, monkeypatch):
    """The rename phase: the third rename fails (its target became a non-empty directory after planning),
    so the first file, created, is removed and the second, updated, gets its old content back."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "old.yaml").write_text(stamp("old.yaml", "v: 1\n"))
    planned = plan(
        [(Path("new.yaml"), "n: 1\n"), (Path("old.yaml"), stamp("old.yaml", "v: 2\n")), (Path("d"), "x")]
    )
    assert [p.action for p in planned] == ["created", "updated", "created"]
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "keep").write_text("")
    with pytest.raises(Failure, match=r"cannot write d: .*nothing was written"):
        write(planned)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d", "old.yaml"]
    assert (tmp_path / "old.yaml").read_text() == stamp("old.yaml", "v: 1\n")


# --------------------------------------------------------------------------- symbolic links (security item 7)


def test_a_planted_temporary_symlink_does_not_redirect_the_write(run_cli, tmp_path, cli_env):
    """The old writer opened `.PERSONA.md.dorgu-tmp` with O_CREAT|O_TRUNC, following a link planted there."""
    app = copy_app("flask", tmp_path / "src")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    for name in ("PERSONA.md", "deployment.yaml"):
        where = cli_env if name == "PERSONA.md" else cli_env / "k8s"
        where.mkdir(exist_ok=True)
        (where / f".{name}.dorgu-tmp").symlink_to(victim)
    r = run_cli("generate", str(app))
    assert r.code == 0, r.err
    assert victim.read_text() == "precious\n"
    assert (cli_env / "PERSONA.md").read_text().startswith("<!-- dorgu: generated")


@pytest.mark.parametrize("link", ["PERSONA.md", ".github", "k8s", "k8s/argocd"])
def test_a_symlinked_target_or_directory_is_refused(run_cli, tmp_path, cli_env, link):
    app = copy_app("flask", tmp_path / "src")
    victim = tmp_path / "victim"
    if link == "PERSONA.md":
        victim.write_text("precious\n")
    else:
        victim.mkdir()
    (cli_env / link).parent.mkdir(parents=True, exist_ok=True)
    (cli_env / link).symlink_to(victim)
    r = run_cli("generate", str(app))
    assert r.code == 2, r.err
    assert "a symbolic link (to " in r.err and "nothing was written" in r.err
    assert (cli_env / link).is_symlink()
    if link == "PERSONA.md":
        assert victim.read_text() == "precious\n"
    else:
        assert list(victim.iterdir()) == []
    assert not [p for p in cli_env.rglob("*") if p.is_file() and not p.is_symlink()]


# --------------------------------------------------------------------------- the probe report


def test_no_route_no_probe_and_it_says_so(run_cli, tmp_path, cli_env):
    app = tmp_path / "sinatra"
    app.mkdir()
    (app / "Dockerfile").write_text('FROM ruby:3.3\nCOPY . .\nEXPOSE 4567\nCMD ["ruby", "app.rb"]\n')
    (app / "Gemfile").write_text('source "https://rubygems.org"\ngem "sinatra"\n')
    (app / "app.rb").write_text("require 'sinatra'\nget '/healthz' do\n  'ok'\nend\n")
    r = run_cli("generate", str(app))
    assert r.code == 0, r.err
    assert "Probes: none — dorgu has no route finder for sinatra, and no HEALTHCHECK" in r.out
    assert "livenessProbe" not in (cli_env / "k8s" / "deployment.yaml").read_text()

    compose = copy_app("compose-app", tmp_path / "src3")
    r = run_cli("generate", str(compose), "-o", "k3")
    assert "liveness   GET /status (port 8080) from docker-compose.yml:22, the compose healthcheck" in r.out
    fastapi = copy_app("fastapi", tmp_path / "src4")
    (fastapi / "orders" / "routers" / "health.py").unlink()
    (fastapi / "main.py").write_text("from fastapi import FastAPI\n\napp = FastAPI()\n")
    r = run_cli("generate", str(fastapi), "-o", "k4")
    assert (
        "liveness   GET /api/v1/health (port 8000) from Dockerfile:16, the Dockerfile's HEALTHCHECK" in r.out
    )

    flask = copy_app("flask", tmp_path / "src2")
    (flask / "shop" / "api.py").write_text(
        (flask / "shop" / "api.py").read_text().replace('"/health"', '"/version"').replace('"/ready"', '"/v"')
    )
    r = run_cli("generate", str(flask), "-o", "k2")
    assert "Probes: none — no GET health route among the 5 route(s) the flask route finder found" in r.out
