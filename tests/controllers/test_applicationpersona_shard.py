"""The named Deployment watch's selector of a shard (``OwnDeployments.named_selector``): its own app names
from the start and once settled, wide while new personas' Deployments are fetched, and wide above
``MAX_NARROW_APPS`` (pure: no server; the narrowing on a real API server is
``tests/e2e/test_sharding.py``)."""

from __future__ import annotations

from typing import Any

from controllers.applicationpersona_shard import MAX_NARROW_APPS, NAME_LABEL, OwnDeployments
from dorgu.runtime.clock import FakeClock


def _own(apps: list[str]) -> OwnDeployments:
    client: Any = None  # never called: the selector is computed from the wanted set alone
    own = OwnDeployments(client=client, shard="shard-test-0", clock=FakeClock())
    for app in apps:
        own.wanted[f"ns/{app}"] += 1
    return own


def test_narrow_from_the_start_to_its_own_valid_app_names_sorted_and_wide_while_fetching() -> None:
    assert _own([]).named_selector() == f"{NAME_LABEL} in (,)"  # a first LIST before any persona is known
    own = _own(["web", "api", "not a label value!", "api"])
    # The empty value keeps Deployments whose name label is empty (the rules then match them by ``app``);
    # a name that cannot be a label value selects nothing by label and is left out.
    assert own.named_selector() == f"{NAME_LABEL} in (,api,web)"
    own._narrow = False  # while new personas' Deployments are fetched
    assert own.named_selector() == NAME_LABEL


def test_over_the_cap_the_named_watch_stays_wide() -> None:
    at_cap = _own([f"app{i}" for i in range(MAX_NARROW_APPS)])
    assert at_cap.named_selector().startswith(f"{NAME_LABEL} in (,")
    over = _own([f"app{i}" for i in range(MAX_NARROW_APPS + 1)])
    assert over.named_selector() == NAME_LABEL
