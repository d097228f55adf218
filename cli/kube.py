"""Cluster access for the CLI: kubeconfig resolution, discovery, and running the async client."""

from __future__ import annotations

import asyncio
import atexit
import functools
import os
import shutil
import stat
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiohttp

from cli.errors import Failure
from dorgu.runtime.client import ApiClient, ClientSettings
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.errors import ApiError
from dorgu.runtime.kubeconfig import ClusterAccess, ConfigError, resolve

T = TypeVar("T")
FIELD_MANAGER = "dorgu-cli"


@functools.cache
def token_dir() -> Path:
    """Where this process keeps an exec-plugin token: ``$XDG_RUNTIME_DIR/dorgu-cli`` when the runtime
    directory is this user's own (mode 0700), else a fresh ``mkdtemp`` directory removed at exit — never a
    predictable name in a shared ``/tmp`` that another user could create first. Either is checked by
    :func:`~dorgu.runtime.kubeconfig.private_dir` (owner, mode 0700, not a symlink)."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime and os.path.isabs(runtime):
        try:
            st = os.lstat(runtime)
        except OSError:
            st = None
        if st and stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid() and not st.st_mode & 0o077:
            return Path(runtime) / "dorgu-cli"
    made = Path(tempfile.mkdtemp(prefix="dorgu-cli-"))
    atexit.register(shutil.rmtree, made, True)
    return made


def cluster_access(*, kubeconfig: str | None, context: str | None) -> ClusterAccess:
    """The API server's connection and the context's namespace; a bad kubeconfig is a :class:`Failure`."""
    try:
        return resolve(kubeconfig=kubeconfig, context=context, run_dir=token_dir(), user_agent="dorgu-cli")
    except ConfigError as e:
        raise Failure(str(e)) from e


def connection(*, kubeconfig: str | None, context: str | None) -> ConnectionSettings:
    return cluster_access(kubeconfig=kubeconfig, context=context).connection


def kubeconfig_available(kubeconfig: str | None) -> bool:
    """Whether a kubeconfig is given or ``~/.kube/config`` can be seen (an unreachable ``$HOME`` has none)."""
    if kubeconfig or os.environ.get("KUBECONFIG"):
        return True
    try:
        return (Path.home() / ".kube" / "config").exists()
    except OSError:
        return False


def run_with_client(
    conn: ConnectionSettings, fn: Callable[[ApiClient], Awaitable[T]], *, timeout_s: float = 30.0
) -> T:
    async def main() -> T:
        settings = ClientSettings(request_timeout_s=timeout_s, connect_timeout_s=min(timeout_s, 10.0))
        async with ApiClient(conn, settings=settings) as client:
            return await fn(client)

    try:
        return asyncio.run(main())
    except (TimeoutError, aiohttp.ClientError, OSError) as e:
        raise Failure(f"cannot reach the API server at {conn.server}: {str(e) or type(e).__name__}") from e


async def served_versions(client: ApiClient, group: str) -> list[str]:
    try:
        doc = await client.request("GET", f"/apis/{group}")
    except ApiError:
        return []
    import msgspec

    return [v["version"] for v in msgspec.json.decode(doc).get("versions", [])]


def discover_hpa_version(*, kubeconfig: str | None, context: str | None) -> str | None:
    """``autoscaling/v2`` or ``v2beta2`` as the cluster serves it; ``None`` when no cluster answers."""
    try:
        conn = connection(kubeconfig=kubeconfig, context=context)
        versions = run_with_client(conn, lambda c: served_versions(c, "autoscaling"), timeout_s=3.0)
    except Failure:
        return None
    for v in ("v2", "v2beta2"):
        if v in versions:
            return f"autoscaling/{v}"
    return None
