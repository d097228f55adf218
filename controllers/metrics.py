"""The controllers' own metrics: ApplicationPersonas by phase and those failing validation.

Counts only, never a per-persona label (per-persona detail stays in the persona's status and its Events):
a cluster with thousands of personas adds a handful of series. Every replica's applicationpersona process
counts from its own cache (warm on followers too), so each replica reports the same numbers and queries take
``max`` over replicas (deploy/monitoring). Within a replica the one process's values are its values
(``livemax``).
"""

from __future__ import annotations

from prometheus_client import Gauge

from dorgu.domain.types import ApplicationPersona
from dorgu.runtime.informer import Handlers

PHASES = ("Pending", "Active", "Degraded", "Failed")
UNSET = "Unset"
"""The phase label of a persona the controller has not written a phase for yet."""

PERSONAS = Gauge(
    "dorgu_applicationpersonas", "ApplicationPersonas in the controller's cache, by status.phase", ["phase"],
    multiprocess_mode="livemax",
)  # fmt: skip
VALIDATION_FAILED = Gauge(
    "dorgu_applicationpersonas_validation_failed",
    "ApplicationPersonas whose status.validation.passed is false",
    multiprocess_mode="livemax",
)


def _phase(p: ApplicationPersona) -> str:
    return (p.status.phase if p.status is not None else None) or UNSET


def _failed(p: ApplicationPersona) -> bool:
    v = p.status.validation if p.status is not None else None
    return v is not None and v.passed is False


class PersonaCounter:
    """Keeps :data:`PERSONAS` and :data:`VALIDATION_FAILED` equal to the cache's counts, from its events.

    Keyed by namespace/name, so an add for a key already counted (a relist) replaces, never adds twice."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[str, bool]] = {}
        self._phases: dict[str, int] = dict.fromkeys((*PHASES, UNSET), 0)
        self._failed = 0
        for phase in self._phases:
            PERSONAS.labels(phase).set(0)  # every known phase exists at 0
        VALIDATION_FAILED.set(0)

    def handlers(self) -> Handlers[ApplicationPersona]:
        return Handlers(on_add=self._put, on_update=lambda old, new: self._put(new), on_delete=self._drop)

    @property
    def counts(self) -> dict[str, int]:
        """Personas by phase (what the gauge shows)."""
        return dict(self._phases)

    def _key(self, p: ApplicationPersona) -> str:
        return f"{p.metadata.namespace}/{p.metadata.name}"

    def _put(self, p: ApplicationPersona) -> None:
        self._remove(self._key(p))
        phase, failed = _phase(p), _failed(p)
        self._seen[self._key(p)] = (phase, failed)
        self._add(phase, 1, failed)

    def _drop(self, p: ApplicationPersona) -> None:
        self._remove(self._key(p))

    def _remove(self, key: str) -> None:
        old = self._seen.pop(key, None)
        if old is not None:
            self._add(old[0], -1, old[1])

    def _add(self, phase: str, n: int, failed: bool) -> None:
        self._phases[phase] = self._phases.get(phase, 0) + n
        PERSONAS.labels(phase).set(self._phases[phase])
        if failed:
            self._failed += n
            VALIDATION_FAILED.set(self._failed)
