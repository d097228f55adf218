"""The WebSocket authenticator's answer cache ages on its injected clock (a FakeClock here: no sleeping).

Rules checked: a TokenReview or SubjectAccessReview answer is reused for ``cache_ttl_s`` and asked again
after it; a rejected token is remembered for ``negative_ttl_s``; failed authentications drain a per-source
token bucket that refills on the clock. The API server is a stub counting requests.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from dorgu.runtime.clock import FakeClock
from webhook.ws.auth import Authenticator, AuthSettings, RateLimited, Unauthenticated


class CountingApi:
    """Answers every TokenReview "authenticated" and every SubjectAccessReview "allowed"; counts them."""

    def __init__(self) -> None:
        self.calls: dict[str, int] = {"TokenReview": 0, "SubjectAccessReview": 0}

    async def request(self, method: str, path: str, *, body: dict[str, Any]) -> bytes:
        self.calls[body["kind"]] += 1
        if body["kind"] == "TokenReview":
            return msgspec.json.encode({"status": {"authenticated": True, "user": {"username": "alice"}}})
        return msgspec.json.encode({"status": {"allowed": True}})


def test_answers_are_reused_for_the_ttl_on_the_clock() -> None:
    async def main() -> None:
        api = CountingApi()
        clock = FakeClock()
        auth = Authenticator(api, AuthSettings(cache_ttl_s=30.0), clock=clock)  # type: ignore[arg-type]

        user = await auth.authenticate("Bearer t")
        assert await auth.may(user, resource="applicationpersonas", namespace="ns")
        assert api.calls == {"TokenReview": 1, "SubjectAccessReview": 2}  # list and watch

        await clock.advance(29.0)
        user = await auth.authenticate("Bearer t")
        assert await auth.may(user, resource="applicationpersonas", namespace="ns")
        assert api.calls == {"TokenReview": 1, "SubjectAccessReview": 2}  # within the TTL: cached

        await clock.advance(1.0)
        user = await auth.authenticate("Bearer t")
        assert await auth.may(user, resource="applicationpersonas", namespace="ns")
        assert api.calls == {"TokenReview": 2, "SubjectAccessReview": 4}  # the TTL has passed: asked again

    asyncio.run(main())


class RejectingApi(CountingApi):
    """Answers every TokenReview "not authenticated"; counts them."""

    async def request(self, method: str, path: str, *, body: dict[str, Any]) -> bytes:
        self.calls[body["kind"]] += 1
        return msgspec.json.encode({"status": {"authenticated": False, "error": "invalid bearer token"}})


def test_a_rejected_token_is_remembered_and_failures_are_rate_limited_per_source() -> None:
    async def main() -> None:
        api = RejectingApi()
        clock = FakeClock()
        settings = AuthSettings(negative_ttl_s=10.0, fail_burst=3, fail_per_s=0.5)
        auth = Authenticator(api, settings, clock=clock)  # type: ignore[arg-type]

        for _ in range(3):  # the burst: refused with 401, one TokenReview for the one bad token
            with pytest.raises(Unauthenticated, match="not accepted"):
                await auth.authenticate("Bearer bad", source="10.0.0.1")
        assert api.calls["TokenReview"] == 1
        with pytest.raises(RateLimited) as e:  # the bucket is empty: refused before the token is looked at
            await auth.authenticate("Bearer other", source="10.0.0.1")
        assert e.value.retry_after_s == pytest.approx(2.0)
        with pytest.raises(Unauthenticated):  # another source has its own bucket
            await auth.authenticate("Bearer bad", source="10.0.0.2")
        assert api.calls["TokenReview"] == 1  # still remembered

        await clock.advance(2.0)  # one failure's worth refilled; the rejection is still remembered
        with pytest.raises(Unauthenticated):
            await auth.authenticate("Bearer bad", source="10.0.0.1")
        with pytest.raises(RateLimited):
            await auth.authenticate("Bearer bad", source="10.0.0.1")
        assert api.calls["TokenReview"] == 1

        await clock.advance(10.0)  # the negative cache has expired: asked again
        with pytest.raises(Unauthenticated):
            await auth.authenticate("Bearer bad", source="10.0.0.1")
        assert api.calls["TokenReview"] == 2

    asyncio.run(main())
