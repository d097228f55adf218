"""Self-managed serving certificates: issue a CA + serving pair, and rotate both without an outage.

Pure functions over :mod:`certs.pki`: no I/O, the clock is a parameter. The caller stores
:class:`ServingMaterial` somewhere every replica reads (the webhook keeps it in a Secret) and calls
:func:`advance` from time to time; when it returns new material the caller writes it back with an
optimistic-concurrency guard, so when several replicas advance at once exactly one write wins and the
others re-read it.

Choices (and why):

* **Keys: ECDSA P-256** for the CA and the serving certificate (:mod:`certs.pki`). Generating one takes
  milliseconds, so several replicas starting at once against an empty cluster all generate a candidate
  cheaply (one wins); handshakes are cheaper for the server than with RSA-2048 at the same or better
  strength; kube-apiserver (Go ``crypto/tls``) accepts it everywhere.
* **Validity: CA 365 days, serving certificate 90 days** (:class:`RotationPolicy` defaults). The CA is
  what the API server must trust (the ``caBundle``), so it changes rarely — each change is a two-step
  roll-out; the serving certificate is renewed from the same CA every ~60 days with no bundle change at all.
  Both are far shorter than the 10-year self-signed certificates of many charts, so a leaked Secret ages
  out, yet long enough that an operator that is down for weeks still comes back to a valid pair.
* **Renewal at 2/3 of the lifetime** (``renew_fraction``), as cert-manager does: a third of the lifetime
  (~4 months for the CA, ~30 days for the serving certificate) remains to notice and fix a failing renewal.
* **The old CA stays in the bundle until it expires.** A CA renewal is staged: first the new CA is added
  to the bundle next to the old one while the serving certificate (signed by the old CA) is kept; only
  after ``ca_propagation`` has passed — time for the bundle to reach the API server's webhook
  configuration — is a serving certificate signed by the new CA issued. Every moment, the certificate
  any replica serves (the old one until it reloads, the new one after) is signed by a CA the API
  server already trusts. The old CA is dropped only once it has expired (and with it every
  certificate it signed), so no serving certificate ever outlives its CA's place in the bundle.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from certs.pki import KeyPair, make_ca, make_serving_cert

__all__ = [
    "RotationPolicy",
    "ServingMaterial",
    "advance",
    "bundle_pem",
    "fingerprint",
    "issue",
    "merge_bundles",
    "next_due",
    "parse_bundle",
    "renewal_time",
]


@dataclass(frozen=True, kw_only=True)
class RotationPolicy:
    """How long certificates live and when they are renewed."""

    ca_validity: dt.timedelta = dt.timedelta(days=365)
    """Lifetime of a CA certificate."""
    serving_validity: dt.timedelta = dt.timedelta(days=90)
    """Lifetime of a serving certificate (never beyond its CA's expiry)."""
    renew_fraction: float = 2 / 3
    """Renew a certificate once this fraction of its lifetime has passed."""
    ca_propagation: dt.timedelta = dt.timedelta(seconds=30)
    """After a new CA is added to the bundle, wait this long before serving a certificate it signed."""
    backdate: dt.timedelta = dt.timedelta(minutes=5)
    """How far ``notBefore`` lies before the moment of issue (clock skew between hosts)."""
    ca_common_name: str = "dorgu-webhook-ca"
    """Subject CN of the CAs."""


@dataclass(frozen=True, kw_only=True)
class ServingMaterial:
    """Everything every replica needs: the trusted CAs, the signing CA's key and the serving pair."""

    ca_bundle_pem: bytes
    """PEM certificates of every CA the API server must trust: the signing CA first, then older ones."""
    ca_key_pem: bytes
    """The private key of the signing CA (the first of the bundle)."""
    cert_pem: bytes
    """The serving certificate (PEM)."""
    key_pem: bytes
    """The serving certificate's private key (PEM)."""
    staged_at: dt.datetime | None = None
    """When the signing CA entered the bundle; ``None`` when it was created with the serving certificate."""

    @property
    def serving(self) -> KeyPair:
        return KeyPair(cert_pem=self.cert_pem, key_pem=self.key_pem)

    @property
    def cas(self) -> list[x509.Certificate]:
        return parse_bundle(self.ca_bundle_pem)


@dataclass(frozen=True, kw_only=True)
class _Names:
    dns: tuple[str, ...] = ()
    ips: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def of(cls, dns: Iterable[str], ips: Iterable[str]) -> _Names:
        seen_dns = tuple(dict.fromkeys(dns))
        seen_ips = tuple(dict.fromkeys(str(ipaddress.ip_address(i)) for i in ips))
        return cls(dns=seen_dns, ips=seen_ips)

    def missing_from(self, cert: x509.Certificate) -> bool:
        dns, ips = _sans(cert)
        return not (set(self.dns) <= dns and set(self.ips) <= ips)

    def union(self, cert: x509.Certificate) -> _Names:
        dns, ips = _sans(cert)
        return _Names.of([*self.dns, *sorted(dns)], [*self.ips, *sorted(ips)])


# --------------------------------------------------------------------------- helpers


def parse_bundle(pem: bytes) -> list[x509.Certificate]:
    """The certificates of a PEM bundle, in order (an empty or malformed bundle raises ``ValueError``)."""
    certs = x509.load_pem_x509_certificates(pem)
    if not certs:
        raise ValueError("no certificate in the bundle")
    return certs


def bundle_pem(certs: Iterable[x509.Certificate]) -> bytes:
    """A PEM bundle of ``certs``, in order."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def fingerprint(cert: x509.Certificate) -> bytes:
    """SHA-256 over the DER encoding: the identity of a certificate."""
    return cert.fingerprint(hashes.SHA256())


def merge_bundles(*bundles: Sequence[x509.Certificate], now: dt.datetime) -> list[x509.Certificate]:
    """The union of ``bundles`` (first occurrence wins the position), without expired certificates."""
    out: dict[bytes, x509.Certificate] = {}
    for certs in bundles:
        for c in certs:
            if c.not_valid_after_utc > now:
                out.setdefault(fingerprint(c), c)
    return list(out.values())


def renewal_time(cert: x509.Certificate, fraction: float) -> dt.datetime:
    """When ``fraction`` of the certificate's lifetime (``notBefore`` … ``notAfter``) has passed."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * fraction


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return set(), set()
    dns = set(ext.get_values_for_type(x509.DNSName))
    ips = {str(i) for i in ext.get_values_for_type(x509.IPAddress)}
    return dns, ips


def _signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    if cert.issuer != ca.subject:
        return False
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _key_matches(cert: x509.Certificate, key_pem: bytes) -> bool:
    key = serialization.load_pem_private_key(key_pem, password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        return False
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    return key.public_key().public_bytes(*spki) == cert.public_key().public_bytes(*spki)


# --------------------------------------------------------------------------- issue and advance


def issue(
    policy: RotationPolicy, *, dns_names: Iterable[str], ip_addresses: Iterable[str], now: dt.datetime
) -> ServingMaterial:
    """A fresh CA and a serving certificate for ``dns_names`` + ``ip_addresses`` (first start, or repair)."""
    names = _Names.of(dns_names, ip_addresses)
    ca = make_ca(
        common_name=policy.ca_common_name, validity=policy.ca_validity, now=now, backdate=policy.backdate
    )
    serving = _serving(policy, ca, names, now)
    return ServingMaterial(
        ca_bundle_pem=ca.cert_pem, ca_key_pem=ca.key_pem, cert_pem=serving.cert_pem, key_pem=serving.key_pem
    )


def _serving(policy: RotationPolicy, ca: KeyPair, names: _Names, now: dt.datetime) -> KeyPair:
    return make_serving_cert(
        ca=ca, dns_names=names.dns, ip_addresses=names.ips, validity=policy.serving_validity, now=now,
        backdate=policy.backdate,
    )  # fmt: skip


def _check(material: ServingMaterial, now: dt.datetime) -> tuple[list[x509.Certificate], x509.Certificate]:
    """The bundle and serving certificate, or ``ValueError`` when the material cannot be used at all."""
    cas = parse_bundle(material.ca_bundle_pem)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    if not _key_matches(cas[0], material.ca_key_pem):
        raise ValueError("the CA key does not belong to the signing CA")
    if not _key_matches(cert, material.key_pem):
        raise ValueError("the serving key does not belong to the serving certificate")
    if not any(_signed_by(cert, ca) for ca in cas):
        raise ValueError("the serving certificate is not signed by a CA of the bundle")
    if cert.not_valid_after_utc <= now or cas[0].not_valid_after_utc <= now:
        raise ValueError("the serving certificate or the signing CA has expired")
    return cas, cert


def advance(
    material: ServingMaterial | None,
    policy: RotationPolicy,
    *,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    now: dt.datetime,
) -> ServingMaterial | None:
    """The next state of ``material`` when a step is due at ``now``, else ``None`` (nothing to write).

    Steps, first due wins:

    1. Missing or unusable material (unparseable, a key that does not match, expired): issue afresh.
    2. A staged CA whose propagation time has passed: a serving certificate signed by it.
    3. The signing CA is due for renewal: stage a new CA in front of the bundle (the serving certificate
       is kept; expired CAs are dropped).
    4. The serving certificate is due, or lacks a wanted name: a new one from the signing CA (expired CAs
       leave the bundle with any write). A missing
       name is added to the names the current certificate has, so replicas configured with different
       extra names converge on a certificate that covers all of them instead of taking turns.
    """
    names = _Names.of(dns_names, ip_addresses)
    if material is None:
        return issue(policy, dns_names=names.dns, ip_addresses=names.ips, now=now)
    try:
        cas, cert = _check(material, now)
    except ValueError:
        return issue(policy, dns_names=names.dns, ip_addresses=names.ips, now=now)
    signing = KeyPair(cert_pem=bundle_pem(cas[:1]), key_pem=material.ca_key_pem)
    staged = not _signed_by(cert, cas[0])
    if staged:
        if material.staged_at is None or now >= material.staged_at + policy.ca_propagation:
            serving = _serving(policy, signing, names, now)
            return ServingMaterial(
                ca_bundle_pem=bundle_pem(merge_bundles(cas, now=now)), ca_key_pem=material.ca_key_pem,
                cert_pem=serving.cert_pem, key_pem=serving.key_pem, staged_at=None,
            )  # fmt: skip
        return None
    if now >= renewal_time(cas[0], policy.renew_fraction):
        ca = make_ca(
            common_name=policy.ca_common_name, validity=policy.ca_validity, now=now, backdate=policy.backdate
        )
        return ServingMaterial(
            ca_bundle_pem=bundle_pem(merge_bundles([ca.certificate], cas, now=now)), ca_key_pem=ca.key_pem,
            cert_pem=material.cert_pem, key_pem=material.key_pem, staged_at=now,
        )  # fmt: skip
    lacks_name = names.missing_from(cert)
    if lacks_name or now >= renewal_time(cert, policy.renew_fraction):
        serving = _serving(policy, signing, names.union(cert) if lacks_name else names, now)
        return ServingMaterial(
            ca_bundle_pem=bundle_pem(merge_bundles(cas, now=now)), ca_key_pem=material.ca_key_pem,
            cert_pem=serving.cert_pem, key_pem=serving.key_pem, staged_at=None,
        )  # fmt: skip
    return None


def next_due(material: ServingMaterial, policy: RotationPolicy) -> dt.datetime:
    """The earliest moment :func:`advance` will have something to do (absent a change of wanted names)."""
    cas = parse_bundle(material.ca_bundle_pem)
    cert = x509.load_pem_x509_certificate(material.cert_pem)
    if not _signed_by(cert, cas[0]):
        staged_at = material.staged_at or dt.datetime.min.replace(tzinfo=dt.UTC)
        return staged_at + policy.ca_propagation
    return min(
        renewal_time(cas[0], policy.renew_fraction),
        renewal_time(cert, policy.renew_fraction),
        cert.not_valid_after_utc,
    )
