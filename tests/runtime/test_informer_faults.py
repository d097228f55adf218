"""The runtime against a real API server, with real faults: restarts, 410 Gone, frozen streams.

A control plane of its own (faults would disturb the shared one). The TCP proxy is not a fake server: it
sits in front of the real one and only makes the network misbehave.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator

import pytest

from dorgu.envtest import ControlPlane, ControlPlaneSettings
from dorgu.runtime.client import ApiClient
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.controller import run_informers
from dorgu.runtime.informer import Handlers, InformerSettings
from dorgu.runtime.resource import CONFIGMAPS
from dorgu.runtime.watch import WatchSettings
from tests.runtime.kit import LoopThread, bounded_gather, create_configmaps, sample, wait_until
from tests.runtime.programs import cmcontroller
from tests.runtime.programs.tcpproxy import TcpProxy


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneSettings(controllers=())) as plane:
        yield plane


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


_n = iter(range(1000))


@pytest.fixture
def ns(cp: ControlPlane) -> str:
    name = f"faults-{next(_n)}"
    cp.client().post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


def annotations(cp: ControlPlane, ns: str) -> dict[str, str | None]:
    items = cp.client().get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
    return {
        i["metadata"]["name"]: (i["metadata"].get("annotations") or {}).get(cmcontroller.ANNOTATION)
        for i in items
        if i["metadata"]["name"].startswith("cm")
    }


def values(cp: ControlPlane, ns: str) -> dict[str, str]:
    items = cp.client().get(f"/api/v1/namespaces/{ns}/configmaps")["items"]
    return {
        i["metadata"]["name"]: i["data"]["value"] for i in items if i["metadata"]["name"].startswith("cm")
    }


def converged(cp: ControlPlane, ns: str, n: int) -> bool:
    vals, ann = values(cp, ns), annotations(cp, ns)
    return len(vals) == n and all(ann.get(k) == f"v={v}" for k, v in vals.items())


def start_controller(loop: LoopThread, conn: ConnectionSettings, ns: str, **kw: object) -> dict[str, object]:
    state: dict[str, object] = {}

    async def setup() -> None:
        client = ApiClient(conn)
        informer, controller = cmcontroller.build(client, namespace=ns, **kw)  # type: ignore[arg-type]
        state.update(client=client, informer=informer, controller=controller)
        state["task"] = asyncio.gather(run_informers([informer]), controller.run())

    loop.run(setup())
    return state


def test_controller_converges_for_1000_objects(cp: ControlPlane, loop: LoopThread, ns: str) -> None:
    async def seed() -> None:
        async with ApiClient(cp.connection()) as c:
            await create_configmaps(c, namespace=ns, n=1000)

    loop.run(seed())
    t0 = time.monotonic()
    start_controller(loop, cp.connection(), ns)
    wait_until(lambda: converged(cp, ns, 1000), timeout=180, what="1,000 ConfigMaps to converge")
    print(f"\n1,000 objects converged in {time.monotonic() - t0:.1f} s (informational)")


def test_apiserver_restart_while_changing_loses_nothing(cp: ControlPlane, loop: LoopThread, ns: str) -> None:
    n = 500

    async def seed() -> None:
        async with ApiClient(cp.connection()) as c:
            await create_configmaps(c, namespace=ns, n=n)

    loop.run(seed())
    start_controller(loop, cp.connection(), ns)
    wait_until(lambda: converged(cp, ns, n), timeout=120, what="initial convergence")
    done = {"changed": 0}

    async def change_all(round_: int) -> None:
        async with ApiClient(cp.connection(user_agent="changer")) as c:

            async def one(i: int) -> None:
                while True:  # the server goes away mid-run: keep trying until this change lands
                    try:
                        await c.patch(
                            CONFIGMAPS, f"cm{i}", {"data": {"value": str(round_)}}, namespace=ns, decode=False
                        )
                        done["changed"] += 1
                        return
                    except Exception:
                        await asyncio.sleep(0.2)

            await bounded_gather([one(i) for i in range(n)], limit=8)

    fut = loop.submit(change_all(1))
    wait_until(lambda: done["changed"] >= 100, timeout=60, what="changes to be under way")
    downtime = cp.restart_apiserver()
    print(
        f"\nkube-apiserver killed and restarted after {done['changed']} of {n} changes "
        f"({downtime:.1f} s down)"
    )
    fut.result(120)
    assert set(values(cp, ns).values()) == {"1"}
    took = wait_until(lambda: converged(cp, ns, n), timeout=120, what="convergence after the restart")
    print(f"converged {took:.1f} s after the last change")


def test_410_gone_relists_and_delivers_missed_deletes(cp: ControlPlane, loop: LoopThread, ns: str) -> None:
    proxy = TcpProxy(target_port=cp.apiserver_port).start()
    try:
        conn = ConnectionSettings(
            server=proxy.url, ca_data=cp.ca_file.read_bytes(), token=cp.admin_token, user_agent="informer-410"
        )

        async def seed() -> None:
            async with ApiClient(cp.connection()) as c:
                await create_configmaps(c, namespace=ns, n=50)

        loop.run(seed())
        deleted: list[str] = []
        st = start_controller(
            loop, conn, ns, informer_settings=InformerSettings(watch=WatchSettings(stall_timeout_s=120.0))
        )
        informer = st["informer"]
        loop.call(
            lambda: informer.add_handlers(Handlers(on_delete=lambda o: deleted.append(o.metadata.name)))
        )  # type: ignore[attr-defined]
        wait_until(lambda: converged(cp, ns, 50), timeout=60, what="initial convergence")
        lists_before = informer.lists  # type: ignore[attr-defined]
        gone_before = sample("dorgu_watch_errors_total", resource="configmaps", reason="Gone")

        # The informer is held off: its stream looks alive but carries nothing (no reconnect, no relist), so
        # the changes below and the restart pass it by.
        proxy.blackhole()
        admin = cp.client()
        for i in range(10):
            admin.delete(f"/api/v1/namespaces/{ns}/configmaps/cm{i}")
        for i in range(10, 50):
            admin.patch(f"/api/v1/namespaces/{ns}/configmaps/cm{i}", {"data": {"value": "gap"}})
        cp.restart_apiserver()  # a fresh watch cache: the informer's RV is now too old
        proxy.restore()  # its stream breaks; it re-watches from its old RV: too old for the new server

        wait_until(
            lambda: sample("dorgu_watch_errors_total", resource="configmaps", reason="Gone") > gone_before,
            timeout=60,
            what="the resumed watch to get 410 Expired",
        )
        wait_until(lambda: informer.lists > lists_before, timeout=60, what="a relist")  # type: ignore[attr-defined]
        wait_until(lambda: converged(cp, ns, 40), timeout=60, what="convergence after the relist")
        wait_until(lambda: {f"cm{i}" for i in range(10)} <= set(deleted), timeout=60, what="missed deletes")
        assert len(informer.store) == 40  # type: ignore[attr-defined]
    finally:
        with contextlib.suppress(Exception):
            proxy.stop()


def test_frozen_stream_is_detected_and_the_watch_resumes(cp: ControlPlane, loop: LoopThread, ns: str) -> None:
    proxy = TcpProxy(target_port=cp.apiserver_port).start()
    try:
        conn = ConnectionSettings(
            server=proxy.url,
            ca_data=cp.ca_file.read_bytes(),
            token=cp.admin_token,
            user_agent="informer-stall",
        )

        async def seed() -> None:
            async with ApiClient(cp.connection()) as c:
                await create_configmaps(c, namespace=ns, n=5)

        loop.run(seed())
        stall = 2.0
        st = start_controller(
            loop, conn, ns, informer_settings=InformerSettings(watch=WatchSettings(stall_timeout_s=stall))
        )
        wait_until(lambda: converged(cp, ns, 5), timeout=60, what="initial convergence")
        stalled_before = sample("dorgu_watch_errors_total", resource="configmaps", reason="WatchStalled")
        proxy.freeze()
        cp.client().patch(f"/api/v1/namespaces/{ns}/configmaps/cm1", {"data": {"value": "during-freeze"}})
        # A frozen stream never ends by itself: only the stall detection can end this wait.
        detected = wait_until(
            lambda: (
                sample("dorgu_watch_errors_total", resource="configmaps", reason="WatchStalled")
                > stalled_before
            ),
            timeout=60,
            what="the stall of the frozen watch to be detected",
        )
        print(f"\nfrozen stream detected after {detected:.1f} s (stall timeout {stall:.0f} s)")
        proxy.thaw()
        wait_until(
            lambda: converged(cp, ns, 5), timeout=60, what="the watch to resume and deliver the change"
        )
        assert annotations(cp, ns)["cm1"] == "v=during-freeze"
        assert st["informer"].lists == 1  # type: ignore[attr-defined]  # a stall re-watches; it never relists
    finally:
        with contextlib.suppress(Exception):
            proxy.stop()


def test_large_watch_lines_decode(cp: ControlPlane, loop: LoopThread, ns: str) -> None:
    """Watch lines above aiohttp's 128 KiB readline limit — here 1.8 MiB — arrive intact.

    A ConfigMap holds at most 1 MiB, but the API server's JSON escapes ``<`` as ``\\u003c`` (6 bytes), so
    300 KiB of ``<`` make a watch line of about 1.8 MiB."""
    big = "<" * (300 * 1024)
    st = start_controller(loop, cp.connection(), ns)
    informer = st["informer"]
    wait_until(lambda: informer.has_synced(), timeout=60, what="sync")  # type: ignore[attr-defined]
    cp.client().post(
        f"/api/v1/namespaces/{ns}/configmaps",
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cmbig"},
            "data": {"value": "1", "big": big},
        },
    )
    wait_until(lambda: informer.store.get(f"{ns}/cmbig") is not None, timeout=60, what="the big object")  # type: ignore[attr-defined]
    got = loop.call(lambda: informer.store.get(f"{ns}/cmbig"))  # type: ignore[attr-defined]
    assert got.data["big"] == big
    assert json.dumps(got.data["value"]) == '"1"'
