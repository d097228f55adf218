"""A real Prometheus for tests: Debian's ``prometheus`` + ``promtool``, its TSDB backfilled with synthetic
series.

``ensure_binaries()`` finds both executables (installing Debian's ``prometheus`` package when they are
missing and we are root — the Makefile's ``APT_PACKAGES`` does the same for ``make test``).
:func:`cadvisor_pod` makes cAdvisor-shaped series for one pod (``container_cpu_usage_seconds_total``
counters and ``container_memory_working_set_bytes`` gauges per container, plus the ``container="POD"``
sandbox and the ``container=""`` pod-cgroup aggregate, as the kubelet exposes them).
:func:`running_prometheus` writes the series as OpenMetrics, backfills them with ``promtool tsdb
create-blocks-from openmetrics``, starts ``prometheus`` on a free loopback port with a config that
scrapes nothing, waits for ``/-/ready`` and stops it afterwards. The child gets
``PR_SET_PDEATHSIG=SIGKILL``, so even a ``kill -9`` of pytest leaves no orphan.

Backfilled blocks may be older than the (empty) head; queries must carry a ``time`` inside the data."""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

APT_PACKAGE = "prometheus"
CPU = "container_cpu_usage_seconds_total"
MEMORY = "container_memory_working_set_bytes"

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:  # in the child between fork and exec
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class PrometheusKitError(RuntimeError):
    """Prometheus could not be obtained, fed or started; the message says what failed."""


@dataclass(frozen=True)
class Binaries:
    prometheus: str
    promtool: str


def ensure_binaries() -> Binaries:
    """``prometheus`` and ``promtool`` from ``PATH``; installs Debian's ``prometheus`` package if need be."""

    def found() -> Binaries | None:
        prom, tool = shutil.which("prometheus"), shutil.which("promtool")
        return Binaries(prom, tool) if prom and tool else None

    if got := found():
        return got
    if os.geteuid() != 0:
        raise PrometheusKitError(
            "prometheus/promtool not found and not root: run "
            f"`apt-get install --no-install-recommends {APT_PACKAGE}` (or `make deps` as root)"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", APT_PACKAGE]
    with open("/tmp/dorgu-apt.lock", "w") as lock:  # one apt at a time across parallel sessions
        fcntl.flock(lock, fcntl.LOCK_EX)
        if got := found():
            return got
        r = subprocess.run(install, env=env, capture_output=True, text=True)
        if r.returncode != 0:  # stale package lists on a fresh machine
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True, text=True)
            r = subprocess.run(install, env=env, capture_output=True, text=True)
    if r.returncode != 0 or not (got := found()):
        raise PrometheusKitError(f"installing {APT_PACKAGE} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return got


# --- synthetic data ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Series:
    """One time series: metric name, labels, and ``(unix seconds, value)`` points in time order."""

    name: str
    labels: Mapping[str, str]
    points: Sequence[tuple[int, float]]


@dataclass(frozen=True)
class Usage:
    """A container's usage, one entry per minute: the CPU rate (cores) over the minute ending at that sample,
    and the working set (bytes) at it. ``cpu[0]`` is unused (the counter starts at ``cpu_start``)."""

    cpu: Sequence[float]
    memory: Sequence[float]
    cpu_start: float = 1000.0


@dataclass
class CadvisorPod:
    """The series of one pod, plus what went into them."""

    namespace: str
    pod: str
    series: list[Series] = field(default_factory=list)


def cadvisor_pod(
    namespace: str,
    pod: str,
    containers: Mapping[str, Usage],
    *,
    start: int,
    sandbox: Usage | None = None,
    cgroup_overhead: Usage | None = None,
    step_s: int = 60,
) -> CadvisorPod:
    """cAdvisor-shaped series for ``pod``: per app container, the ``POD`` sandbox (``sandbox``), and the
    ``container=""`` pod cgroup = the sum of all of them plus ``cgroup_overhead`` — the last two must be
    excluded by any per-pod query. Samples every ``step_s`` from ``start`` (unix seconds)."""
    parts = dict(containers)
    if sandbox is not None:
        parts["POD"] = sandbox
    n = {len(u.cpu) for u in parts.values()} | {len(u.memory) for u in parts.values()}
    if len(n) != 1:
        raise ValueError("all usages need the same number of minutes")
    minutes = n.pop()
    times = [start + i * step_s for i in range(minutes)]
    out = CadvisorPod(namespace, pod)
    counters: dict[str, list[float]] = {}
    for name, u in parts.items():
        c = [u.cpu_start]
        for i in range(1, minutes):
            c.append(c[-1] + u.cpu[i] * step_s)
        counters[name] = c
    cgroup_cpu = [sum(c[i] for c in counters.values()) for i in range(minutes)]
    cgroup_mem = [sum(u.memory[i] for u in parts.values()) for i in range(minutes)]
    if cgroup_overhead is not None:
        extra = [cgroup_overhead.cpu_start]
        for i in range(1, minutes):
            extra.append(extra[-1] + cgroup_overhead.cpu[i] * step_s)
        cgroup_cpu = [a + b for a, b in zip(cgroup_cpu, extra, strict=True)]
        cgroup_mem = [a + b for a, b in zip(cgroup_mem, cgroup_overhead.memory, strict=True)]
    for name, u in parts.items():
        labels = {"namespace": namespace, "pod": pod, "container": name}
        out.series.append(Series(CPU, labels, list(zip(times, counters[name], strict=True))))
        out.series.append(Series(MEMORY, labels, list(zip(times, u.memory, strict=True))))
    agg = {"namespace": namespace, "pod": pod, "container": ""}
    out.series.append(Series(CPU, agg, list(zip(times, cgroup_cpu, strict=True))))
    out.series.append(Series(MEMORY, agg, list(zip(times, cgroup_mem, strict=True))))
    return out


def _om_label_value(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def write_openmetrics(path: Path, series: Iterable[Series]) -> None:
    """Write ``series`` as an OpenMetrics text file (families not interleaved, each series in time order)."""
    by_name: dict[str, list[Series]] = {}
    for s in series:
        by_name.setdefault(s.name, []).append(s)
    lines: list[str] = []
    for name, group in by_name.items():
        if name.endswith("_total"):
            lines.append(f"# TYPE {name.removesuffix('_total')} counter")
        else:
            lines.append(f"# TYPE {name} gauge")
        for s in group:
            labels = ",".join(f'{k}="{_om_label_value(v)}"' for k, v in s.labels.items())
            lines.extend(f"{name}{{{labels}}} {value!r} {ts}" for ts, value in s.points)
    lines.append("# EOF")
    path.write_text("\n".join(lines) + "\n")


def backfill(binaries: Binaries, openmetrics: Path, data_dir: Path) -> None:
    """``promtool tsdb create-blocks-from openmetrics FILE DATA_DIR``."""
    data_dir.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [binaries.promtool, "tsdb", "create-blocks-from", "openmetrics", str(openmetrics), str(data_dir)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    if r.returncode != 0:
        raise PrometheusKitError(f"promtool backfill failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")


# --- the server --------------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class PrometheusServer:
    """One ``prometheus`` process on ``127.0.0.1:<port>`` over ``data_dir``; :meth:`stop` and :meth:`start`
    again (same port, same data) to simulate an outage."""

    def __init__(
        self, binaries: Binaries, data_dir: Path, *, port: int | None = None, config: str | None = None
    ) -> None:
        self.binaries = binaries
        self.data_dir = data_dir
        self.port = port or free_port()
        self.config_text = config or "global:\n  scrape_interval: 1m\nscrape_configs: []\n"
        """prometheus.yml (default: scrape nothing); relative paths in it are relative to its directory."""
        self.config = data_dir.parent / "prometheus.yml"
        self.log_path = data_dir.parent / "prometheus.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, *, timeout_s: float = 60.0) -> None:
        if self.running:
            return
        self.config.write_text(self.config_text)
        args = [
            self.binaries.prometheus,
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data_dir}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--storage.tsdb.retention.time=30d",
            "--log.level=warn",
        ]
        with open(self.log_path, "ab") as logf:
            self._proc = subprocess.Popen(
                args,
                stdin=subprocess.DEVNULL,
                stdout=logf,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent,
            )
        deadline = time.monotonic() + timeout_s
        while True:
            if self._proc.poll() is not None:
                raise PrometheusKitError(
                    f"prometheus exited with {self._proc.returncode}:\n{self._log_tail()}"
                )
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise PrometheusKitError(f"prometheus not ready after {timeout_s:.0f} s:\n{self._log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    def _log_tail(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-3000:]
        except OSError:
            return "(no log)"


@contextlib.contextmanager
def running_prometheus(series: Iterable[Series], work_dir: Path) -> Iterator[PrometheusServer]:
    """Backfill ``series`` into a fresh TSDB under ``work_dir`` and run Prometheus over it for the block."""
    binaries = ensure_binaries()
    work_dir.mkdir(parents=True, exist_ok=True)
    om = work_dir / "series.om"
    data = work_dir / "data"
    write_openmetrics(om, series)
    backfill(binaries, om, data)
    server = PrometheusServer(binaries, data)
    server.start()
    try:
        yield server
    finally:
        server.stop()
