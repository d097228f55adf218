"""Balancing a group of Leases over the replicas that can lead them: who hands which Lease to whom.

The rule, decided from one snapshot of the group (pure: every leader computes the same plan from the same
snapshot, so leaders of one replica never pick the same receiver for two Leases unless their snapshots
differ):

* ``share = ceil(leases / live identities)``, where the live identities are the holders of the group's
  Leases and every candidate seen alive (its presence Lease renewed within a lease duration).
* An identity holding more than ``share`` Leases keeps the first ``share`` by name; the rest are surplus.
* Each surplus Lease, in name order, goes to the candidate holding the fewest (ties: by identity) that is
  *ready* for that Lease (its process for that Lease runs and was seen renewing its presence) and holds
  fewer than ``share``. Hysteresis: a hand-over happens only from above the share to below it, so the giver
  holds at least two more than the receiver, and no Lease moves back and forth: each move lowers the sum of
  squares of the holdings by at least 2 (with consistent snapshots), and the share changes only when the
  set of live identities does.
* Free Leases are not planned here: candidates contend for them (with spreading).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Collection, Mapping


def fair_share(*, leases: int, live: int) -> int:
    """The most Leases one identity should hold: ``ceil(leases / live)`` (all of them with one live)."""
    return math.ceil(leases / live) if live else leases


def plan_handovers(
    *,
    holders: Mapping[str, str],
    alive: Collection[str],
    ready: Mapping[str, Collection[str]],
) -> dict[str, str]:
    """Lease name → the identity it should be handed to, for every surplus Lease with a receiver.

    ``holders``: every Lease of the group → its holder (``""`` when free). ``alive``: identities seen alive
    (holders count on their own). ``ready``: Lease name → identities ready to take it over now.
    """
    live = {h for h in holders.values() if h} | set(alive)
    if not live:
        return {}
    share = fair_share(leases=len(holders), live=len(live))
    held = Counter(h for h in holders.values() if h)
    surplus: list[str] = []
    for identity in sorted(held):
        mine = sorted(lease for lease, h in holders.items() if h == identity)
        surplus += mine[share:]
    plan: dict[str, str] = {}
    for lease in sorted(surplus):
        giver = holders[lease]
        receivers = sorted(
            (held[c], c) for c in ready.get(lease, ()) if c in live and c != giver and held[c] < share
        )
        if not receivers or held[giver] <= share:
            continue
        receiver = receivers[0][1]
        plan[lease] = receiver
        held[giver] -= 1
        held[receiver] += 1
    return plan


__all__ = ["fair_share", "plan_handovers"]
