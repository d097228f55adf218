"""Issue 17, item 5: the CLI's exec-plugin token never lands where another local user can read it.

Before, the CLI kept the token in ``/tmp/dorgu-cli-<uid>`` (a predictable name it accepted when it already
existed, whoever made it) and opened ``token.tmp`` there without ``O_EXCL``: another user could create the
directory world-writable with ``token.tmp`` a symlink to a file of theirs, and receive the token. These
tests plant exactly that (in a private ``TMPDIR`` standing in for ``/tmp``) and check where the token goes.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cli import kube
from dorgu.runtime.kubeconfig import ConfigError, TokenRefresher, private_dir

TOKEN = "exec-plugin-token-0123456789"


@pytest.fixture
def exec_kubeconfig(tmp_path: Path) -> Path:
    """A kubeconfig whose user is an exec plugin printing :data:`TOKEN` (nothing contacts a server)."""
    plugin = tmp_path / "plugin.py"
    plugin.write_text(
        "import json\n"
        "print(json.dumps({'apiVersion': 'client.authentication.k8s.io/v1beta1', 'kind': 'ExecCredential',"
        f" 'status': {{'token': {TOKEN!r}}}}}))\n"
    )
    exec_user = {
        "apiVersion": "client.authentication.k8s.io/v1beta1",
        "command": sys.executable,
        "args": [str(plugin)],
    }
    doc = {
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "k", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": "u", "user": {"exec": exec_user}}],
        "contexts": [{"name": "c", "context": {"cluster": "k", "user": "u"}}],
    }  # fmt: skip
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.fixture
def shared_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in for the shared ``/tmp``: ``tempfile`` uses it, and no runtime directory is set."""
    shared = tmp_path / "shared-tmp"
    shared.mkdir(mode=0o777)
    shared.chmod(0o1777)
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    kube.token_dir.cache_clear()
    yield shared
    kube.token_dir.cache_clear()


def _private(path: Path) -> None:
    st = os.lstat(path)
    assert stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid()
    assert stat.S_IMODE(st.st_mode) == 0o700, oct(st.st_mode)


def test_a_planted_directory_and_symlink_in_tmp_never_receive_the_token(
    exec_kubeconfig: Path, shared_tmp: Path
) -> None:
    planted = shared_tmp / f"dorgu-cli-{os.getuid()}"
    planted.mkdir()
    planted.chmod(0o777)
    victim = shared_tmp / "attacker-reads-this"
    victim.write_text("")
    victim.chmod(0o666)
    (planted / "token.tmp").symlink_to(victim)
    (planted / "token").symlink_to(victim)

    conn = kube.connection(kubeconfig=str(exec_kubeconfig), context=None)

    assert victim.read_text() == "", "the token was written through the planted symlink"
    assert conn.token_file is not None
    token_file = Path(conn.token_file)
    assert token_file.read_text() == TOKEN
    assert token_file.parent != planted
    _private(token_file.parent)
    assert stat.S_IMODE(os.lstat(token_file).st_mode) == 0o600


def test_the_runtime_directory_is_used_when_it_is_private(
    exec_kubeconfig: Path, shared_tmp: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runtime = tmp_path / "run-user"
    runtime.mkdir(mode=0o700)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    conn = kube.connection(kubeconfig=str(exec_kubeconfig), context=None)
    assert conn.token_file == str(runtime / "dorgu-cli" / "token")
    _private(runtime / "dorgu-cli")
    # A runtime directory others may enter is not used: a fresh private directory instead.
    kube.token_dir.cache_clear()
    runtime.chmod(0o755)
    conn = kube.connection(kubeconfig=str(exec_kubeconfig), context=None)
    assert conn.token_file is not None and not conn.token_file.startswith(str(runtime))
    _private(Path(conn.token_file).parent)


@pytest.mark.parametrize("kind", ["group-readable", "symlink", "file"])
def test_a_run_directory_that_is_not_private_is_refused(tmp_path: Path, kind: str) -> None:
    target = tmp_path / "real"
    target.mkdir(mode=0o700)
    run_dir = tmp_path / "run"
    if kind == "group-readable":
        run_dir.mkdir()
        run_dir.chmod(0o750)
    elif kind == "symlink":
        run_dir.symlink_to(target)
    else:
        run_dir.write_text("")
    with pytest.raises(ConfigError, match="refusing to keep tokens there"):
        private_dir(run_dir)


def test_token_writes_never_follow_a_planted_temporary_file(tmp_path: Path) -> None:
    run_dir = private_dir(tmp_path / "run")
    victim = tmp_path / "victim"
    victim.write_text("")
    (run_dir / "token.tmp").symlink_to(victim)
    refresher = TokenRefresher(kubeconfig="unused", context=None, token_file=run_dir / "token")
    refresher.write(TOKEN)
    refresher.write(TOKEN + "-2")
    assert victim.read_text() == ""
    assert (run_dir / "token").read_text() == TOKEN + "-2"
    assert sorted(p.name for p in run_dir.iterdir()) == ["token", "token.tmp"]  # no temporary file left
