"""How a process reaches the API server: plain connection settings, resolved once by the supervisor.

The supervisor resolves kubeconfig or in-cluster configuration with the ``kubernetes`` package (tokens,
client certificates, exec plugins) and hands every child a :class:`ConnectionSettings` — plain data, so
children never import ``kubernetes``. Credentials that expire are never frozen into it: an in-cluster token
is named by ``token_file`` and re-read when it changes; an exec plugin's token is refreshed by the
supervisor into a file of its own, which children read the same way.
"""

from __future__ import annotations

import msgspec


class ConnectionSettings(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """Everything a child needs to open its own session to the API server."""

    server: str
    """Base URL, e.g. ``https://10.0.0.1:443``."""
    ca_data: bytes | None = None
    """PEM bundle of the CAs that may sign the server's certificate (None: the system's trust store)."""
    insecure_skip_tls_verify: bool = False
    """Do not verify the server's certificate (only when the kubeconfig says so)."""
    client_cert_data: bytes | None = None
    """PEM client certificate, for certificate authentication."""
    client_key_data: bytes | None = None
    """PEM private key of ``client_cert_data``."""
    token: str | None = None
    """A static bearer token (one that does not expire)."""
    token_file: str | None = None
    """A file holding the bearer token, re-read when it changes (rotated in-cluster tokens, exec tokens)."""
    user_agent: str = "dorgu"
    """User-Agent sent with every request (each process sets its own; the audit log shows it)."""
