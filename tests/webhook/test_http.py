"""The HTTPS server without a cluster: TLS versions and suites, ALPN, body limits, methods, reload, fuzz."""

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


# TLS record content types, alert level and descriptions, handshake and extension types (RFC 8446).
_HANDSHAKE, _ALERT = 22, 21
_FATAL, _HANDSHAKE_FAILURE, _PROTOCOL_VERSION = 2, 40, 70
_CLIENT_HELLO, _SUPPORTED_VERSIONS = 1, 43
_RENEGOTIATION_SCSV = 0x00FF


@dataclass
class ClientHello:
    legacy_version: int
    cipher_suites: list[int]
    extensions: dict[int, bytes]


@dataclass
class Handshake:
    """One client handshake against a server, with the bytes exchanged."""

    hello: ClientHello
    """The ClientHello the client put on the wire (proof of what it offered)."""
    reply: bytes
    """Everything the server sent before the handshake ended or failed."""
    error: ssl.SSLError | None
    """The client's error (None: the handshake completed)."""
    version: str | None
    cipher: str | None

    def reply_records(self) -> list[tuple[int, bytes]]:
        """The server's TLS records as (content type, payload)."""
        out: list[tuple[int, bytes]] = []
        i = 0
        while i + 5 <= len(self.reply):
            length = int.from_bytes(self.reply[i + 3 : i + 5])
            out.append((self.reply[i], self.reply[i + 5 : i + 5 + length]))
            i += 5 + length
        return out


def _parse_client_hello(flight: bytes) -> ClientHello:
    assert flight[0] == _HANDSHAKE, flight[:8]
    body = flight[5 : 5 + int.from_bytes(flight[3:5])]
    assert body[0] == _CLIENT_HELLO, body[:8]
    i = 4
    legacy_version = int.from_bytes(body[i : i + 2])
    i += 2 + 32  # random
    i += 1 + body[i]  # session id
    n = int.from_bytes(body[i : i + 2])
    suites = [int.from_bytes(body[j : j + 2]) for j in range(i + 2, i + 2 + n, 2)]
    i += 2 + n
    i += 1 + body[i]  # compression methods
    extensions: dict[int, bytes] = {}
    end = i + 2 + int.from_bytes(body[i : i + 2])
    i += 2
    while i < end:
        kind, size = int.from_bytes(body[i : i + 2]), int.from_bytes(body[i + 2 : i + 4])
        extensions[kind] = body[i + 4 : i + 4 + size]
        i += 4 + size
    return ClientHello(legacy_version=legacy_version, cipher_suites=suites, extensions=extensions)


class LiveServer:
    """The served webhook over TCP."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=30)

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        """The next bytes from the server; b"" once it has closed the connection."""
        try:
            return self.sock.recv(65536)
        except ConnectionResetError:
            return b""

    def close(self) -> None:
        self.sock.close()


class ServerContext:
    """The served webhook's own ``SSLContext`` as the server end, over memory BIOs.

    asyncio (and uvloop) serve TLS exactly this way, ``context.wrap_bio(..., server_side=True)``, but on a
    failed handshake they close the TCP connection without flushing the alert OpenSSL wrote (CPython
    gh-98078), so the alert the server's policy produces can only be read here. ``error`` is the
    server's own reason for refusing.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.error: ssl.SSLError | None = None

    def send(self, data: bytes) -> None:
        self.incoming.write(data)
        try:
            self.tls.do_handshake()
        except ssl.SSLWantReadError:
            pass
        except ssl.SSLError as e:
            self.error = e

    def recv(self) -> bytes:
        return self.outgoing.read()

    def close(self) -> None:
        pass


def handshake(
    server: LiveServer | ServerContext,
    *,
    lowest: ssl.TLSVersion,
    highest: ssl.TLSVersion,
    ciphers: str | None = None,
) -> Handshake:
    """Handshake as a client offering exactly ``lowest``..``highest`` (and ``ciphers`` for TLS ≤ 1.2).

    SECLEVEL=0 lets this OpenSSL really offer TLS 1.0/1.1 and weak suites, so a refusal can only come
    from the server. The client runs over memory BIOs so the bytes exchanged are kept. The server's
    certificate is not verified: the protocol and cipher policy are under test here, not its identity.
    """
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.0/1.1 are deprecated: that is the point
        ctx.minimum_version, ctx.maximum_version = lowest, highest
    ctx.set_ciphers(f"{ciphers or 'DEFAULT'}:@SECLEVEL=0")
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    flights: list[bytes] = []
    reply = b""
    error: ssl.SSLError | None = None
    try:
        while True:
            try:
                tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            except ssl.SSLError as e:
                error = e
                break
            if data := outgoing.read():
                flights.append(data)
                server.send(data)
            if done:
                break
            if data := server.recv():
                reply += data
                incoming.write(data)
            else:
                incoming.write_eof()
    finally:
        server.close()
    assert flights, f"the client sent nothing: {error!r}"
    done = error is None
    return Handshake(
        hello=_parse_client_hello(flights[0]),
        reply=reply,
        error=error,
        version=tls.version() if done else None,
        cipher=tls.cipher()[0] if done else None,  # type: ignore[index]
    )


def assert_refused(served: Served, alert: int, client_reason: str, server_reason: str, **offer: Any) -> None:
    """The live server refuses ``offer`` and its context's answer is the fatal ``alert``.

    Live, the server sends no ServerHello and closes the connection (with the alert, once asyncio
    flushes it); the client's error is the peer's doing (EOF or the alert), never a local refusal. Driven
    in memory, the same context answers the same offer with exactly one record, the fatal ``alert``,
    which the client reads as ``client_reason``.
    """
    live = handshake(LiveServer(served.port), **offer)
    assert live.error is not None, f"the server accepted it: {live.version} {live.cipher}"
    assert live.reply_records() in ([], [(_ALERT, bytes([_FATAL, alert]))]), (live.reply[:64], live.error)
    assert isinstance(live.error, ssl.SSLEOFError) or live.error.reason == client_reason, live.error
    server = ServerContext(served.server.tls.context)
    in_memory = handshake(server, **offer)
    assert in_memory.hello == live.hello  # the same offer (random and session id aside)
    assert in_memory.reply_records() == [(_ALERT, bytes([_FATAL, alert]))], in_memory.reply[:64]
    assert in_memory.error is not None and in_memory.error.reason == client_reason, in_memory.error
    assert server.error is not None and server.error.reason == server_reason, server.error


@pytest.mark.parametrize(
    ("version", "wire"), [(ssl.TLSVersion.TLSv1, 0x0301), (ssl.TLSVersion.TLSv1_1, 0x0302)]
)
def test_the_server_refuses_tls_below_1_2(served: Served, version: ssl.TLSVersion, wire: int) -> None:
    offer: dict[str, Any] = {"lowest": version, "highest": version}
    # The client really offers this version and nothing newer (no supported_versions extension)...
    hello = handshake(ServerContext(served.server.tls.context), **offer).hello
    assert hello.legacy_version == wire and _SUPPORTED_VERSIONS not in hello.extensions, hello
    # ...and the server refuses it with protocol_version.
    assert_refused(served, _PROTOCOL_VERSION, "TLSV1_ALERT_PROTOCOL_VERSION", "UNSUPPORTED_PROTOCOL", **offer)


# The server's key is ECDSA P-256 (certs.rotation), so these are the TLS 1.2 suites it could serve.
CBC_SUITES = {
    "ECDHE-ECDSA-AES128-SHA256": 0xC023,
    "ECDHE-ECDSA-AES256-SHA384": 0xC024,
    "ECDHE-ECDSA-AES128-SHA": 0xC009,
    "ECDHE-ECDSA-AES256-SHA": 0xC00A,
}
AEAD_SUITES = {
    "ECDHE-ECDSA-AES128-GCM-SHA256": 0xC02B,
    "ECDHE-ECDSA-AES256-GCM-SHA384": 0xC02C,
    "ECDHE-ECDSA-CHACHA20-POLY1305": 0xCCA9,
}
TLS12 = ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize("name", sorted(CBC_SUITES))
def test_the_server_refuses_tls12_without_aead(served: Served, name: str) -> None:
    offer: dict[str, Any] = {"lowest": TLS12, "highest": TLS12, "ciphers": name}
    # The client really offers TLS 1.2 with this one suite...
    hello = handshake(ServerContext(served.server.tls.context), **offer).hello
    assert hello.legacy_version == 0x0303 and _SUPPORTED_VERSIONS not in hello.extensions, hello
    assert set(hello.cipher_suites) - {_RENEGOTIATION_SCSV} == {CBC_SUITES[name]}, hello.cipher_suites
    # ...and the server refuses it with handshake_failure.
    assert_refused(served, _HANDSHAKE_FAILURE, "SSLV3_ALERT_HANDSHAKE_FAILURE", "NO_SHARED_CIPHER", **offer)


@pytest.mark.parametrize("name", sorted(AEAD_SUITES))
def test_tls12_with_ecdhe_and_aead_is_served(served: Served, name: str) -> None:
    hs = handshake(LiveServer(served.port), lowest=TLS12, highest=TLS12, ciphers=name)
    assert set(hs.hello.cipher_suites) - {_RENEGOTIATION_SCSV} == {AEAD_SUITES[name]}, hs.hello.cipher_suites
    assert hs.error is None and (hs.version, hs.cipher) == ("TLSv1.2", name), hs.error


def test_tls13_is_served_and_preferred(served: Served) -> None:
    hs = handshake(LiveServer(served.port), lowest=ssl.TLSVersion.TLSv1_3, highest=ssl.TLSVersion.TLSv1_3)
    assert hs.error is None and hs.version == "TLSv1.3", hs.error
    # A client offering everything from TLS 1.0 up gets TLS 1.3 with an AEAD suite.
    hs = handshake(LiveServer(served.port), lowest=ssl.TLSVersion.TLSv1, highest=ssl.TLSVersion.TLSv1_3)
    assert hs.error is None and hs.version == "TLSv1.3", hs.error


def test_every_suite_the_server_offers_is_aead_with_forward_secrecy(served: Served) -> None:
    suites = served.server.tls.context.get_ciphers()
    assert {s["protocol"] for s in suites} == {"TLSv1.2", "TLSv1.3"}, suites
    for s in suites:
        assert s["aead"] and s["kea"] in ("kx-ecdhe", "kx-any"), s  # kx-any: TLS 1.3, always (EC)DHE
        assert s["protocol"] == "TLSv1.3" or s["kea"] == "kx-ecdhe", s


def test_alpn_is_http_1_1(served: Served) -> None:
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
