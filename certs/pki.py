"""Small, generic PKI: a self-signed CA, serving and client certificates, RSA keys.

Pure functions over ``cryptography``; nothing here knows about webhooks or clusters.

Key and validity choices (and why):

* **ECDSA P-256** for CA, serving and client keys: as strong as RSA-3072, far cheaper to generate (a
  throwaway CA per test session costs milliseconds, not the ~100 ms of an RSA-2048 key) and accepted by
  every Go TLS stack Kubernetes uses.
* **RSA-2048** only where a consumer insists on RSA: the kube-apiserver service-account signing key
  (``RS256`` is the algorithm every Kubernetes version accepts).
* Validity is a parameter; callers choose (a test CA lives a day, a webhook CA a year).
* ``not_valid_before`` is back-dated five minutes (``backdate``) so that small clock skew between hosts does
  not make a fresh certificate "not yet valid". A leaf never claims validity outside its CA's.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_SKEW = dt.timedelta(minutes=5)

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True, kw_only=True)
class KeyPair:
    """A certificate and its private key, both PEM-encoded."""

    cert_pem: bytes
    """The certificate (PEM)."""
    key_pem: bytes
    """The unencrypted PKCS#8 private key (PEM)."""

    @property
    def certificate(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem)

    @property
    def private_key(self) -> PrivateKey:
        key = serialization.load_pem_private_key(self.key_pem, password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
        return key


def _ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_ca(
    *,
    common_name: str,
    validity: dt.timedelta,
    now: dt.datetime | None = None,
    backdate: dt.timedelta = _SKEW,
) -> KeyPair:
    """A self-signed CA certificate that may sign leaf certificates only (path length 0).

    ``backdate``: how far ``not_valid_before`` lies before ``now`` (clock skew between hosts).
    """
    now = now or _now()
    key = _ec_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - backdate)
        .not_valid_after(now + validity)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def _leaf(
    *,
    ca: KeyPair,
    subject: x509.Name,
    usages: list[x509.ObjectIdentifier],
    sans: list[x509.GeneralName],
    validity: dt.timedelta,
    now: dt.datetime | None,
    backdate: dt.timedelta = _SKEW,
) -> KeyPair:
    now = now or _now()
    key = _ec_key()
    ca_cert = ca.certificate
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(max(now - backdate, ca_cert.not_valid_before_utc))
        .not_valid_after(min(now + validity, ca_cert.not_valid_after_utc))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_cert.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
    )
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(ca.private_key, hashes.SHA256())
    return KeyPair(cert_pem=cert.public_bytes(serialization.Encoding.PEM), key_pem=_key_pem(key))


def make_serving_cert(
    *,
    ca: KeyPair,
    dns_names: Iterable[str] = (),
    ip_addresses: Iterable[str] = (),
    validity: dt.timedelta,
    now: dt.datetime | None = None,
    backdate: dt.timedelta = _SKEW,
) -> KeyPair:
    """A TLS server certificate for the given DNS names and IP addresses, signed by ``ca``.

    The first DNS name (or IP) is also the subject CN, for tools that still print it. Its validity never
    extends beyond the CA's (neither end).
    """
    dns = list(dns_names)
    ips = list(ip_addresses)
    if not dns and not ips:
        raise ValueError("a serving certificate needs at least one DNS name or IP address")
    sans: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
    sans += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, (dns or ips)[0])])
    return _leaf(
        ca=ca,
        subject=subject,
        usages=[ExtendedKeyUsageOID.SERVER_AUTH],
        sans=sans,
        validity=validity,
        now=now,
        backdate=backdate,
    )


def make_client_cert(
    *,
    ca: KeyPair,
    user: str,
    groups: Iterable[str] = (),
    validity: dt.timedelta,
    now: dt.datetime | None = None,
) -> KeyPair:
    """A TLS client certificate; Kubernetes reads the user from CN and the groups from O."""
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, user)]
    attrs += [x509.NameAttribute(NameOID.ORGANIZATION_NAME, g) for g in groups]
    return _leaf(
        ca=ca,
        subject=x509.Name(attrs),
        usages=[ExtendedKeyUsageOID.CLIENT_AUTH],
        sans=[],
        validity=validity,
        now=now,
    )


def make_rsa_key_pem(*, bits: int = 2048) -> tuple[bytes, bytes]:
    """A fresh RSA key as ``(private PKCS#8 PEM, public SubjectPublicKeyInfo PEM)``."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return _key_pem(key), public
