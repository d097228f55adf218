"""Who is on the other end of a WebSocket, and what they may see: TokenReview + SubjectAccessReview.

Rules this module keeps:

* A connection presents a bearer token (``Authorization: Bearer …``); the server asks the API server who
  it is (TokenReview). No token, or one the API server does not authenticate, is refused at the handshake
  with HTTP 401 — before any data flows.
* Each subscription and request is authorised with SubjectAccessReviews for the user (name, groups, uid,
  extra, exactly as the TokenReview returned them): ``list`` **and** ``watch`` of ``applicationpersonas``
  (group ``dorgu.io``) in the namespace asked for — cluster-wide when all namespaces are asked for;
  ``clusterpersonas`` for the ``cluster`` topic; core ``events`` for the ``events`` topic (it shows
  Events, so persona rights alone do not open it). A "no" is an ``error`` with code ``forbidden``.
* Answers are cached per connection for ``cache_ttl_s`` (RBAC changes take effect on the next connection or
  after the TTL); TokenReviews are cached per token for the same time.
* ``mode="none"`` (``--ws-auth=none``) trusts everyone; it exists for local development only and logs a
  warning at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec

from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, RealClock

log = logging.getLogger("dorgu.websocket.auth")

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
GROUP = "dorgu.io"


class _UserInfo(msgspec.Struct, kw_only=True):
    username: str = ""
    uid: str = ""
    groups: list[str] = msgspec.field(default_factory=list)
    extra: dict[str, list[str]] = msgspec.field(default_factory=dict)


class _TRStatus(msgspec.Struct, kw_only=True):
    authenticated: bool = False
    user: _UserInfo = msgspec.field(default_factory=_UserInfo)
    error: str = ""


class _TokenReview(msgspec.Struct, kw_only=True):
    status: _TRStatus = msgspec.field(default_factory=_TRStatus)


class _SARStatus(msgspec.Struct, kw_only=True):
    allowed: bool = False
    denied: bool = False
    reason: str = ""


class _SAR(msgspec.Struct, kw_only=True):
    status: _SARStatus = msgspec.field(default_factory=_SARStatus)


@dataclass(frozen=True, kw_only=True)
class User:
    """An authenticated user, as the TokenReview said."""

    username: str
    """``system:serviceaccount:ns:name`` or a user name; ``anonymous-dev`` under ``--ws-auth=none``."""
    uid: str = ""
    """The user's uid (passed on to SubjectAccessReviews)."""
    groups: tuple[str, ...] = ()
    """Groups (passed on to SubjectAccessReviews)."""
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """Extra attributes (passed on to SubjectAccessReviews)."""
    trusted: bool = False
    """True only under ``--ws-auth=none``: every check passes."""


DEV_USER = User(username="anonymous-dev", trusted=True)


@dataclass(frozen=True, kw_only=True)
class AuthSettings:
    """How connections are authenticated and authorised."""

    mode: str = "token"
    """``token`` (TokenReview + SubjectAccessReview) or ``none`` (local development only)."""
    cache_ttl_s: float = 30.0
    """How long a TokenReview or SubjectAccessReview answer is reused."""


class Unauthenticated(Exception):
    """The token is missing or not accepted (HTTP 401)."""


class Authenticator:
    """TokenReview and SubjectAccessReview through the server's own API client; answers age on ``clock``."""

    def __init__(self, client: ApiClient, settings: AuthSettings, *, clock: Clock | None = None) -> None:
        if settings.mode not in ("token", "none"):
            raise ValueError(f"ws auth mode must be 'token' or 'none', not {settings.mode!r}")
        self.client = client
        self.settings = settings
        self.clock = clock or RealClock()
        self._tokens: dict[str, tuple[float, User]] = {}
        self._sars: dict[tuple[Any, ...], tuple[float, bool]] = {}
        if settings.mode == "none":
            log.warning("WebSocket authentication is OFF (--ws-auth=none): for local development only")

    async def authenticate(self, authorization: str | None) -> User:
        if self.settings.mode == "none":
            return DEV_USER
        if not authorization or not authorization.lower().startswith("bearer "):
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
        token = authorization[7:].strip()
        now = self.clock.monotonic()
        hit = self._tokens.get(token)
        if hit and now - hit[0] < self.settings.cache_ttl_s:
            return hit[1]
        raw = await self.client.request(
            "POST",
            TOKENREVIEWS,
            body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": token}},
        )
        st = msgspec.json.decode(raw, type=_TokenReview).status
        if not st.authenticated:
            raise Unauthenticated(f"the token was not accepted{': ' + st.error if st.error else ''}")
        u = st.user
        user = User(
            username=u.username,
            uid=u.uid,
            groups=tuple(u.groups),
            extra=tuple((k, tuple(v)) for k, v in sorted(u.extra.items())),
        )
        if len(self._tokens) > 10_000:
            self._tokens.clear()
        self._tokens[token] = (now, user)
        return user

    async def may(self, user: User, *, resource: str, namespace: str | None, group: str = GROUP) -> bool:
        """Whether ``user`` may both list and watch ``resource`` in ``namespace`` (None: all namespaces)."""
        if user.trusted:
            return True
        for verb in ("list", "watch"):
            if not await self._sar(user, verb=verb, resource=resource, namespace=namespace, group=group):
                return False
        return True

    async def _sar(self, user: User, *, verb: str, resource: str, namespace: str | None, group: str) -> bool:
        key = (user, verb, resource, namespace, group)
        now = self.clock.monotonic()
        hit = self._sars.get(key)
        if hit and now - hit[0] < self.settings.cache_ttl_s:
            return hit[1]
        attrs: dict[str, Any] = {"verb": verb, "group": group, "resource": resource}
        if namespace:
            attrs["namespace"] = namespace
        spec: dict[str, Any] = {
            "user": user.username,
            "groups": list(user.groups),
            "resourceAttributes": attrs,
        }
        if user.uid:
            spec["uid"] = user.uid
        if user.extra:
            spec["extra"] = {k: list(v) for k, v in user.extra}
        raw = await self.client.request(
            "POST",
            SUBJECTACCESSREVIEWS,
            body={"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec},
        )
        allowed = msgspec.json.decode(raw, type=_SAR).status.allowed
        if len(self._sars) > 10_000:
            self._sars.clear()
        self._sars[key] = (now, allowed)
        return allowed
