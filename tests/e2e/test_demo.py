"""`dorgu dev demo` end to end: the narrated run matches the README's transcript (timestamps, ports and
temporary paths stripped), and Ctrl-C stops everything (no process left behind)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.e2e.kit import ROOT, process_tree

DONE = "The demo is done."


def normalise(text: str) -> list[str]:
    text = re.sub(r"\[\d{2}:\d{2}:\d{2}\]", "[hh:mm:ss]", text)
    text = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", text)
    text = re.sub(r"/tmp/dorgu-envtest-\w+", "/tmp/dorgu-envtest-XXXX", text)
    return [ln.rstrip() for ln in text.splitlines() if not ln.startswith("[dorgu envtest]")]


def readme_transcript() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- demo-transcript -->", 1)[1].split("<!-- /demo-transcript -->", 1)[0]
    return normalise(block.split("```text\n", 1)[1].rsplit("```", 1)[0])


def _all_pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def test_demo_runs_the_whole_system_and_ctrl_c_stops_everything() -> None:
    spawned: set[int] = set()
    procs: list[subprocess.Popen[str]] = []
    try:
        _run_demo(spawned, procs)
    except BaseException:
        # Nothing of a failed run may outlive the test (it would load every later test).
        for proc in procs:
            if proc.poll() is None:
                spawned |= set(process_tree(proc.pid)) | {proc.pid}
        for pid in sorted(spawned & _all_pids()):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        raise


def _run_demo(spawned: set[int], procs: list[subprocess.Popen[str]]) -> None:
    before = _all_pids()
    proc = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "dev", "demo"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    procs.append(proc)
    lines: list[str] = []
    done = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if line.startswith(DONE):
                done.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    t0 = time.monotonic()
    deadline = t0 + 240
    while not done.is_set() and proc.poll() is None and time.monotonic() < deadline:
        spawned |= set(process_tree(proc.pid)) - {proc.pid}
        time.sleep(0.5)
    took = time.monotonic() - t0
    assert done.is_set(), "".join(lines)[-3000:] + (proc.stderr.read() if proc.poll() is not None else "")
    time.sleep(1)
    spawned |= set(process_tree(proc.pid)) - {proc.pid}
    print(f"\nthe demo's narrated run took {took:.1f} s; {len(spawned)} processes seen under it")

    proc.send_signal(signal.SIGINT)  # Ctrl-C
    rc = proc.wait(120)  # a hang guard: the operator and the control plane stop in seconds
    reader.join(10)
    out = "".join(lines)
    assert rc == 0, out[-2000:]
    assert "stopping: persona watch, dorgu operator, control plane" in out
    assert "dorgu operator stopped (exit 0)" in out and "control plane stopped" in out

    # The transcript: everything up to "The demo is done." is the README's, line for line.
    got = normalise(out)
    got = got[: got.index(DONE) + 1]
    want = readme_transcript()
    assert want[-2:] == ["dorgu operator stopped (exit 0)", "control plane stopped"]  # the --no-wait ending
    want = want[: want.index(DONE) + 1]
    assert got == want, "\n".join(
        f"{'  ' if a == b else '! '}{a!r} | {b!r}" for a, b in zip(got, want + [""] * len(got), strict=False)
    )
    for key in ("Warning: Deployment replicas (1) below persona minimum (2)", "[kubelet stand-in]",
                "phase=Degraded", "phase=Active"):  # fmt: skip
        assert key in out, key

    # No process left behind: everything spawned under the demo (control plane, operator, watch) is gone.
    time.sleep(1)
    left = sorted(p for p in spawned & _all_pids() if p not in before and _cmdline(p))
    assert not left, [(p, _cmdline(p)) for p in left]
