"""The WebSocket server component's options: one typed struct, the only place their defaults live.

``webhook.ws.server.run`` converts ``ctx.options`` to :class:`WebSocketOptions` once and builds its
:class:`~webhook.ws.server.WebSocketSettings` from it; an unknown key or a bad value is an error naming it.
``dorgu operator`` converts them too, before anything starts, to refuse a bad ``--component-options`` with a
usage error. That is why this module stands apart from the server: it imports msgspec and nothing else, so
the supervisor process can check options without loading the WebSocket server.
"""

from __future__ import annotations

import ipaddress

import msgspec

AUTH_MODES = ("token", "none")
TLS_MODES = ("auto", "secret", "off")


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or ``localhost``) is reachable from this machine only."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere


class WebSocketOptions(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Component ``websocket``: its flat option names, as ``--component-options`` and the flags spell them."""

    websocket_addr: str = ""
    """``host:port`` or ``:port`` (``--websocket-addr``); a part left empty comes from ``ws_host`` or
    ``ws_port``."""
    ws_host: str = "0.0.0.0"
    """Address to listen on, unless ``websocket_addr`` names one."""
    ws_port: int = 9090
    """Port to listen on, unless ``websocket_addr`` names one."""
    ws_auth: str = "token"
    """``token`` (TokenReview + SubjectAccessReview) or ``none`` (local development only; ``--ws-auth``):
    ``none`` is refused unless the listener is loopback (``127.0.0.1``, ``::1``, ``localhost``)."""
    namespaces: str | tuple[str, ...] = ()
    """The namespaces the operator works in (``--namespaces``; a list, or one comma-separated string);
    empty: every namespace. Personas and Events are cached from these namespaces only, so lists and
    subscriptions show nothing else; one naming another namespace is refused (``invalid_request``)."""
    ws_heartbeat_s: float = 30.0
    """Ping interval; a peer silent for half of it after a ping is disconnected."""
    ws_tls: str = "auto"
    """``auto``: ``wss://`` unless the listener is loopback; ``secret``: ``wss://`` always; ``off``: plain
    ``ws://`` (behind a TLS-terminating proxy only). ``wss://`` serves the pair of the certificate Secret
    (``ws_tls_secret_name``), which the webhook component issues and rotates — unless ``ws_tls_cert_file``
    names files."""
    ws_tls_secret_name: str = "dorgu-webhook-certs"
    """The certificate Secret whose ``tls.crt``/``tls.key`` are served (reloaded when it changes)."""
    ws_tls_secret_namespace: str | None = None
    """Its namespace (None or empty: ``lease_namespace``)."""
    lease_namespace: str | None = None
    """The operator's namespace, as ``dorgu operator`` resolves it (None or empty: ``dorgu-system``)."""
    ws_tls_cert_file: str | None = None
    """PEM serving certificate file (instead of the Secret's)."""
    ws_tls_key_file: str | None = None
    """PEM private key of ``ws_tls_cert_file``."""
    ws_token_audiences: str | tuple[str, ...] = ()
    """Audiences a token must be issued for (TokenReview ``spec.audiences``; a list, or one comma-separated
    string), e.g. ``dorgu`` for tokens from ``kubectl create token SA --audience dorgu``; empty: any token the
    API server accepts (its own audience included)."""
    ws_ring_size: int = 4096
    """Changes kept per topic for resume."""
    ws_queue_size: int = 1024
    """Frames queued per connection before it is declared lagging and resynced."""
    ws_max_buffered_bytes: int = 8 * 1024 * 1024
    """Bytes queued per connection: a change beyond it resyncs the connection (``lagging``); at it, the
    server stops reading the connection's requests until the client has taken its replies."""
    ws_header_timeout_s: float = 10.0
    """Time a client has for a complete request head (the upgrade), from accept (TLS handshake included)
    or from the end of its previous request; then the connection is closed (:mod:`webhook.listener`)."""
    ws_body_timeout_s: float = 10.0
    """Time from a request head to the answer for plain HTTP requests (``/health``); upgrades are exempt."""
    ws_max_connections: int = 1024
    """Connections open at once (TLS handshakes included); one more is closed at once."""
    ws_auth_cache_ttl_s: float = 30.0
    """How long TokenReview/SubjectAccessReview answers are reused (0: not at all)."""
    ws_reauth_interval_s: float = 60.0
    """How often each subscription's access (token and RBAC) is checked again; a subscription that lost it
    is closed with an ``error`` naming its topic."""
    ws_auth_negative_ttl_s: float = 10.0
    """How long a rejected token is refused without another TokenReview (0: not remembered)."""
    ws_auth_fail_burst: int = 10
    """Failed authentications one source (peer address) may have in a burst before it gets HTTP 429."""
    ws_auth_fail_per_s: float = 0.5
    """Rate at which a source's failure allowance refills (failures per second)."""

    def __post_init__(self) -> None:
        # msgspec reports a ValueError raised here as a ValidationError; the message names the key.
        if self.ws_auth not in AUTH_MODES:
            raise ValueError(f"ws_auth must be token or none, not {self.ws_auth!r}")
        if self.ws_tls not in TLS_MODES:
            raise ValueError(f"ws_tls must be auto, secret or off, not {self.ws_tls!r}")
        if self.ws_reauth_interval_s <= 0:
            raise ValueError(f"ws_reauth_interval_s must be positive, not {self.ws_reauth_interval_s}")
        if self.ws_max_buffered_bytes < 64 * 1024:
            raise ValueError(
                f"ws_max_buffered_bytes must be at least 65536, not {self.ws_max_buffered_bytes}"
            )
        if self.ws_header_timeout_s <= 0 or self.ws_body_timeout_s <= 0:
            raise ValueError("ws_header_timeout_s and ws_body_timeout_s must be positive")
        if self.ws_max_connections < 1:
            raise ValueError(f"ws_max_connections must be at least 1, not {self.ws_max_connections}")
        if self.ws_auth_fail_burst < 1:
            raise ValueError(f"ws_auth_fail_burst must be at least 1, not {self.ws_auth_fail_burst}")
        if self.ws_auth_fail_per_s <= 0:
            raise ValueError(f"ws_auth_fail_per_s must be positive, not {self.ws_auth_fail_per_s}")
        if self.websocket_addr and not self.websocket_addr.rpartition(":")[2].isdigit():
            raise ValueError(f"websocket_addr must be host:port or :port, not {self.websocket_addr!r}")
        # Without authentication anyone who reaches the port reads every namespace: loopback only.
        if self.ws_auth == "none" and not is_loopback(self.host):
            raise ValueError(
                f"ws_auth none needs a loopback listener (e.g. --websocket-addr=127.0.0.1:{self.port}), "
                f"not {self.host!r}: without authentication anyone who reaches the port reads every namespace"
            )

    @property
    def audiences(self) -> tuple[str, ...]:
        """``ws_token_audiences`` as a tuple (a comma-separated string split, blanks dropped)."""
        v = self.ws_token_audiences
        items = v.split(",") if isinstance(v, str) else v
        return tuple(a.strip() for a in items if a.strip())

    @property
    def host(self) -> str:
        """The address to listen on."""
        return self.websocket_addr.rpartition(":")[0] or self.ws_host

    @property
    def port(self) -> int:
        """The port to listen on."""
        port = self.websocket_addr.rpartition(":")[2]
        return int(port) if port else self.ws_port
