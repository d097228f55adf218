"""What every benchmark prints besides its own figures: progress lines on stderr, the load it started under,
its table, the machine it ran on, and with ``--json`` one JSON object of the figures on stdout (the table
then goes to stderr, so that stdout stays one JSON object)."""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

BUSY_LOAD = 0.5
"""A 1-minute load average above this before a bench starts is said: other work shares the cores."""


def progress(msg: str) -> None:
    """One line on stderr: ``[bench] msg``."""
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def load_before_start() -> float:
    """The 1-minute load average now; above :data:`BUSY_LOAD` a progress line says so."""
    load = os.getloadavg()[0]
    if load > BUSY_LOAD:
        progress(
            f"the 1-minute load average is {load:.1f} before the bench starts: other work shares the cores"
        )
    return load


def check(value: float, target: float, op: str = "<=") -> dict[str, Any]:
    """A figure judged against its target: ``op`` ``<=`` (at most the target) or ``>=`` (at least)."""
    ok = value <= target if op == "<=" else value >= target
    return {"value": value, "target": f"{op} {target:g}", "pass": ok}


def verdicts(checks: dict[str, dict[str, Any]]) -> Callable[[str], str]:
    """``PASS`` or ``FAIL``, by the name of one of :func:`check`'s results in ``checks``."""
    return lambda name: "PASS" if checks[name]["pass"] else "FAIL"


def aligned_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns left-aligned to their widest cell, two spaces apart, a rule of dashes under ``head``; no
    row ends in blanks."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def machine(fig: dict[str, Any], *, started: float, load: float, note: str = "") -> str:
    """Records in ``fig`` the seconds since ``started`` (``time.monotonic()``), the load average the bench
    started under and the machine's CPUs; returns the paragraph that says them (``note`` after the total)."""
    fig["wall_s"] = time.monotonic() - started
    fig["loadavg_1m_before"] = load
    fig["cpus"] = os.cpu_count()
    return (
        f"\n\n(total {fig['wall_s']:.0f} s{note}; {fig['cpus']} CPUs, "
        f"1-minute load average {load:.1f} before the start)"
    )


def emit(text: str, figures: Any, *, as_json: bool) -> None:
    """``text`` on stdout; with ``as_json``, ``text`` on stderr and ``figures`` as one JSON object on
    stdout."""
    if as_json:
        print(text, file=sys.stderr)
        print(json.dumps(figures))
    else:
        print(text)
