"""The supervisor: one OS process per component, kept running, stopped together; health and metrics.

``dorgu operator`` hands the supervisor its components (:class:`~dorgu.runtime.component.ComponentSpec`)
and the resolved :class:`~dorgu.runtime.config.ConnectionSettings`; the supervisor knows nothing else of
them. It:

* starts each component as a fork of its fork server (:mod:`dorgu.runtime.forkserver`: forked before the
  event loop, it has imported the components' modules once), or — without one, or when it fails — spawns
  ``python -m dorgu.runtime.child`` (fork + exec: a fresh interpreter);
* restarts a child that exits when not asked to, after an exponential backoff that resets once a child
  has stayed up ``restart_backoff_reset_s``; a child that exits with ``EXIT_RESTART`` (it asked for a fresh
  process) is restarted at once and its backoff is left as it was;
* on SIGTERM or SIGINT sends SIGTERM to every child, waits ``shutdown_timeout_s`` in total, SIGKILLs what
  is left and returns (a second Ctrl-C SIGKILLs at once). Children set ``PR_SET_PDEATHSIG``, so none
  outlives a supervisor that is SIGKILLed itself;
* serves ``/healthz``, ``/readyz`` (every child running and reporting ready) and ``/metrics``: its own
  metrics and its children's, each child asked on its Unix socket at scrape time and the answers combined
  (:mod:`dorgu.runtime.procmetrics`: counters summed, gauges by their mode, exited children still counted).

Its timing — uptimes, restart delays, the shutdown deadline, the repeated-Ctrl-C window — is on the injected
:class:`~dorgu.runtime.clock.Clock` (the real one in production), like the rest of the runtime.

``prometheus_client`` is imported only inside functions: a supervisor that serves no scrape never loads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import msgspec

from dorgu.runtime.child import EXIT_RESTART, SUPERVISOR_PID_ENV, ChildBootstrap
from dorgu.runtime.clock import Clock, RealClock
from dorgu.runtime.component import ComponentSpec
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.forkserver import ForkedChild, ForkServer, become_subreaper
from dorgu.runtime.procmetrics import Snapshot, fold, retire

if TYPE_CHECKING:
    from aiohttp import web

__all__ = ["RestartBackoff", "Supervisor", "SupervisorSettings", "run_supervisor"]

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
"""prometheus_client's multiprocess mode: removed from the children's environment (they keep their metrics
in memory and answer on a socket instead)."""
_REPEAT_SIGNAL_MIN_S = 0.5

log = logging.getLogger("dorgu.runtime.supervisor")


@dataclass(frozen=True, kw_only=True)
class SupervisorSettings:
    """How the supervisor runs its children and serves health and metrics."""

    metrics_host: str = "0.0.0.0"
    """Address of the health and metrics HTTP server (``/healthz``, ``/readyz``, ``/metrics``)."""
    metrics_port: int = 8080
    """Port of the health and metrics HTTP server; 0 picks a free one (logged; :attr:`Supervisor.port`)."""
    shutdown_timeout_s: float = 10.0
    """After SIGTERM/SIGINT, how long all children together get to stop before they are SIGKILLed."""
    restart_backoff_initial_s: float = 0.5
    """Delay before restarting a child that exited unexpectedly; doubled on each further exit."""
    restart_backoff_max_s: float = 30.0
    """The most the restart delay grows to."""
    restart_backoff_reset_s: float = 60.0
    """A child that stayed up this long is restarted after the initial delay again."""
    identity: str = field(default_factory=socket.gethostname)
    """This replica's identity handed to every child (pod name or hostname), e.g. for leader election."""
    metrics_dir: Path | None = None
    """Directory of the children's metrics sockets (``<pid>.sock``); stale ``*.sock`` files are removed at
    start. None: a fresh temporary directory, removed when the supervisor returns."""
    metrics_scrape_timeout_s: float = 5.0
    """How long a scrape waits for each child's snapshot; a child that does not answer is left out."""
    log_level: str = "info"
    """Log level of the supervisor (set by :func:`run_supervisor`) and of every child."""
    fork_server: bool = True
    """:func:`run_supervisor` starts children as forks of a fork server that imported their modules once
    (about 0.4 CPU-seconds and as long in start-up time saved per child start); False: each child is a fresh
    interpreter."""


class RestartBackoff:
    """The delay before each restart of one component: doubling from ``initial_s`` up to ``max_s``.

    The rule: the first restart waits ``initial_s``, each further one twice the last (at most ``max_s``),
    except that a process which stayed up ``reset_s`` or longer earned a fresh start at ``initial_s``.
    """

    def __init__(self, *, initial_s: float, max_s: float, reset_s: float) -> None:
        self._initial = initial_s
        self._max = max_s
        self._reset = reset_s
        self._next = initial_s

    def after_exit(self, *, uptime_s: float) -> float:
        """The delay before restarting a process that ran for ``uptime_s`` and exited."""
        if uptime_s >= self._reset:
            self._next = self._initial
        delay = min(self._next, self._max)
        self._next = min(delay * 2, self._max)
        return delay


@dataclass(kw_only=True)
class _Slot:
    """The supervisor's view of one component and its current process."""

    spec: ComponentSpec
    proc: asyncio.subprocess.Process | ForkedChild | None = None
    """The running child, None between runs."""
    ready: bool = False
    """What the running child last reported (reset to False whenever a new process starts)."""
    restarts: int = 0
    """How many times the child was restarted after an unexpected exit."""
    state: str = "starting"
    """``starting``, ``running``, ``backoff`` or ``stopping``: for ``/readyz`` and logs."""


class Supervisor:
    """Runs each component in a child process of its own until SIGTERM or SIGINT."""

    def __init__(
        self,
        *,
        components: Sequence[ComponentSpec],
        connection: ConnectionSettings,
        settings: SupervisorSettings | None = None,
        background: Sequence[Callable[[], Awaitable[None]]] = (),
        clock: Clock | None = None,
        fork_server: ForkServer | None = None,
    ) -> None:
        """``background``: coroutines the supervisor runs for its whole life (e.g. refreshing an exec
        plugin's token into the file children read), cancelled when it stops. ``clock``: the time its
        delays and deadlines are measured on (default: the real clock). ``fork_server``: where children are
        forked (:func:`run_supervisor` starts one before the event loop); None: each is spawned."""
        names = [c.name for c in components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names must be unique: {names}")
        self._connection = connection
        self._clock = clock or RealClock()
        self._settings = settings if settings is not None else SupervisorSettings()
        self._slots = [_Slot(spec=c) for c in components]
        self._stopping = asyncio.Event()
        self._deadline = 0.0  # the clock's monotonic time by which all children must have stopped
        self._first_signal_at = 0.0
        self._port: int | None = None
        self._metrics_dir: Path | None = None
        self._last_snapshot: dict[int, Snapshot] = {}  # live child pid -> its latest snapshot
        self._retired: Snapshot | None = None  # what exited children still count, folded into one
        self._background = list(background)
        self._fork_server = fork_server

    @property
    def port(self) -> int | None:
        """The port the HTTP server listens on, once :meth:`run` has started it."""
        return self._port

    def stop(self) -> None:
        """Begin a graceful stop (what SIGTERM does)."""
        if self._stopping.is_set():
            return
        self._deadline = self._clock.monotonic() + self._settings.shutdown_timeout_s
        for slot in self._slots:
            slot.state = "stopping"
        self._stopping.set()

    async def run(self) -> None:
        """Run until SIGTERM or SIGINT (or :meth:`stop`), then stop every child and return."""
        created_dir = self._prepare_metrics_dir()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        runner: web.AppRunner | None = None
        background = [asyncio.create_task(fn(), name="supervisor-background") for fn in self._background]
        try:
            # The HTTP server first (controller-runtime's order): probes answer while children start.
            runner = await self._start_http()
            log.info(
                "supervisor started",
                extra={"components": [s.spec.name for s in self._slots], "pid": os.getpid()},
            )
            async with asyncio.TaskGroup() as tg:
                for slot in self._slots:
                    tg.create_task(self._keep_running(slot), name=f"keep:{slot.spec.name}")
            log.info("supervisor stopped")
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if runner is not None:
                await runner.cleanup()
            if created_dir and self._metrics_dir is not None:
                shutil.rmtree(self._metrics_dir, ignore_errors=True)

    # -- signals -------------------------------------------------------------------------------------

    def _on_signal(self, sig: signal.Signals) -> None:
        if not self._stopping.is_set():
            log.info(
                "%s: stopping all components",
                sig.name,
                extra={"timeout_s": self._settings.shutdown_timeout_s},
            )
            self._first_signal_at = self._clock.monotonic()
            self.stop()
            return
        # A second Ctrl-C is an impatient operator: kill at once instead of waiting for the timeout. The
        # rule ignores repeated SIGTERMs and a signal arriving twice at once (``timeout`` and process-group
        # kills deliver one to the process and one to its group): those are not a person asking again.
        if sig is signal.SIGINT and self._clock.monotonic() - self._first_signal_at >= _REPEAT_SIGNAL_MIN_S:
            log.warning("%s again: killing all components now", sig.name)
            for slot in self._slots:
                _kill(slot.proc)

    # -- metrics directory ---------------------------------------------------------------------------

    def _prepare_metrics_dir(self) -> bool:
        """Create the directory of the children's metrics sockets; True if the directory is ours."""
        configured = self._settings.metrics_dir
        if configured is None:
            self._metrics_dir = Path(tempfile.mkdtemp(prefix="dorgu-metrics-"))
        else:
            self._metrics_dir = configured
            self._metrics_dir.mkdir(parents=True, exist_ok=True)
            # Wipe what earlier runs left, but only sockets: a mistaken setting (``/tmp``) must not cost
            # anything else.
            for stale in self._metrics_dir.glob("*.sock"):
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        return configured is None

    def _socket_of(self, pid: int) -> str:
        assert self._metrics_dir is not None
        return str(self._metrics_dir / f"{pid}.sock")

    # -- children ------------------------------------------------------------------------------------

    async def _keep_running(self, slot: _Slot) -> None:
        """Run one component until the supervisor stops, restarting its process when it exits."""
        settings = self._settings
        backoff = RestartBackoff(
            initial_s=settings.restart_backoff_initial_s,
            max_s=settings.restart_backoff_max_s,
            reset_s=settings.restart_backoff_reset_s,
        )
        try:
            while not self._stopping.is_set():
                started = self._clock.monotonic()
                returncode = await self._run_once(slot)
                if self._stopping.is_set():
                    break
                uptime = self._clock.monotonic() - started
                if returncode == EXIT_RESTART:
                    # Asked for, not a failure: a fresh process at once, the backoff left as it was.
                    log.info(
                        "component asked for a fresh process; restarting",
                        extra={"child": slot.spec.name, "uptime_s": round(uptime, 3)},
                    )
                    continue
                delay = backoff.after_exit(uptime_s=uptime)
                slot.state = "backoff"
                slot.restarts += 1
                log.warning(
                    "component exited unexpectedly: %s; restarting in %.2fs",
                    _describe_exit(returncode),
                    delay,
                    extra={
                        "child": slot.spec.name,
                        "exit_code": returncode,
                        "signal": _signal_name(returncode),
                        "uptime_s": round(uptime, 3),
                        "delay_s": delay,
                        "restarts": slot.restarts,
                    },
                )
                with contextlib.suppress(TimeoutError):
                    await self._clock.wait_for(self._stopping.wait(), timeout=delay)
        finally:
            # Whatever ends this task (a bug, cancellation), its child does not outlive it.
            _kill(slot.proc)

    async def _run_once(self, slot: _Slot) -> int | None:
        """Start the child, wait for it to exit (stopping it if the supervisor stops); its exit code."""
        slot.ready = False
        slot.state = "starting"
        read_fd, write_fd = os.pipe()  # both ends non-inheritable; pass_fds opens the write end to the child
        status_pipe = os.fdopen(read_fd, "rb", buffering=0)
        proc: asyncio.subprocess.Process | ForkedChild | None = None
        reader: asyncio.Task[None] | None = None
        try:
            try:
                proc = self._fork(slot, status_fd=write_fd)
                if proc is None:
                    proc = await self._spawn(slot, status_fd=write_fd)
            except OSError:
                log.exception("cannot start component", extra={"child": slot.spec.name})
                return None
            finally:
                os.close(write_fd)  # the child holds the only write end: EOF when it exits
            slot.proc = proc
            slot.state = "running"
            log.info("component started", extra={"child": slot.spec.name, "child_pid": proc.pid})
            reader = asyncio.create_task(self._read_status(slot, status_pipe))
            if isinstance(proc, asyncio.subprocess.Process):
                await self._send_bootstrap(proc, self._bootstrap(slot, status_fd=write_fd, pid=proc.pid))

            exited = asyncio.create_task(proc.wait())
            stopping = asyncio.create_task(self._stopping.wait())
            try:
                await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
            if not exited.done():
                await self._stop_child(slot, proc)
            return await exited
        finally:
            if reader is not None:
                # The child's last lines (its final metrics) arrive just before EOF: read them first.
                if proc is not None and proc.returncode is not None:
                    await asyncio.wait({reader}, timeout=2.0)
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader
            status_pipe.close()
            slot.ready = False
            if proc is not None:
                if proc.returncode is None:  # only when cancelled mid-run
                    _kill(proc)
                else:
                    self._mark_dead(proc.pid)
            slot.proc = None

    def _fork(self, slot: _Slot, *, status_fd: int) -> ForkedChild | None:
        """The child as a fork of the fork server; None without a usable one (it is given up on its first
        failure: from then on children are spawned)."""
        if self._fork_server is None:
            return None
        # The child's pid is not known before the fork: it names its metrics socket after itself, in the
        # directory of the path given here (see ``forked_main``).
        boot = self._bootstrap(slot, status_fd=status_fd, pid=0)
        try:
            pid = self._fork_server.spawn(
                msgspec.msgpack.encode(boot), status_fd=status_fd, name=slot.spec.name
            )
            return ForkedChild(pid)
        except OSError as e:
            log.warning("%s; spawning children from now on", e, extra={"child": slot.spec.name})
            self._fork_server.close()
            self._fork_server = None
            return None

    async def _spawn(self, slot: _Slot, *, status_fd: int) -> asyncio.subprocess.Process:
        env = dict(os.environ)
        env.pop(MULTIPROC_ENV, None)
        env[SUPERVISOR_PID_ENV] = str(os.getpid())
        # Spawned from the event loop's thread, which lives as long as the supervisor: the children's
        # PR_SET_PDEATHSIG fires when the *thread* that forked them ends.
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "dorgu.runtime.child", slot.spec.name,
            stdin=asyncio.subprocess.PIPE, pass_fds=(status_fd,), env=env,
        )  # fmt: skip

    def _bootstrap(self, slot: _Slot, *, status_fd: int, pid: int) -> ChildBootstrap:
        return ChildBootstrap(
            name=slot.spec.name,
            target=slot.spec.target,
            options=slot.spec.options,
            connection=self._connection,
            identity=self._settings.identity,
            status_fd=status_fd,
            metrics_socket=self._socket_of(pid),
            log_level=self._settings.log_level,
            # The child cancels its target a little before the supervisor's SIGKILL, so that the target's
            # cleanup (finally blocks, releasing a lease) gets a chance to run.
            stop_grace_s=self._settings.shutdown_timeout_s * 0.8,
        )

    async def _send_bootstrap(self, proc: asyncio.subprocess.Process, boot: ChildBootstrap) -> None:
        assert proc.stdin is not None
        try:
            proc.stdin.write(msgspec.msgpack.encode(boot))
            await proc.stdin.drain()
        except (BrokenPipeError, ConnectionResetError):
            pass  # it died before reading; the exit is reported like any other
        finally:
            proc.stdin.close()

    async def _read_status(self, slot: _Slot, pipe: BinaryIO) -> None:
        """Apply the child's JSON-line status messages to its slot until the pipe closes."""
        loop = asyncio.get_running_loop()
        stream = asyncio.StreamReader()
        transport, _ = await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stream), pipe)
        try:
            while line := await stream.readline():
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning(
                        "bad status line from component: %r", line[:200], extra={"child": slot.spec.name}
                    )
                    continue
                if isinstance(message, dict) and "metrics" in message and slot.proc is not None:
                    # The child's final snapshot, sent on a clean exit: it counts once the child is gone.
                    with contextlib.suppress(msgspec.ValidationError):
                        self._last_snapshot[slot.proc.pid] = msgspec.convert(message["metrics"], Snapshot)
                    continue
                if isinstance(message, dict) and isinstance(message.get("ready"), bool):
                    if message["ready"] != slot.ready:
                        log.info("component ready" if message["ready"] else "component not ready",
                                 extra={"child": slot.spec.name})  # fmt: skip
                    slot.ready = message["ready"]
        finally:
            transport.close()

    async def _stop_child(self, slot: _Slot, proc: asyncio.subprocess.Process | ForkedChild) -> None:
        """SIGTERM, then SIGKILL once the supervisor's shutdown deadline has passed."""
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            left = max(0.0, self._deadline - self._clock.monotonic())
            await self._clock.wait_for(proc.wait(), timeout=left)
        except TimeoutError:
            log.warning(
                "component did not stop within the shutdown timeout; killing it",
                extra={"child": slot.spec.name, "child_pid": proc.pid},
            )
            _kill(proc)
            await proc.wait()
        log.info(
            "component stopped: %s",
            _describe_exit(proc.returncode),
            extra={"child": slot.spec.name, "exit_code": proc.returncode},
        )

    def _mark_dead(self, pid: int) -> None:
        # Its counters stay counted (as of its last snapshot); its live gauges (livesum, livemax, ...) go.
        last = self._last_snapshot.pop(pid, None)
        if last is not None:
            kept = retire(last)
            self._retired = kept if self._retired is None else fold([self._retired, kept])
        with contextlib.suppress(OSError):
            os.unlink(self._socket_of(pid))

    # -- HTTP ----------------------------------------------------------------------------------------

    async def _start_http(self) -> web.AppRunner:
        from aiohttp import web

        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._settings.metrics_host, self._settings.metrics_port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._port = runner.addresses[0][1]
        log.info(
            "serving health and metrics",
            extra={"host": self._settings.metrics_host, "port": self._port},
        )
        return runner

    async def _healthz(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        # The supervisor answers: it is alive. Components' health is readiness' business.
        return web.Response(text="ok")

    async def _readyz(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        lines = []
        for slot in self._slots:
            running = slot.proc is not None and slot.proc.returncode is None and slot.state == "running"
            if running and slot.ready:
                lines.append(f"[+]{slot.spec.name} ready")
            elif running:
                lines.append(f"[-]{slot.spec.name} not ready: running, has not reported ready")
            else:
                lines.append(f"[-]{slot.spec.name} not ready: {slot.state}")
        ok = all(line.startswith("[+]") for line in lines) and not self._stopping.is_set()
        if self._stopping.is_set():
            lines.append("supervisor is shutting down")
        lines.append("readyz check passed" if ok else "readyz check failed")
        return web.Response(text="\n".join(lines) + "\n", status=200 if ok else 503)

    async def _metrics(self, _request: web.Request) -> web.Response:
        from aiohttp import web

        from dorgu.runtime.procmetrics import fetch

        procs = [slot.proc for slot in self._slots if slot.proc is not None and slot.proc.returncode is None]
        timeout = self._settings.metrics_scrape_timeout_s
        answers = await asyncio.gather(*(fetch(self._socket_of(p.pid), timeout_s=timeout) for p in procs))
        live: list[Snapshot] = []
        for proc, snap in zip(procs, answers, strict=True):
            if snap is None:
                snap = self._last_snapshot.get(proc.pid)  # not answering now: its last answer
            elif proc.returncode is None:
                self._last_snapshot[proc.pid] = snap
            if snap is not None:
                live.append(snap)
        own = self._own_snapshot()
        snapshots = [own, *([self._retired] if self._retired else []), *live]
        body, content_type = await asyncio.to_thread(_render, snapshots)
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _own_snapshot(self) -> Snapshot:
        """The supervisor's own metrics: plain counts on the slots, made metrics only when scraped."""
        from dorgu.runtime.procmetrics import Family

        restarts = [("dorgu_component_restarts_total", {"component": s.spec.name}, float(s.restarts))
                    for s in self._slots]  # fmt: skip
        return Snapshot(os.getpid(), [Family(
            "dorgu_component_restarts", "counter",
            "Times a component's process was restarted after an unexpected exit", "", restarts,
        )])  # fmt: skip


def _render(snapshots: list[Snapshot]) -> tuple[bytes, str]:
    """The snapshots combined, in the text exposition format."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

    from dorgu.runtime.procmetrics import combine

    class _Combined:
        def collect(self) -> Any:
            return combine(snapshots)

    registry = CollectorRegistry()
    registry.register(_Combined())  # type: ignore[arg-type]
    return generate_latest(registry), CONTENT_TYPE_LATEST


def _kill(proc: asyncio.subprocess.Process | ForkedChild | None) -> None:
    if proc is not None and proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()


def _signal_name(returncode: int | None) -> str | None:
    if returncode is None or returncode >= 0:
        return None
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def _describe_exit(returncode: int | None) -> str:
    if returncode is None:
        return "could not be started"
    if returncode < 0:
        return f"killed by {_signal_name(returncode)}"
    return f"exit code {returncode}"


def run_supervisor(
    components: Sequence[ComponentSpec],
    connection: ConnectionSettings,
    settings: SupervisorSettings | None = None,
    background: Sequence[Callable[[], Awaitable[None]]] = (),
) -> int:
    """Set up JSON logging, run a :class:`Supervisor` on uvloop until SIGTERM/SIGINT; the exit code."""
    import uvloop

    from dorgu.runtime.logs import setup_logging

    settings = settings if settings is not None else SupervisorSettings()
    setup_logging(settings.log_level, component="supervisor")
    fork_server = None
    if settings.fork_server and become_subreaper():
        # Loaded before the fork, so loaded once for the supervisor and every child: the HTTP stack the
        # supervisor serves with and the children request with. The fork server loads the rest.
        import aiohttp.web  # noqa: F401

        # (The fork server itself loads dorgu.runtime.child and prometheus_client before these.)
        modules = ["dorgu.runtime.procmetrics", "uvloop"]
        fork_server = ForkServer.start(preload=[*modules, *(c.target.partition(":")[0] for c in components)])
    try:
        supervisor = Supervisor(
            components=components,
            connection=connection,
            settings=settings,
            background=background,
            fork_server=fork_server,
        )
        uvloop.run(supervisor.run())
    except Exception:
        log.exception("supervisor failed")
        return 1
    finally:
        if fork_server is not None:
            fork_server.close()
    return 0
