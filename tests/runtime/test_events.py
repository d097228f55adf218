"""The event recorder against a real API server: create, dedup (count), aggregation, spam filter, errors."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from dorgu.envtest import ControlPlane, ControlPlaneSettings
from dorgu.envtest.controlplane import free_port
from dorgu.runtime.client import ApiClient
from dorgu.runtime.clock import Clock, FakeClock, RealClock
from dorgu.runtime.events import COMBINED_PREFIX, EventRecorder, EventRecorderSettings, ObjectReference
from dorgu.runtime.meta import ObjectMeta
from dorgu.runtime.resource import CONFIGMAPS, NAMESPACES
from tests.runtime.kit import sample

START = datetime(2026, 1, 1, tzinfo=UTC)
_n = itertools.count()


@pytest.fixture(scope="module")
def cp() -> Iterator[ControlPlane]:
    with ControlPlane(ControlPlaneSettings(controllers=())) as plane:
        yield plane


@pytest.fixture
def ns(cp: ControlPlane) -> str:
    name = f"events-{next(_n)}"
    cp.client().post(
        "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    return name


def make_cm(cp: ControlPlane, ns: str, name: str = "cm") -> dict[str, Any]:
    return cp.client().post(
        f"/api/v1/namespaces/{ns}/configmaps",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}},
    )


def events(cp: ControlPlane, ns: str, **field_selector: str) -> list[dict[str, Any]]:
    params = (
        {"fieldSelector": ",".join(f"{k}={v}" for k, v in field_selector.items())} if field_selector else {}
    )
    return cp.client().get(f"/api/v1/namespaces/{ns}/events", params=params)["items"]


def emitted(reason: str, result: str) -> float:
    return sample("dorgu_events_emitted_total", reason=reason, result=result)


def with_recorder(
    cp: ControlPlane,
    body: Callable[[EventRecorder, Any], Awaitable[None]],
    *,
    clock: Clock | None = None,
    settings: EventRecorderSettings | None = None,
    start: bool = True,
    **conn: Any,
) -> None:
    """Run ``body(recorder, clock)`` in a fresh loop with a started recorder, then stop (flush) it."""
    fake = clock if clock is not None else FakeClock(start=START)

    async def main() -> None:
        async with ApiClient(msgspec.structs.replace(cp.connection(), **conn)) as client:
            rec = EventRecorder(
                client, component="test-controller", host="node-a", clock=fake,
                settings=settings or EventRecorderSettings(),
            )  # fmt: skip
            if start:
                await rec.start()
            try:
                await body(rec, fake)
            finally:
                await rec.stop()

    asyncio.run(main())


def test_record_creates_an_event_with_the_right_fields(cp: ControlPlane, ns: str) -> None:
    cm = make_cm(cp, ns)
    ref = ObjectReference.of(cm)
    before = emitted("Synced", "created")

    async def body(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Normal", reason="Synced", message="the config map is in sync")

    with_recorder(cp, body)
    [ev] = events(cp, ns)
    nanos = int((START - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds()) * 10**9
    assert ev["metadata"]["name"] == f"cm.{nanos:x}"
    assert ev["metadata"]["namespace"] == ns
    assert ev["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "namespace": ns,
        "name": "cm",
        "uid": cm["metadata"]["uid"],
        "resourceVersion": cm["metadata"]["resourceVersion"],
    }
    assert (ev["type"], ev["reason"], ev["message"]) == ("Normal", "Synced", "the config map is in sync")
    assert ev["source"] == {"component": "test-controller", "host": "node-a"}
    assert ev["firstTimestamp"] == ev["lastTimestamp"] == "2026-01-01T00:00:00Z"
    assert ev["count"] == 1
    assert (ev["reportingComponent"], ev["reportingInstance"]) == ("test-controller", "node-a")
    assert emitted("Synced", "created") == before + 1


def test_identical_events_are_one_event_with_a_count(cp: ControlPlane, ns: str) -> None:
    ref = ObjectReference.of(make_cm(cp, ns))
    created, patched = emitted("Same", "created"), emitted("Same", "patched")

    async def body(rec: EventRecorder, clock: Any) -> None:
        for _ in range(4):
            rec.record(ref, type="Warning", reason="Same", message="same again")
            await clock.advance(1)

    with_recorder(cp, body)
    [ev] = events(cp, ns)
    assert ev["count"] == 4
    assert ev["firstTimestamp"] == "2026-01-01T00:00:00Z"
    assert ev["lastTimestamp"] == "2026-01-01T00:00:03Z"
    assert (emitted("Same", "created"), emitted("Same", "patched")) == (created + 1, patched + 3)


def test_a_deleted_event_is_created_again(cp: ControlPlane, ns: str) -> None:
    ref = ObjectReference.of(make_cm(cp, ns))

    async def body(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Normal", reason="Again", message="m")
        rec.record(ref, type="Normal", reason="Again", message="m")
        while rec.pending:
            await asyncio.sleep(0.02)
        [ev] = events(cp, ns)
        assert ev["count"] == 2
        cp.client().delete(f"/api/v1/namespaces/{ns}/events/{ev['metadata']['name']}")
        await clock.advance(5)
        rec.record(ref, type="Normal", reason="Again", message="m")

    with_recorder(cp, body)
    [ev] = events(cp, ns)
    assert ev["count"] == 3  # the PATCH found it gone: created again, same name, the count carried on
    assert (ev["firstTimestamp"], ev["lastTimestamp"]) == ("2026-01-01T00:00:00Z", "2026-01-01T00:00:05Z")


def test_a_name_clash_takes_the_next_name(cp: ControlPlane, ns: str) -> None:
    """Two recorders on frozen clocks name their first Event alike: the second takes the next name."""
    ref = ObjectReference.of(make_cm(cp, ns))

    async def first(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Normal", reason="One", message="m")

    async def second(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Normal", reason="Two", message="m")
        rec.record(ref, type="Normal", reason="Two", message="m")  # patches the renamed Event

    with_recorder(cp, first)
    with_recorder(cp, second)
    evs = sorted(events(cp, ns), key=lambda e: e["metadata"]["name"])
    assert [(e["reason"], e["count"]) for e in evs] == [("One", 1), ("Two", 2)]
    a, b = (int(e["metadata"]["name"].rsplit(".", 1)[1], 16) for e in evs)
    assert b == a + 1


def test_similar_events_are_combined(cp: ControlPlane, ns: str) -> None:
    ref = ObjectReference.of(make_cm(cp, ns))

    async def body(rec: EventRecorder, clock: Any) -> None:
        for i in range(12):
            rec.record(ref, type="Warning", reason="Flaky", message=f"attempt {i} failed")
            await clock.advance(1)
        # After the aggregation interval without a similar event, messages stand alone again.
        await clock.advance(601)
        rec.record(ref, type="Warning", reason="Flaky", message="first of a new series")

    with_recorder(cp, body)
    evs = events(cp, ns)
    single = [e for e in evs if e["message"].startswith("attempt ")]
    [combined] = [e for e in evs if e["message"].startswith(COMBINED_PREFIX)]
    assert len(single) <= 10
    assert len(single) == 9  # client-go: the 10th distinct message within the interval is combined
    assert all(e["count"] == 1 for e in single)
    assert combined["message"] == COMBINED_PREFIX + "attempt 11 failed"
    assert combined["count"] == 3
    assert (combined["reason"], combined["type"]) == ("Flaky", "Warning")
    assert [e["count"] for e in evs if e["message"] == "first of a new series"] == [1]


def test_spam_filter_drops_beyond_the_burst(cp: ControlPlane, ns: str) -> None:
    ref = ObjectReference.of(make_cm(cp, ns))
    dropped = emitted("Spam", "dropped")

    async def body(rec: EventRecorder, clock: Any) -> None:
        for i in range(30):  # distinct messages would be aggregated: use a distinct reason each
            rec.record(ref, type="Normal", reason=f"Spam{i}" if i < 25 else "Spam", message="m")
        while rec.pending:
            await asyncio.sleep(0.02)
        assert len(events(cp, ns)) == 25
        await clock.advance(300)  # one token back
        rec.record(ref, type="Normal", reason="Refilled", message="m")
        rec.record(ref, type="Normal", reason="Spam", message="m")

    with_recorder(cp, body)
    evs = events(cp, ns)
    assert len(evs) == 26
    assert any(e["reason"] == "Refilled" for e in evs)
    assert emitted("Spam", "dropped") == dropped + 6

    # Another object has a bucket of its own.
    other = ObjectReference.of(make_cm(cp, ns, "other"))

    async def more(rec: EventRecorder, clock: Any) -> None:
        rec.record(other, type="Normal", reason="Own", message="m")

    with_recorder(cp, more, clock=FakeClock(start=START + timedelta(hours=1)))
    assert len(events(cp, ns, **{"involvedObject.name": "other"})) == 1


def test_cluster_scoped_objects_get_events_in_default(cp: ControlPlane, ns: str) -> None:
    ns_obj = cp.client().get(f"/api/v1/namespaces/{ns}")
    ref = ObjectReference.of(ns_obj, resource=NAMESPACES)
    assert ref.namespace is None

    async def body(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Normal", reason="Seen", message="a namespace")

    with_recorder(cp, body)
    [ev] = events(cp, "default", **{"involvedObject.uid": ns_obj["metadata"]["uid"]})
    assert ev["involvedObject"]["kind"] == "Namespace"
    assert "namespace" not in ev["involvedObject"]
    assert ev["metadata"]["namespace"] == "default"


def test_never_raises_and_stop_flushes(cp: ControlPlane, ns: str) -> None:
    ok = ObjectReference.of(make_cm(cp, ns))
    bad_ns = ObjectReference(api_version="v1", kind="ConfigMap", name="x", namespace="Not_A_Namespace!")
    missing_ns = ObjectReference(api_version="v1", kind="ConfigMap", name="x", namespace=f"{ns}-missing")
    errors = emitted("Rejected", "error")
    dropped = emitted("Flushed", "dropped")

    async def body(rec: EventRecorder, clock: Any) -> None:
        rec.record(bad_ns, type="Warning", reason="Rejected", message="m")
        rec.record(missing_ns, type="Warning", reason="Rejected", message="m")
        rec.record(ok, type="Bogus", reason="Rejected", message="m")  # type: ignore[arg-type]
        rec.record("not a reference", type="Normal", reason="Rejected", message="m")  # type: ignore[arg-type]
        for i in range(5):  # never started: all of these wait for stop() to write them
            rec.record(ok, type="Normal", reason="Flushed", message=f"m{i}")
        assert rec.pending == 7

    with_recorder(cp, body, settings=EventRecorderSettings(queue_size=7), start=False)
    assert emitted("Rejected", "error") == errors + 4
    assert emitted("Flushed", "dropped") == dropped
    assert sorted(e["message"] for e in events(cp, ns)) == [f"m{i}" for i in range(5)]

    # A full queue drops the new event; a stopped recorder drops everything.
    async def overflow(rec: EventRecorder, clock: Any) -> None:
        for i in range(4):
            rec.record(ok, type="Normal", reason="Overflow", message=f"o{i}")

    before = emitted("Overflow", "dropped")
    with_recorder(cp, overflow, settings=EventRecorderSettings(queue_size=2), start=False)
    assert emitted("Overflow", "dropped") == before + 2
    assert sorted(e["message"] for e in events(cp, ns) if e["reason"] == "Overflow") == ["o0", "o1"]


def test_unreachable_server_retries_then_counts_an_error(cp: ControlPlane) -> None:
    ref = ObjectReference(api_version="v1", kind="ConfigMap", name="x", namespace="default")
    errors = emitted("Unreachable", "error")
    settings = EventRecorderSettings(max_tries=3, retry_interval_s=0.01)

    async def body(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Warning", reason="Unreachable", message="m")
        while rec.pending:
            await asyncio.sleep(0.02)

    dead = f"https://127.0.0.1:{free_port()}"
    with_recorder(cp, body, clock=RealClock(), settings=settings, server=dead)
    assert emitted("Unreachable", "error") == errors + 1

    # stop() cuts a retry wait short and gives the event up (counted as an error). On a clock that stands
    # still, only stop() can end the writer's wait; were it not cut short, stop() would run into its own
    # timeout instead, cancel the writer and count nothing.
    async def stopping(rec: EventRecorder, clock: Any) -> None:
        rec.record(ref, type="Warning", reason="Unreachable", message="m")
        deadline = asyncio.get_running_loop().time() + 60  # a hang guard: the first try fails at once
        while clock.sleepers == 0:
            assert asyncio.get_running_loop().time() < deadline, "the writer never waited to retry"
            await asyncio.sleep(0.01)
        await rec.stop()
        assert rec.pending == 0

    slow = EventRecorderSettings(max_tries=12, retry_interval_s=600, stop_timeout_s=60)
    with_recorder(cp, stopping, clock=FakeClock(start=START), settings=slow, server=dead)
    assert emitted("Unreachable", "error") == errors + 2, "stop() did not end the retry wait and give up"


def test_run_as_a_task(cp: ControlPlane, ns: str) -> None:
    ref = ObjectReference.of(make_cm(cp, ns))

    async def main() -> None:
        async with ApiClient(cp.connection()) as client:
            rec = EventRecorder(client, component="task", clock=FakeClock(start=START))
            task = asyncio.create_task(rec.run())
            rec.record(ref, type="Normal", reason="Task", message="first")
            while rec.pending:
                await asyncio.sleep(0.02)
            rec.record(ref, type="Normal", reason="Task", message="second")
            task.cancel()  # the cancelled run still writes what was queued
            with pytest.raises(asyncio.CancelledError):
                await task
            rec.record(ref, type="Normal", reason="Task", message="after the end")  # dropped, no raise

    asyncio.run(main())
    evs = events(cp, ns)
    assert sorted(e["message"] for e in evs) == ["first", "second"]
    assert all(e["source"] == {"component": "task"} for e in evs)


def test_object_reference_from_structs_and_list_items() -> None:
    class Obj(msgspec.Struct, kw_only=True):
        metadata: ObjectMeta
        api_version: str | None = None
        kind: str | None = None

    meta = ObjectMeta(name="a", namespace="n", uid="u-1", resource_version="7")
    ref = ObjectReference.of(Obj(metadata=meta, api_version="v1", kind="ConfigMap"))
    assert ref == ObjectReference(
        api_version="v1", kind="ConfigMap", name="a", namespace="n", uid="u-1", resource_version="7"
    )
    assert ObjectReference.of(Obj(metadata=meta), resource=CONFIGMAPS) == ref  # a LIST item: no kind
    with pytest.raises(ValueError):
        ObjectReference.of(Obj(metadata=meta))
    assert ObjectReference.of({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}}).to_dict() == {
        "apiVersion": "v1",
        "kind": "Node",
        "name": "n1",
    }
