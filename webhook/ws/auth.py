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
* SubjectAccessReview answers are cached **server-wide**, keyed by the user's whole identity (name, uid,
  groups, extra) + verb + resource + namespace + group, for ``cache_ttl_s``; TokenReviews are cached per
  token for the same time. Connections of one user share answers; an RBAC change is seen once the TTL has
  passed.
* Access is not decided once per subscription: the server re-checks every subscription of a connection
  every ``reauth_interval_s`` (:mod:`webhook.ws.server`) through :meth:`Authenticator.verify` and
  :meth:`Authenticator.may` — so an expired or revoked token or a revoked RBAC grant closes the
  subscription within ``reauth_interval_s + cache_ttl_s``.
* A rejected token is remembered for ``negative_ttl_s``: the same bad token again within it is refused
  without another TokenReview (``dorgu_ws_token_reviews_total`` counts the reviews actually asked for).
* Failed authentications are rate-limited per source (the peer's address): a token bucket of
  ``fail_burst`` failures refilled at ``fail_per_s``, on the injected clock. A source whose bucket is empty
  is refused (HTTP 429, code ``rate_limited``) before its token is even looked at — a valid token from
  that source included, until the bucket refills; successful handshakes never take from the bucket.
* **Audiences.** With ``audiences`` set (``ws_token_audiences``, e.g. ``dorgu``) the TokenReview asks for
  them (``spec.audiences``) and a token is accepted only when the API server says it was issued for one of
  them (``status.audiences``): a token bound to the API server's own audience — one that would also open
  the API server — is refused. Tokens for ``dorgu`` come from the TokenRequest API
  (``kubectl create token SA --audience dorgu``).
* ``mode="none"`` (``--ws-auth=none``) trusts everyone; it exists for local development only and logs a
  warning at start.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import msgspec
from prometheus_client import Counter

from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, RealClock

log = logging.getLogger("dorgu.websocket.auth")

TOKENREVIEWS = "/apis/authentication.k8s.io/v1/tokenreviews"
SUBJECTACCESSREVIEWS = "/apis/authorization.k8s.io/v1/subjectaccessreviews"
GROUP = "dorgu.io"

TOKEN_REVIEWS = Counter(
    "dorgu_ws_token_reviews_total",
    "TokenReviews the WebSocket server asked the API server for, by answer",
    ["result"],  # authenticated, rejected or error
)
AUTH_FAILURES = Counter(
    "dorgu_ws_auth_failures_total",
    "Refused WebSocket handshakes, by reason",
    ["reason"],  # missing, rejected (TokenReview said no), cached (remembered rejection), rate_limited
)
_MAX_ENTRIES = 10_000
"""Cache and bucket entries kept before the oldest are dropped (a bound on memory, not a tuning knob)."""


class _UserInfo(msgspec.Struct, kw_only=True):
    username: str = ""
    uid: str = ""
    groups: list[str] = msgspec.field(default_factory=list)
    extra: dict[str, list[str]] = msgspec.field(default_factory=dict)


class _TRStatus(msgspec.Struct, kw_only=True):
    authenticated: bool = False
    audiences: list[str] = msgspec.field(default_factory=list)
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
    negative_ttl_s: float = 10.0
    """How long a rejected token is refused without asking the API server again (0: not remembered)."""
    fail_burst: int = 10
    """Failed authentications a source may have in a burst before it is refused with 429."""
    fail_per_s: float = 0.5
    """Rate at which a source's failure allowance refills (failures per second)."""
    audiences: tuple[str, ...] = ()
    """Audiences a token must be issued for (empty: any the API server accepts)."""


class Unauthenticated(Exception):
    """The token is missing or not accepted (HTTP 401)."""


class RateLimited(Exception):
    """Too many failed authentications from this source (HTTP 429)."""

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s
        """When the source may try again."""


class Authenticator:
    """TokenReview and SubjectAccessReview through the server's own API client; answers age on ``clock``."""

    def __init__(self, client: ApiClient, settings: AuthSettings, *, clock: Clock | None = None) -> None:
        if settings.mode not in ("token", "none"):
            raise ValueError(f"ws auth mode must be 'token' or 'none', not {settings.mode!r}")
        self.client = client
        self.settings = settings
        self.clock = clock or RealClock()
        self._tokens: dict[str, tuple[float, User]] = {}
        self._rejected: dict[str, tuple[float, str]] = {}
        """token → (when rejected, why): the negative cache."""
        self._buckets: dict[str, tuple[float, float]] = {}
        """source → (failures still allowed, when that was computed): the per-source token buckets."""
        self._sars: dict[tuple[Any, ...], tuple[float, bool]] = {}
        if settings.mode == "none":
            log.warning("WebSocket authentication is OFF (--ws-auth=none): for local development only")

    async def authenticate(self, authorization: str | None, *, source: str = "") -> User:
        """The user ``authorization`` (an ``Authorization`` header) names; ``source`` (the peer's address)
        is what failures are rate-limited by. Raises :class:`Unauthenticated` or :class:`RateLimited`."""
        if self.settings.mode == "none":
            return DEV_USER
        self._check_bucket(source)
        try:
            return await self.verify(authorization)
        except Unauthenticated:
            self._take_from_bucket(source)
            raise

    def _allowance(self, source: str, now: float) -> float:
        left, at = self._buckets.get(source, (float(self.settings.fail_burst), now))
        return min(float(self.settings.fail_burst), left + (now - at) * self.settings.fail_per_s)

    def _check_bucket(self, source: str) -> None:
        now = self.clock.monotonic()
        left = self._allowance(source, now)
        if left < 1.0:
            AUTH_FAILURES.labels("rate_limited").inc()
            wait = (1.0 - left) / self.settings.fail_per_s if self.settings.fail_per_s > 0 else 3600.0
            raise RateLimited(
                f"too many failed authentications from {source or 'this source'}; retry in {wait:.0f} s",
                retry_after_s=wait,
            )

    def _take_from_bucket(self, source: str) -> None:
        now = self.clock.monotonic()
        if len(self._buckets) >= _MAX_ENTRIES:
            # Full buckets carry no state: drop them first; if every one is draining, drop the oldest half.
            full = float(self.settings.fail_burst)
            self._buckets = {k: v for k, v in self._buckets.items() if self._allowance(k, now) < full}
            if len(self._buckets) >= _MAX_ENTRIES:
                keep = sorted(self._buckets.items(), key=lambda kv: kv[1][1])[_MAX_ENTRIES // 2 :]
                self._buckets = dict(keep)
        self._buckets[source] = (self._allowance(source, now) - 1.0, now)

    async def verify(self, authorization: str | None) -> User:
        """The user ``authorization`` names, through the caches and without the rate limit (re-checks of an
        open connection's token). Raises :class:`Unauthenticated`."""
        if self.settings.mode == "none":
            return DEV_USER
        if not authorization or not authorization.lower().startswith("bearer "):
            AUTH_FAILURES.labels("missing").inc()
            raise Unauthenticated("a bearer token is required (Authorization: Bearer <token>)")
        token = authorization[7:].strip()
        now = self.clock.monotonic()
        hit = self._tokens.get(token)
        if hit and now - hit[0] < self.settings.cache_ttl_s:
            return hit[1]
        miss = self._rejected.get(token)
        if miss and now - miss[0] < self.settings.negative_ttl_s:
            AUTH_FAILURES.labels("cached").inc()
            raise Unauthenticated(miss[1])
        spec: dict[str, Any] = {"token": token}
        wanted = self.settings.audiences
        if wanted:
            spec["audiences"] = list(wanted)
        try:
            raw = await self.client.request(
                "POST",
                TOKENREVIEWS,
                body={"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": spec},
            )
        except BaseException:
            TOKEN_REVIEWS.labels("error").inc()
            raise
        st = msgspec.json.decode(raw, type=_TokenReview).status
        # The API server answers "not authenticated" for a token of none of the audiences asked for; the
        # intersection is checked again here, so an answer without audiences never passes either.
        for_us = not wanted or bool(set(st.audiences) & set(wanted))
        if not st.authenticated or not for_us:
            TOKEN_REVIEWS.labels("rejected").inc()
            AUTH_FAILURES.labels("rejected").inc()
            why = f"the token was not accepted{': ' + st.error if st.error else ''}"
            if wanted:
                why += (
                    f" (tokens must be issued for the audience {', '.join(wanted)}: "
                    f"kubectl create token SERVICEACCOUNT --audience {wanted[0]})"
                )
            if len(self._rejected) >= _MAX_ENTRIES:
                self._rejected.clear()
            self._rejected[token] = (now, why)
            raise Unauthenticated(why)
        TOKEN_REVIEWS.labels("authenticated").inc()
        self._rejected.pop(token, None)
        u = st.user
        user = User(
            username=u.username,
            uid=u.uid,
            groups=tuple(u.groups),
            extra=tuple((k, tuple(v)) for k, v in sorted(u.extra.items())),
        )
        if len(self._tokens) >= _MAX_ENTRIES:
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
        if len(self._sars) >= _MAX_ENTRIES:
            self._sars.clear()
        self._sars[key] = (now, allowed)
        return allowed
