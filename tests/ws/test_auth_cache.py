"""The WebSocket authenticator's answer cache ages on its injected clock (a FakeClock here: no sleeping).

Rule checked: a TokenReview or SubjectAccessReview answer is reused for ``cache_ttl_s`` and asked again
after it; the API server is a stub counting requests (what it answers is not under test).
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from dorgu.runtime.clock import FakeClock
from webhook.ws.auth import Authenticator, AuthSettings


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
