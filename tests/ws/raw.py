"""A raw-socket WebSocket client for the listener tests: it does exactly what a misbehaving peer does (sends
and never reads, stops half-way, or never speaks) — what no well-behaved client library can be made to do."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import struct


def handshake_bytes(
    host: str, port: int, *, path: str = "/ws", headers: dict[str, str] | None = None
) -> bytes:
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1", f"Host: {host}:{port}", "Upgrade: websocket", "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        *(f"{k}: {v}" for k, v in (headers or {}).items()),
    ]  # fmt: skip
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def frame(payload: bytes, *, opcode: int = 0x1) -> bytes:
    """One masked, final client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def connect(
    host: str, port: int, *, rcvbuf: int | None = None, context: ssl.SSLContext | None = None
) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if rcvbuf is not None:  # before connect, so the window the peer sees is small from the start
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, rcvbuf)
    s.settimeout(30)
    s.connect((host, port))
    if context is not None:
        return context.wrap_socket(s, server_hostname=host)
    return s


def upgrade(s: socket.socket, host: str, port: int, *, headers: dict[str, str] | None = None) -> bytes:
    """Send the handshake and read the response head (up to the blank line); returns it."""
    s.sendall(handshake_bytes(host, port, headers=headers))
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def closed_by_peer(s: socket.socket) -> bool:
    """Read until the peer closes (True) or 30 s pass without it (False); whatever arrives is discarded."""
    s.settimeout(30)
    try:
        while True:
            if not s.recv(65536):
                return True
    except (ConnectionResetError, BrokenPipeError, ssl.SSLError, ssl.SSLEOFError):
        return True
    except TimeoutError:
        return False
