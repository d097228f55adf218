"""Issue 17, item 3: a WebSocket client that sends requests and never reads cannot grow the server's memory.

The server runs in this process (a real Manager against the real control plane) so the test can read the
connection's queue; the client is a raw socket (:mod:`tests.ws.raw`) that sends request after request with a
long ``requestId`` (every reply echoes it, so each reply is ~4 KiB) and never reads a byte.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import msgspec
import pytest

from dorgu.envtest import ControlPlane
from tests.ws import raw
from tests.ws.kit import InProcess, in_process
from webhook.ws.hub import HubSettings
from webhook.ws.server import WebSocketSettings

CAP = 256 * 1024
"""The server's ``max_buffered_bytes`` here: small, so a few hundred unread replies would pass it."""


def _kernel_max(name: str) -> int:
    """The largest size Linux autotunes a TCP buffer to (the third field of ``net.ipv4.tcp_rmem|wmem``)."""
    with open(f"/proc/sys/net/ipv4/{name}") as f:
        return int(f.read().split()[2])


SEND_BYTES = _kernel_max("tcp_rmem") + _kernel_max("tcp_wmem") + 16 * 1024 * 1024
"""What the client tries to send: more than every buffer between it and a server that stopped reading can
hold. The server's receive buffer autotunes up to ``tcp_rmem``'s maximum whether or not the server reads (32
MiB on some hosts), its send buffer holds up to ``tcp_wmem``'s maximum of replies (each for one request it
read), and the client's own buffers are 16 KiB; 16 MiB on top covers the cap, aiohttp's read buffer and the
rest. A fixed 24 MiB was less than the first term on such hosts, so whether it all went out depended on how
fast the autotuning grew the buffer: on the load of the machine."""
REQUEST_ID = "r" * 4000


@pytest.fixture(scope="module")
def ws_server(control_plane: ControlPlane) -> Iterator[InProcess]:
    settings = WebSocketSettings(
        host="127.0.0.1", port=0, auth="none", heartbeat_s=600.0, hub=HubSettings(max_buffered_bytes=CAP)
    )
    with in_process(control_plane, settings) as served:
        yield served


def test_a_client_that_never_reads_is_held_to_the_byte_cap(ws_server: InProcess) -> None:
    s = raw.connect("127.0.0.1", ws_server.port, rcvbuf=16 * 1024)
    try:
        assert raw.upgrade(s, "127.0.0.1", ws_server.port).startswith(b"HTTP/1.1 101"), "no upgrade"
        request = msgspec.json.encode(
            {
                "type": "request",
                "topic": "personas",
                "requestId": REQUEST_ID,
                "payload": {"namespace": "none"},
            }
        )
        one = raw.frame(request)
        s.setblocking(False)
        sent, pending = 0, b""
        last_progress = time.monotonic()
        # Send until everything went out, or the server stopped taking bytes for a while (it stopped reading).
        while sent < SEND_BYTES and time.monotonic() - last_progress < 5.0:
            if not pending:
                pending = one * 16
            try:
                n = s.send(pending)
            except (BlockingIOError, InterruptedError):
                time.sleep(0.01)
                continue
            pending = pending[n:]
            sent += n
            last_progress = time.monotonic()

        conns = ws_server.lt.call(lambda: list(ws_server.server.connections))
        assert len(conns) == 1
        conn = conns[0]
        largest_reply = 8 * 1024  # one reply echoes the 4,000-byte requestId; never near this
        assert conn.peak_bytes <= CAP + largest_reply, (
            f"{conn.peak_bytes} bytes queued for a client that never reads (cap {CAP}); {sent} bytes sent"
        )
        assert sent < SEND_BYTES, "the server read everything a client that never reads sent"
        print(f"\npeak queued for the client: {conn.peak_bytes} bytes (cap {CAP}); it sent {sent} bytes")
    finally:
        s.close()
