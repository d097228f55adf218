"""The admission webhook's own metrics: verdicts by mode and outcome, the serving certificates' expiry and
renewal times (the WebSocket server's are in :mod:`webhook.ws.metrics`).

Defined here, apart from the servers, so that the servers only count (one call at each place where a thing
happens). The runtime's metrics (:mod:`dorgu.runtime.metrics`, controller-runtime's names) stay the
generic part; these are dorgu's own (``dorgu_`` prefix). Rules kept:

* **A denial is an HTTP 200**, so ``controller_runtime_webhook_requests_total{code}`` cannot show it:
  :data:`VERDICTS` counts each answered review by the ``mode`` that decided it and its ``outcome``. Every
  mode × outcome pair is created at 0 on import, so a rate over them exists before the first review.
* **Gauges of one process per replica** (the webhook runs in one child) are combined over processes by
  the supervisor with ``livemin`` (the earliest expiry is the one that matters). Across replicas, queries
  take ``min`` (deploy/monitoring).
* **No per-persona label**: label values come from small fixed sets (modes, outcomes, certificates).
"""

from __future__ import annotations

from typing import Protocol

from cryptography import x509
from prometheus_client import Counter, Gauge

from certs.rotation import RotationPolicy, ServingMaterial, parse_bundle, renewal_time

MODE_NONE = "none"
"""The verdict's mode when no persona was checked (delete/connect, kube-system, no app label, no persona,
bad input)."""
MODES = ("advisory", "enforcing", MODE_NONE)
OUTCOME_ALLOWED = "allowed"
"""Allowed without warnings."""
OUTCOME_WARNED = "warned"
"""Allowed with warnings (advisory mode: also a Deployment that enforcing mode would deny)."""
OUTCOME_DENIED = "denied"
"""Denied (enforcing mode): ``allowed: false`` with code 403, still an HTTP 200."""
OUTCOME_INVALID = "invalid"
"""The review could not be answered: bad input (HTTP 400)."""
OUTCOME_ERROR = "error"
"""The review failed inside the webhook (HTTP 500)."""
OUTCOMES = (OUTCOME_ALLOWED, OUTCOME_WARNED, OUTCOME_DENIED, OUTCOME_INVALID, OUTCOME_ERROR)

VERDICTS = Counter(
    "dorgu_webhook_verdicts_total",
    "Admission reviews answered, by the mode that decided them and their outcome",
    ["mode", "outcome"],
)
for _mode in MODES:
    for _outcome in OUTCOMES:
        VERDICTS.labels(_mode, _outcome)

CERTIFICATE_EXPIRY = Gauge(
    "dorgu_webhook_certificate_expiry_timestamp_seconds",
    "When the webhook's certificate expires (notAfter, unix seconds): the serving certificate, and the CA "
    "that signs it",
    ["certificate"],
    multiprocess_mode="livemin",
)
CERTIFICATE_RENEWAL = Gauge(
    "dorgu_webhook_certificate_renewal_timestamp_seconds",
    "When the rotation policy renews the webhook's certificate (unix seconds); past it, a renewal is due",
    ["certificate"],
    multiprocess_mode="livemin",
)


class Verdict(Protocol):
    """What :func:`count_verdict` reads of a review's answer (:class:`webhook.admission.Reply`)."""

    @property
    def status(self) -> int: ...  # the HTTP status
    @property
    def allowed(self) -> bool: ...
    @property
    def warnings(self) -> tuple[str, ...]: ...
    @property
    def mode(self) -> str | None: ...  # the mode that decided; None: no persona was checked


def outcome_of(verdict: Verdict) -> str:
    """The ``outcome`` label of an answered review."""
    if verdict.status >= 500:
        return OUTCOME_ERROR
    if verdict.status >= 400:
        return OUTCOME_INVALID
    if not verdict.allowed:
        return OUTCOME_DENIED
    return OUTCOME_WARNED if verdict.warnings else OUTCOME_ALLOWED


def count_verdict(verdict: Verdict) -> None:
    """Count one answered review by its mode and outcome."""
    VERDICTS.labels(verdict.mode or MODE_NONE, outcome_of(verdict)).inc()


def observe_certificates(material: ServingMaterial, policy: RotationPolicy) -> None:
    """Record the expiry and renewal time of the serving certificate and of its signing CA (the first of
    the bundle), as ``policy`` renews them."""
    serving = x509.load_pem_x509_certificate(material.cert_pem)
    ca = parse_bundle(material.ca_bundle_pem)[0]
    for name, cert in (("serving", serving), ("ca", ca)):
        CERTIFICATE_EXPIRY.labels(name).set(cert.not_valid_after_utc.timestamp())
        CERTIFICATE_RENEWAL.labels(name).set(renewal_time(cert, policy.renew_fraction).timestamp())
