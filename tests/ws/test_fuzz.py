"""Fuzzed frames against the real server process: it answers every data frame and stays up."""

from __future__ import annotations

import asyncio
import json
import urllib.request

import aiohttp
import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dorgu.domain import protocol as p
from tests.ws.kit import Operator

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from([*p.TOPICS, "subscribe", "unsubscribe", "request", "event", "ping"])
        | json_values,
        "topic": st.sampled_from(p.TOPICS) | json_values,
        "requestId": st.text(max_size=10) | json_values,
        "payload": json_values,
        "timestamp": json_values,
    },
)
frames = st.one_of(
    st.binary(max_size=200).map(lambda b: ("bytes", b)),
    json_values.map(lambda v: ("json", v)),
    envelopes.map(lambda v: ("json", v)),
)


def _deep_json(depth: int, opener: str, closed: bool, enveloped: bool) -> str:
    """``depth`` levels of ``[`` or ``{"a":`` (closed or not), alone or as a request's payload."""
    closer = "]" if opener == "[" else "}"
    inner = opener * depth + (("" if opener == "[" else "0") + closer * depth if closed else "")
    if not enveloped:
        return inner
    return '{"type":"request","topic":"personas","requestId":"deep","payload":' + inner + "}"


def _deep_msgpack(depth: int, array: bool, enveloped: bool) -> bytes:
    """``depth`` levels of one-element arrays or one-key maps around nil, alone or as a request's payload."""
    inner = (b"\x91" if array else b"\x81\xa1a") * depth + b"\xc0"
    if not enveloped:
        return inner
    head = msgspec.msgpack.encode({"type": "request", "topic": "personas", "requestId": "deep"})
    return bytes([head[0] + 1]) + head[1:] + msgspec.msgpack.encode("payload") + inner  # fixmap: one more key


# Nesting from shallow to far past the decoder's recursion limit (~4 KB of ``[`` is the known crash). Every
# frame stays under the message limit: a bigger one is closed with 1009 (message too big) before decoding,
# which is a different rule from the one this test checks. Closed ``{"a":...}`` costs 6 bytes a level.
depths = st.sampled_from([10, 500, 999, 1000, 1001, 2000, 4096, 20_000, 80_000])
assert len(_deep_json(80_000, '{"a":', True, True)) < p.MAX_MESSAGE_BYTES
deep_frames = st.one_of(
    st.tuples(depths, st.sampled_from(["[", '{"a":']), st.booleans(), st.booleans()).map(
        lambda t: ("text", _deep_json(*t))
    ),
    st.tuples(depths, st.booleans(), st.booleans()).map(lambda t: ("mpbytes", _deep_msgpack(*t))),
)


def _exchange(url: str, batch: list[tuple[str, object]], *, msgpack: bool) -> list[dict]:
    async def main() -> list[dict]:
        protocols = (p.SUBPROTOCOL_MSGPACK,) if msgpack else ()
        async with aiohttp.ClientSession() as s, s.ws_connect(url, protocols=protocols) as ws:
            replies = []
            for kind, value in batch:
                if kind == "bytes":
                    await ws.send_bytes(value)  # type: ignore[arg-type]
                elif kind == "text":
                    await ws.send_str(value)  # type: ignore[arg-type]
                elif kind == "mpbytes":  # msgpack bytes: binary frames (a JSON connection reads them as JSON)
                    await ws.send_bytes(value)  # type: ignore[arg-type]
                elif msgpack:
                    await ws.send_bytes(msgspec.msgpack.encode(value))
                else:
                    await ws.send_str(json.dumps(value))
                msg = await ws.receive(timeout=10)
                assert msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY), (kind, value, msg)
                data = msgspec.msgpack.decode(msg.data) if msgpack else json.loads(msg.data)
                replies.append(data)
                # Subscriptions may be followed by a snapshot: drain anything else that is queued.
                while True:
                    try:
                        extra = await ws.receive(timeout=0.05)
                    except TimeoutError:
                        break
                    assert extra.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY)
            assert not ws.closed
            return replies

    return asyncio.run(main())


def test_fuzzed_frames_get_answers_and_the_connection_stays(operator: Operator) -> None:
    url = operator.url("open")

    @settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(frames, min_size=1, max_size=8), st.booleans())
    def check(batch: list[tuple[str, object]], msgpack: bool) -> None:
        for reply in _exchange(url, batch, msgpack=msgpack):
            assert reply["type"] in ("response", "error", "event"), reply
            if reply["type"] == "error":
                assert set(reply["payload"]) == {"code", "message"}

    check()


def test_deeply_nested_frames_get_an_error_reply_and_the_connection_stays(operator: Operator) -> None:
    url = operator.url("open")

    @settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(st.lists(deep_frames | frames, min_size=1, max_size=6), st.booleans())
    def check(batch: list[tuple[str, object]], msgpack: bool) -> None:
        for reply in _exchange(url, batch, msgpack=msgpack):
            assert reply["type"] in ("response", "error", "event"), reply
            if reply["type"] == "error":
                assert set(reply["payload"]) == {"code", "message"}

    check()
    # The known crash, exactly: ~4 KB of ``[`` in a text frame, then the same connection still answers.
    deep = [("text", "[" * 4096), ("mpbytes", _deep_msgpack(4096, True, True))]
    replies = _exchange(url, [*deep, ("json", {"type": "request", "topic": "personas", "requestId": "a"})],
                        msgpack=True)  # fmt: skip
    assert [r["payload"]["code"] for r in replies[:2]] == [p.INVALID_MESSAGE, p.INVALID_MESSAGE], replies
    assert replies[2]["requestId"] == "a", replies


def test_huge_message_closes_1009_and_server_stays_up(operator: Operator) -> None:
    url = operator.url("open")

    async def main() -> int | None:
        async with aiohttp.ClientSession() as s, s.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"type": "request", "topic": "personas", "payload": "x" * 600_000}))
            msg = await ws.receive(timeout=10)
            assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
            return ws.close_code

    assert asyncio.run(main()) == 1009
    with urllib.request.urlopen(url.replace("ws://", "http://").replace("/ws", "/health"), timeout=5) as r:
        assert r.read() == b"ok"
    assert (
        _exchange(url, [("json", {"type": "request", "topic": "personas", "requestId": "a"})], msgpack=False)[
            0
        ]["requestId"]
        == "a"
    )
