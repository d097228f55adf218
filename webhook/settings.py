"""The admission webhook component's options: one typed struct, the only place their defaults live.

``webhook.server.run`` converts ``ctx.options`` to :class:`WebhookOptions` once and builds its
:class:`~webhook.server.WebhookSettings` from it; an unknown key or a bad value is an error naming it.
``dorgu operator`` converts them too, before anything starts, to refuse a bad ``--component-options`` with a
usage error. That is why this module stands apart from the server: it imports msgspec and nothing else, so
the supervisor process can check options without loading the webhook.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

MODES = ("advisory", "enforcing")
FAILURE_POLICIES = ("Ignore", "Fail")


class WebhookOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Component ``webhook``: its flat option names, as ``--component-options`` and the flags spell them."""

    webhook_mode: str = "advisory"
    """``advisory`` or ``enforcing`` (any case; ``--webhook-mode``): the mode of an opted-in namespace
    without a ``dorgu.io/webhook-mode`` label."""
    webhook_host: str = "0.0.0.0"
    """Address to listen on (``--webhook-bind-address``)."""
    webhook_port: int = 9443
    """Port to listen on (``--webhook-bind-address``; controller-runtime's default)."""
    namespaces: str | tuple[str, ...] = ()
    """The namespaces the operator works in (``--namespaces``; a list, or one comma-separated string);
    empty: every namespace. Deployments elsewhere are admitted unchecked (as if not opted in), and personas
    are cached from these namespaces only."""
    webhook_namespace: str | None = None
    """Namespace of the certificate Secret and of the Service (None or empty: ``lease_namespace``)."""
    lease_namespace: str | None = None
    """The operator's namespace, as ``dorgu operator`` resolves it for the Leases: the fallback of
    ``webhook_namespace`` (None or empty: ``dorgu-system``)."""
    webhook_secret_name: str = "dorgu-webhook-certs"
    """Name of the certificate Secret."""
    webhook_service_name: str = "dorgu-webhook"
    """The Service the API server calls (unless ``webhook_url``), and the serving certificate's DNS names."""
    webhook_service_port: int = 443
    """The Service's port."""
    webhook_url: str | None = None
    """Have the API server call this URL instead of the Service (``--webhook-url``)."""
    webhook_also_serves: str | tuple[str, ...] = ("dorgu-websocket",)
    """Further Services of the namespace whose DNS names the serving certificate covers (a list, or one
    comma-separated string): the WebSocket server serves the same pair (``ws_tls``)."""
    webhook_dns_names: str | tuple[str, ...] = ()
    """Extra DNS names for the serving certificate: a list, or one comma-separated string."""
    webhook_ip_addresses: str | tuple[str, ...] = ()
    """IP addresses for the serving certificate (``--webhook-ip-addresses``): a list, or one comma-separated
    string."""
    webhook_cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, for ``<svc>.<ns>.svc.<domain>``."""
    webhook_configuration_name: str = "dorgu-deployment-validation"
    """Name of the ValidatingWebhookConfiguration (cluster-scoped)."""
    webhook_manage_configuration: bool = True
    """Create and keep the ValidatingWebhookConfiguration (false: someone else does)."""
    webhook_advisory_failure_policy: str = "Ignore"
    """``failurePolicy`` (``Ignore`` or ``Fail``) of the advisory entry: a failed call blocks no one."""
    webhook_enforcing_failure_policy: str = "Fail"
    """``failurePolicy`` (``Ignore`` or ``Fail``) of the enforcing entry: nothing slips through unchecked."""
    webhook_timeout_seconds: int = 5
    """``timeoutSeconds`` of both entries."""
    webhook_ca_validity_s: float = 365 * 86400.0
    """Lifetime of a CA certificate."""
    webhook_serving_validity_s: float = 90 * 86400.0
    """Lifetime of a serving certificate (never beyond its CA's expiry)."""
    webhook_renew_fraction: Annotated[float, msgspec.Meta(gt=0, lt=1)] = 2 / 3
    """Renew a certificate once this fraction of its lifetime has passed."""
    webhook_ca_propagation_s: float = 30.0
    """After a new CA is added to the bundle, wait this long before serving a certificate it signed."""
    webhook_backdate_s: float = 300.0
    """How far ``notBefore`` lies before the moment of issue (clock skew between hosts)."""
    webhook_check_interval_s: float = 60.0
    """Re-check certificates and the configuration at least this often."""
    webhook_retry_interval_s: float = 5.0
    """After a failed certificate or configuration update, retry this soon."""
    webhook_header_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Time a client has for a complete request head, from accept (TLS handshake included) or from the end
    of its previous request; then the connection is closed (:mod:`webhook.listener`)."""
    webhook_body_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    """Time from a complete request head to the answer, the body's reading included."""
    webhook_max_connections: Annotated[int, msgspec.Meta(ge=1)] = 256
    """Connections open at once (TLS handshakes included); one more is closed at once."""

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a ValidationError; the message names the key.
        if self.webhook_mode.strip().lower() not in MODES:
            raise ValueError(f"webhook_mode must be advisory or enforcing, not {self.webhook_mode!r}")
        for key in ("webhook_advisory_failure_policy", "webhook_enforcing_failure_policy"):
            value = getattr(self, key)
            if value not in FAILURE_POLICIES:
                raise ValueError(f"{key} must be Ignore or Fail, not {value!r}")


def names(value: str | tuple[str, ...]) -> tuple[str, ...]:
    """A list option's items: a comma-separated string is split, blanks dropped."""
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    return value
