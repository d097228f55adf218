"""The admission webhook component: an HTTPS server on every replica, answering from its own caches.

Entry point ``webhook.server:run`` (one OS process per replica, started by the supervisor). What it does,
in order:

1. Starts a :class:`~dorgu.runtime.manager.Manager` **without leader election** (every replica serves) with
   three informers: ApplicationPersonas (indexed by ``namespace/spec.name``; those that do not decode are
   known too, and never taken for "no persona": :mod:`webhook.admission`), Namespaces (for the
   ``dorgu.io/webhook-mode`` label) and the certificate Secret (a watch field-selected by its name, so the
   Role grants reads of that one Secret only). Reviews are answered from these caches — no API call per
   review.
2. Once the caches have synced (the server is in the manager's *others* group, not *servers*: its
   certificate comes from the Secret cache): gets or creates the certificate Secret
   (:mod:`webhook.certificates`), loads the pair, and only then **listens** (aiohttp, TLS ≥ 1.2, HTTP/1.1,
   ``POST /validate-deployment``, bodies up to 7 MiB as controller-runtime allows, larger ones 413; header
   and body timeouts and a connection limit: :mod:`webhook.listener`); then
   ensures the ValidatingWebhookConfiguration (:mod:`webhook.configuration`). The replica is ready (the
   manager reports it) once that is done: it listens, with a certificate the API server trusts.
3. Keeps the certificates: on every change of the Secret (its informer) and whenever a rotation step falls
   due (:func:`certs.rotation.next_due`), or at the latest every ``check_interval_s``, it rotates when due,
   reloads the pair into the live TLS context and re-injects the CA bundle. A failing API call here is
   logged and retried (the server keeps serving the pair it has); it never takes the server down.

Options read by :func:`run` (``ctx.options``; all optional): :class:`webhook.settings.WebhookOptions`.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

from certs.rotation import RotationPolicy, ServingMaterial, next_due
from dorgu.domain.kube import Namespace
from dorgu.domain.resources import APPLICATION_PERSONAS
from dorgu.domain.types import ApplicationPersona
from dorgu.runtime import metrics
from dorgu.runtime.component import ComponentContext
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.multinamespace import namespace_scope
from dorgu.runtime.resource import NAMESPACES, SECRETS
from webhook.admission import Mode, Reviewer, parse_mode, undecodable_lookup
from webhook.certificates import CertificateStore, Secret, TlsReloader
from webhook.configuration import MODE_LABEL, PATH, ConfigurationKeeper, ConfigurationSettings
from webhook.listener import BoundedListener, ListenerLimits, bound_socket
from webhook.metrics import count_verdict
from webhook.settings import WebhookOptions, names

log = logging.getLogger("dorgu.webhook")

NAME = "webhook"
BY_SPEC_NAME = "spec-name"
MAX_BODY_BYTES = 7 * 1024 * 1024
"""controller-runtime's limit: big enough for an UPDATE review carrying ``object`` and ``oldObject``."""


@dataclass(frozen=True, kw_only=True)
class WebhookSettings:
    """Everything the webhook component is configured with (tests shorten the intervals)."""

    mode: Mode = Mode.ADVISORY
    """The default mode (``--webhook-mode``); a namespace's ``dorgu.io/webhook-mode`` label overrides it."""
    host: str = "0.0.0.0"
    """Address to listen on."""
    port: int = 9443
    """Port to listen on (controller-runtime's default)."""
    namespace: str = "dorgu-system"
    """Namespace of the certificate Secret and of the Service."""
    secret_name: str = "dorgu-webhook-certs"
    """Name of the certificate Secret."""
    dns_names: tuple[str, ...] = ()
    """Extra DNS names for the serving certificate (the Service's four names are always included)."""
    also_serves: tuple[str, ...] = ("dorgu-websocket",)
    """Further Services whose four DNS names the certificate covers (the WebSocket's: same pair)."""
    ip_addresses: tuple[str, ...] = ()
    """IP addresses for the serving certificate (local runs: ``127.0.0.1``)."""
    cluster_domain: str = "cluster.local"
    """The cluster's DNS domain, for ``<svc>.<ns>.svc.<domain>``."""
    configuration: ConfigurationSettings = field(default_factory=ConfigurationSettings)
    """The ValidatingWebhookConfiguration (its ``default_mode`` and service namespace follow the above)."""
    manage_configuration: bool = True
    """Create and keep the ValidatingWebhookConfiguration (off: someone else does)."""
    rotation: RotationPolicy = field(default_factory=RotationPolicy)
    """Certificate lifetimes and renewal."""
    check_interval_s: float = 60.0
    """Re-check certificates and the configuration at least this often."""
    retry_interval_s: float = 5.0
    """After a failed certificate or configuration update, retry this soon."""
    max_body_bytes: int = MAX_BODY_BYTES
    """Larger request bodies are refused with 413."""
    shutdown_timeout_s: float = 10.0
    """On stop, wait this long for reviews in flight."""
    limits: ListenerLimits = field(default_factory=lambda: ListenerLimits(max_connections=256))
    """Header and body timeouts and the connection limit of the listener."""
    scope: tuple[str, ...] | None = None
    """The namespaces whose Deployments are checked and whose personas are cached (``--namespaces``);
    None: every opted-in namespace."""

    @property
    def service_dns_names(self) -> tuple[str, ...]:
        ns = self.namespace
        names = [
            name
            for svc in (self.configuration.service_name, *self.also_serves)
            for name in (svc, f"{svc}.{ns}", f"{svc}.{ns}.svc", f"{svc}.{ns}.svc.{self.cluster_domain}")
        ]
        return tuple(dict.fromkeys((*names, *self.dns_names)))


def settings_from_options(options: Mapping[str, Any]) -> WebhookSettings:
    """The component's settings from its options (``ctx.options``, converted to
    :class:`~webhook.settings.WebhookOptions`, which lists them); an unknown key or a bad value, such as an
    unknown mode or failure policy, raises ``msgspec.ValidationError`` (a ``ValueError``) naming it."""
    o = msgspec.convert(dict(options), type=WebhookOptions)
    mode = parse_mode(o.webhook_mode, what="webhook_mode")
    namespace = o.webhook_namespace or o.lease_namespace or "dorgu-system"
    configuration = ConfigurationSettings(
        name=o.webhook_configuration_name,
        default_mode=mode,
        advisory_failure_policy=o.webhook_advisory_failure_policy,
        enforcing_failure_policy=o.webhook_enforcing_failure_policy,
        timeout_seconds=o.webhook_timeout_seconds,
        url=o.webhook_url or None,
        service_name=o.webhook_service_name,
        service_namespace=namespace,
        service_port=o.webhook_service_port,
    )
    rotation = RotationPolicy(
        ca_validity=dt.timedelta(seconds=o.webhook_ca_validity_s),
        serving_validity=dt.timedelta(seconds=o.webhook_serving_validity_s),
        renew_fraction=o.webhook_renew_fraction,
        ca_propagation=dt.timedelta(seconds=o.webhook_ca_propagation_s),
        backdate=dt.timedelta(seconds=o.webhook_backdate_s),
    )
    return WebhookSettings(
        mode=mode,
        host=o.webhook_host,
        port=o.webhook_port,
        namespace=namespace,
        secret_name=o.webhook_secret_name,
        dns_names=names(o.webhook_dns_names),
        also_serves=names(o.webhook_also_serves),
        ip_addresses=names(o.webhook_ip_addresses),
        cluster_domain=o.webhook_cluster_domain,
        configuration=configuration,
        manage_configuration=o.webhook_manage_configuration,
        rotation=rotation,
        check_interval_s=o.webhook_check_interval_s,
        retry_interval_s=o.webhook_retry_interval_s,
        limits=ListenerLimits(
            header_timeout_s=o.webhook_header_timeout_s,
            body_timeout_s=o.webhook_body_timeout_s,
            max_connections=o.webhook_max_connections,
        ),
        scope=namespace_scope(o.namespaces),
    )


# --------------------------------------------------------------------------- caches


def _persona_index(p: ApplicationPersona) -> list[str]:
    return [f"{p.metadata.namespace}/{p.spec.name}"]


def _slim_persona(p: ApplicationPersona) -> ApplicationPersona:
    """Keep only what a review reads (the spec): status and managedFields are large and never used."""
    meta = p.metadata
    slim_meta = msgspec.structs.replace(meta, managed_fields=None, annotations=None)
    return msgspec.structs.replace(p, metadata=slim_meta, status=None)


def _slim_namespace(n: Namespace) -> Namespace:
    return Namespace(metadata=ObjectMeta(name=n.metadata.name, labels=n.metadata.labels))


def _persona_name(p: ApplicationPersona) -> str:
    return p.metadata.name or ""


# --------------------------------------------------------------------------- the server


class WebhookServer:
    """The webhook of one replica: caches on ``manager``, the review core, TLS, the HTTP server.

    It wires itself onto ``manager``: its informers, and :meth:`serve` in the others group (every replica,
    once the caches have synced) with :attr:`ready` gating the replica's readiness. Time is ``manager``'s
    clock."""

    def __init__(self, manager: Manager, settings: WebhookSettings) -> None:
        self.manager = manager
        self.settings = settings
        self.clock = manager.clock
        self.personas: Informer[ApplicationPersona] = manager.informer(
            APPLICATION_PERSONAS,
            ApplicationPersona,
            namespace=settings.scope,
            indexers={BY_SPEC_NAME: _persona_index},
            transform=_slim_persona,
        )
        self.namespaces: Informer[Namespace] = manager.informer(
            NAMESPACES, Namespace, transform=_slim_namespace
        )
        self.secrets: Informer[Secret] = manager.informer(
            SECRETS,
            Secret,
            namespace=settings.namespace,
            field_selector=f"metadata.name={settings.secret_name}",
        )
        self.reviewer = Reviewer(
            mode=settings.mode,
            personas=self._lookup,
            namespace_mode=self._namespace_mode,
            undecodable=undecodable_lookup(lambda: self.personas.undecodable.values()),
            scope=frozenset(settings.scope) if settings.scope is not None else None,
        )
        self.tls = TlsReloader()
        self.certs = CertificateStore(
            manager.client,
            name=settings.secret_name,
            namespace=settings.namespace,
            policy=settings.rotation,
            dns_names=settings.service_dns_names,
            ip_addresses=settings.ip_addresses,
            cached=lambda: self.secrets.store.get(f"{settings.namespace}/{settings.secret_name}"),
            now=self.clock.now,
        )
        self.configuration = ConfigurationKeeper(
            manager.client, settings.configuration, now=self.clock.now, issued=self.certs.issued_bundle
        )
        self._secret_changed = asyncio.Event()
        self.secrets.add_handlers(
            Handlers(
                on_add=lambda s: self._secret_changed.set(),
                on_update=lambda old, new: self._secret_changed.set(),
                on_delete=lambda s: self._secret_changed.set(),
            )
        )
        self.material: ServingMaterial | None = None
        """The material being served."""
        self.port: int | None = None
        """The port listened on (when ``settings.port`` is 0, the one the OS chose)."""
        self.reviews = 0
        """Reviews answered (any status)."""
        self.listening = asyncio.Event()
        """Set once the server listens."""
        self.ready = asyncio.Event()
        """Set once it listens and the API server knows how to call it (the configuration is written)."""
        self._latency = metrics.WEBHOOK_LATENCY.labels(PATH)
        self._in_flight = metrics.WEBHOOK_IN_FLIGHT.labels(PATH)
        self._requests: dict[int, Any] = {}
        self.listener = BoundedListener(settings.limits, clock=manager.clock, name=NAME)
        manager.add_runnable(self.serve, group=RunnableGroup.OTHERS, ready=self.ready, name="webhook-server")

    # -- lookups over the caches ---------------------------------------------------------------------------

    def _lookup(self, namespace: str, app: str) -> list[ApplicationPersona]:
        found = self.personas.store.by_index(BY_SPEC_NAME, f"{namespace}/{app}")
        if len(found) > 1:
            found.sort(key=_persona_name)
        return found

    def _namespace_mode(self, namespace: str) -> Mode | None:
        ns = self.namespaces.store.get(namespace)
        value = ((ns.metadata.labels or {}).get(MODE_LABEL) if ns is not None else None) or ""
        if value in (Mode.ADVISORY.value, Mode.ENFORCING.value):
            return Mode(value)
        return None  # no label, or an unknown value: the default mode (the configuration agrees)

    # -- HTTP ----------------------------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes, middlewares=[self.listener.middleware]
        )
        app.router.add_post(PATH, self._handle)
        return app

    def _count(self, status: int) -> None:
        child = self._requests.get(status)
        if child is None:
            child = self._requests[status] = metrics.WEBHOOK_REQUESTS.labels(PATH, str(status))
        child.inc()

    async def _handle(self, request: web.Request) -> web.Response:
        start = self.clock.monotonic()
        self._in_flight.inc()
        try:
            if (request.content_length or 0) > self.settings.max_body_bytes:
                response = self._too_large()
            else:
                try:
                    body = await request.read()
                except web.HTTPRequestEntityTooLarge:
                    response = self._too_large()
                else:
                    reply = self.reviewer.review(body)
                    count_verdict(reply)
                    if reply.status >= 500:
                        metrics.WEBHOOK_PANICS.inc()
                    response = web.Response(
                        status=reply.status, body=reply.body, content_type="application/json"
                    )
            self.reviews += 1
            self._count(response.status)
            return response
        finally:
            self._in_flight.dec()
            self._latency.observe(self.clock.monotonic() - start)

    def _too_large(self) -> web.Response:
        message = f"request body is larger than {self.settings.max_body_bytes} bytes"
        return web.json_response({"kind": "Status", "code": 413, "message": message}, status=413)

    # -- lifecycle -----------------------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run after the caches synced: certificates, listen, configuration (then :attr:`ready` is set), then
        keep the certificates fresh until cancelled."""
        s = self.settings
        self.material = await self.certs.ensure()
        self.tls.load(self.material)
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=s.shutdown_timeout_s)
        await runner.setup()
        try:
            sock = bound_socket(s.host, s.port)
            self.port = int(sock.getsockname()[1])
            await self.listener.start(runner, sock, self.tls.context)
            self.listening.set()
            log.info("webhook listening", extra={"host": s.host, "port": self.port, "mode": s.mode.value})
            if s.manage_configuration:
                await self._ensure_configuration(self.material)
            self.ready.set()
            await self._keep_certificates()
        finally:
            await self.listener.stop()
            await runner.cleanup()
            self.tls.close()

    async def _ensure_configuration(self, material: ServingMaterial) -> None:
        """Retry until written: the replica is not ready before the API server knows how to call it."""
        attempt = 0
        while True:
            try:
                await self.configuration.ensure(material.ca_bundle_pem)
                return
            except Exception as e:
                if attempt % 10 == 0:
                    log.warning("could not write the webhook configuration (retrying): %s", e)
                attempt += 1
                await self.clock.sleep(self.settings.retry_interval_s)

    async def _keep_certificates(self) -> None:
        s = self.settings
        while True:
            assert self.material is not None
            wait = s.check_interval_s
            with contextlib.suppress(Exception):
                due = next_due(self.material, s.rotation)
                wait = min(wait, max(0.0, (due - self.clock.now()).total_seconds()) + 0.05)
            with contextlib.suppress(TimeoutError):
                await self.clock.wait_for(self._secret_changed.wait(), timeout=wait)
            self._secret_changed.clear()
            try:
                material = await self.certs.ensure()
                if self.tls.load(material):
                    log.info(
                        "serving a new certificate", extra={"fingerprint": self.tls.fingerprint.hex()[:16]}
                    )
                self.material = material
                if s.manage_configuration:
                    await self.configuration.ensure(material.ca_bundle_pem)
            except Exception as e:
                log.warning("certificate or configuration update failed (retrying): %s", e)
                await self.clock.sleep(s.retry_interval_s)


def build(ctx: ComponentContext) -> tuple[Manager, WebhookServer]:
    """The replica's Manager (no leader election: every replica serves; it reports readiness) and server,
    wired to ``ctx``; :func:`run` runs them."""
    settings = settings_from_options(ctx.options)  # a bad mode fails the start, loudly
    connection = msgspec.structs.replace(ctx.connection, user_agent=f"{ctx.connection.user_agent} {NAME}")
    manager = Manager(connection=connection, leader_election=None, set_ready=ctx.set_ready)
    return manager, WebhookServer(manager, settings)


async def run(ctx: ComponentContext) -> None:
    """The component's entry point (a child process of the supervisor; never leader-gated)."""
    manager, _ = build(ctx)
    await manager.run(ctx.stopping)
