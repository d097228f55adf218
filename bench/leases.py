"""Benchmark of leader election (``dorgu.runtime.leaderelection``) with candidates as OS processes.

Run ``.venv/bin/python bench/leases.py [--repeat 3] [--only failover,defaults,sigterm,rebalance]
[--spread-delay 1] [--balance-period 1] [--deadline 120] [--json]``. It starts its own control plane
(etcd + kube-apiserver, an audit log of Lease and ConfigMap requests at Metadata level), runs candidates
with ``tests/runtime/programs/leader_candidate.py`` (each a process of its own, writing a ConfigMap every
0.2 s while it leads, reporting every step as a JSON line with ``mono``, the system-wide monotonic clock),
measures, prints a table (or, with ``--json``, one JSON object on stdout; the table then goes to stderr) and
stops everything. Each figure is measured ``--repeat`` times, each time in a fresh namespace; min/median/max.

Figures (these were the timing assertions of ``tests/runtime/test_leaderelection.py``):

1. **kill -9 fail-over**, durations 3,2,0.5 s (lease, renew deadline, retry; three candidates) and the
   defaults 15,10,2 s (two candidates): seconds from SIGKILL of the leader to the new leader's first
   ConfigMap write being answered. Rule: lease + 2 × retry (4 s and 19 s). Beside it, from the audit log:
   the seconds between the killed leader's last renewal and the take-over reaching the server (never less
   than the lease duration).
2. **SIGTERM hand-over**, durations 3,2,0.5 s, three candidates: the old leader releases the Lease (empty
   holder) and exits 0. From the audit log: ms from the release being answered to the next leader's first
   write being received; from the candidates' events: ms from the ``released`` event to the next leader's
   first ``write`` event (the write answered). Target (the test's old assertion): < 1000 ms.
3. **Rebalancing convergence** (``--rebalance --balance-period P``): identities ``replica-a``, ``-b`` and
   ``-c``, Leases ``ctl-1..3`` in one group, one candidate process per identity and Lease (distinct
   User-Agents), durations 3,2,0.5 s, ``--spread-delay`` and ``--balance-period`` as given. A's three
   candidates start first; once A leads all three, B's and C's six start. A candidate exiting 75 (handed
   over) is restarted at once with the same arguments, as the operator's supervisor does (any other exit
   too, and counted). Figure: seconds from starting B and C until every identity holds exactly one Lease
   (holders read from the API server every 0.1 s), also counted from the last of B's and C's ``started``
   events (the bound of the rule: lease + 2 × presence + 2 × rebalance period, plus request times);
   the hand-overs (``handed_over`` events) it took. Then 5 s more: the holders must not change. Not
   converged within ``--deadline`` seconds is a failure, reported as such; so is a *hung* candidate: one
   the API has named holder of its Lease for 5 s whose process runs but never started leading (no
   ``acquired`` event) — no supervisor restarts a process that runs, so the group would never converge.

Everything shares the machine's cores with etcd and kube-apiserver, and on a shared machine with whatever
else runs: the bench prints the load average it started under. Compare runs on the same machine only.
"""

from __future__ import annotations

import argparse
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Run as a script, bench/ is sys.path[0]; no module here is named like a package of ours (none shadows
# one). The repository root is added for the test kits some benchmarks reuse.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.report import aligned_table, emit, load_before_start, machine, progress  # noqa: E402
from tests.runtime.election_kit import (  # noqa: E402
    DEFAULT_DURATIONS,
    TEST_DURATIONS,
    Candidate,
    CandidateSettings,
    Plane,
    Req,
    ScenarioFailed,
    audit,
    audited_plane,
    ok_writes,
    successor,
    wait_for_leader,
    wait_until,
)

EXIT_HANDED_OVER = 75  # tests/runtime/programs/leader_candidate.py: "start me afresh at once"
START_TIMEOUT_S = 45.0
"""Python processes starting at once on a busy machine: generous."""
SETTLE_S = 5.0
"""After convergence, the holders are watched this long: they must not change."""
POLL_S = 0.1
HUNG_S = 5.0
"""A candidate named holder of its Lease this long without having started to lead is reported as hung."""
SIGTERM_TARGET_MS = 1000.0
SCENARIOS = ("failover", "defaults", "sigterm", "rebalance")


def contender(ns: str, i: int, durations: tuple[float, float, float]) -> CandidateSettings:
    """The ``i``-th of the candidates contending for Lease ``ctl`` in ``ns``."""
    identity = f"{ns}-{i}"
    return CandidateSettings(
        identity=identity,
        lease="ctl",
        namespace=ns,
        durations=durations,
        user_agent=f"dorgu-bench/{identity}",
    )


# -- the audit log -----------------------------------------------------------------------------------------


def audit_with_write_of(plane: Plane, namespace: str, cand: Candidate) -> list[Req]:
    """The audit log once it holds ``cand``'s first ConfigMap write."""
    return wait_until(
        lambda: (reqs := audit(plane, namespace)) and ok_writes(reqs, "configmaps", cand.ua) and reqs,
        timeout=15, what="the audit log to catch up", cands=[cand],
    )  # fmt: skip


# -- 1. kill -9 fail-over ----------------------------------------------------------------------------------


def run_failover(plane: Plane, ns: str, durations: tuple[float, float, float], n: int) -> dict[str, float]:
    lease_s, _, retry_s = durations
    cands: list[Candidate] = []
    try:
        for i in range(n):
            cands.append(Candidate(plane, contender(ns, i, durations)))
        leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
        t_kill = time.monotonic()
        leader.send(signal.SIGKILL)
        new = successor(cands, leader, timeout=lease_s + 2 * retry_s + 30)
        first = new.first("write")
        assert first is not None
        reqs = audit_with_write_of(plane, ns, new)
        last_renewal = max(r.received for r in ok_writes(reqs, "leases", leader.ua))
        taken = min(r.received for r in ok_writes(reqs, "leases", new.ua))
        return {"failover_s": first["mono"] - t_kill, "lease_gap_s": taken - last_renewal}
    finally:
        for c in cands:
            c.close()


# -- 2. SIGTERM hand-over ----------------------------------------------------------------------------------


def run_sigterm(plane: Plane, ns: str) -> dict[str, float]:
    cands: list[Candidate] = []
    try:
        for i in range(3):
            cands.append(Candidate(plane, contender(ns, i, TEST_DURATIONS)))
        leader = wait_for_leader(cands, timeout=START_TIMEOUT_S)
        t_term = time.monotonic()
        leader.send(signal.SIGTERM)
        code = leader.wait_exit(timeout=30)
        released = leader.first("released")
        if code != 0 or released is None or released["holder"] != "":
            raise ScenarioFailed(f"the SIGTERM-ed leader did not release cleanly\n{leader.describe()}")
        new = successor(cands, leader, timeout=30)
        first = new.first("write")
        assert first is not None
        reqs = audit_with_write_of(plane, ns, new)
        release = max(ok_writes(reqs, "leases", leader.ua), key=lambda r: r.received)
        new_first = min(r.received for r in ok_writes(reqs, "configmaps", new.ua))
        return {
            "handover_ms": (new_first - release.done) * 1000,
            "events_ms": (first["mono"] - released["mono"]) * 1000,
            "term_to_write_ms": (first["mono"] - t_term) * 1000,
        }
    finally:
        for c in cands:
            c.close()


# -- 3. rebalancing ----------------------------------------------------------------------------------------


@dataclass
class Supervised:
    """A candidate restarted with the same settings whenever it exits (as the operator's supervisor
    restarts a component), until :meth:`close`."""

    plane: Plane
    settings: CandidateSettings
    generations: list[Candidate] = field(default_factory=list)
    exit_codes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.generations.append(Candidate(self.plane, self.settings))

    @property
    def current(self) -> Candidate:
        return self.generations[-1]

    def tick(self) -> None:
        code = self.current.proc.poll()
        if code is not None:
            self.current.wait_exit(10)
            self.exit_codes.append(code)
            self.generations.append(Candidate(self.plane, self.settings))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [e for c in self.generations for e in c.of(kind)]

    def close(self) -> None:
        for c in self.generations:
            c.close()


def run_rebalance(
    plane: Plane, ns: str, *, spread_delay_s: float, balance_period_s: float, deadline_s: float
) -> dict[str, Any]:
    leases = ("ctl-1", "ctl-2", "ctl-3")
    ids = ("replica-a", "replica-b", "replica-c")
    slots: dict[tuple[str, str], Supervised] = {}
    named_since: dict[tuple[str, str], float] = {}

    def start(identity: str) -> None:
        for lease in leases:
            settings = CandidateSettings(
                identity=identity, lease=lease, namespace=ns, durations=TEST_DURATIONS,
                user_agent=f"dorgu-bench/{identity}/{lease}", configmap=f"writes-{lease}",
                spread_delay_s=spread_delay_s, balance_period_s=balance_period_s,
            )  # fmt: skip
            slots[identity, lease] = Supervised(plane, settings)

    def state() -> str:
        return "\n".join(c.describe() for s in slots.values() for c in s.generations)

    def tick() -> dict[str, str]:
        """Restart exited candidates, read the holders, and fail the run on a hung candidate."""
        for s in slots.values():
            s.tick()
        holders = plane.holders(ns, leases)
        now = time.monotonic()
        for (identity, lease), s in slots.items():
            # A Lease naming a running candidate that has not started leading: it takes a Lease handed to
            # it at once, so after HUNG_S it is stuck, and no supervisor restarts a process that runs.
            if holders[lease] == identity and s.current.proc.poll() is None and not s.current.of("acquired"):
                since = named_since.setdefault((identity, lease), now)
                if now - since > HUNG_S:
                    raise ScenarioFailed(
                        f"{s.current.ua} hung: {lease} has named it for {now - since:.0f} s, its process "
                        f"runs, and it never started leading (no `acquired` event)\n{state()}"
                    )
            else:
                named_since.pop((identity, lease), None)
        return holders

    try:
        start(ids[0])
        t_a = time.monotonic()
        while not (
            set(tick().values()) == {ids[0]} and all(slots[ids[0], le].current.of("write") for le in leases)
        ):
            if time.monotonic() - t_a > START_TIMEOUT_S:
                raise ScenarioFailed(f"{ids[0]} did not come to lead all three Leases\n{state()}")
            time.sleep(POLL_S)
        t0 = time.monotonic()
        for identity in ids[1:]:
            start(identity)
        converged_at: float | None = None
        holders: dict[str, str] = {}
        while converged_at is None and time.monotonic() - t0 < deadline_s:
            holders = tick()
            if sorted(holders.values()) == sorted(ids):
                converged_at = time.monotonic()
            else:
                time.sleep(POLL_S)
        if converged_at is None:
            raise ScenarioFailed(f"not converged within {deadline_s:g} s: holders {holders}\n{state()}")
        handovers_to_converge = sum(len(s.events("handed_over")) for s in slots.values())
        at_convergence = dict(holders)
        # Hold: the holders must stay as they are.
        changes = 0
        t_hold = time.monotonic()
        while time.monotonic() - t_hold < SETTLE_S:
            now = tick()
            changes += now != holders
            holders = now
            time.sleep(POLL_S)
        # B's and C's Leases: the first write of each after B and C were started.
        first_writes = [
            min(
                (e["mono"] for e in slots[at_convergence[le], le].events("write") if e["mono"] >= t0),
                default=None,
            )
            for le in leases
            if at_convergence[le] != ids[0]
        ]
        started = [s.generations[0].first("started") for (i, _), s in slots.items() if i in ids[1:]]
        last_started = max(e["mono"] for e in started if e is not None)
        exits = Counter(code for s in slots.values() for code in s.exit_codes)
        return {
            "converge_s": converged_at - t0,
            "from_last_started_s": converged_at - last_started,
            "writing_s": max(w for w in first_writes if w is not None) - t0
            if all(w is not None for w in first_writes)
            else None,
            "stable": changes == 0,
            "changes_after": changes,
            "holders": at_convergence,
            "holders_after": holders,
            "handovers": handovers_to_converge,
            "handovers_total": sum(len(s.events("handed_over")) for s in slots.values()),
            "lost": sum(len(s.events("lost")) for s in slots.values()),
            "restarts": sum(exits.values()),
            "exit_codes": {str(k): v for k, v in sorted(exits.items())},
        }
    finally:
        for s in slots.values():
            s.close()


# -- figures -----------------------------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"min": None, "median": None, "max": None}
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def repeat(
    what: str, n: int, run: Callable[[int], dict[str, Any]], failures: list[str]
) -> list[dict[str, Any]]:
    out = []
    for r in range(n):
        progress(f"{what}, run {r + 1}/{n}")
        try:
            out.append(run(r))
        except ScenarioFailed as e:
            failures.append(f"{what}, run {r + 1}: {e}")
            progress(f"  FAILED: {e}")
        else:
            progress("  " + ", ".join(f"{k} {v:.2f}" for k, v in out[-1].items() if isinstance(v, float)))
    return out


def measure(plane: Plane, args: argparse.Namespace) -> dict[str, Any]:
    fig: dict[str, Any] = {"repeat": args.repeat}
    failures: list[str] = []
    for key, durations, n in (("failover", TEST_DURATIONS, 3), ("defaults", DEFAULT_DURATIONS, 2)):
        if key not in args.only:
            continue
        lease_s, _, retry_s = durations
        runs = repeat(
            f"1. kill -9 fail-over, durations {','.join(f'{d:g}' for d in durations)}",
            args.repeat,
            lambda r, d=durations, n=n, key=key: run_failover(plane, plane.namespace(f"le-{key}-{r}"), d, n),
            failures,
        )
        fig[f"kill9_{key}"] = {
            "durations_s": list(durations),
            "candidates": n,
            "rule_s": lease_s + 2 * retry_s,
            "runs_s": [x["failover_s"] for x in runs],
            "lease_gap_runs_s": [x["lease_gap_s"] for x in runs],
            **stats([x["failover_s"] for x in runs]),
        }
    if "sigterm" in args.only:
        runs = repeat(
            "2. SIGTERM hand-over",
            args.repeat,
            lambda r: run_sigterm(plane, plane.namespace(f"le-term-{r}")),
            failures,
        )
        fig["sigterm"] = {
            "target_ms": SIGTERM_TARGET_MS,
            "runs_ms": [x["handover_ms"] for x in runs],
            "events_runs_ms": [x["events_ms"] for x in runs],
            "term_to_write_runs_ms": [x["term_to_write_ms"] for x in runs],
            **stats([x["handover_ms"] for x in runs]),
            "events": stats([x["events_ms"] for x in runs]),
        }
    if "rebalance" in args.only:
        lease_s = TEST_DURATIONS[0]
        runs = repeat(
            "3. rebalancing convergence",
            args.repeat,
            lambda r: run_rebalance(
                plane,
                plane.namespace(f"le-rebalance-{r}"),
                spread_delay_s=args.spread_delay,
                balance_period_s=args.balance_period,
                deadline_s=args.deadline,
            ),
            failures,
        )
        fig["rebalance"] = {
            "durations_s": list(TEST_DURATIONS),
            "balance_period_s": args.balance_period,
            "spread_delay_s": args.spread_delay,
            "deadline_s": args.deadline,
            # the module's bound, counted from the last candidate starting to contend
            "rule_s": lease_s + 4 * args.balance_period,
            "runs": runs,
            "converged": len(runs),
            **stats([x["converge_s"] for x in runs]),
            "from_last_started": stats([x["from_last_started_s"] for x in runs]),
            "handovers": stats([x["handovers"] for x in runs]),
        }
    fig["failures"] = failures
    return fig


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} ms" if unit == "ms" else f"{v:.2f} s" if unit == "s" else f"{v:g}"


Row = tuple[str, str, str, str, str, str]


def row(label: str, values: Sequence[float], unit: str, target: str = "", result: str = "info") -> Row:
    st = stats(values)
    return (label, *(_fmt(st[k], unit) for k in ("min", "median", "max")), target, result)


def count(values: Sequence[float], ok: Callable[[float], bool], what: str, runs: int) -> str:
    """How many of the ``runs`` attempted met the rule (a run that failed counts as not meeting it)."""
    return f"{sum(1 for x in values if ok(x))}/{runs} {what}"


def table(fig: dict[str, Any]) -> str:
    rows: list[Row] = []
    n = fig["repeat"]
    for key in ("failover", "defaults"):
        f = fig.get(f"kill9_{key}")
        if f is None:
            continue
        lease_s, renew_s, retry_s = f["durations_s"]
        rule = f["rule_s"]
        rows += [
            row(
                f"1. kill -9 → new leader's 1st write ({lease_s:g}/{renew_s:g}/{retry_s:g} s)",
                f["runs_s"], "s", f"≤ {rule:g} s (lease + 2 × retry)",
                count(f["runs_s"], lambda x, rule=rule: x <= rule, "within", n),
            ),
            row(
                "     last renewal → take-over (audit log)", f["lease_gap_runs_s"], "s",
                f"≥ {lease_s:g} s (lease)",
                count(f["lease_gap_runs_s"], lambda x, lease_s=lease_s: x >= lease_s - 0.01, "not before", n),
            ),
        ]  # fmt: skip
    f = fig.get("sigterm")
    if f is not None:
        target = f["target_ms"]
        rows += [
            row(
                "2. SIGTERM: release answered → next leader's 1st write (audit)", f["runs_ms"], "ms",
                f"< {target:g} ms", count(f["runs_ms"], lambda x: x < target, "within", n),
            ),
            row("     `released` → next leader's 1st `write` (events)", f["events_runs_ms"], "ms"),
            row("     SIGTERM → next leader's 1st write", f["term_to_write_runs_ms"], "ms"),
        ]  # fmt: skip
    f = fig.get("rebalance")
    if f is not None:
        ok = f["runs"]
        stable = sum(1 for x in ok if x["stable"])
        exits = Counter[str]()
        for x in f["runs"]:
            exits.update(x["exit_codes"])
        restarts = ", ".join(f"{k}: {v}" for k, v in sorted(exits.items())) or "none"
        rule = f["rule_s"]
        from_started = [x["from_last_started_s"] for x in ok]
        writing = [x["writing_s"] for x in ok if x.get("writing_s") is not None]
        rows += [
            row(
                f"3. rebalance, period {f['balance_period_s']:g} s: start B, C → A, B, C hold 1 each",
                [x["converge_s"] for x in ok], "s", f"≤ {f['deadline_s']:g} s (deadline)",
                ("PASS" if len(ok) == n else "FAIL") + f": {len(ok)}/{n} runs converged, {stable} stable 5 s",
            ),
            row(
                "     from the last B/C `started` event", from_started, "s",
                f"≤ {rule:g} s (lease + 2 × presence + 2 × rebalance)",
                count(from_started, lambda x: x <= rule, "within (+ request times)", n),
            ),
            row("     start B, C → both new holders write", writing, "s"),
            row(
                "     hand-overs to converge", [x["handovers"] for x in f["runs"]], "n",
                "2 (A: one to B, one to C)", f"restarts by exit code: {restarts}",
            ),
        ]  # fmt: skip
    head: Row = ("figure", "min", "median", "max", "rule / target", "result")
    failed = [f"FAILED {failure.splitlines()[0]}" for failure in fig["failures"]]
    return "\n".join([aligned_table(head, rows), *failed])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="runs of each figure (min/median/max)")
    p.add_argument(
        "--only",
        type=lambda s: [x for x in s.split(",") if x],
        default=list(SCENARIOS),
        help=f"comma-separated figures to run, of {','.join(SCENARIOS)} (default: all)",
    )
    p.add_argument(
        "--spread-delay", type=float, default=1.0, help="rebalancing: the candidates' spread delay"
    )
    p.add_argument("--balance-period", type=float, default=1.0, help="rebalancing: presence/rebalance period")
    p.add_argument("--deadline", type=float, default=120.0, help="rebalancing: seconds to converge")
    p.add_argument("--json", action="store_true", help="print one JSON object of the figures on stdout")
    args = p.parse_args(argv)
    unknown = set(args.only) - set(SCENARIOS)
    if unknown:
        p.error(f"--only: unknown figure(s) {sorted(unknown)}; choose from {','.join(SCENARIOS)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load = load_before_start()
    t0 = time.monotonic()
    with (
        tempfile.TemporaryDirectory(prefix="dorgu-bench-leases-") as tmp,
        audited_plane(Path(tmp), user_agent="dorgu-bench") as plane,
    ):
        fig = measure(plane, args)
    footer = machine(fig, started=t0, load=load)
    emit(table(fig) + footer, fig, as_json=args.json)
    return 1 if fig["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
