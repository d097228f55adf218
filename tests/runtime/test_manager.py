"""The Manager's runnable groups against the real control plane.

Rules checked (see :mod:`dorgu.runtime.manager`):

* servers start at once, whether leading or not; the others start once the caches have synced, leading or
  not; leader-only runnables start only once the Lease is won;
* readiness waits for the caches and for every ``ready`` gate, never for the Lease;
* an informer asked for while the manager runs is started at once and syncs;
* a follower still waiting for the Lease stops at once when asked to, leaving the Lease to its holder;
* a runnable that raises stops the manager, and ``run`` raises it.

Waits are generous deadlines for a condition, never a speed claim.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime
from typing import Any, TypeVar

import msgspec
import pytest

from dorgu.envtest import ControlPlane, HarnessClient
from dorgu.runtime.leaderelection import LeaderElectionSettings
from dorgu.runtime.manager import Manager, RunnableGroup
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import CONFIGMAPS

DEADLINE_S = 60.0
"""A generous bound on waiting for a condition (the machine may be busy)."""
T = TypeVar("T")


class ConfigMap(msgspec.Struct, kw_only=True):
    metadata: ObjectMeta = msgspec.field(default_factory=ObjectMeta)
    data: dict[str, str] | None = None


def leases(ns: str, name: str = "") -> str:
    return f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases" + (f"/{name}" if name else "")


def hold_lease(kube: HarnessClient, ns: str, name: str, *, holder: str) -> None:
    """A Lease held by ``holder`` for an hour: no candidate takes it before it is released."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    kube.post(
        leases(ns),
        {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": 3600, "acquireTime": now,
                     "renewTime": now},
        },
    )  # fmt: skip


def release_lease(kube: HarnessClient, ns: str, name: str) -> None:
    """What a graceful leader does on stop: an empty holder."""
    lease = kube.get(leases(ns, name))
    lease["spec"]["holderIdentity"] = ""
    lease["spec"]["leaseDurationSeconds"] = 1
    kube.put(leases(ns, name), lease)


def configmap(kube: HarnessClient, ns: str, name: str, labels: dict[str, str] | None = None) -> None:
    kube.post(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels or {}}},
    )


async def within(aw: Awaitable[T], what: str) -> T:
    try:
        async with asyncio.timeout(DEADLINE_S):
            return await aw
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def test_groups_follower_then_leader(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str
) -> None:
    hold_lease(kube, namespace, "groups", holder="someone-else")
    configmap(kube, namespace, "early")
    configmap(kube, namespace, "late", labels={"late": "yes"})

    async def main() -> None:
        ready: list[bool] = []
        m = Manager(
            connection=control_plane.connection(user_agent="manager-test"),
            leader_election=LeaderElectionSettings(
                name="groups", namespace=namespace, identity="me",
                lease_duration_s=3.0, renew_deadline_s=2.0, retry_period_s=0.5,
            ),
            set_ready=ready.append,
        )  # fmt: skip
        cache = m.informer(CONFIGMAPS, ConfigMap, namespace=namespace)
        seen: dict[str, Any] = {}
        listening = asyncio.Event()
        open_gate = asyncio.Event()
        others_done = asyncio.Event()
        leading = asyncio.Event()

        async def server() -> None:
            seen["server started"] = True
            await open_gate.wait()
            listening.set()
            await asyncio.Event().wait()

        async def other() -> None:
            seen["caches synced when others start"] = cache.has_synced()
            late = m.informer(CONFIGMAPS, ConfigMap, namespace=namespace, label_selector="late=yes")
            await late.wait_for_sync()
            seen["late informer"] = sorted(late.store.keys())
            others_done.set()

        async def leader() -> None:
            leading.set()

        m.add_runnable(server, group=RunnableGroup.SERVERS, ready=listening)
        m.add_runnable(other, group=RunnableGroup.OTHERS)
        m.add_runnable(leader, group=RunnableGroup.LEADER)
        stop = asyncio.Event()
        run = asyncio.create_task(m.run(stop))

        await within(others_done.wait(), "the others group to run")
        assert seen == {
            "server started": True,
            "caches synced when others start": True,
            "late informer": [f"{namespace}/late"],
        }
        assert ready == []  # the caches have synced, but the server is not listening yet
        assert not leading.is_set()
        open_gate.set()
        await within(_until(lambda: ready == [True]), "readiness once the server listens")
        assert not leading.is_set()  # ready as a follower: the Lease is someone else's

        await asyncio.to_thread(release_lease, kube, namespace, "groups")
        await within(leading.wait(), "the leader-only group once the Lease is free")
        assert not run.done()  # a leader runnable that returns is done; the manager goes on
        stop.set()
        await within(run, "the manager to stop")
        assert ready == [True, False]

    asyncio.run(main())
    assert kube.get(leases(namespace, "groups"))["spec"]["holderIdentity"] in ("", None)  # released on stop


def test_follower_stops_without_waiting_for_the_lease(
    control_plane: ControlPlane, kube: HarnessClient, namespace: str
) -> None:
    hold_lease(kube, namespace, "held", holder="someone-else")

    async def main() -> None:
        ready: list[bool] = []
        m = Manager(
            connection=control_plane.connection(user_agent="manager-test"),
            leader_election=LeaderElectionSettings(name="held", namespace=namespace, identity="me"),
            set_ready=ready.append,
        )
        m.informer(CONFIGMAPS, ConfigMap, namespace=namespace)
        started: list[str] = []

        async def server() -> None:
            started.append("server")
            await asyncio.Event().wait()

        async def leader() -> None:
            started.append("leader")

        m.add_runnable(server, group=RunnableGroup.SERVERS)
        m.add_runnable(leader, group=RunnableGroup.LEADER)
        stop = asyncio.Event()
        run = asyncio.create_task(m.run(stop))
        await within(_until(lambda: ready == [True]), "readiness as a follower")
        stop.set()
        await within(run, "the follower to stop")
        assert started == ["server"]
        assert ready == [True, False]

    asyncio.run(main())
    assert kube.get(leases(namespace, "held"))["spec"]["holderIdentity"] == "someone-else"


def test_a_failing_runnable_stops_the_manager(control_plane: ControlPlane, namespace: str) -> None:
    async def main() -> None:
        m = Manager(connection=control_plane.connection(user_agent="manager-test"))
        m.informer(CONFIGMAPS, ConfigMap, namespace=namespace)
        cancelled = asyncio.Event()

        async def server() -> None:
            try:
                await asyncio.Event().wait()
            finally:
                cancelled.set()

        async def broken() -> None:
            raise RuntimeError("boom")

        m.add_runnable(server, group=RunnableGroup.SERVERS)
        m.add_runnable(broken, group=RunnableGroup.OTHERS)
        with pytest.raises(RuntimeError, match="boom"):
            await within(m.run(asyncio.Event()), "the manager to fail")
        assert cancelled.is_set()  # every group stopped before run returned

    asyncio.run(main())


def test_building_rules(control_plane: ControlPlane) -> None:
    async def main() -> None:
        m = Manager(connection=control_plane.connection(user_agent="manager-test"))

        async def noop() -> None:
            return None

        with pytest.raises(ValueError, match="followers"):
            m.add_runnable(noop, group=RunnableGroup.LEADER, ready=asyncio.Event())
        stop = asyncio.Event()
        stop.set()
        await m.run(stop)  # stopped before it started: returns
        with pytest.raises(RuntimeError):
            m.add_runnable(noop, group=RunnableGroup.OTHERS)
        with pytest.raises(RuntimeError):
            m.informer(CONFIGMAPS, ConfigMap)
        with pytest.raises(RuntimeError):
            await m.run(stop)

    asyncio.run(main())


async def _until(pred: Any) -> None:
    while not pred():
        await asyncio.sleep(0.02)
