"""One cache over several namespaces (dorgu.runtime.multinamespace), against the real API server: it holds
exactly the objects of its namespaces, events of each reach the handlers once, and a relist of one
namespace never drops another's objects (each part owns only its namespace's keys of the shared store)."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator

import msgspec
import pytest

from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.runtime.client import ApiClient
from dorgu.runtime.informer import Handlers
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.multinamespace import MultiNamespaceInformer, namespace_scope
from dorgu.runtime.resource import CONFIGMAPS
from dorgu.runtime.store import object_key

DEADLINE_S = 60.0
_n = itertools.count()


class ConfigMap(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)


@pytest.fixture
def three(kube: HarnessClient, namespace: str) -> Iterator[tuple[str, str, str]]:
    names = tuple(f"{namespace}-{x}{next(_n)}" for x in "abc")
    for ns in names:
        kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
        kube.post(f"/api/v1/namespaces/{ns}/configmaps", {"apiVersion": "v1", "kind": "ConfigMap",
                                                         "metadata": {"name": "cm"}})  # fmt: skip
    yield names  # type: ignore[misc]
    for ns in names:
        kube.delete(f"/api/v1/namespaces/{ns}")


def test_namespace_scope_parses_the_option() -> None:
    assert namespace_scope("") is None and namespace_scope(()) is None and namespace_scope(" , ") is None
    assert namespace_scope("a, b,a") == ("a", "b")
    assert namespace_scope(("b", "a")) == ("b", "a")


def test_one_cache_over_two_namespaces(
    control_plane: ControlPlane, kube: HarnessClient, three: tuple[str, str, str]
) -> None:
    a, b, c = three

    async def main() -> None:
        async with ApiClient(control_plane.connection(user_agent="multi-ns-test")) as client:
            inf = MultiNamespaceInformer(client, CONFIGMAPS, item_type=ConfigMap, namespaces=(a, b))
            added: list[str] = []
            deleted: list[str] = []
            inf.add_handlers(
                Handlers(on_add=lambda o: added.append(object_key(o)),
                         on_delete=lambda o: deleted.append(object_key(o)))
            )  # fmt: skip
            task = asyncio.create_task(inf.run())
            try:
                async with asyncio.timeout(DEADLINE_S):
                    await inf.wait_for_sync()
                mine = {f"{a}/cm", f"{b}/cm"}
                assert {object_key(o) for o in inf.store.list() if o.metadata.name == "cm"} == mine
                assert f"{c}/cm" not in inf.store  # the third namespace is never seen
                assert sorted(k for k in added if k.endswith("/cm")) == sorted(mine)
                # A relist of one namespace (a real LIST of a) keeps the other's objects and delivers no
                # delete for them: a part owns only its namespace's keys.
                await inf.parts[0]._list()
                assert f"{b}/cm" in inf.store and deleted == []
                # A change in b reaches the handlers once, through b's watch.
                kube.delete(f"/api/v1/namespaces/{b}/configmaps/cm")
                async with asyncio.timeout(DEADLINE_S):
                    while f"{b}/cm" not in deleted:
                        await asyncio.sleep(0.05)
                assert deleted == [f"{b}/cm"] and f"{a}/cm" in inf.store
                assert inf.lists >= 3 and inf.last_sync_rv
            finally:
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task

    asyncio.run(main())
