"""The webhook's certificates: kept in one Secret shared by every replica, and served from a live context.

:class:`CertificateStore` reads and writes the Secret; :class:`TlsReloader` loads the pair into the
server's ``ssl.SSLContext`` without a restart. What is issued when is decided by :mod:`certs.rotation`
(ECDSA P-256 keys, a one-year CA and 90-day serving certificates renewed at 2/3 of their lifetime, the old
CA kept in the bundle until it expires — see there for why).

Rules kept here:

* **One Secret, every replica serves the same pair.** ``kubernetes.io/tls`` Secret with ``tls.crt``,
  ``tls.key``, ``ca.crt`` (the CA bundle, signing CA first) and ``ca.key``; the staging time of a new CA
  is the annotation ``dorgu.io/ca-staged-at``.
* **Creation is race-safe (create-or-get).** Every replica that finds no Secret generates a pair and
  POSTs it; the API server lets exactly one create of a name succeed, the others get ``AlreadyExists``
  and adopt the winner's Secret (a fresh GET) — they never overwrite it.
* **Updates are optimistic.** A rotation is a PUT carrying the ``resourceVersion`` it was computed from; a
  ``Conflict`` means another replica wrote first, so this one re-reads and re-plans (usually finding
  nothing left to do). Several replicas rotating at once therefore produce one rotation.
* **Reload without restart.** ``SSLContext.load_cert_chain`` on the live context: new handshakes get the
  new certificate, established connections keep theirs (both are trusted: see :mod:`certs.rotation`).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import ssl
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

import msgspec

from certs.rotation import RotationPolicy, ServingMaterial, advance, fingerprint
from dorgu.runtime import metrics
from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import AlreadyExists, Conflict, NotFound
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import SECRETS
from webhook.metrics import observe_certificates

log = logging.getLogger("dorgu.webhook.certs")

STAGED_AT_ANNOTATION = "dorgu.io/ca-staged-at"
COMPONENT_LABEL = "app.kubernetes.io/component"
MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
SECRET_LABELS = {MANAGED_BY_LABEL: "dorgu", COMPONENT_LABEL: "webhook-certs"}

_TLS_CRT, _TLS_KEY, _CA_CRT, _CA_KEY = "tls.crt", "tls.key", "ca.crt", "ca.key"


class Secret(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A core/v1 Secret (``data`` values are base64 on the wire, bytes here)."""

    api_version: str = msgspec.field(default="v1", name="apiVersion")
    kind: str = "Secret"
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    type: str | None = None
    data: dict[str, bytes] | None = None


def material_of(secret: Secret) -> ServingMaterial | None:
    """The material a Secret holds, or ``None`` when a key is missing (then it is re-issued)."""
    data = secret.data or {}
    if not all(data.get(k) for k in (_TLS_CRT, _TLS_KEY, _CA_CRT, _CA_KEY)):
        return None
    staged_at = None
    raw = (secret.metadata.annotations or {}).get(STAGED_AT_ANNOTATION)
    if raw:
        try:
            staged_at = dt.datetime.fromisoformat(raw)
        except ValueError:
            staged_at = None  # unreadable: treat the staging as long past
    return ServingMaterial(
        ca_bundle_pem=data[_CA_CRT], ca_key_pem=data[_CA_KEY],
        cert_pem=data[_TLS_CRT], key_pem=data[_TLS_KEY],
        staged_at=staged_at,
    )  # fmt: skip


def secret_of(
    material: ServingMaterial, *, name: str, namespace: str, resource_version: str | None
) -> Secret:
    annotations = {STAGED_AT_ANNOTATION: material.staged_at.isoformat()} if material.staged_at else None
    return Secret(
        metadata=ObjectMeta(
            name=name, namespace=namespace, labels=dict(SECRET_LABELS), annotations=annotations,
            resource_version=resource_version,
        ),
        type="kubernetes.io/tls",
        data={
            _TLS_CRT: material.cert_pem, _TLS_KEY: material.key_pem,
            _CA_CRT: material.ca_bundle_pem, _CA_KEY: material.ca_key_pem,
        },
    )  # fmt: skip


_secret_decoder = msgspec.json.Decoder(Secret)


class CertificateStore:
    """Create-or-get and rotate the Secret; ``cached`` reads the informer's copy (no API call)."""

    def __init__(
        self,
        client: ApiClient,
        *,
        name: str,
        namespace: str,
        policy: RotationPolicy,
        dns_names: Iterable[str],
        ip_addresses: Iterable[str],
        cached: Callable[[], Secret | None],
        now: Callable[[], dt.datetime] | None = None,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.policy = policy
        self.dns_names = tuple(dns_names)
        self.ip_addresses = tuple(ip_addresses)
        self.cached = cached
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.creates = 0
        """Secrets this store created (a test of race-safety counts them)."""
        self.rotations = 0
        """Rotation steps this store wrote."""

    async def _get(self) -> Secret | None:
        try:
            raw = await self.client.request("GET", SECRETS.path(namespace=self.namespace, name=self.name))
        except NotFound:
            return None
        return _secret_decoder.decode(raw)

    async def issued_bundle(self) -> bytes | None:
        """The CA bundle (PEM) the Secret holds now, read from the API server rather than the cache: the CAs
        the operator issued and still trusts (the signing CA, and after a renewal the previous one until it
        expires). ``None`` when the Secret or its bundle is missing. A
        :class:`~webhook.configuration.ConfigurationKeeper` asks it before keeping a CA its own bundle lacks.
        """
        secret = await self._get()
        if secret is None:
            return None
        return (secret.data or {}).get(_CA_CRT) or None

    async def ensure(self) -> ServingMaterial:
        """The current material: the Secret's (rotated first when a step is due), created when absent.

        Its certificates' expiry and renewal times become the metrics
        (:func:`webhook.metrics.observe_certificates`): what ``ensure`` returns is what the server serves,
        and a failed rotation leaves them as they were."""
        material = await self._ensure()
        observe_certificates(material, self.policy)
        return material

    async def _ensure(self) -> ServingMaterial:
        secret = self.cached()
        for _ in range(10):
            if secret is None:
                secret = await self._get()
            if secret is None:
                material = advance(
                    None,
                    self.policy,
                    dns_names=self.dns_names,
                    ip_addresses=self.ip_addresses,
                    now=self.now(),
                )
                assert material is not None
                body = secret_of(material, name=self.name, namespace=self.namespace, resource_version=None)
                try:
                    raw = await self.client.request(
                        "POST", SECRETS.path(namespace=self.namespace), body=msgspec.to_builtins(body)
                    )
                except AlreadyExists:
                    continue  # another replica won the create: adopt its Secret (GET on the next pass)
                self.creates += 1
                log.info("created webhook certificate Secret %s/%s", self.namespace, self.name)
                return material_of(_secret_decoder.decode(raw)) or material
            current = material_of(secret)
            nxt = advance(
                current, self.policy, dns_names=self.dns_names, ip_addresses=self.ip_addresses, now=self.now()
            )
            if nxt is None:
                assert current is not None  # advance never leaves missing material alone
                return current
            body = secret_of(
                nxt,
                name=self.name,
                namespace=self.namespace,
                resource_version=secret.metadata.resource_version,
            )
            try:
                raw = await self.client.request(
                    "PUT",
                    SECRETS.path(namespace=self.namespace, name=self.name),
                    body=msgspec.to_builtins(body),
                )
            except Conflict:  # another replica wrote first: re-read and re-plan
                secret = None
                continue
            except NotFound:  # deleted meanwhile: create again
                secret = None
                continue
            self.rotations += 1
            log.info("rotated webhook certificates (%s)", _describe_step(current, nxt))
            return material_of(_secret_decoder.decode(raw)) or nxt
        raise RuntimeError(f"could not settle the Secret {self.namespace}/{self.name} after 10 attempts")


def _describe_step(old: ServingMaterial | None, new: ServingMaterial) -> str:
    if old is None:
        return "issued"
    if new.staged_at is not None and new.ca_key_pem != old.ca_key_pem:
        return "new CA staged in the bundle"
    if new.ca_key_pem != old.ca_key_pem:
        return "re-issued"
    return "new serving certificate"


class TlsReloader:
    """The server's TLS context (TLS ≥ 1.2, AEAD + forward secrecy, HTTP/1.1 only) and the pair's files."""

    TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"
    """TLS 1.2 suites served: ECDHE key exchange (forward secrecy) with an AEAD cipher (AES-GCM or
    ChaCha20-Poly1305), for ECDSA and RSA keys alike; CBC, static-RSA key exchange and everything weaker
    are refused with a handshake_failure alert. Every client that calls the webhook (kube-apiserver's Go
    ``crypto/tls``, curl, Python) offers these or TLS 1.3."""

    def __init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        # TLS 1.0/1.1 are refused whatever the client offers (OpenSSL answers protocol_version; asyncio and
        # uvloop close the connection without flushing that alert, CPython gh-98078).
        self.context.minimum_version = ssl.TLSVersion.TLSv1_2
        # set_ciphers governs TLS ≤ 1.2 only; TLS 1.3 keeps OpenSSL's suites (all AEAD with (EC)DHE).
        self.context.set_ciphers(self.TLS12_CIPHERS)
        self.context.set_alpn_protocols(["http/1.1"])
        self._dir = Path(tempfile.mkdtemp(prefix="dorgu-webhook-tls-"))
        os.chmod(self._dir, 0o700)
        self.fingerprint: bytes | None = None
        """SHA-256 of the certificate being served."""
        self.loads = 0
        """How often a new pair was loaded."""

    def load(self, material: ServingMaterial) -> bool:
        """Serve ``material``'s pair from now on (new handshakes); False when it is already served."""
        fp = fingerprint(material.serving.certificate)
        if fp == self.fingerprint:
            return False
        cert, key = self._dir / "tls.crt", self._dir / "tls.key"
        metrics.CERTWATCHER_READS.inc()
        try:
            for path, data in ((cert, material.cert_pem), (key, material.key_pem)):
                tmp = path.with_suffix(".tmp")
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
                os.replace(tmp, path)
            self.context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError):
            metrics.CERTWATCHER_READ_ERRORS.inc()
            raise
        self.fingerprint = fp
        self.loads += 1
        return True

    def close(self) -> None:
        for p in self._dir.iterdir():
            p.unlink(missing_ok=True)
        self._dir.rmdir()
