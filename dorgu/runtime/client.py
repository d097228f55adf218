"""The Kubernetes API client: one aiohttp session per process, bodies decoded with msgspec.

Rules this client keeps:

* Credentials are read per request: a ``token_file`` is re-read when it changes on disk (rotated in-cluster
  tokens, exec tokens the supervisor refreshes), and a 401 forces one re-read and one retry.
* 429 TooManyRequests is retried after the server's Retry-After (at most ``max_429_retries`` times, each
  wait capped), then raised as :class:`~dorgu.runtime.errors.TooManyRequests`.
* Every non-2xx answer is raised as a typed error (NotFound, Conflict, Gone, Forbidden, ...).
* Requests are never client-side rate limited (controller-runtime sets QPS=-1 and relies on the server's
  priority and fairness); the number of connections is bounded instead.
"""

from __future__ import annotations

import contextlib
import os
import ssl
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, TypeVar, overload
from urllib.parse import urlsplit

import aiohttp
import msgspec

from dorgu.runtime import metrics
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.errors import ApiError, NotFound, TooManyRequests, Unauthorized, error_from_response
from dorgu.runtime.meta import Keep, ListPage, decode_list_page
from dorgu.runtime.resource import Resource

T = TypeVar("T")
PatchType = Literal["merge", "json", "strategic", "apply"]
_PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True, kw_only=True)
class ClientSettings:
    """Tuning of the API client."""

    request_timeout_s: float = 30.0
    """Total time for one non-watch request."""
    connect_timeout_s: float = 10.0
    """Time to open a connection."""
    max_connections: int = 64
    """Connections in the pool (each open watch holds one)."""
    max_429_retries: int = 5
    """How often a 429 is retried (after Retry-After) before it is raised."""
    max_retry_after_s: float = 10.0
    """Upper bound for one Retry-After wait."""


class _TokenSource:
    """The bearer token: static, or re-read from a file whenever the file changes."""

    def __init__(self, *, token: str | None, token_file: str | None) -> None:
        self._static = token
        self._file = token_file
        self._stamp: tuple[int, int, int] | None = None
        self._value: str | None = None

    def get(self, *, force: bool = False) -> str | None:
        if self._file is None:
            return self._static
        try:
            st = os.stat(self._file)
        except OSError:
            return self._value or self._static
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)
        if force or stamp != self._stamp:
            with open(self._file) as fh:
                self._value = fh.read().strip()
            self._stamp = stamp
        return self._value

    @property
    def refreshable(self) -> bool:
        return self._file is not None


def ssl_context(conn: ConnectionSettings) -> ssl.SSLContext | bool:
    """The TLS settings for an aiohttp connector to ``conn``'s API server: ``False`` for plain http, else a
    context trusting ``conn``'s CA (or the system's, or nothing when verification is off) and presenting its
    client certificate. For a session outside :class:`ApiClient` that must connect as the client does."""
    if not conn.server.startswith("https"):
        return False
    if conn.insecure_skip_tls_verify:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif conn.ca_data:
        ctx = ssl.create_default_context(cadata=conn.ca_data.decode())
    else:
        ctx = ssl.create_default_context()
    if conn.client_cert_data and conn.client_key_data:
        # ssl can only load a key pair from files: write them 0600 for the moment it takes.
        with tempfile.TemporaryDirectory(prefix="dorgu-tls-") as d:
            cert, key = os.path.join(d, "tls.crt"), os.path.join(d, "tls.key")
            for path, data in ((cert, conn.client_cert_data), (key, conn.client_key_data)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
                with os.fdopen(fd, "wb") as fh:
                    fh.write(data)
            ctx.load_cert_chain(cert, key)
    return ctx


def _encode(body: Any) -> bytes:
    if body is None:
        return b""
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    return _encoder.encode(body)


class ApiClient:
    """An asyncio Kubernetes client. Create it inside a running event loop; close it with :meth:`close`."""

    def __init__(
        self,
        connection: ConnectionSettings,
        *,
        settings: ClientSettings | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.connection = connection
        self.settings = settings or ClientSettings()
        self.clock = clock or RealClock()
        self._base = connection.server.rstrip("/")
        self._host = urlsplit(self._base).netloc
        self._tokens = _TokenSource(token=connection.token, token_file=connection.token_file)
        self._m_requests: dict[tuple[int, str], Any] = {}
        self.write_guard: Callable[[str, str], None] | None = None
        """Called as ``guard(method, path)`` before every non-GET request; raises to refuse the write
        (leader election sets it: a leader whose lease may have expired writes nothing)."""
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl_context(connection), limit=self.settings.max_connections),
            headers={"User-Agent": connection.user_agent},
            skip_auto_headers=("Content-Type",),
            json_serialize=lambda o: _encoder.encode(o).decode(),
        )

    async def close(self) -> None:
        await self._session.close()

    def _count(self, status: int, method: str) -> None:
        child = self._m_requests.get((status, method))
        if child is None:
            child = self._m_requests[(status, method)] = metrics.REST_CLIENT_REQUESTS.labels(
                str(status), method, self._host
            )
        child.inc()

    async def __aenter__(self) -> ApiClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- raw requests -------------------------------------------------------------------------------------

    def _headers(self, *, accept: str, content_type: str | None, force_token: bool = False) -> dict[str, str]:
        h = {"Accept": accept}
        if content_type:
            h["Content-Type"] = content_type
        token = self._tokens.get(force=force_token)
        if token:
            h["Authorization"] = f"Bearer {token}"
        return h

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: Any = None,
        content_type: str | None = None,
        accept: str = "application/json",
    ) -> bytes:
        """Send one request and return the body; non-2xx answers raise a typed :class:`ApiError`."""
        if method != "GET" and self.write_guard is not None:
            self.write_guard(method, path)
        data = _encode(body) if body is not None else None
        if data is not None and content_type is None:
            content_type = "application/json"
        timeout = aiohttp.ClientTimeout(
            total=self.settings.request_timeout_s, connect=self.settings.connect_timeout_s
        )
        force_token = False
        retries_429 = 0
        while True:
            headers = self._headers(accept=accept, content_type=content_type, force_token=force_token)
            async with self._session.request(
                method, self._base + path, params=params, data=data, headers=headers, timeout=timeout
            ) as resp:
                raw = await resp.read()
                self._count(resp.status, method)
                if resp.status < 300:
                    return raw
                retry_after = _retry_after(resp.headers.get("Retry-After"))
            err = error_from_response(
                code=resp.status, body=raw, method=method, path=path, retry_after=retry_after
            )
            if isinstance(err, Unauthorized) and self._tokens.refreshable and not force_token:
                force_token = True  # the token may have been rotated since we last read it
                continue
            if isinstance(err, TooManyRequests) and retries_429 < self.settings.max_429_retries:
                retries_429 += 1
                await self.clock.sleep(min(err.retry_after, self.settings.max_retry_after_s))
                continue
            raise err

    @contextlib.asynccontextmanager
    async def stream(
        self, path: str, *, params: Mapping[str, str], read_timeout_s: float
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Open a streaming GET (a watch). No total timeout — a watch lives for minutes; a read that sees
        no bytes for ``read_timeout_s`` fails with ``asyncio.TimeoutError``-like ``ServerTimeoutError``."""
        timeout = aiohttp.ClientTimeout(
            total=None, connect=self.settings.connect_timeout_s, sock_read=read_timeout_s
        )
        force_token = False
        while True:
            resp = await self._session.get(
                self._base + path,
                params=params,
                headers=self._headers(accept="application/json", content_type=None, force_token=force_token),
                timeout=timeout,
            )
            try:
                self._count(resp.status, "WATCH")
                if resp.status >= 300:
                    raw = await resp.read()
                    err = error_from_response(
                        code=resp.status,
                        body=raw,
                        method="WATCH",
                        path=path,
                        retry_after=_retry_after(resp.headers.get("Retry-After")),
                    )
                    if isinstance(err, Unauthorized) and self._tokens.refreshable and not force_token:
                        force_token = True
                        continue
                    raise err
                yield resp
                return
            finally:
                resp.release()

    # -- typed verbs ----------------------------------------------------------------------------------------

    @overload
    async def get(
        self, resource: Resource, name: str, *, namespace: str | None = ..., type: type[T]
    ) -> T: ...
    @overload
    async def get(
        self, resource: Resource, name: str, *, namespace: str | None = ..., type: None = ...
    ) -> Any: ...
    async def get(
        self, resource: Resource, name: str, *, namespace: str | None = None, type: Any = None
    ) -> Any:
        raw = await self.request("GET", resource.path(namespace=namespace, name=name))
        return msgspec.json.decode(raw, type=type) if type else msgspec.json.decode(raw)

    async def list(
        self,
        resource: Resource,
        *,
        type: type[T],
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
        keep: Keep | None = None,
    ) -> ListPage[T]:
        """One LIST page; items that do not decode are reported in ``errors``, not raised; items ``keep``
        rejects (judged on their metadata alone) are never decoded whole."""
        params: dict[str, str] = {}
        if label_selector:
            params["labelSelector"] = label_selector
        if field_selector:
            params["fieldSelector"] = field_selector
        if resource_version is not None:
            params["resourceVersion"] = resource_version
        if limit:
            params["limit"] = str(limit)
        if continue_:
            params["continue"] = continue_
        raw = await self.request("GET", resource.path(namespace=namespace), params=params)
        return decode_list_page(raw, type, keep=keep)

    async def list_all(
        self,
        resource: Resource,
        *,
        type: type[T],
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        resource_version: str | None = None,
        page_size: int = 500,
        keep: Keep | None = None,
    ) -> ListPage[T]:
        """All pages of a LIST. Pagination is used only for a quorum read (``resource_version`` empty or
        None): a LIST at RV "0" or at a given RV is served whole from the watch cache, as client-go does."""
        paginate = not resource_version
        first = await self.list(
            resource, type=type, namespace=namespace, label_selector=label_selector,
            field_selector=field_selector, resource_version=resource_version,
            limit=page_size if paginate else None, keep=keep,
        )  # fmt: skip
        if not paginate or not first.metadata.continue_:
            return first
        items, errors = list(first.items), list(first.errors)
        page = first
        while page.metadata.continue_:
            page = await self.list(
                resource, type=type, namespace=namespace, label_selector=label_selector,
                field_selector=field_selector, limit=page_size, continue_=page.metadata.continue_, keep=keep,
            )  # fmt: skip
            items.extend(page.items)
            errors.extend(page.errors)
        return ListPage(metadata=page.metadata, items=items, errors=errors)

    async def create(
        self, resource: Resource, obj: Any, *, namespace: str | None = None, type: Any = None
    ) -> Any:
        raw = await self.request("POST", resource.path(namespace=namespace), body=obj)
        return msgspec.json.decode(raw, type=type) if type else msgspec.json.decode(raw)

    async def replace(
        self,
        resource: Resource,
        name: str,
        obj: Any,
        *,
        namespace: str | None = None,
        subresource: str | None = None,
        type: Any = None,
    ) -> Any:
        """PUT the whole object; its ``metadata.resourceVersion`` is the optimistic-concurrency guard."""
        raw = await self.request(
            "PUT", resource.path(namespace=namespace, name=name, subresource=subresource), body=obj
        )
        return msgspec.json.decode(raw, type=type) if type else msgspec.json.decode(raw)

    async def delete(
        self,
        resource: Resource,
        name: str,
        *,
        namespace: str | None = None,
        propagation_policy: str | None = None,
        missing_ok: bool = False,
    ) -> None:
        body = {"propagationPolicy": propagation_policy} if propagation_policy else None
        try:
            await self.request("DELETE", resource.path(namespace=namespace, name=name), body=body)
        except NotFound:
            if not missing_ok:
                raise

    async def patch(
        self,
        resource: Resource,
        name: str,
        body: Any,
        *,
        namespace: str | None = None,
        patch_type: PatchType = "merge",
        subresource: str | None = None,
        field_manager: str | None = None,
        force: bool | None = None,
        type: Any = None,
        decode: bool = True,
    ) -> Any:
        params: dict[str, str] = {}
        if field_manager:
            params["fieldManager"] = field_manager
        if force is not None:
            params["force"] = "true" if force else "false"
        raw = await self.request(
            "PATCH",
            resource.path(namespace=namespace, name=name, subresource=subresource),
            params=params,
            body=body,
            content_type=_PATCH_CONTENT_TYPES[patch_type],
        )
        if not decode:
            return None
        return msgspec.json.decode(raw, type=type) if type else msgspec.json.decode(raw)

    async def apply(
        self,
        resource: Resource,
        obj: Any,
        *,
        name: str,
        namespace: str | None = None,
        field_manager: str,
        force: bool = True,
        subresource: str | None = None,
        type: Any = None,
        decode: bool = True,
    ) -> Any:
        """Server-side apply: ``obj`` (apiVersion, kind, metadata.name[, namespace] + the fields this manager
        owns). A field the manager owned and leaves out is removed — send everything it owns, every time."""
        return await self.patch(
            resource, name, obj, namespace=namespace, patch_type="apply", subresource=subresource,
            field_manager=field_manager, force=force, type=type, decode=decode,
        )  # fmt: skip

    # -- discovery ----------------------------------------------------------------------------------------

    async def served(self, *, group: str, version: str, plural: str) -> bool:
        """Whether the server serves ``plural`` in ``group/version`` right now (e.g. is a CRD installed?)."""
        path = f"/apis/{group}/{version}" if group else f"/api/{version}"
        try:
            raw = await self.request("GET", path)
        except NotFound:
            return False
        doc = msgspec.json.decode(raw)
        return any(r.get("name") == plural for r in doc.get("resources", []))

    async def server_version(self) -> dict[str, Any]:
        return dict(msgspec.json.decode(await self.request("GET", "/version")))


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


__all__ = ["ApiClient", "ApiError", "ClientSettings", "PatchType", "ssl_context"]
