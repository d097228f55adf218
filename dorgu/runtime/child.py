"""The child bootstrap: ``python -m dorgu.runtime.child NAME`` runs one component in a fresh interpreter.

The supervisor spawns it (fork + exec, never a bare fork: uvloop and threads are not fork-safe) with:

* ``DORGU_SUPERVISOR_PID`` in the environment: the pid the child expects as its parent;
* a :class:`ChildBootstrap` (msgpack) on stdin, closed after it: the component, the connection settings
  and the number of the status pipe's write end (passed with ``pass_fds``). Stdin rather than the
  environment because the connection settings may hold credentials, and ``/proc/PID/environ`` keeps them;
* in the bootstrap, the path of a Unix socket on which the child answers with a snapshot of its metrics
  (:mod:`dorgu.runtime.procmetrics`; the supervisor asks when it is scraped). On a clean exit the child also
  sends its final snapshot on the status pipe, so what it counted is not lost.

Status flows back as JSON lines on the pipe: ``{"ready": true}`` / ``{"ready": false}`` and, last,
``{"metrics": <snapshot>}``. Exit codes:
0 after a clean stop, :data:`EXIT_TARGET_FAILED` when the target raised, :data:`EXIT_BOOTSTRAP_FAILED`
when it could not be started, :data:`EXIT_ORPHANED` when the supervisor was already gone,
:data:`EXIT_RESTART` when the target raised :class:`~dorgu.runtime.component.RestartRequested`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import importlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Mapping
from typing import Any

import msgspec

from dorgu.runtime.component import ComponentContext, ComponentTarget, RestartRequested
from dorgu.runtime.config import ConnectionSettings

__all__ = [
    "EXIT_BOOTSTRAP_FAILED",
    "EXIT_ORPHANED",
    "EXIT_RESTART",
    "EXIT_TARGET_FAILED",
    "SUPERVISOR_PID_ENV",
    "ChildBootstrap",
    "main",
]

SUPERVISOR_PID_ENV = "DORGU_SUPERVISOR_PID"
EXIT_TARGET_FAILED = 1
EXIT_BOOTSTRAP_FAILED = 2
EXIT_ORPHANED = 3
EXIT_RESTART = 75
"""The component asked for a fresh process (EX_TEMPFAIL): restarted at once, without backoff."""

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>

log = logging.getLogger("dorgu.runtime.child")


class ChildBootstrap(msgspec.Struct, kw_only=True, frozen=True):
    """Everything a child needs, sent by the supervisor on the child's stdin."""

    name: str
    """The component's name."""
    target: str
    """``"package.module:function"`` to import and run."""
    options: dict[str, Any] = {}
    """The component's settings."""
    connection: ConnectionSettings
    """How to reach the API server."""
    identity: str
    """The replica's identity."""
    status_fd: int
    """The write end of the status pipe (inherited through ``pass_fds``)."""
    metrics_socket: str | None = None
    """Where to answer the supervisor's metrics requests; None: metrics are not served."""
    log_level: str = "info"
    """The log level (the supervisor's)."""
    stop_grace_s: float = 8.0
    """After SIGTERM, how long the target may take to return before it is cancelled."""


def _set_parent_death_signal() -> None:
    """Ask the kernel to SIGKILL this process when the supervisor dies (Linux only)."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"prctl(PR_SET_PDEATHSIG): {os.strerror(err)}")


class _StatusPipe:
    """Writes status messages to the supervisor, one JSON object per line, synchronously."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        # Grandchildren (processes the target starts) must not hold the pipe open.
        os.set_inheritable(fd, False)

    def send(self, message: Mapping[str, Any]) -> None:
        data = (json.dumps(dict(message), separators=(",", ":")) + "\n").encode()
        try:
            while data:
                data = data[os.write(self._fd, data) :]
        except (BrokenPipeError, OSError) as exc:
            # The supervisor is gone or stopped reading; the parent-death signal ends us soon.
            log.debug("status pipe write failed: %s", exc)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


def _load_target(target: str) -> ComponentTarget:
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"target {target!r} is not 'package.module:function'")
    obj: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    if not callable(obj):
        raise TypeError(f"target {target!r} is not callable")
    return obj


async def _run(boot: ChildBootstrap, target: ComponentTarget, status: _StatusPipe) -> int:
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    ctx = ComponentContext(
        name=boot.name,
        connection=boot.connection,
        options=boot.options,
        identity=boot.identity,
        stopping=stopping,
        report=status.send,
    )

    def on_sigterm() -> None:
        if not stopping.is_set():
            log.info("SIGTERM: stopping")
            # A stopping component serves nothing new: it is not ready any more.
            ctx.set_ready(False)
            stopping.set()

    loop.add_signal_handler(signal.SIGTERM, on_sigterm)
    metrics_server = None
    if boot.metrics_socket:
        from dorgu.runtime import procmetrics

        metrics_server = await procmetrics.serve(boot.metrics_socket)
    task = asyncio.create_task(target(ctx), name=f"component:{boot.name}")
    stop_wait = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({task, stop_wait}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            # Asked to stop: the target has stop_grace_s to return on its own, then it is cancelled
            # (the supervisor SIGKILLs at its shutdown timeout, a little later, whatever happens here).
            done, _ = await asyncio.wait({task}, timeout=boot.stop_grace_s)
            if not done:
                log.warning("did not stop within %.1fs of SIGTERM; cancelling", boot.stop_grace_s)
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                return 0
    finally:
        stop_wait.cancel()
        if metrics_server is not None:
            metrics_server.close()
    if task.cancelled():
        log.error("target was cancelled")
        return EXIT_TARGET_FAILED
    exc = task.exception()
    if isinstance(exc, RestartRequested):
        log.info("component asks for a fresh process: %s", exc)
        return EXIT_RESTART
    if exc is not None:
        log.error("component failed", exc_info=exc)
        return EXIT_TARGET_FAILED
    if not stopping.is_set():
        log.warning("component returned without being asked to stop")
    else:
        log.info("stopped")
    return 0


GC_GEN0_THRESHOLD = 10_000
"""Allocations between young collections (CPython's default is 700). Decoding a watch event or a LIST
page allocates thousands of short-lived objects; at the default the cyclic collector runs several times per
page."""


def _tune_gc() -> None:
    """Freeze what was imported and collect the young generation less often.

    The modules, classes and constants loaded so far live as long as the process: ``gc.freeze`` moves them to
    the permanent generation, so no later collection scans them again (what remains to scan is the caches'
    objects). Reference counting still frees everything acyclic at once; only cycles wait longer.
    """
    gc.collect()
    gc.freeze()
    _, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(GC_GEN0_THRESHOLD, gen1, gen2)


def main(argv: list[str] | None = None) -> int:
    """Bootstrap one component in a fresh interpreter (``python -m dorgu.runtime.child NAME``, the
    bootstrap on stdin); returns the process's exit code."""
    # First thing: die with the supervisor. Then make sure it is still there: had it died before
    # prctl, we would already have been re-parented and the death signal would never come.
    _set_parent_death_signal()
    expected_parent = os.environ.get(SUPERVISOR_PID_ENV)
    if expected_parent is not None and os.getppid() != int(expected_parent):
        return EXIT_ORPHANED
    # Ctrl-C reaches the whole process group; the supervisor owns it and stops us with SIGTERM.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    try:
        boot = msgspec.msgpack.decode(sys.stdin.buffer.read(), type=ChildBootstrap)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        # Imported here, not at module level: the supervisor imports this module for ChildBootstrap.
        from dorgu.runtime.logs import setup_logging

        setup_logging("info", component=argv[0] if argv else None)
        log.error("bad bootstrap message on stdin: %s", exc)
        return EXIT_BOOTSTRAP_FAILED
    return _run_component(boot)


REPARENT_TIMEOUT_S = 5.0
"""How long a forked child waits to be re-parented to the supervisor before it considers itself orphaned."""


def forked_main(bootstrap: bytes, *, status_fd: int, supervisor_pid: int, name: str) -> int:
    """Bootstrap one component in a process forked by the fork server (:mod:`dorgu.runtime.forkserver`):
    the same component life as :func:`main`, without a fresh interpreter. ``status_fd`` is the status pipe
    as received here (its number differs from the supervisor's)."""
    # The intermediate process exits right after forking us; until then our parent is not the supervisor.
    # The parent-death signal is armed only once it is, and the parent checked again after (as in main).
    deadline = time.monotonic() + REPARENT_TIMEOUT_S
    while os.getppid() != supervisor_pid:
        if time.monotonic() > deadline:
            return EXIT_ORPHANED
        time.sleep(0.001)
    _set_parent_death_signal()
    if os.getppid() != supervisor_pid:
        return EXIT_ORPHANED
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.environ[SUPERVISOR_PID_ENV] = str(supervisor_pid)
    try:
        import setproctitle

        # Named like a spawned child in ps, top and /proc/PID/cmdline.
        setproctitle.setproctitle(f"{sys.executable} -m dorgu.runtime.child {name}")
    except ImportError:
        pass
    try:
        boot = msgspec.msgpack.decode(bootstrap, type=ChildBootstrap)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        from dorgu.runtime.logs import setup_logging

        setup_logging("info", component=name)
        log.error("bad bootstrap message from the fork server: %s", exc)
        return EXIT_BOOTSTRAP_FAILED
    if boot.metrics_socket:  # sent as <dir>/0.sock: the pid was not known before the fork
        boot = msgspec.structs.replace(
            boot, metrics_socket=os.path.join(os.path.dirname(boot.metrics_socket), f"{os.getpid()}.sock")
        )
    return _run_component(msgspec.structs.replace(boot, status_fd=status_fd))


def _run_component(boot: ChildBootstrap) -> int:
    from dorgu.runtime.logs import setup_logging

    setup_logging(boot.log_level, component=boot.name)
    status = _StatusPipe(boot.status_fd)
    try:
        try:
            # Before any metric exists: per-process ``*_created`` series are never served (see procmetrics).
            import prometheus_client

            prometheus_client.disable_created_metrics()
            target = _load_target(boot.target)
        except Exception:
            log.exception("cannot load target %r", boot.target)
            return EXIT_BOOTSTRAP_FAILED
        import uvloop

        _tune_gc()
        code = uvloop.run(_run(boot, target, status))
        if boot.metrics_socket:
            from dorgu.runtime import procmetrics

            status.send({"metrics": msgspec.to_builtins(procmetrics.snapshot())})
        return code
    finally:
        status.close()
        logging.shutdown()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
