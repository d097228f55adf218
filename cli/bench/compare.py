"""``dorgu bench --peers``: dorgu beside its peers, run in turn on one control plane, as ratios.

Each figure is the median over the rounds of one subject; a ratio is dorgu's median over the peer's (below 1:
dorgu is faster, or uses less). The figures are what the single-run report has, per run, under ``runs``.
"""

from __future__ import annotations

import statistics
from typing import Any

# The acceptance, on the 2-core machine with the control plane on it.
RATIO_TARGETS = {"cold_s": 1.0, "burst_s": 1.0, "cpu_cold_burst_s": 1.2}
"""dorgu / client-go at most this."""
RSS_RATIO_AT_10K = 0.5
"""The controller process's RSS at 10,000 personas, dorgu / client-go."""
KOPF_COLD_SPEEDUP_AT_1K = 4.0
"""kopf's cold start / dorgu's at 1,000 personas, at least."""
ABSOLUTE_1K = {"cpu_cold_burst_s": 1.5, "cold_s": 2.0}
ABSOLUTE_10K = {"cold_s": 15.0}

FIGURES = (
    ("cold_s", "cold: start → all validated", "s"),
    ("burst_s", "burst: all changed → all reflect it", "s"),
    ("steady_p99_ms", "steady p99 (change → status)", "ms"),
    ("cpu_cold_burst_s", "CPU-seconds, cold + burst", "s"),
    ("cpu_total_s", "CPU-seconds, whole run", "s"),
    ("rss_controller_mib", "RSS of the controller process", "MiB"),
    ("rss_total_mib", "RSS of all its processes", "MiB"),
)


def _controller_rss(run: dict[str, Any]) -> float | None:
    rss = run.get("rss_mib") or {}
    v = rss.get("applicationpersona") if run["subject"] == "dorgu" else next(iter(rss.values()), None)
    return None if v is None else v["rss_mib"]


def figures_of(run: dict[str, Any]) -> dict[str, float | None]:
    """The compared figures of one run."""
    cpu = run.get("cpu_seconds") or {}
    total_cpu = sum(cpu.get(k, 0.0) for k in ("cold", "steady", "burst", "idle"))
    return {
        "cold_s": run["cold"]["seconds"],
        "burst_s": run["burst"]["seconds"],
        "steady_p99_ms": run["steady"]["latency_ms"]["p99"],
        "cpu_cold_burst_s": cpu.get("cold_plus_burst"),
        "cpu_total_s": round(total_cpu, 2) if cpu else None,
        "rss_controller_mib": _controller_rss(run),
        "rss_total_mib": round(sum(v["rss_mib"] for v in (run.get("rss_mib") or {}).values()), 1),
    }


def _median(values: list[float | None]) -> float | None:
    vs = [v for v in values if v is not None]
    return round(statistics.median(vs), 3) if vs else None


def assemble(
    s: Any,
    runs: list[dict[str, Any]],
    *,
    peers: list[str],
    cluster: dict[str, Any],
    machine: dict[str, Any],
    wall_s: float,
) -> dict[str, Any]:
    """One JSON object: settings, every run, the medians per subject, the ratios and the targets."""
    subjects = ["dorgu", *peers]
    medians: dict[str, dict[str, float | None]] = {}
    per_run: dict[str, list[dict[str, float | None]]] = {}
    for name in subjects:
        figs = [figures_of(r) for r in runs if r["subject"] == name]
        per_run[name] = figs
        medians[name] = {key: _median([f[key] for f in figs]) for key, _, _ in FIGURES}
    ratios: dict[str, dict[str, float | None]] = {}
    for peer in peers:
        ratios[peer] = {}
        for key, _, _ in FIGURES:
            a, b = medians["dorgu"][key], medians[peer][key]
            ratios[peer][key] = round(a / b, 3) if a is not None and b else None
    return {
        "personas": s.personas,
        "settings": {
            "changes_per_s": s.changes_per_s,
            "duration_s": s.duration_s,
            "heartbeat_interval_s": s.heartbeat_s,
            "workers": s.workers,
        },
        "order": [r["subject"] for r in runs],
        "rounds": max((r["round"] for r in runs), default=0),
        "cluster": cluster,
        "machine": machine,
        "wall_seconds": round(wall_s, 1),
        "figures": per_run,
        "medians": medians,
        "ratios": ratios,
        "targets": targets(s.personas, medians, ratios),
        "runs": [{k: v for k, v in r.items() if k != "timeline"} for r in runs],
    }


def targets(n: int, medians: dict[str, Any], ratios: dict[str, Any]) -> list[dict[str, Any]]:
    """The acceptance figures this run can judge (each with the value reached)."""
    out: list[dict[str, Any]] = []
    go = ratios.get("client-go")
    if go is not None:
        for key, limit in RATIO_TARGETS.items():
            v = go.get(key)
            out.append({"name": f"{key} dorgu / client-go <= {limit:g}", "value": v,
                        "met": v is not None and v <= limit})  # fmt: skip
        if n >= 10_000:
            v = go.get("rss_controller_mib")
            out.append({"name": f"controller RSS dorgu / client-go <= {RSS_RATIO_AT_10K:g}", "value": v,
                        "met": v is not None and v <= RSS_RATIO_AT_10K})  # fmt: skip
    kopf = ratios.get("kopf")
    if kopf is not None and n == 1000:
        v = kopf.get("cold_s")
        speedup = round(1 / v, 2) if v else None
        out.append({"name": f"cold start >= {KOPF_COLD_SPEEDUP_AT_1K:g}x faster than kopf", "value": speedup,
                    "met": speedup is not None and speedup >= KOPF_COLD_SPEEDUP_AT_1K})  # fmt: skip
    absolute = ABSOLUTE_1K if n == 1000 else ABSOLUTE_10K if n == 10_000 else {}
    for key, limit in absolute.items():
        v = medians["dorgu"].get(key)
        met = v is not None and v <= limit
        out.append({"name": f"dorgu {key} <= {limit:g} at {n:,}", "value": v, "met": met})
    return out


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    return f"{v:.0f} ms" if unit == "ms" else f"{v:.2f} s" if unit == "s" else f"{v:.0f} MiB"


def table(r: dict[str, Any]) -> str:
    subjects = list(r["medians"])
    peers = subjects[1:]
    heads = ["figure (median)", *subjects, *(f"dorgu / {p}" for p in peers)]
    rows = []
    for key, label, unit in FIGURES:
        row = [label, *(_fmt(r["medians"][s][key], unit) for s in subjects)]
        row += [("-" if r["ratios"][p][key] is None else f"{r['ratios'][p][key]:.2f}x") for p in peers]
        rows.append(row)
    widths = [max(len(x[i]) for x in [heads, *rows]) for i in range(len(heads))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)) for row in rows]
    lines.append("")
    lines.append(f"{r['personas']:,} personas; {r['rounds']} round(s), order {' '.join(r['order'])}; "
                 f"{r['settings']['workers']} workers each")  # fmt: skip
    for t in r["targets"]:
        lines.append(f"  {'met   ' if t['met'] else 'missed'}  {t['name']} (value {t['value']})")
    m = r["machine"]
    lines.append(f"{m['cpus']} CPUs ({m['cpu_model'] or 'unknown model'}); {r['cluster']['kind']} cluster "
                 f"{r['cluster']['server']}; load average {m['load_average_start'][0]} at start, "
                 f"{m['load_average_end'][0]} at the end; {r['wall_seconds']} s in all")  # fmt: skip
    return "\n".join(lines)
