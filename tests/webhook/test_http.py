"""The HTTPS server without a cluster: TLS floor and ALPN, body limits, methods, reload, and HTTP fuzzing."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import ssl
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
from aiohttp import web
from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from certs.rotation import RotationPolicy, issue
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.manager import Manager
from tests.runtime.kit import LoopThread
from tests.webhook.kit import PERSONA_SPEC, deployment, free_port, peer_cert
from tests.webhook.test_admission import json_values, review, reviews
from webhook.server import WebhookServer, WebhookSettings

NAMES = {"dns_names": ["localhost"], "ip_addresses": ["127.0.0.1"]}


@dataclass
class Served:
    lt: LoopThread
    server: WebhookServer
    port: int
    ca_file: str

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=self.ca_file)

    def post(
        self, body: bytes, *, method: str = "POST", path: str = "/validate-deployment"
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.client_context(), timeout=30)
        try:
            conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    lt = LoopThread()
    port = free_port()
    material = issue(RotationPolicy(), now=dt.datetime.now(dt.UTC), **NAMES)
    ca_file = tmp_path_factory.mktemp("ca") / "ca.crt"
    ca_file.write_bytes(material.ca_bundle_pem)
    holder: dict[str, Any] = {}

    async def start() -> None:
        manager = Manager(connection=ConnectionSettings(server="https://127.0.0.1:1"))  # never run
        server = WebhookServer(manager, WebhookSettings(port=port, host="127.0.0.1"))
        p = msgspec.convert(
            {
                "metadata": {"name": "shop", "namespace": "ns"},
                "spec": {"name": "shop", "type": "api", **PERSONA_SPEC},
            },
            ApplicationPersona,
        )
        server.personas.store.put("ns/shop", p)
        server.tls.load(material)
        runner = web.AppRunner(server.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=server.tls.context).start()
        holder.update(server=server, runner=runner, manager=manager)

    lt.run(start())
    try:
        yield Served(lt=lt, server=holder["server"], port=port, ca_file=str(ca_file))
    finally:

        async def stop() -> None:
            await holder["runner"].cleanup()
            await holder["manager"].client.close()

        lt.run(stop())
        lt.close()


def test_a_review_over_https(served: Served) -> None:
    status, raw = served.post(review(deployment("d", replicas=1)))
    out = json.loads(raw)
    assert status == 200 and out["response"]["warnings"] == [
        "Deployment replicas (1) below persona minimum (2)"
    ]


def test_bad_bodies_methods_and_sizes(served: Served) -> None:
    status, raw = served.post(b"{nope")
    assert status == 400 and "not JSON" in json.loads(raw)["response"]["status"]["message"]
    assert served.post(b"", method="GET")[0] == 405
    assert served.post(b"{}", path="/other")[0] == 404
    # A legitimate UPDATE with a large oldObject (6 MiB) passes; over 7 MiB is 413.
    big = deployment("d")
    big["metadata"]["annotations"] = {"blob": "x" * (6 * 1024 * 1024)}
    status, raw = served.post(review(deployment("d"), operation="UPDATE", oldObject=big))
    assert status == 200, raw[:200]
    status, raw = served.post(b"x" * (7 * 1024 * 1024 + 1))
    assert status == 413 and b"larger than" in raw


def test_tls_floor_and_alpn(served: Served) -> None:
    assert served.server.tls.context.minimum_version == ssl.TLSVersion.TLSv1_2
    ctx = served.client_context()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_1
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=ctx, timeout=10)
    with pytest.raises(ssl.SSLError):
        conn.connect()
    conn.close()
    ctx = served.client_context()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with (
        socket.create_connection(("127.0.0.1", served.port)) as raw,
        ctx.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        assert tls.version() in ("TLSv1.2", "TLSv1.3")
        assert tls.selected_alpn_protocol() == "http/1.1"


def test_reload_without_restart(served: Served) -> None:
    before = peer_cert("127.0.0.1", served.port)
    fresh = issue(RotationPolicy(), now=dt.datetime.now(dt.UTC), **NAMES)
    assert served.lt.call(lambda: served.server.tls.load(fresh))
    after = peer_cert("127.0.0.1", served.port)
    assert after != before and after == fresh.serving.certificate.public_bytes(Encoding.DER)
    assert not served.lt.call(lambda: served.server.tls.load(fresh))  # unchanged: not reloaded
    served.ca_file = _write(fresh.ca_bundle_pem, served.ca_file)  # later tests trust the new CA


def _write(pem: bytes, path: str) -> str:
    with open(path, "wb") as fh:
        fh.write(pem)
    return path


@settings(
    max_examples=80,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    reviews.map(lambda r: json.dumps(r).encode())
    | st.binary(max_size=100)
    | json_values.map(lambda v: json.dumps(v).encode())
)
def test_fuzz_over_http(served: Served, body: bytes) -> None:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", served.port, context=ctx, timeout=30)
    try:
        conn.request("POST", "/validate-deployment", body=body)
        resp = conn.getresponse()
        resp.read()
        assert resp.status in (200, 400), resp.status
    finally:
        conn.close()
