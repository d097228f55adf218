"""Status conditions: set one by type, as apimachinery's ``meta.SetStatusCondition`` does.

Rules :func:`set_status_condition` keeps:

* a condition type not yet in the list is appended (so types keep the order they first appeared in), with
  ``lastTransitionTime = now``;
* an existing one gets ``reason``, ``message`` and ``observedGeneration`` refreshed whenever they differ;
  its ``lastTransitionTime`` moves to ``now`` only when its ``status`` changes;
* conditions of other types are kept as they are (the same objects), and the input is never modified;
* the result says whether anything changed, so a caller can skip a write that would change nothing.

Times written are ``metav1.Time``: UTC, truncated to whole seconds (:func:`status_time`), so that what the
API server stores and returns compares equal to what was computed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import NamedTuple

import msgspec

from dorgu.runtime.meta import Condition

__all__ = ["DesiredCondition", "set_status_condition", "set_status_conditions", "status_time"]


class DesiredCondition(NamedTuple):
    """A condition as a reconcile wants it, ``(type, status, reason, message)``; the setter adds the times."""

    type: str
    """The condition type, e.g. ``Ready``."""
    status: str
    """``"True"``, ``"False"`` or ``"Unknown"``."""
    reason: str
    """A CamelCase reason, e.g. ``NoDeployment``."""
    message: str
    """A human-readable message."""


def status_time(now: datetime) -> datetime:
    """``now`` as a status stores it (``metav1.Time``): UTC, truncated to whole seconds."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    return now.astimezone(UTC).replace(microsecond=0)


def set_status_condition(
    conditions: Sequence[Condition] | None,
    new: DesiredCondition,
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[list[Condition], bool]:
    """Set one condition by type (see the module docstring); returns ``(conditions, changed)``."""
    result = list(conditions or ())
    for index, existing in enumerate(result):
        if existing.type != new.type:
            continue
        updated = msgspec.structs.replace(
            existing,
            status=new.status,
            reason=new.reason,
            message=new.message,
            observed_generation=observed_generation,
            last_transition_time=(
                status_time(now) if existing.status != new.status else existing.last_transition_time
            ),
        )
        if updated == existing:
            return result, False
        result[index] = updated
        return result, True
    result.append(
        Condition(
            type=new.type,
            status=new.status,
            reason=new.reason,
            message=new.message,
            observed_generation=observed_generation,
            last_transition_time=status_time(now),
        )
    )
    return result, True


def set_status_conditions(
    conditions: Sequence[Condition] | None,
    desired: Iterable[DesiredCondition],
    *,
    now: datetime,
    observed_generation: int | None = None,
) -> tuple[list[Condition], bool]:
    """:func:`set_status_condition` for each of ``desired`` in order; ``changed`` if any one changed."""
    result = list(conditions or ())
    changed = False
    for new in desired:
        result, one_changed = set_status_condition(
            result, new, now=now, observed_generation=observed_generation
        )
        changed = changed or one_changed
    return result, changed
