"""Per-process metrics combined as prometheus_client's multiprocess mode combined them (pure logic)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from dorgu.runtime import procmetrics
from dorgu.runtime.procmetrics import Snapshot, combine, fold, retire


def _process(pid: int, *, ticks: float, up: float, peak: float, low: float, seen: list[float]) -> Snapshot:
    """One process's registry with every kind of metric, as a snapshot under ``pid``."""
    r = CollectorRegistry()
    Counter("t_ticks", "ticks", ["c"], registry=r).labels("a").inc(ticks)
    Gauge("t_up", "live sum", ["c"], registry=r, multiprocess_mode="livesum").labels("a").set(up)
    Gauge("t_peak", "live max", registry=r, multiprocess_mode="livemax").set(peak)
    Gauge("t_low", "min of all", registry=r, multiprocess_mode="min").set(low)
    Gauge("t_each", "per pid", registry=r, multiprocess_mode="liveall").set(pid)
    h = Histogram("t_lat", "latency", registry=r, buckets=(0.1, 1.0))
    for v in seen:
        h.observe(v)
    snap = procmetrics.snapshot(r)
    return Snapshot(pid, snap.families)


def _values(snaps: list[Snapshot]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for m in combine(snaps) for s in m.samples}


def test_counters_and_histograms_sum_and_gauges_follow_their_mode() -> None:
    a = _process(10, ticks=3, up=1, peak=5, low=2, seen=[0.05, 0.5])
    b = _process(11, ticks=4, up=1, peak=7, low=9, seen=[2.0])
    v = _values([a, b])
    assert v[("t_ticks_total", (("c", "a"),))] == 7
    assert v[("t_up", (("c", "a"),))] == 2
    assert v[("t_peak", ())] == 7
    assert v[("t_low", ())] == 2
    assert v[("t_each", (("pid", "10"),))] == 10 and v[("t_each", (("pid", "11"),))] == 11
    assert v[("t_lat_bucket", (("le", "0.1"),))] == 1
    assert v[("t_lat_bucket", (("le", "1.0"),))] == 2
    assert v[("t_lat_bucket", (("le", "+Inf"),))] == 3
    assert v[("t_lat_count", ())] == 3
    assert abs(v[("t_lat_sum", ())] - 2.55) < 1e-9
    assert not any(name.endswith("_created") for name, _ in v)


def test_an_exited_process_keeps_its_counts_and_loses_its_live_gauges() -> None:
    dead = retire(_process(10, ticks=3, up=1, peak=50, low=2, seen=[0.05]))
    dead_again = retire(_process(12, ticks=5, up=1, peak=60, low=1, seen=[0.05]))
    retired = fold([dead, dead_again])
    live = _process(11, ticks=4, up=1, peak=7, low=9, seen=[2.0])
    v = _values([retired, live])
    assert v[("t_ticks_total", (("c", "a"),))] == 12
    assert v[("t_up", (("c", "a"),))] == 1  # only the live process's
    assert v[("t_peak", ())] == 7  # livemax: the dead processes' 50 and 60 are gone
    assert v[("t_low", ())] == 1  # min (not live): the dead process's value still counts
    assert [k for k in v if k[0] == "t_each"] == [("t_each", (("pid", "11"),))]
    assert v[("t_lat_count", ())] == 3


def test_the_combined_families_render_as_one_exposition() -> None:
    class Combined:
        def collect(self):  # type: ignore[no-untyped-def]
            return combine([_process(1, ticks=1, up=1, peak=1, low=1, seen=[]),
                            _process(2, ticks=2, up=1, peak=1, low=1, seen=[])])  # fmt: skip

    r = CollectorRegistry()
    r.register(Combined())  # type: ignore[arg-type]
    text = generate_latest(r).decode()
    assert text.count("# TYPE t_ticks_total counter") == 1
    assert 't_ticks_total{c="a"} 3.0' in text


def test_a_child_answers_on_its_socket(tmp_path: Path) -> None:
    r = CollectorRegistry()
    Counter("t_ticks", "ticks", registry=r).inc(2)

    async def main() -> Snapshot | None:
        path = str(tmp_path / "1.sock")
        server = await procmetrics.serve(path, r)
        try:
            return await procmetrics.fetch(path, timeout_s=30)
        finally:
            server.close()

    snap = asyncio.run(main())
    assert snap is not None
    assert _values([snap])[("t_ticks_total", ())] == 2
    assert asyncio.run(procmetrics.fetch(str(tmp_path / "nobody.sock"))) is None
