"""Typed API errors, decided by HTTP status and the Status object's ``reason`` (as apimachinery does)."""

from __future__ import annotations

import msgspec

from dorgu.runtime.meta import Status


class ApiError(Exception):
    """An API request answered with a non-2xx status."""

    def __init__(
        self, *, code: int, reason: str, message: str, method: str, path: str, body: bytes = b""
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.method = method
        self.path = path
        self.body = body
        super().__init__(f"{method} {path}: {code} {reason}: {message}")


class BadRequest(ApiError):
    """400."""


class Unauthorized(ApiError):
    """401: the credentials were refused (an expired token, say)."""


class Forbidden(ApiError):
    """403: RBAC does not allow it."""


class NotFound(ApiError):
    """404."""


class Conflict(ApiError):
    """409 Conflict: the resourceVersion precondition failed (optimistic concurrency)."""


class AlreadyExists(Conflict):
    """409 AlreadyExists: a create found the name taken."""


class Gone(ApiError):
    """410 Gone / reason Expired: the resourceVersion is older than the server keeps ("too old")."""


class Invalid(ApiError):
    """422: the object failed validation; ``causes`` lists the fields."""

    @property
    def causes(self) -> list[dict[str, str]]:
        try:
            details = msgspec.json.decode(self.body).get("details") or {}
        except msgspec.DecodeError:
            return []
        return list(details.get("causes") or [])


class TooManyRequests(ApiError):
    """429: slow down; ``retry_after`` is the server's Retry-After in seconds."""

    def __init__(self, *, retry_after: float, **kw: object) -> None:
        super().__init__(**kw)  # type: ignore[arg-type]
        self.retry_after = retry_after


class ServerError(ApiError):
    """5xx."""


_BY_CODE: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    422: Invalid,
}


def error_from_response(
    *, code: int, body: bytes, method: str, path: str, retry_after: float | None = None
) -> ApiError:
    """The typed error for a response (or for a watch ``ERROR`` event's Status, with its ``code``)."""
    reason, message = "", ""
    try:
        st = msgspec.json.decode(body, type=Status)
        reason, message = st.reason or "", st.message or ""
        code = st.code or code
    except (msgspec.DecodeError, msgspec.ValidationError):
        message = body[:500].decode(errors="replace")
    kw = {"code": code, "reason": reason, "message": message, "method": method, "path": path, "body": body}
    if code == 429:
        return TooManyRequests(retry_after=retry_after if retry_after is not None else 1.0, **kw)
    if code == 409 and reason == "AlreadyExists":
        return AlreadyExists(**kw)
    if reason in ("Expired", "Gone"):
        return Gone(**kw)
    if code >= 500:
        return ServerError(**kw)
    return _BY_CODE.get(code, ApiError)(**kw)
