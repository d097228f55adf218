"""Certificate issue and rotation (pure, with a fake clock), and the Secret <-> material mapping."""

from __future__ import annotations

import datetime as dt

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.pki import make_ca, make_serving_cert
from certs.rotation import (
    RotationPolicy,
    ServingMaterial,
    advance,
    issue,
    merge_bundles,
    next_due,
    renewal_time,
)
from webhook.certificates import Secret, material_of, secret_of
from webhook.server import settings_from_options

T0 = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
POLICY = RotationPolicy(
    ca_validity=dt.timedelta(hours=12), serving_validity=dt.timedelta(hours=6),
    ca_propagation=dt.timedelta(minutes=1), backdate=dt.timedelta(0),
)  # fmt: skip
NAMES = {
    "dns_names": ["svc", "svc.ns", "svc.ns.svc", "svc.ns.svc.cluster.local"],
    "ip_addresses": ["127.0.0.1"],
}


def at(hours: float) -> dt.datetime:
    return T0 + dt.timedelta(hours=hours)


def step(m: ServingMaterial | None, hours: float) -> ServingMaterial | None:
    return advance(m, POLICY, now=at(hours), **NAMES)


def serving(m: ServingMaterial) -> x509.Certificate:
    return x509.load_pem_x509_certificate(m.cert_pem)


def test_issue_keys_names_and_validity() -> None:
    m = issue(RotationPolicy(), now=T0, **NAMES)
    cert, (ca,) = serving(m), m.cas
    assert (
        isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
        and cert.public_key().curve.name == "secp256r1"
    )
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sans.get_values_for_type(x509.DNSName) == NAMES["dns_names"]
    assert [str(i) for i in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert ca.not_valid_after_utc - T0 == dt.timedelta(days=365)
    assert cert.not_valid_after_utc - T0 == dt.timedelta(days=90)
    assert (
        renewal_time(cert, 2 / 3)
        == cert.not_valid_before_utc + (cert.not_valid_after_utc - cert.not_valid_before_utc) * 2 / 3
    )
    cert.verify_directly_issued_by(ca)


def test_rotation_schedule_keeps_every_served_cert_trusted() -> None:
    m = step(None, 0)
    assert m is not None
    ca0 = m.cas[0]
    assert step(m, 3.9) is None  # nothing due before 2/3 of 6 h
    assert next_due(m, POLICY) == at(4)

    m1 = step(m, 4)  # serving renewal from the same CA: the bundle does not change
    assert m1 is not None and m1.ca_bundle_pem == m.ca_bundle_pem and m1.cert_pem != m.cert_pem
    serving(m1).verify_directly_issued_by(ca0)

    m2 = step(m1, 8)  # the CA is due (2/3 of 12 h): staged in front, serving certificate unchanged
    assert m2 is not None and m2.staged_at == at(8)
    assert m2.cert_pem == m1.cert_pem and len(m2.cas) == 2 and m2.cas[1] == ca0
    assert step(m2, 8 + 0.5 / 60) is None  # propagation time not over
    assert next_due(m2, POLICY) == at(8) + POLICY.ca_propagation

    m3 = step(m2, 8.1)  # served from the new CA; the old one stays in the bundle (not expired)
    assert m3 is not None and m3.staged_at is None
    serving(m3).verify_directly_issued_by(m3.cas[0])
    assert m3.cas[1] == ca0

    m4 = step(m3, 12.5)  # the old CA has expired: it leaves the bundle with the next write
    assert m4 is not None and ca0 not in m4.cas


def test_unusable_material_is_reissued_and_names_are_added() -> None:
    m = step(None, 0)
    assert m is not None
    other = issue(POLICY, now=T0, **NAMES)
    mixed = ServingMaterial(
        ca_bundle_pem=m.ca_bundle_pem, ca_key_pem=other.ca_key_pem, cert_pem=m.cert_pem, key_pem=m.key_pem
    )
    fresh = step(mixed, 1)
    assert fresh is not None and fresh.cas[0] != m.cas[0]
    assert step(m, 13) is not None  # expired
    wider = advance(m, POLICY, now=at(1), dns_names=["svc"], ip_addresses=["127.0.0.9"])
    assert wider is not None and wider.ca_bundle_pem == m.ca_bundle_pem
    sans = serving(wider).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "127.0.0.1" in {str(i) for i in sans.get_values_for_type(x509.IPAddress)}  # kept
    assert "127.0.0.9" in {str(i) for i in sans.get_values_for_type(x509.IPAddress)}  # added


def test_merge_bundles_drops_expired_and_duplicates() -> None:
    a = make_ca(common_name="a", validity=dt.timedelta(hours=1), now=T0).certificate
    b = make_ca(common_name="b", validity=dt.timedelta(hours=3), now=T0).certificate
    assert merge_bundles([b], [a, b], now=at(0.5)) == [b, a]
    assert merge_bundles([b], [a, b], now=at(2)) == [b]


def test_leaf_never_outlives_its_ca() -> None:
    ca = make_ca(common_name="c", validity=dt.timedelta(hours=1), now=T0)
    leaf = make_serving_cert(ca=ca, dns_names=["x"], validity=dt.timedelta(days=1), now=T0).certificate
    assert leaf.not_valid_after_utc == ca.certificate.not_valid_after_utc


def test_secret_round_trip() -> None:
    m = step(step(step(None, 0), 4), 8)
    assert m is not None and m.staged_at is not None
    s = secret_of(m, name="n", namespace="ns", resource_version="7")
    assert s.type == "kubernetes.io/tls" and set(s.data or {}) == {"tls.crt", "tls.key", "ca.crt", "ca.key"}
    assert material_of(s) == m
    assert material_of(Secret()) is None  # keys missing: re-issued


def test_options() -> None:
    s = settings_from_options(
        {"webhook_mode": "enforcing", "lease_namespace": "ops", "webhook_ip_addresses": "127.0.0.1, ::1"}
    )
    assert s.mode.value == "enforcing" and s.configuration.default_mode.value == "enforcing"
    assert s.namespace == "ops" and s.ip_addresses == ("127.0.0.1", "::1")
    assert s.service_dns_names == (
        "dorgu-webhook",
        "dorgu-webhook.ops",
        "dorgu-webhook.ops.svc",
        "dorgu-webhook.ops.svc.cluster.local",
        # The WebSocket server serves the same pair (issue 17, item 1): its Service's names too.
        "dorgu-websocket",
        "dorgu-websocket.ops",
        "dorgu-websocket.ops.svc",
        "dorgu-websocket.ops.svc.cluster.local",
    )
    with pytest.raises(ValueError, match="must be advisory or enforcing"):
        settings_from_options({"webhook_mode": "strict"})
    with pytest.raises(ValueError, match="Ignore or Fail"):
        settings_from_options({"webhook_enforcing_failure_policy": "Deny"})
