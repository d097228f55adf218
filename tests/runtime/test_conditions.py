"""Setting status conditions by type (``meta.SetStatusCondition`` rules) and the time a status carries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dorgu.runtime.conditions import (
    DesiredCondition,
    set_status_condition,
    set_status_conditions,
    status_time,
)
from dorgu.runtime.meta import Condition

T0 = datetime(2026, 2, 15, 10, 0, 0, tzinfo=UTC)
T1 = datetime(2026, 2, 15, 10, 1, 0, 123456, tzinfo=UTC)
T1_WHOLE = T1.replace(microsecond=0)
UP = DesiredCondition("Up", "True", "Running", "all good")


def test_status_time() -> None:
    assert status_time(T1) == T1_WHOLE
    assert status_time(datetime(2026, 2, 15, 11, 0, 0, 999, tzinfo=timezone(timedelta(hours=1)))) == T0
    with pytest.raises(ValueError, match="timezone-aware"):
        status_time(datetime(2026, 2, 15, 10, 0, 0))


def test_a_new_type_is_appended_with_now() -> None:
    conditions, changed = set_status_condition(None, UP, now=T1, observed_generation=3)
    assert changed
    assert conditions == [
        Condition(
            type="Up",
            status="True",
            reason="Running",
            message="all good",
            last_transition_time=T1_WHOLE,
            observed_generation=3,
        )
    ]


def test_the_transition_time_moves_only_with_the_status() -> None:
    before, _ = set_status_condition([], UP, now=T0)
    same, changed = set_status_condition(before, UP._replace(message="still good"), now=T1)
    assert changed and same[0].last_transition_time == T0 and same[0].message == "still good"
    down, changed = set_status_condition(same, DesiredCondition("Up", "False", "Crashed", "x"), now=T1)
    assert changed and down[0].last_transition_time == T1_WHOLE
    assert before[0].message == "all good"  # the input is never modified


def test_observed_generation_is_always_the_callers() -> None:
    before, _ = set_status_condition([], UP, now=T0, observed_generation=1)
    after, changed = set_status_condition(before, UP, now=T1)
    assert changed and after[0].observed_generation is None and after[0].last_transition_time == T0


def test_nothing_changed_and_other_types_kept() -> None:
    other = Condition(type="Other", status="Unknown", reason="R", message="m", last_transition_time=T0)
    first, _ = set_status_conditions([other], [UP], now=T0, observed_generation=2)
    again, changed = set_status_conditions(first, [UP], now=T1, observed_generation=2)
    assert not changed and again == first
    assert [c.type for c in again] == ["Other", "Up"] and again[0] is other
