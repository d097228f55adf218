"""A filtered informer (``keep``) against the real API server: what it caches, what leaving the filter
means, and ``admit`` of fetched objects (newer wins; a delete seen during the fetch is never undone). The
sharded ApplicationPersona controller's Deployment cache is built on it."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import msgspec

from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.runtime.client import ApiClient
from dorgu.runtime.informer import Handlers, Informer
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import CONFIGMAPS


class ConfigMap(msgspec.Struct):
    """A ConfigMap, metadata only."""

    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


def _cm(name: str, app: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": {"app": app}}}


async def _eventually(pred: Any, what: str) -> None:
    for _ in range(1200):
        if pred():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_keep_filters_and_admit_never_resurrects(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str
) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, _cm("a", "x"))
    kube.post(path, _cm("b", "y"))
    wanted = {"x"}

    async def main() -> None:
        async with ApiClient(control_plane.connection()) as client:
            inf: Informer[ConfigMap] = Informer(
                client, CONFIGMAPS, item_type=ConfigMap, namespace=namespace,
                keep=lambda c: (c.metadata.labels or {}).get("app") in wanted,
            )  # fmt: skip
            deleted: list[str] = []
            inf.add_handlers(Handlers(on_delete=lambda c: deleted.append(c.metadata.name or "")))
            task = asyncio.create_task(inf.run())
            try:
                await inf.wait_for_sync()
                assert sorted(inf.store.keys()) == [f"{namespace}/a"]
                # An update into the filter is cached; one out of it is a delete for the handlers.
                kube.patch(f"{path}/b", {"metadata": {"labels": {"app": "x"}}})
                kube.patch(f"{path}/a", {"metadata": {"labels": {"app": "z"}}})
                await _eventually(lambda: sorted(inf.store.keys()) == [f"{namespace}/b"], "b in, a out")
                assert deleted == ["a"]
                # Now "z" is wanted: a is fetched and admitted (the server will not send it again).
                wanted.add("z")
                inf.begin_admit()
                fetched = await client.list_all(
                    CONFIGMAPS, type=ConfigMap, namespace=namespace, label_selector="app=z"
                )
                # ... but it is deleted before the fetched copy is admitted: the delete wins.
                kube.delete(f"{path}/a")
                await _eventually(lambda: inf._tombstones, "the delete seen during the fetch")
                assert inf.admit(fetched.items) == 0
                inf.end_admit()
                assert f"{namespace}/a" not in inf.store
                # An older copy never replaces a newer cached one; a newer one does.
                old = inf.store.get(f"{namespace}/b")
                assert old is not None
                kube.patch(f"{path}/b", {"metadata": {"annotations": {"v": "2"}}})
                await _eventually(
                    lambda: (inf.store.get(f"{namespace}/b").metadata.annotations or {}).get("v") == "2",  # type: ignore[union-attr]
                    "the newer b",
                )
                inf.begin_admit()
                assert inf.admit([old]) == 0
                inf.end_admit()
                assert (inf.store.get(f"{namespace}/b").metadata.annotations or {}).get("v") == "2"  # type: ignore[union-attr]
                # forget: what the filter no longer accepts leaves the cache, no handler called.
                wanted.discard("x")
                inf.forget(inf.store.keys())
                assert inf.store.keys() == [] and deleted == ["a"]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())


def test_a_callable_selector_narrows_the_stream_and_rewatch_widens_it_losing_no_change(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str
) -> None:
    """The server sends only what the selector matches; widening it is ``rewatch`` then a fetch, and a change
    made between the two, or after, reaches the cache."""
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    kube.post(path, _cm("a", "x"))
    kube.post(path, _cm("b", "y"))
    wanted = {"x"}

    def annotation(inf: Informer[ConfigMap], name: str) -> str | None:
        cm = inf.store.get(f"{namespace}/{name}")
        return (cm.metadata.annotations or {}).get("v") if cm is not None else None

    async def main() -> None:
        async with ApiClient(control_plane.connection()) as client:
            inf: Informer[ConfigMap] = Informer(
                client, CONFIGMAPS, item_type=ConfigMap, namespace=namespace,
                label_selector=lambda: f"app in ({','.join(sorted(wanted))})",
                keep=lambda c: (c.metadata.labels or {}).get("app") in wanted,
            )  # fmt: skip
            task = asyncio.create_task(inf.run())
            try:
                await inf.wait_for_sync()
                assert inf.store.keys() == [f"{namespace}/a"]
                await _eventually(lambda: inf._watching, "the watch to start")
                # b's changes are not sent at all: the one event is a's.
                for i in range(3):
                    kube.patch(f"{path}/b", {"metadata": {"annotations": {"v": str(i)}}})
                kube.patch(f"{path}/a", {"metadata": {"annotations": {"v": "1"}}})
                await _eventually(lambda: annotation(inf, "a") == "1", "a's change")
                assert inf.events == 1
                # Widen: rewatch, a change before the fetch, the fetch, a change after it.
                wanted.add("y")
                await inf.rewatch()
                kube.patch(f"{path}/b", {"metadata": {"annotations": {"v": "between"}}})
                inf.begin_admit()
                fetched = await client.list_all(
                    CONFIGMAPS, type=ConfigMap, namespace=namespace, label_selector="app in (y)",
                    resource_version=inf.last_sync_rv,
                )  # fmt: skip
                inf.admit(fetched.items)
                inf.end_admit()
                await _eventually(lambda: annotation(inf, "b") == "between", "b's change before the fetch")
                kube.patch(f"{path}/b", {"metadata": {"annotations": {"v": "after"}}})
                await _eventually(lambda: annotation(inf, "b") == "after", "b's change after the fetch")
                assert sorted(inf.store.keys()) == [f"{namespace}/a", f"{namespace}/b"]
            finally:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    asyncio.run(main())
