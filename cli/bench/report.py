"""``dorgu bench``'s report: one JSON object, the table made from it, and the optional PNG."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from typing import Any

from cli.errors import Failure, InputError
from cli.output import color_enabled

# The targets for this 2-core machine (control plane on the same machine) and the references.
GO_BURST_1000_S = (3.6, 5.2)
TARGET_BURST_CEILING_FRACTION = 0.35
TARGET_COLD_10K_S = 28.0
TARGET_STEADY_P99_MS = 1000.0
TARGET_IDLE_BEYOND_HEARTBEAT_PER_S = 0.1


def _frac(value: float | None, ceiling: float) -> float | None:
    return round(value / ceiling, 3) if value is not None and ceiling else None


def _targets(s: Any, f: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it says, the value reached, and whether it applies to this run's size."""
    n, out = s.personas, []
    burst, frac = f["burst"]["seconds"], f["fraction_of_ceiling"]["burst"]
    out.append({"name": "burst of 1,000 at least as fast as Go client-go (3.6-5.2 s)",
                "value": burst, "met": burst <= GO_BURST_1000_S[1], "applies": n == 1000,
                "note": "faster than Go's best" if burst <= GO_BURST_1000_S[0] else (
                    "within Go's range" if burst <= GO_BURST_1000_S[1] else "slower than Go")})  # fmt: skip
    met = frac is not None and frac >= TARGET_BURST_CEILING_FRACTION
    out.append({"name": "burst >= 35 % of the ceiling", "value": frac, "met": met, "applies": True})
    cold = f["cold"]["seconds"]
    out.append({"name": "10,000 personas cold in <= 28 s", "value": cold, "met": cold <= TARGET_COLD_10K_S,
                "applies": n == 10000})  # fmt: skip
    p99 = f["steady"]["latency_ms"]["p99"]
    out.append({"name": "steady-state p99 <= 1 s at 200 changes/s", "value": p99,
                "met": p99 is not None and p99 <= TARGET_STEADY_P99_MS,
                "applies": s.changes_per_s >= 200})  # fmt: skip
    idle = f["idle"]["beyond_heartbeat_per_s"]
    out.append({"name": "idle writes beyond heartbeats <= 0.1/s with 1,000 personas", "value": idle,
                "met": idle <= TARGET_IDLE_BEYOND_HEARTBEAT_PER_S, "applies": n >= 1000})  # fmt: skip
    return out


def assemble(
    s: Any, f: dict[str, Any], *, cluster: dict[str, Any], machine: dict[str, Any], wall_s: float
) -> dict[str, Any]:
    ceiling = f["ceiling"]["writes_per_s"]
    f["fraction_of_ceiling"] = {
        "cold": _frac(f["cold"]["personas_per_s"], ceiling),
        "steady": _frac(f["steady"]["reflected_per_s"], ceiling),
        "burst": _frac(f["burst"]["personas_per_s"], ceiling),
        "idle": _frac(f["idle"]["writes_per_s"], ceiling),
    }
    rss = f.pop("rss_mib")
    return {
        "personas": s.personas,
        "settings": {
            "changes_per_s": s.changes_per_s,
            "duration_s": s.duration_s,
            "heartbeat_interval_s": s.heartbeat_s,
            "revalidate_interval_s": s.heartbeat_s / 2,
            "workers": s.workers,
            "ceiling_duration_s": s.ceiling_s,
        },
        "cluster": cluster,
        "machine": machine,
        "wall_seconds": round(wall_s, 1),
        **f,
        "rss_mib": rss,
        "targets": _targets(s, f),
    }


def _ms(v: float | None) -> str:
    return "-" if v is None else (f"{v / 1000:.2f} s" if v >= 1000 else f"{v:.0f} ms")


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v * 100:.0f} %"


def table(r: dict[str, Any], *, color: bool = True) -> str:
    on = color and color_enabled(sys.stdout) and not os.environ.get("NO_COLOR")

    def mark(t: dict[str, Any]) -> str:
        if not t["applies"]:
            return "(n/a at this size)"
        text = "✓ met" if t["met"] else "✗ missed"
        if on:
            text = f"\x1b[38;5;{42 if t['met'] else 196}m{text}\x1b[0m"
        return text

    t = {x["name"]: x for x in r["targets"]}
    c, st, b, idle, ce, fr = (
        r["cold"],
        r["steady"],
        r["burst"],
        r["idle"],
        r["ceiling"],
        r["fraction_of_ceiling"],
    )
    lat = st["latency_ms"]
    tb = t["burst of 1,000 at least as fast as Go client-go (3.6-5.2 s)"]
    n = r["personas"]
    rows: list[tuple[str, str, str, str]] = [
        ("seed (personas + Deployments)", f"{n} + {n} in {r['seed']['seconds']} s", "", ""),
        ("cold: start → all validated", f"{c['seconds']} s ({c['personas_per_s']:g}/s)", _pct(fr["cold"]),
         f"10k ≤ 28 s {mark(t['10,000 personas cold in <= 28 s'])}"),
        (f"steady: {st['target_changes_per_s']:g} changes/s for {st['duration_s']:g} s",
         f"{st['achieved_changes_per_s']:g}/s sent, {st['reflected_per_s']:g}/s reflected",
         _pct(fr["steady"]), ""),
        ("  latency p50 / p90", f"{_ms(lat['p50'])} / {_ms(lat['p90'])}", "", ""),
        ("  latency p99 / max", f"{_ms(lat['p99'])} / {_ms(lat['max'])}", "",
         f"p99 ≤ 1 s {mark(t['steady-state p99 <= 1 s at 200 changes/s'])}"),
        ("  changes reflected", f"{st['reflected']} of {st['changes_sent']} (+{st['coalesced']} coalesced, "
         f"{st['not_reflected']} lost)", "", ""),
        ("burst: all changed → all reflect it", f"{b['seconds']} s ({b['personas_per_s']:g}/s)",
         _pct(fr["burst"]),
         f"Go 3.6-5.2 s {mark(tb)} ({tb['note']}); ≥ 35 % {mark(t['burst >= 35 % of the ceiling'])}"),
        ("  time to send the changes", f"{b['send_seconds']} s", "", ""),
        (f"idle: {idle['window_s']:g} s (heartbeat {idle['heartbeat_interval_s']:g} s)",
         f"{idle['writes_per_s']:g} writes/s ({idle['heartbeat_writes']} heartbeats)", _pct(fr["idle"]), ""),
        ("  writes beyond heartbeats", f"{idle['beyond_heartbeat_per_s']:g}/s ({idle['other_writes']})", "",
         f"≤ 0.1/s {mark(t['idle writes beyond heartbeats <= 0.1/s with 1,000 personas'])}"),
    ]  # fmt: skip
    for name, v in r["rss_mib"].items():
        rows.append((f"RSS {name}", f"{v['rss_mib']:.0f} MiB (peak {v['peak_mib']:.0f})", "", ""))
    ceiling = f"{ce['writes_per_s']:g} writes/s ({ce['concurrency']} in flight)"
    rows.append(("ceiling: tight status-apply loop", ceiling, "100 %", ""))
    heads = ("figure", "dorgu", "of ceiling", "target")
    widths = [max(len(row[i]) for row in [heads, *rows]) for i in range(3)]
    lines = ["  ".join(h.ljust(wd) for h, wd in zip(heads[:3], widths, strict=True)) + "  " + heads[3]]
    lines.append("  ".join("-" * wd for wd in widths) + "  " + "-" * 6)
    lines += [
        "  ".join(x.ljust(wd) for x, wd in zip(row[:3], widths, strict=True)) + "  " + row[3] for row in rows
    ]
    m = r["machine"]
    lines.append("")
    lines.append(f"{m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}), {m['memory']}; "
                 f"{r['cluster']['kind']} cluster {r['cluster']['server']}; "
                 f"load average {m['load_average_start'][0]} at start, "
                 f"{m['load_average_end'][0]} at the end; {r['settings']['workers']} workers; "
                 f"{r['wall_seconds']} s in all")  # fmt: skip
    lines += [f"warning: {w}" for w in r.get("warnings", [])]
    return "\n".join(lines)


MATPLOTLIB_MISSING = "--plot needs matplotlib, which is not installed: pip install 'dorgu[bench]'"
"""matplotlib is the ``bench`` extra's only package: a plain ``pip install dorgu`` (and the operator's image)
goes without it."""


def require_matplotlib() -> None:
    """Raise :class:`InputError` (exit 2) when matplotlib is not installed — checked before the bench runs, so
    a missing extra never costs a whole run."""
    if importlib.util.find_spec("matplotlib") is None:
        raise InputError(MATPLOTLIB_MISSING)


def plot(r: dict[str, Any], path: Path) -> None:
    """Latency CDF (steady state) and throughput over time (persona status writes and Deployment changes per
    second, phases shaded). matplotlib is imported only here."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise Failure(MATPLOTLIB_MISSING) from None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 4.5))
    lat = sorted(x * 1000 for x in r["steady"]["latencies_s"])
    if lat:
        ax1.plot(lat, [(i + 1) / len(lat) for i in range(len(lat))])
    ax1.set_xlabel("change → persona status (ms, from watch events)")
    ax1.set_ylabel("fraction of changes")
    ax1.set_title(f"latency CDF at {r['settings']['changes_per_s']:g} changes/s")
    ax1.grid(alpha=0.3)
    tl = r["timeline"]
    for key, label in (("persona_writes_per_s", "persona status writes/s"),
                       ("deployment_changes_per_s", "Deployment changes/s")):  # fmt: skip
        ys = tl[key]
        ax2.plot(range(len(ys)), ys, label=label, drawstyle="steps-post")
    ax2.axhline(r["ceiling"]["writes_per_s"], color="grey", linestyle="--", label="ceiling")
    for i, ph in enumerate(tl["phases"]):
        ax2.axvspan(ph["start_s"], ph["end_s"], alpha=0.08, color=f"C{i % 10}")
        ax2.text(ph["start_s"], 0, ph["name"], fontsize=7, rotation=90, va="bottom")
    ax2.set_xlabel("seconds since the start")
    ax2.set_title(f"throughput, {r['personas']} personas")
    ax2.legend(fontsize=8)
    ax2.grid(alpha=0.3)
    fig.tight_layout()
    try:
        fig.savefig(path, dpi=110)
    except OSError as e:
        raise Failure(f"cannot write {path}: {e}") from None
    finally:
        plt.close(fig)
