"""Issue 17, item 1 (the CLI's side): a bearer token never goes over plain ``ws://`` to an address that is
not loopback unless the user says so (``--insecure-cleartext``).

A TCP listener on this machine's own non-loopback address stands in for a remote operator; it records what
a client sends (the handshake with its ``Authorization`` header) and hangs up.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli.conftest import Result

TOKEN = "cleartext-test-token-0123456789"


def _own_address() -> str | None:
    """This machine's address on its default route (no packet is sent), when it is not loopback."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: routing only
        except OSError:
            return None
        ip = str(s.getsockname()[0])
    return None if ip.startswith("127.") else ip


class Recorder:
    """Accepts connections on ``host``, keeps the bytes of each request head, closes."""

    def __init__(self, host: str) -> None:
        self.sock = socket.socket()
        self.sock.bind((host, 0))
        self.sock.listen()
        self.url = f"ws://{host}:{self.sock.getsockname()[1]}/ws"
        self.received: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(4096)
                        if not chunk:
                            break
                        data += chunk
                except OSError:
                    pass
                self.received.append(data)

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def remote() -> Iterator[Recorder]:
    ip = _own_address()
    if ip is None:
        pytest.skip("this machine has no non-loopback address to stand in for a remote operator")
    r = Recorder(ip)
    try:
        yield r
    finally:
        r.close()


def test_a_token_is_not_sent_over_cleartext_to_another_host(
    run_cli: Callable[..., Result], remote: Recorder
) -> None:
    r = run_cli("persona", "list", f"--operator-url={remote.url}", f"--token={TOKEN}")
    assert r.code == 2, r.err
    assert f"refusing to send a bearer token in cleartext to {remote.url}" in r.err
    assert "--insecure-cleartext" in r.err and TOKEN not in r.err
    assert remote.received == [], "the CLI connected"


def test_insecure_cleartext_sends_it_when_told(run_cli: Callable[..., Result], remote: Recorder) -> None:
    r = run_cli("persona", "list", f"--operator-url={remote.url}", f"--token={TOKEN}", "--insecure-cleartext")
    assert r.code == 1  # the stand-in hangs up: "cannot connect"
    assert any(f"Authorization: Bearer {TOKEN}".encode() in head for head in remote.received)


def test_loopback_and_tokenless_cleartext_are_allowed(
    run_cli: Callable[..., Result], remote: Recorder
) -> None:
    local = Recorder("127.0.0.1")
    try:
        r = run_cli("persona", "list", f"--operator-url={local.url}", f"--token={TOKEN}")
        assert r.code == 1 and any(TOKEN.encode() in head for head in local.received)
    finally:
        local.close()
    r = run_cli("persona", "list", f"--operator-url={remote.url}")  # no token at all: nothing to protect
    assert r.code == 1 and remote.received and b"Authorization" not in remote.received[0]


def test_the_operator_ca_flag_names_a_file(run_cli: Callable[..., Result], cli_env: Path) -> None:
    r = run_cli(
        "persona", "list", "--operator-url=wss://127.0.0.1:1/ws", f"--operator-ca={cli_env / 'none.crt'}"
    )
    assert r.code == 2 and "--operator-ca: no CA bundle at" in r.err
