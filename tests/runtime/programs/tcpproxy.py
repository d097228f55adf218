"""A TCP proxy for fault tests: passes bytes through, or freezes (sockets open, no bytes) or cuts streams.

It is not a fake server — the real API server is behind it; the proxy only makes network faults happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading


class TcpProxy:
    """Runs its own event loop in a thread, so synchronous tests can drive it."""

    def __init__(self, *, target_port: int, host: str = "127.0.0.1") -> None:
        self.target = (host, target_port)
        self.loop = asyncio.new_event_loop()
        self._frozen = asyncio.Event()  # set = frozen
        self._drop = False  # with _frozen: drop bytes instead of holding them
        self._conns: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        with socket.socket() as s:
            s.bind((host, 0))
            self.port = int(s.getsockname()[1])
        self.host = host
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.connections_made = 0

    @property
    def url(self) -> str:
        return f"https://{self.host}:{self.port}"

    def start(self) -> TcpProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)
        return self

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port, reuse_address=True)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    async def _stop(self) -> None:
        if self._server:
            self._server.close()
        await self._cut()

    def blackhole(self) -> None:
        """Drop every byte in both directions; sockets stay open and new connections are accepted (then
        starved). Unlike :meth:`freeze`, nothing is delivered later: what happened meanwhile is lost."""

        def _set() -> None:
            self._drop = True
            self._frozen.set()

        self.loop.call_soon_threadsafe(_set)

    def restore(self) -> None:
        """End a :meth:`blackhole`: cut every connection (their streams are corrupt) and pass bytes again."""

        async def _restore() -> None:
            self._drop = False
            self._frozen.clear()
            await self._cut()

        asyncio.run_coroutine_threadsafe(_restore(), self.loop).result(5)

    def freeze(self) -> None:
        """Stop forwarding bytes in both directions; every socket stays open (a silently dead network)."""
        self.loop.call_soon_threadsafe(self._frozen.set)

    def thaw(self) -> None:
        self.loop.call_soon_threadsafe(self._frozen.clear)

    def block(self) -> None:
        """Cut every connection and stop listening: reconnects are refused until :meth:`unblock`."""
        asyncio.run_coroutine_threadsafe(self._block(), self.loop).result(5)

    async def _block(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        await self._cut()

    def unblock(self) -> None:
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(5)

    def cut(self) -> None:
        """Close every proxied connection (the client sees its streams break)."""
        asyncio.run_coroutine_threadsafe(self._cut(), self.loop).result(5)

    async def _cut(self) -> None:
        for a, b in list(self._conns):
            for w in (a, b):
                with contextlib.suppress(Exception):
                    w.transport.abort()
        self._conns.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections_made += 1
        try:
            up_r, up_w = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        pair = (writer, up_w)
        self._conns.add(pair)
        pipes = [
            asyncio.ensure_future(self._pipe(reader, up_w)),
            asyncio.ensure_future(self._pipe(up_r, writer)),
        ]
        # When either side ends (after any freeze is over), drop the whole connection, as a dead peer would.
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for p in pipes:
            p.cancel()
        self._conns.discard(pair)
        for w in pair:
            with contextlib.suppress(Exception):
                w.transport.abort()

    async def _pipe(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        while True:
            try:
                data = await r.read(65536)
            except OSError:
                data = b""  # a reset peer is an end of stream, held like any other while frozen
            if data and self._drop and self._frozen.is_set():
                continue  # blackholed: these bytes are lost
            # Hold bytes *and* EOF while frozen: the far side learns nothing, not even that the peer closed.
            while self._frozen.is_set():
                await asyncio.sleep(0.05)
                if w.is_closing():
                    return
            if not data:
                return
            w.write(data)
            await w.drain()
