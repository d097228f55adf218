"""The persona learns its baseline from a real Prometheus, under a field manager of its own."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from controllers.applicationpersona import ApplicationPersonaReconciler, PersonaSettings
from dorgu.envtest import ApiError, ControlPlane, HarnessClient
from dorgu.runtime.clock import RealClock
from dorgu.runtime.manager import Manager
from tests.controllers.prometheus_kit import PrometheusServer, running_prometheus
from tests.controllers.test_applicationpersona import AP, DEP, deployment, persona
from tests.controllers.test_baseline import END, NS, SERIES, WEB, expected
from tests.runtime.kit import LoopThread, wait_until


class FixedNow(RealClock):
    """Real sleeping and monotonic time, but "now" is where the synthetic series end."""

    def now(self) -> datetime:
        return datetime.fromtimestamp(END, UTC)


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    with running_prometheus(SERIES, Path(tmp_path_factory.mktemp("prom-ap"))) as server:
        yield server


def test_baseline_learned_and_kept_when_prometheus_goes_down(
    control_plane: ControlPlane, kube: HarnessClient, prometheus: PrometheusServer
) -> None:
    try:
        kube.post("/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    except ApiError as e:
        assert e.code == 409
    kube.post(AP.format(ns=NS), persona("web"))
    kube.post(DEP.format(ns=NS), deployment("web"))
    loop = LoopThread()
    stop = asyncio.Event()
    tasks: list[asyncio.Future[None]] = []
    try:

        async def setup() -> ApplicationPersonaReconciler:
            m = Manager(connection=control_plane.connection(user_agent="ap-baseline-test"))
            r = ApplicationPersonaReconciler(
                manager=m,
                settings=PersonaSettings(prometheus_url=prometheus.url, baseline_check_s=3600, namespaces=NS),
                clock=FixedNow(),
            )
            tasks.append(asyncio.ensure_future(m.run(stop)))
            await asyncio.gather(*(i.wait_for_sync() for i in m.informers))
            return r

        r = loop.run(setup())
        wait_until(
            lambda: (kube.get(f"{AP.format(ns=NS)}/web").get("status") or {}).get("phase"), what="status"
        )
        loop.run(r.refresh_baselines(force=True))  # the controller's own loop may have written it already
        want = expected(NS, WEB).values().to_resource_baseline()

        def learned() -> dict:
            return kube.get(f"{AP.format(ns=NS)}/web")["status"]

        wait_until(
            lambda: (
                "learned" in learned()
                and any(c["type"] == "BaselineLearned" for c in learned()["conditions"])
            ),
            what="the baseline and its condition",
        )
        st = learned()
        assert st["learned"]["resourceBaseline"] == {
            "avgCPU": want.avg_cpu, "peakCPU": want.peak_cpu,
            "avgMemory": want.avg_memory, "peakMemory": want.peak_memory,
        }  # fmt: skip
        cond = next(c for c in st["conditions"] if c["type"] == "BaselineLearned")
        assert (cond["status"], cond["reason"]) == ("True", "Learned")
        assert {c["type"] for c in st["conditions"]} >= {"Ready", "Validated", "BaselineLearned"}

        prometheus.stop()
        assert loop.run(r.refresh_baselines(force=True)) == 1  # the condition changes: one write
        wait_until(
            lambda: (
                next(c for c in learned()["conditions"] if c["type"] == "BaselineLearned")["status"]
                == "False"
            ),
            what="BaselineLearned=False",
        )
        st = learned()
        cond = next(c for c in st["conditions"] if c["type"] == "BaselineLearned")
        assert cond["reason"] == "PrometheusUnavailable" and "unreachable" in cond["message"]
        assert st["learned"]["resourceBaseline"]["avgCPU"] == want.avg_cpu  # the old baseline is kept
        time.sleep(1.2)  # the main controller re-validates meanwhile; its applies leave our fields alone
        assert learned()["learned"]["resourceBaseline"]["peakMemory"] == want.peak_memory
    finally:
        loop.call(stop.set)
        time.sleep(0.2)
        loop.close()
        prometheus.start()
