"""The supervisor reads plain kubeconfigs without the ``kubernetes`` package, with the package's result.

The package costs about 0.3 CPU-seconds to import, a third of the operator's start; a kubeconfig holding only
files and data (the usual token or client-certificate one) does not need it. These tests hold the direct
reading to the package's answer on the same files, and to the real API server.
"""

from __future__ import annotations

import base64
import datetime as dt
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from certs.pki import KeyPair, make_client_cert
from dorgu.envtest import ControlPlane
from dorgu.runtime.kubeconfig import _package_kubeconfig, _plain_kubeconfig, resolve
from tests.runtime.test_credentials_and_children import version_via


@pytest.fixture
def cp(control_plane: ControlPlane) -> ControlPlane:
    return control_plane


def _client_cert(cp: ControlPlane) -> KeyPair:
    pki = cp.ca_file.parent
    ca = KeyPair(cert_pem=(pki / "ca.crt").read_bytes(), key_pem=(pki / "ca.key").read_bytes())
    return make_client_cert(
        ca=ca, user="plain-admin", groups=["system:masters"], validity=dt.timedelta(hours=1)
    )


def _cert_kubeconfig(cp: ControlPlane, tmp_path: Path, *, inline: bool) -> Path:
    """A client-certificate kubeconfig; file references are relative to the kubeconfig's directory."""
    pair = _client_cert(cp)
    home = tmp_path / "home"
    (home / "pki").mkdir(parents=True)
    (home / "pki" / "ca.crt").write_bytes(cp.ca_file.read_bytes())
    (home / "pki" / "me.crt").write_bytes(pair.cert_pem)
    (home / "pki" / "me.key").write_bytes(pair.key_pem)
    if inline:

        def b64(data: bytes) -> str:
            return base64.b64encode(data).decode()

        cluster = {"certificate-authority-data": b64(cp.ca_file.read_bytes())}
        user = {"client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)}
    else:
        cluster = {"certificate-authority": "pki/ca.crt"}
        user = {"client-certificate": "pki/me.crt", "client-key": "pki/me.key"}
    path = home / "config"
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": cp.server, **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "other", "context": {"cluster": "c", "user": "u", "namespace": "elsewhere"}},
            {"name": "mine", "context": {"cluster": "c", "user": "u", "namespace": "team-a"}},
        ],
        "current-context": "other",
    }
    path.write_text(yaml.safe_dump(doc))
    return path


@pytest.mark.parametrize("inline", [False, True], ids=["files", "data"])
def test_client_certificate_kubeconfig_reads_as_the_package_does(
    cp: ControlPlane, tmp_path: Path, inline: bool
) -> None:
    path = _cert_kubeconfig(cp, tmp_path, inline=inline)
    plain = _plain_kubeconfig(str(path), "mine", "ua")
    assert plain is not None
    package = _package_kubeconfig(str(path), "mine", run_dir=tmp_path, user_agent="ua")
    assert plain == package
    assert plain.namespace == "team-a" and plain.connection.client_cert_data is not None
    assert version_via(plain.connection) == "v1.20.2"  # the server accepts the certificate


def test_token_kubeconfig_reads_as_the_package_does(cp: ControlPlane, tmp_path: Path) -> None:
    plain = _plain_kubeconfig(str(cp.kubeconfig), None, "ua")
    assert plain is not None and plain.connection.token == cp.admin_token
    assert plain == _package_kubeconfig(str(cp.kubeconfig), None, run_dir=tmp_path, user_agent="ua")


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ("proxy-url: http://127.0.0.1:1", "cluster"),
        ("tls-server-name: kubernetes", "cluster"),
        ("exec: {apiVersion: client.authentication.k8s.io/v1beta1, command: /bin/true}", "user"),
        ("username: someone", "user"),
        ("as: someone-else", "user"),
    ],
)
def test_anything_beyond_files_and_data_goes_to_the_package(
    cp: ControlPlane, tmp_path: Path, extra: str, where: str
) -> None:
    path = _cert_kubeconfig(cp, tmp_path, inline=False)
    doc = yaml.safe_load(path.read_text())
    doc[f"{where}s"][0][where].update(yaml.safe_load(extra))
    path.write_text(yaml.safe_dump(doc))
    assert _plain_kubeconfig(str(path), "mine", "ua") is None


def test_a_missing_context_goes_to_the_package(cp: ControlPlane) -> None:
    assert _plain_kubeconfig(str(cp.kubeconfig), "no-such-context", "ua") is None


def test_resolving_a_plain_kubeconfig_does_not_import_the_package(cp: ControlPlane, tmp_path: Path) -> None:
    code = textwrap.dedent(f"""\
        import sys
        from pathlib import Path
        from dorgu.runtime.kubeconfig import resolve
        access = resolve(kubeconfig={str(cp.kubeconfig)!r}, run_dir=Path({str(tmp_path)!r}))
        assert access.connection.token
        print(sorted(m for m in sys.modules if m == "kubernetes" or m.startswith("kubernetes.")))
        """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    # and the answer is the one the rest of the suite relies on
    assert resolve(kubeconfig=str(cp.kubeconfig), run_dir=tmp_path).connection.token == cp.admin_token
