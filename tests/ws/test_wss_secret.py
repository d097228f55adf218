"""Issue 17, item 1 (the server's side): ``wss://`` with the pair of the certificate Secret the webhook
issues, tokens of the ``dorgu`` audience only, against the real control plane and the real CLI.

The Secret is written here with :mod:`certs.rotation`, as the webhook component would (its names include
``127.0.0.1``, where the test reaches the server); the server (a child of a real supervisor) reads it through
its field-selected watch, serves it, and reloads it when it is rotated. Tokens come from the TokenRequest
API, as ``kubectl create token SA --audience dorgu`` gets them.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import socket
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import msgspec
import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from certs.rotation import RotationPolicy, ServingMaterial, issue
from dorgu.envtest import ControlPlane, HarnessClient
from tests.ws.kit import Operator, dorgu, poll
from tests.ws.test_ws_authz import grant
from webhook.certificates import secret_of

SECRET = "dorgu-webhook-certs"
_n = itertools.count()


def material() -> ServingMaterial:
    return issue(
        RotationPolicy(), dns_names=["localhost"], ip_addresses=["127.0.0.1"], now=dt.datetime.now(dt.UTC)
    )


def write_secret(kube: HarnessClient, ns: str, m: ServingMaterial) -> None:
    path = f"/api/v1/namespaces/{ns}/secrets"
    try:
        rv = kube.get(f"{path}/{SECRET}")["metadata"]["resourceVersion"]
    except Exception:
        rv = None
    body = msgspec.to_builtins(secret_of(m, name=SECRET, namespace=ns, resource_version=rv))
    if rv is None:
        kube.post(path, body)
    else:
        kube.put(f"{path}/{SECRET}", body)


def served_fingerprint(port: int) -> bytes:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=30) as raw, ctx.wrap_socket(raw) as s:
        der = s.getpeercert(binary_form=True)
    assert der is not None
    return hashlib.sha256(der).digest()


@dataclass
class Wss:
    op: Operator
    ns: str
    ca_file: Path
    material: ServingMaterial

    @property
    def port(self) -> int:
        return self.op.ports["wss"]

    @property
    def url(self) -> str:
        return f"wss://127.0.0.1:{self.port}/ws"

    def cli(self, token: str) -> tuple[str, ...]:
        """``dorgu persona list`` in the test namespace over wss:// with the CA and ``token``."""
        return ("persona", "list", "-n", self.ns, f"--operator-url={self.url}",
                f"--operator-ca={self.ca_file}", f"--token={token}")  # fmt: skip


@pytest.fixture(scope="module")
def wss(
    control_plane: ControlPlane, kube: HarnessClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Wss]:
    tmp: Path = tmp_path_factory.mktemp("wss")
    ns = f"wss-{next(_n)}-{int(time.time() * 1000) % 1000000}"
    kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    m = material()
    write_secret(kube, ns, m)
    (tmp / "ca.crt").write_bytes(m.ca_bundle_pem)
    options = {
        "ws_auth": "token",
        "ws_tls": "secret",
        "ws_tls_secret_namespace": ns,
        "ws_token_audiences": "dorgu",
    }
    op = Operator(control_plane.kubeconfig, {"wss": options}, tmp)
    try:
        op.ready("wss")
        yield Wss(op=op, ns=ns, ca_file=tmp / "ca.crt", material=m)
    finally:
        op.stop()
        kube.delete(f"/api/v1/namespaces/{ns}")


def test_the_cli_lists_over_wss_with_a_dorgu_token(
    wss: Wss, control_plane: ControlPlane, kube: HarnessClient
) -> None:
    token = control_plane.service_account_token(wss.ns, "viewer", audiences=["dorgu"])
    grant(kube, wss.ns, "viewer", group="dorgu.io", resource="applicationpersonas")

    def listed() -> bool:
        return dorgu(*wss.cli(token), "-o", "json").returncode == 0

    poll(
        listed,
        "the CLI to list over wss:// (RBAC reaches the authorizer's cache shortly after it is written)",
    )


def test_a_token_for_the_api_servers_audience_is_refused(wss: Wss, control_plane: ControlPlane) -> None:
    token = control_plane.service_account_token(wss.ns, "plain")  # the API server's own audience
    r = dorgu(*wss.cli(token))
    assert r.returncode == 1 and "HTTP 401" in r.stderr, r.stderr
    admin = dorgu(*wss.cli(control_plane.admin_token))
    assert admin.returncode == 1 and "HTTP 401" in admin.stderr, admin.stderr


def test_the_server_speaks_tls_only_and_a_client_without_the_ca_is_refused(wss: Wss) -> None:
    plain = dorgu("persona", "list", f"--operator-url=ws://127.0.0.1:{wss.port}/ws")
    assert plain.returncode == 1 and "cannot connect" in plain.stderr, plain.stderr
    untrusted = dorgu("persona", "list", f"--operator-url={wss.url}")
    assert untrusted.returncode == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted.stderr


def test_a_rotated_secret_is_served_without_a_restart(wss: Wss, kube: HarnessClient) -> None:
    before = served_fingerprint(wss.port)
    assert before == hashlib.sha256(wss.material.serving.certificate.public_bytes(Encoding.DER)).digest()
    # A broken Secret (as the webhook finds and repairs it) keeps the pair served and breaks nothing later.
    path = f"/api/v1/namespaces/{wss.ns}/secrets/{SECRET}"
    kube.patch(path, {"data": {"tls.crt": "bm90IGEgY2VydGlmaWNhdGU="}})
    poll(
        lambda: any("does not load" in str(r.get("msg")) for r in list(wss.op.records)),
        "the server to see the broken Secret",
    )
    assert served_fingerprint(wss.port) == before
    rotated = material()
    write_secret(kube, wss.ns, rotated)
    want = hashlib.sha256(rotated.serving.certificate.public_bytes(Encoding.DER)).digest()
    poll(lambda: served_fingerprint(wss.port) == want, "the rotated certificate to be served")
