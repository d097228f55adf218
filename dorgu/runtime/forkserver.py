"""The fork server: children start as forks of a process that has already imported what they run.

A fresh interpreter costs a component about 0.4 CPU-seconds and as long in wall time before its first
request (interpreter start, aiohttp, prometheus_client, the component's modules). The fork server is
forked from the supervisor before the supervisor starts its event loop, any thread or any socket; it imports
the components' modules once and then forks one child per request. A bare fork is safe here and only here:
the fork server itself never runs an event loop or a thread, so a child inherits no loop, lock or
connection — it starts its own loop exactly as a fresh interpreter would.

Rules it keeps:

* **The supervisor is every child's parent.** The fork server forks an intermediate process that forks the
  child and exits at once; the supervisor is a child subreaper (``PR_SET_CHILD_SUBREAPER``), so the
  orphaned child is re-parented to it. The supervisor waits for it, signals it and reads its exit status
  exactly as for a spawned one; the fork server never holds a child.
* **Nothing outlives the supervisor.** The fork server and every child set ``PR_SET_PDEATHSIG``; the fork
  server also exits when the supervisor closes its end of the socket.
* **A child is named like a spawned one**: its process title is ``<python> -m dorgu.runtime.child NAME``.
* **It is only a shortcut.** When the fork server cannot be used (it died, it was never started) the
  supervisor spawns ``python -m dorgu.runtime.child`` as before.

Requests and replies travel on a ``SOCK_SEQPACKET`` socket pair, one datagram each: the request is the child's
msgpack :class:`~dorgu.runtime.child.ChildBootstrap` with the status pipe's write end attached
(``SCM_RIGHTS``); the reply is the child's pid (or an error text).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Sequence

import msgspec

__all__ = ["ForkServer", "ForkedChild", "become_subreaper"]

log = logging.getLogger("dorgu.runtime.forkserver")

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_PR_SET_CHILD_SUBREAPER = 36
_MAX_REQUEST = 1 << 20


class _Reply(msgspec.Struct, frozen=True):
    pid: int = 0
    """The child's pid; 0 when it could not be forked."""
    error: str = ""
    """Why not."""


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl({option}): {os.strerror(err)}")


def become_subreaper() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux); False where that is unsupported."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    except OSError:
        return False
    return True


class ForkServer:
    """The supervisor's handle on its fork server."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self._sock = sock
        self.pid = pid
        """The fork server's own pid."""

    @classmethod
    def start(cls, *, preload: Sequence[str]) -> ForkServer | None:
        """Fork the fork server, which imports ``preload`` (module names) and waits for requests. Call it
        before the event loop exists and after :func:`become_subreaper`; None where fork servers are not
        supported (only Linux has the subreaper and parent-death signal it relies on)."""
        if not sys.platform.startswith("linux"):
            return None
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        supervisor = os.getpid()
        pid = os.fork()
        if pid == 0:  # the fork server
            code = 0
            try:
                ours.close()
                code = _serve(theirs, supervisor=supervisor, preload=preload)
            except BaseException:  # it must never return into the supervisor's code
                code = 1
            finally:
                os._exit(code)
        theirs.close()
        ours.set_inheritable(False)
        # A fork server that stops answering (killed mid-request) must not hang a start: the supervisor
        # gives up on it after this long and spawns instead.
        ours.settimeout(10.0)
        return cls(ours, pid)

    def spawn(self, bootstrap: bytes, *, status_fd: int, name: str) -> int:
        """Fork a child running ``bootstrap`` (a msgpack ``ChildBootstrap``); its pid. Blocks for the fork
        (a few milliseconds). Raises OSError when the fork server cannot do it."""
        try:
            socket.send_fds(self._sock, [msgspec.msgpack.encode([name, bootstrap])], [status_fd])
            data = self._sock.recv(4096)
        except OSError as e:
            raise OSError(f"fork server: {e.strerror or e}") from e
        if not data:
            raise ConnectionResetError("fork server: gone")
        reply = msgspec.msgpack.decode(data, type=_Reply)
        if not reply.pid:
            raise OSError(f"fork server: {reply.error}")
        return reply.pid

    def close(self) -> None:
        """Stop it (it exits when its socket closes) and reap it."""
        self._sock.close()
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(self.pid, 0)


def _serve(sock: socket.socket, *, supervisor: int, preload: Sequence[str]) -> int:
    """The fork server's life: preload, then one child per request until the socket closes."""
    _prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    if os.getppid() != supervisor:  # the supervisor died before prctl
        return 0
    # The supervisor owns Ctrl-C and SIGTERM for the whole group; this process just follows its socket.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.setproctitle(f"{sys.executable} -m dorgu.runtime.forkserver")
    import gc

    import prometheus_client

    from dorgu.runtime import child

    # As in a spawned child: before any metric exists (the preloaded modules may create some at import).
    prometheus_client.disable_created_metrics()
    for module in preload:
        with contextlib.suppress(Exception):  # the child reports it when it loads its target
            importlib.import_module(module)
    # What is loaded now lives as long as every child: the collector never scans it again in any of them.
    gc.collect()
    gc.freeze()
    while True:
        try:
            data, fds, _flags, _addr = socket.recv_fds(sock, _MAX_REQUEST, 1)
        except OSError:
            return 0
        if not data:
            return 0  # the supervisor closed its end
        try:
            name, bootstrap = msgspec.msgpack.decode(data, type=tuple[str, bytes])
            if len(fds) != 1:
                raise ValueError("expected the status pipe's fd")
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            for fd in fds:
                os.close(fd)
            sock.send(msgspec.msgpack.encode(_Reply(error=f"bad request: {e}")))
            continue
        try:
            middle = os.fork()
        except OSError as e:
            os.close(fds[0])
            sock.send(msgspec.msgpack.encode(_Reply(error=f"fork: {e}")))
            continue
        if middle == 0:  # the intermediate process: fork the child, tell its pid, exit (orphaning it)
            replied = False
            try:
                try:
                    pid = os.fork()
                except OSError as e:
                    sock.send(msgspec.msgpack.encode(_Reply(error=f"fork: {e}")))
                    replied = True
                    pid = -1
                if pid == 0:
                    sock.close()
                    os._exit(
                        child.forked_main(bootstrap, status_fd=fds[0], supervisor_pid=supervisor, name=name)
                    )
                if pid > 0:
                    sock.send(msgspec.msgpack.encode(_Reply(pid=pid)))
                    replied = True
            finally:
                # Exit status 0: a reply was sent; anything else: the fork server answers instead.
                os._exit(0 if replied else 1)
        os.close(fds[0])
        status = 1
        with contextlib.suppress(ChildProcessError):
            status = os.waitpid(middle, 0)[1]
        if status != 0:
            sock.send(msgspec.msgpack.encode(_Reply(error="the intermediate process failed")))


class ForkedChild:
    """A child the fork server forked, as the supervisor sees it: the subset of
    :class:`asyncio.subprocess.Process` the supervisor uses (``pid``, ``returncode``, ``wait``,
    ``send_signal``, ``kill``). Its exit is seen through a pidfd, and it is reaped here (the supervisor is its
    parent once it is re-parented)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd: int | None = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self, attempt: int = 0) -> None:
        if self._pidfd is not None:
            self._loop.remove_reader(self._pidfd)
        try:
            got, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            got, status = 0, 0
        if got == 0:
            # Exited before the intermediate process did: it is re-parented to us a moment later.
            if attempt < 500:
                self._loop.call_later(0.01, self._reap, attempt + 1)
                return
            status = -1
        self.returncode = os.waitstatus_to_exitcode(status) if status >= 0 else -int(signal.SIGKILL)
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        self._exited.set_result(self.returncode)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)

    def send_signal(self, sig: int) -> None:
        if self._pidfd is None:
            raise ProcessLookupError(self.pid)
        signal.pidfd_send_signal(self._pidfd, sig)  # never a recycled pid: the fd names this process

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
