"""Per-process metrics, combined on scrape: one ``/metrics`` for a supervisor and its children.

Each child keeps its metrics in prometheus_client's ordinary in-memory registry, where an increment is a
lock and an addition (prometheus_client's multiprocess mode instead writes every increment into an mmapped
file, after a ``getpid()``: measured at 5-10 % of a busy controller's CPU). The child answers a connection on
its Unix socket with a :class:`Snapshot` of its registry; the supervisor asks every live child when it is
scraped and combines the snapshots under the rules multiprocess mode had, so names and values are what they
were:

* counters, histograms and summaries are summed over processes, and a process that has exited still counts
  with its last snapshot (the final one it sends on a clean exit, else the last one scraped: a process that
  is SIGKILLed loses what it counted since the last scrape);
* each gauge says how its processes' values combine (prometheus_client's ``multiprocess_mode``): ``sum``,
  ``max``, ``min``, ``mostrecent`` or ``all`` (one series per pid); the ``live`` variants drop the values of
  processes that have exited;
* ``*_created`` samples are not carried (they are per process, and multiprocess mode had none either).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterable, Iterator
from typing import Any

import msgspec

__all__ = [
    "Family", "Snapshot", "combine", "fetch", "fold", "retire", "serve", "snapshot",
]  # fmt: skip

MAX_SOCKET_PATH = 107
"""The longest Unix socket path Linux accepts (``sun_path`` is 108 bytes with its NUL)."""


class Family(msgspec.Struct, array_like=True, frozen=True):
    """One metric family of one process."""

    name: str
    """The family's name as prometheus_client reports it (a counter's without ``_total``)."""
    type: str
    """counter, gauge, histogram, summary, info, stateset, unknown, ..."""
    documentation: str
    """Its help text."""
    mode: str
    """For gauges, how processes combine (``livesum``, ``max``, ...); empty for other types."""
    samples: list[tuple[str, dict[str, str], float]]
    """(sample name, labels, value)."""


class Snapshot(msgspec.Struct, array_like=True, frozen=True):
    """A process's whole registry at one moment."""

    pid: int
    families: list[Family]


def _gauge_modes(registry: Any) -> dict[str, str]:
    # prometheus_client keeps each Gauge's mode on the object (``_multiprocess_mode``) and has no public way
    # to list a registry's collectors; a collector without the attribute combines as ``livesum``.
    modes: dict[str, str] = {}
    for collector in list(getattr(registry, "_collector_to_names", {})):
        mode = getattr(collector, "_multiprocess_mode", None)
        name = getattr(collector, "_name", None)
        if isinstance(mode, str) and isinstance(name, str):
            modes[name] = mode
    return modes


def snapshot(registry: Any = None) -> Snapshot:
    """This process's metrics (prometheus_client's default registry unless ``registry`` is given)."""
    if registry is None:
        from prometheus_client import REGISTRY

        registry = REGISTRY
    modes = _gauge_modes(registry)
    families = []
    for metric in registry.collect():
        samples = [(s.name, dict(s.labels), float(s.value)) for s in metric.samples]
        samples = [x for x in samples if not x[0].endswith("_created")]
        mode = modes.get(metric.name, "livesum") if metric.type == "gauge" else ""
        families.append(Family(metric.name, metric.type, metric.documentation, mode, samples))
    return Snapshot(os.getpid(), families)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Snapshot)


async def serve(path: str, registry: Any = None) -> asyncio.AbstractServer:
    """Answer every connection on the Unix socket ``path`` with a snapshot, then close it."""
    if len(path.encode()) > MAX_SOCKET_PATH:
        raise ValueError(f"metrics socket path is longer than {MAX_SOCKET_PATH} bytes: {path}")

    async def answer(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            writer.write(_encoder.encode(snapshot(registry)))
            await writer.drain()
        except (ConnectionError, OSError):
            pass  # the supervisor gave up waiting; nothing to clean up but the socket
        finally:
            writer.close()

    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)  # a previous process with the same pid
    return await asyncio.start_unix_server(answer, path=path)


async def fetch(path: str, *, timeout_s: float = 5.0) -> Snapshot | None:
    """The snapshot of the process serving ``path``, or None when it does not answer in time (starting,
    stopping, or gone): the scrape then goes on without it."""
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_unix_connection(path)
            try:
                data = await reader.read()
            finally:
                writer.close()
        return _decoder.decode(data)
    except (OSError, TimeoutError, msgspec.DecodeError):
        return None


def retire(snap: Snapshot) -> Snapshot:
    """What of an exited process's snapshot still counts: all but the ``live*`` gauges."""
    return Snapshot(snap.pid, [f for f in snap.families if not f.mode.startswith("live")])


def _merge_value(mode: str, old: float, new: float) -> float:
    if mode.endswith("max"):
        return max(old, new)
    if mode.endswith("min"):
        return min(old, new)
    if mode.endswith("mostrecent"):
        return new
    return old + new  # counters, histograms, summaries, sum and livesum gauges


def combine(snapshots: Iterable[Snapshot]) -> Iterator[Any]:
    """The snapshots as prometheus_client metric families, combined across processes (later snapshots win
    ``mostrecent`` gauges). A family whose type differs between processes keeps the first type seen."""
    from prometheus_client.metrics_core import Metric

    merged: dict[str, tuple[Family, dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {}
    for snap in snapshots:
        for fam in snap.families:
            entry = merged.get(fam.name)
            if entry is None:
                entry = merged[fam.name] = (fam, {})
            first, values = entry
            if first.type != fam.type:
                continue
            per_pid = first.mode.endswith("all")
            for name, labels, value in fam.samples:
                if per_pid and "pid" not in labels:  # a folded snapshot already has them
                    labels = {**labels, "pid": str(snap.pid)}
                key = (name, tuple(sorted(labels.items())))
                old = values.get(key)
                values[key] = value if old is None else _merge_value(first.mode, old, value)
    for fam, values in merged.values():
        metric = Metric(fam.name, fam.documentation, fam.type)
        for (name, labels), value in values.items():
            metric.add_sample(name, dict(labels), value)
        yield metric


def fold(snapshots: Iterable[Snapshot]) -> Snapshot:
    """Several exited processes' snapshots as one (so the supervisor keeps one, however many restarts)."""
    snapshots = list(snapshots)
    families = []
    for metric in combine(snapshots):
        mode = next(
            (f.mode for s in snapshots for f in s.families if f.name == metric.name), ""
        ) if metric.type == "gauge" else ""  # fmt: skip
        samples = [(s.name, dict(s.labels), float(s.value)) for s in metric.samples]
        families.append(Family(metric.name, metric.type, metric.documentation, mode, samples))
    return Snapshot(0, families)
