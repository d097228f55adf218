"""The protocol and the fan-out without a cluster: codecs, selectors, the ring's resume rules, lagging."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from dorgu.domain import protocol as p
from webhook.ws.hub import Connection, Filter, HubSettings, Ring, Subscription, Topic, make_change


def test_envelope_round_trips_in_both_framings_and_keeps_original_keys() -> None:
    for mp in (False, True):
        c = p.Codec(msgpack=mp)
        msg = p.Error(request_id="r1", topic="cluster", payload=p.ErrorBody(code="not_found", message="x"),
                      timestamp=p.rfc3339_now())  # fmt: skip
        back = c.decode(c.encode(msg), binary=mp)
        assert isinstance(back, p.Error) and back.request_id == "r1"
        assert back.payload == {"code": "not_found", "message": "x"}
    wire = msgspec.json.decode(p.Codec(msgpack=False).encode(p.Response(topic="personas", request_id="r")))
    assert wire == {"type": "response", "topic": "personas", "requestId": "r"}


def test_rfc3339_now_trims_trailing_zeros() -> None:
    assert p.rfc3339_now(1_739_612_400_012_340_000) == "2025-02-15T09:40:00.01234Z"
    assert p.rfc3339_now(1_739_612_400_000_000_000) == "2025-02-15T09:40:00Z"


@pytest.mark.parametrize(
    ("sel", "labels", "ok"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("tier in (critical, standard)", {"tier": "standard"}, True),
        ("tier notin (critical)", {"tier": "critical"}, False),
        ("!x,y", {"y": ""}, True),
        ("!x", {"x": "1"}, False),
        ("app.kubernetes.io/name=shop,team=a", {"app.kubernetes.io/name": "shop", "team": "a"}, True),
    ],
)
def test_selector(sel: str, labels: dict[str, str], ok: bool) -> None:
    assert p.Selector(sel).matches(labels) is ok


def test_selector_rejects_garbage() -> None:
    with pytest.raises(ValueError):
        p.Selector("a=b,(")


def _change(rv: str, ns: str = "a", name: str = "x") -> object:
    return make_change(rv=rv, namespace=ns, name=name, labels=None, payload={"rv": rv, "name": name})


def test_ring_resume_rules() -> None:
    r = Ring(3)
    r.base_rv = "10"
    for rv in ("11", "12", "13"):
        r.append(_change(rv))  # type: ignore[arg-type]
    assert [c.rv for c in r.after("10") or []] == ["11", "12", "13"]
    assert [c.rv for c in r.after("12") or []] == ["13"]
    assert r.after("13") == []
    r.append(_change("14"))  # type: ignore[arg-type]
    assert r.base_rv == "11" and r.after("10") is None  # evicted: the caller must snapshot
    assert r.after("") is None and r.after("999") is None


def test_slow_consumer_gets_lagging_and_a_snapshot_not_silence() -> None:
    async def main() -> None:
        sent: list[bytes] = []
        state = {"a/x": {"name": "x", "namespace": "a"}}
        topic = Topic("personas", settings=HubSettings(queue_size=4), server_id="s1",
                      snapshot_source=lambda f: list(state.items()), current_rv=lambda: "1")  # fmt: skip
        gate = asyncio.Event()

        async def slow_send(frame: bytes) -> None:
            await gate.wait()
            sent.append(frame)

        conn = Connection(codec=p.Codec(msgpack=False), send=slow_send, settings=HubSettings(queue_size=4))
        fast_frames: list[bytes] = []

        async def fast_send(frame: bytes) -> None:
            fast_frames.append(frame)

        fast = Connection(codec=p.Codec(msgpack=False), send=fast_send, settings=HubSettings(queue_size=4))
        tasks = [asyncio.create_task(conn.writer()), asyncio.create_task(fast.writer())]
        for c in (conn, fast):
            sub = Subscription(c, topic, Filter())
            c.subs["personas"] = sub
            topic.subscribe(sub, resume_rv=None, server_id=None)
        for i in range(20):
            topic.publish(_change(str(i + 2)))  # type: ignore[arg-type]
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert len(fast_frames) == 20  # the slow one did not hold the fast one back
        assert conn.resyncs >= 1
        gate.set()
        await asyncio.sleep(0.05)
        decoded = [msgspec.json.decode(f) for f in sent]
        bodies = [(d["type"], d.get("payload") or {}) for d in decoded]
        kinds = [(t, b.get("code") or b.get("eventType")) for t, b in bodies]
        assert ("error", "lagging") in kinds and ("event", "snapshot") in kinds
        for t in tasks:
            t.cancel()

    asyncio.run(main())


def test_the_byte_cap_resyncs_before_the_frame_count_does_and_brakes_the_reader() -> None:
    """Issue 17, item 3: big frames overflow ``max_buffered_bytes`` long before ``queue_size``; the queue
    then holds the resync only, and :meth:`Connection.room` waits until the writer drained it."""

    async def main() -> None:
        cap = 64 * 1024
        settings = HubSettings(queue_size=1000, max_buffered_bytes=cap)
        topic = Topic("personas", settings=settings, server_id="s1",
                      snapshot_source=lambda f: [], current_rv=lambda: "1")  # fmt: skip
        gate = asyncio.Event()

        async def send(frame: bytes) -> None:
            await gate.wait()

        conn = Connection(codec=p.Codec(msgpack=False), send=send, settings=settings)
        writer = asyncio.create_task(conn.writer())
        sub = Subscription(conn, topic, Filter())
        conn.subs["personas"] = sub
        topic.subscribe(sub, resume_rv=None, server_id=None)
        for i in range(100):
            big = make_change(
                rv=str(i + 2), namespace="a", name="x", labels=None, payload={"pad": "x" * 4000}
            )
            topic.publish(big)
            assert conn.buffered() <= cap
        assert conn.resyncs >= 1 and conn.queued() < 100
        conn.push_frame(b"r" * cap)  # a reply takes the queue to the cap: the reader must wait
        room = asyncio.create_task(conn.room())
        await asyncio.sleep(0.01)
        assert not room.done()
        gate.set()
        await asyncio.wait_for(room, 10)
        assert conn.buffered() < cap
        writer.cancel()

    asyncio.run(main())


def test_filtered_replay_after_resume() -> None:
    async def main() -> None:
        topic = Topic("personas", settings=HubSettings(), server_id="s1",
                      snapshot_source=lambda f: [], current_rv=lambda: "1")  # fmt: skip
        for i, ns in enumerate(("a", "b", "a", "b")):
            topic.publish(_change(str(i + 2), ns=ns))  # type: ignore[arg-type]
        frames: list[bytes] = []

        async def send(frame: bytes) -> None:
            frames.append(frame)

        conn = Connection(codec=p.Codec(msgpack=False), send=send, settings=HubSettings())
        task = asyncio.create_task(conn.writer())
        sub = Subscription(conn, topic, Filter(namespace="a"))
        assert topic.subscribe(sub, resume_rv="2", server_id="s1") == "replay"
        await asyncio.sleep(0.01)
        assert [msgspec.json.decode(f)["payload"]["rv"] for f in frames] == ["4"]
        sub2 = Subscription(conn, topic, Filter(namespace="a"))
        assert topic.subscribe(sub2, resume_rv="2", server_id="other") == "snapshot"
        task.cancel()

    asyncio.run(main())
