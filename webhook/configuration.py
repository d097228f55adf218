"""The ValidatingWebhookConfiguration the operator owns: what it must say, and keeping it so.

Desired shape:

* two webhook entries, one per mode, because ``failurePolicy`` is per entry: ``advisory.…`` with
  ``Ignore`` and ``enforcing.…`` with ``Fail`` (both configurable). The default mode's entry matches every
  opted-in namespace whose label ``dorgu.io/webhook-mode`` is not the other mode; the other entry matches
  those that name it. A namespace is checked by exactly one entry.
* rules ``apps/v1 deployments CREATE,UPDATE`` (scope Namespaced), ``admissionReviewVersions: [v1]``,
  ``sideEffects: None``, ``timeoutSeconds: 5``, ``matchPolicy: Equivalent``;
* namespaces opt in with ``dorgu.io/validate=true``. kube-system cannot be excluded by name on 1.20 (no
  ``kubernetes.io/metadata.name`` label); the handler skips it;
* ``clientConfig``: a ``url`` for local runs, else the Service; ``caBundle`` from the certificate Secret
  (the operator injects it itself, so the API server trusts its serving certificate with no other tool).

Rules kept here:

* **Every replica keeps it** (not leader-gated): all compute the same entries, so they never fight.
* **Only CAs the operator issued are trusted.** The injected ``caBundle`` is the CA bundle of the
  certificate Secret (the signing CA and, after a CA renewal, the previous one until it expires) — nothing
  else. A CA someone else put into the configuration is dropped at the next repair, however long it is
  valid. A CA the configuration holds beyond the bundle this replica was given is kept only while the
  Secret, read afresh from the API server (not from the cache), still holds it: a replica whose Secret
  cache lags behind a rotation therefore cannot remove a CA that a newer serving certificate needs.
  Expired CAs always leave.
* **Writes are optimistic.** GET, compare, then create (``AlreadyExists`` → re-read) or PUT with the
  ``resourceVersion`` read (``Conflict`` → re-read); nothing is written when nothing differs.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from cryptography import x509

from certs.rotation import bundle_pem, fingerprint, merge_bundles, parse_bundle
from dorgu.runtime.client import ApiClient
from dorgu.runtime.errors import AlreadyExists, Conflict, NotFound
from dorgu.runtime.resource import VALIDATING_WEBHOOK_CONFIGURATIONS
from webhook.admission import Mode

log = logging.getLogger("dorgu.webhook.configuration")

OPT_IN_LABEL = "dorgu.io/validate"
MODE_LABEL = "dorgu.io/webhook-mode"
PATH = "/validate-deployment"
MANAGED_BY = "app.kubernetes.io/managed-by"


@dataclass(frozen=True, kw_only=True)
class ConfigurationSettings:
    """What the ValidatingWebhookConfiguration says."""

    name: str = "dorgu-deployment-validation"
    """The configuration's name (cluster-scoped)."""
    default_mode: Mode = Mode.ADVISORY
    """The mode of an opted-in namespace without a ``dorgu.io/webhook-mode`` label."""
    advisory_failure_policy: str = "Ignore"
    """``failurePolicy`` of the advisory entry: a failed call must not block anyone."""
    enforcing_failure_policy: str = "Fail"
    """``failurePolicy`` of the enforcing entry: no Deployment slips through unchecked."""
    timeout_seconds: int = 5
    """``timeoutSeconds`` of both entries."""
    url: str | None = None
    """``clientConfig.url`` (local runs: ``https://127.0.0.1:<port>/validate-deployment``); else Service."""
    service_name: str = "dorgu-webhook"
    """``clientConfig.service.name``."""
    service_namespace: str = "dorgu-system"
    """``clientConfig.service.namespace``."""
    service_port: int = 443
    """``clientConfig.service.port``."""


def desired_webhooks(settings: ConfigurationSettings, ca_bundle: bytes) -> list[dict[str, Any]]:
    """The two entries, with every field the API server would otherwise default (so they compare equal)."""
    client_config: dict[str, Any]
    if settings.url:
        client_config = {"url": settings.url}
    else:
        client_config = {
            "service": {
                "name": settings.service_name, "namespace": settings.service_namespace, "path": PATH,
                "port": settings.service_port,
            }
        }  # fmt: skip
    client_config["caBundle"] = base64.b64encode(ca_bundle).decode()
    entries = []
    for mode, policy in (
        (Mode.ADVISORY, settings.advisory_failure_policy),
        (Mode.ENFORCING, settings.enforcing_failure_policy),
    ):
        if mode is settings.default_mode:  # every mode label but the other mode
            other = Mode.ENFORCING if mode is Mode.ADVISORY else Mode.ADVISORY
            mode_expr = {"key": MODE_LABEL, "operator": "NotIn", "values": [other.value]}
        else:
            mode_expr = {"key": MODE_LABEL, "operator": "In", "values": [mode.value]}
        entries.append(
            {
                "name": f"{mode.value}.deployments.dorgu.io",
                "admissionReviewVersions": ["v1"],
                "sideEffects": "None",
                "timeoutSeconds": settings.timeout_seconds,
                "failurePolicy": policy,
                "matchPolicy": "Equivalent",
                "clientConfig": client_config,
                "rules": [
                    {
                        "apiGroups": ["apps"],
                        "apiVersions": ["v1"],
                        "resources": ["deployments"],
                        "operations": ["CREATE", "UPDATE"],
                        "scope": "Namespaced",
                    }
                ],
                "namespaceSelector": {
                    "matchExpressions": [
                        {"key": OPT_IN_LABEL, "operator": "In", "values": ["true"]},
                        mode_expr,
                    ]
                },
                "objectSelector": {},
            }
        )
    return entries


def _existing_cas(obj: dict[str, Any]) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for entry in obj.get("webhooks") or []:
        raw = (entry.get("clientConfig") or {}).get("caBundle")
        if raw:
            try:
                out.extend(parse_bundle(base64.b64decode(raw)))
            except ValueError:
                continue  # unreadable: replaced by ours
    return out


class ConfigurationKeeper:
    """Creates and updates the configuration; :meth:`ensure` is idempotent and cheap when nothing changed."""

    def __init__(
        self,
        client: ApiClient,
        settings: ConfigurationSettings,
        *,
        now: Callable[[], dt.datetime] | None = None,
        issued: Callable[[], Awaitable[bytes | None]] | None = None,
    ) -> None:
        self.client = client
        self.settings = settings
        self.now = now or (lambda: dt.datetime.now(dt.UTC))
        self.issued = issued
        """Reads the CA bundle (PEM) of the certificate Secret afresh from the API server (``None``: no
        Secret), asked only when the configuration holds an unexpired CA beyond the bundle :meth:`ensure` was
        given; such a CA is kept only while that bundle holds it. Without it the given bundle is the whole
        truth: a replica whose Secret cache lags behind a CA renewal then drops the new CA until it catches
        up."""
        self.writes = 0
        """Creates and updates made."""
        self.fresh_reads = 0
        """How often :attr:`issued` was asked."""

    async def _trusted(
        self, wanted: list[x509.Certificate], existing: list[x509.Certificate]
    ) -> list[x509.Certificate]:
        """The CAs to inject: ``wanted`` (this replica's bundle, from the Secret) plus, when the configuration
        holds other unexpired CAs, the Secret's bundle as the API server has it now (first, so that every
        replica writes the same order). Any other CA — one nobody issued from the Secret — is dropped."""
        now = self.now()
        known = {fingerprint(c) for c in wanted}
        extra = [c for c in existing if fingerprint(c) not in known and c.not_valid_after_utc > now]
        if not extra or self.issued is None:
            return merge_bundles(wanted, now=now)
        self.fresh_reads += 1
        raw = await self.issued()
        try:
            fresh = parse_bundle(raw) if raw else []
        except ValueError:
            fresh = []  # an unreadable bundle in the Secret vouches for nothing
        return merge_bundles(fresh, wanted, now=now)

    async def ensure(self, ca_bundle_pem: bytes) -> None:
        r = VALIDATING_WEBHOOK_CONFIGURATIONS
        path = r.path(name=self.settings.name)
        wanted = parse_bundle(ca_bundle_pem)
        for _ in range(10):
            try:
                current: dict[str, Any] | None = msgspec.json.decode(await self.client.request("GET", path))
            except NotFound:
                current = None
            cas = await self._trusted(wanted, _existing_cas(current or {}))
            webhooks = desired_webhooks(self.settings, bundle_pem(cas))
            if current is None:
                body = {
                    "apiVersion": r.api_version, "kind": r.kind,
                    "metadata": {"name": self.settings.name, "labels": {MANAGED_BY: "dorgu"}},
                    "webhooks": webhooks,
                }  # fmt: skip
                try:
                    await self.client.request("POST", r.path(), body=body)
                except AlreadyExists:
                    continue
                self.writes += 1
                log.info("created ValidatingWebhookConfiguration %s", self.settings.name)
                return
            if current.get("webhooks") == webhooks:
                return
            current["webhooks"] = webhooks
            try:
                await self.client.request("PUT", path, body=current)
            except (Conflict, NotFound):
                continue
            self.writes += 1
            log.info(
                "updated ValidatingWebhookConfiguration %s (%d CAs trusted)", self.settings.name, len(cas)
            )
            return
        raise RuntimeError(f"could not settle ValidatingWebhookConfiguration {self.settings.name}")
