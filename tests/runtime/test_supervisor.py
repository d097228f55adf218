"""The supervisor, run as a process of its own with small test components
(``tests/runtime/programs/components.py``).

No Kubernetes: the children get a dummy ConnectionSettings. Every wait polls with a generous deadline;
nothing asserts speed.
"""

from __future__ import annotations

import io
import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dorgu.runtime.child import EXIT_ORPHANED, SUPERVISOR_PID_ENV
from dorgu.runtime.logs import JsonFormatter, controller_var, key_var, reconcile_id_var, setup_logging
from dorgu.runtime.supervisor import RestartBackoff

ROOT = Path(__file__).resolve().parents[2]
MAIN = Path(__file__).resolve().parent / "programs" / "supervisor_main.py"
COMPONENTS = "tests.runtime.programs.components"
DEADLINE_S = 20.0  # generous upper bound for anything to happen on a loaded machine


def _env() -> dict[str, str]:
    env = dict(os.environ)
    # The children import their targets (tests.runtime.programs.components) from the repository root.
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    return env


def alive(pid: int) -> bool:
    """True while ``pid`` is a process that has not exited (zombies count as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


class SupervisorProcess:
    """A supervisor started with ``supervisor_main.py``; its JSON log lines are collected from stderr."""

    def __init__(self, *, tmp_path: Path, components: list[dict[str, Any]], **settings: Any) -> None:
        self.tmp_path = tmp_path
        self.metrics_dir = tmp_path / "metrics"
        config = {
            "components": components,
            "settings": {
                "metrics_host": "127.0.0.1",
                "metrics_port": 0,
                "metrics_dir": str(self.metrics_dir),
                "identity": "test-replica",
                **settings,
            },
        }
        self.records: list[dict[str, Any]] = []
        self.lines: list[str] = []
        # A session of its own: signals for the process group (Ctrl-C) are sent by the tests only.
        self.proc = subprocess.Popen(
            [sys.executable, str(MAIN), json.dumps(config)],
            cwd=ROOT,
            env=_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._port: int | None = None

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip("\n")
            self.lines.append(line)
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self.records.append(record)

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.lines[-n:])

    def wait_until(self, predicate: Callable[[], Any], what: str, timeout: float = DEADLINE_S) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; log tail:\n{self.log_tail()}")
            time.sleep(0.05)

    def find(self, msg: str, **fields: Any) -> list[dict[str, Any]]:
        """Log records whose message starts with ``msg`` and whose fields match."""
        return [
            r
            for r in list(self.records)
            if str(r.get("msg", "")).startswith(msg) and all(r.get(k) == v for k, v in fields.items())
        ]

    @property
    def port(self) -> int:
        if self._port is None:
            record = self.wait_until(lambda: self.find("serving health and metrics"), "the HTTP server")[0]
            self._port = int(record["port"])
        return self._port

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=5) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def child_pids(self) -> dict[str, list[int]]:
        """Every pid each component was started with, oldest first."""
        pids: dict[str, list[int]] = {}
        for r in self.find("component started"):
            pids.setdefault(r["child"], []).append(int(r["child_pid"]))
        return pids

    def current_pid(self, name: str) -> int:
        return self.child_pids()[name][-1]

    def all_child_pids(self) -> list[int]:
        return [pid for pids in self.child_pids().values() for pid in pids]

    def wait_ready(self) -> str:
        def ready() -> str | None:
            status, body = self.get("/readyz")
            return body if status == 200 else None

        return self.wait_until(ready, "/readyz to be 200")

    def wait_exit(self, timeout: float = DEADLINE_S) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"supervisor did not exit within {timeout}s; log:\n{self.log_tail()}"
            ) from None

    def cleanup(self) -> None:
        # Kill only what this test started, by pid.
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for pid in self.all_child_pids():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
        self._reader.join(timeout=5)


def component(name: str, target: str, **options: Any) -> dict[str, Any]:
    return {"name": name, "target": f"{COMPONENTS}:{target}", "options": options}


def markers(tmp_path: Path, what: str) -> set[str]:
    return {p.name for p in tmp_path.glob(f"{what}-*")}


# -- readiness, health, graceful stop -----------------------------------------------------------------


def test_readyz_is_503_until_every_child_reported_ready(start, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    sup = start(
        component("plain", "sleeper", dir=str(tmp_path)),
        component("gated", "gated", dir=str(tmp_path), gate=str(gate)),
    )
    assert sup.get("/healthz") == (200, "ok")
    sup.wait_until(lambda: sup.find("component ready", child="plain"), "plain to report ready")
    sup.wait_until(lambda: sup.find("component started", child="gated"), "gated to start")

    status, body = sup.get("/readyz")
    assert status == 503
    assert "[+]plain ready" in body
    assert "[-]gated not ready" in body

    gate.touch()
    body = sup.wait_ready()
    assert "[+]gated ready" in body and "[+]plain ready" in body

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_sigterm_stops_every_child_gracefully_and_exits_0(start, tmp_path: Path) -> None:
    shutdown_timeout_s = 5.0
    sup = start(
        component("one", "sleeper", dir=str(tmp_path)),
        component("two", "sleeper", dir=str(tmp_path)),
        shutdown_timeout_s=shutdown_timeout_s,
    )
    sup.wait_ready()
    pids = {name: sup.current_pid(name) for name in ("one", "two")}
    # Each child got the replica identity.
    assert {p.read_text() for p in tmp_path.glob("started-*")} == {"test-replica"}

    os.kill(sup.proc.pid, signal.SIGTERM)
    # All gone within the shutdown timeout (plus slack for a loaded machine); exit code 0.
    assert sup.wait_exit(timeout=shutdown_timeout_s + 10) == 0
    assert not any(alive(pid) for pid in pids.values())
    # The children saw a graceful stop: each target returned after ctx.stopping was set.
    assert markers(tmp_path, "graceful") == {f"graceful-{name}-{pid}" for name, pid in pids.items()}
    assert not sup.find("component exited unexpectedly")
    assert not (tmp_path / "metrics").exists() or not list((tmp_path / "metrics").glob("*.sock"))


def test_ctrl_c_to_the_process_group_is_handled_by_the_supervisor_alone(start, tmp_path: Path) -> None:
    sup = start(component("one", "sleeper", dir=str(tmp_path)))
    sup.wait_ready()
    pid = sup.current_pid("one")

    # What a terminal does on Ctrl-C: SIGINT to every process of the foreground group. The child
    # ignores it and is stopped by the supervisor's SIGTERM instead.
    os.killpg(sup.proc.pid, signal.SIGINT)
    assert sup.wait_exit() == 0
    assert not alive(pid)
    assert markers(tmp_path, "graceful") == {f"graceful-one-{pid}"}


def test_a_child_ignoring_sigterm_is_sigkilled_after_the_shutdown_timeout(start, tmp_path: Path) -> None:
    shutdown_timeout_s = 1.5
    sup = start(
        component("stubborn", "stubborn", dir=str(tmp_path)),
        component("polite", "sleeper", dir=str(tmp_path)),
        shutdown_timeout_s=shutdown_timeout_s,
    )
    sup.wait_ready()
    stubborn, polite = sup.current_pid("stubborn"), sup.current_pid("polite")

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit(timeout=shutdown_timeout_s + 10) == 0
    assert not alive(stubborn) and not alive(polite)
    assert sup.find("component did not stop within the shutdown timeout", child="stubborn")
    assert sup.find("component stopped", child="stubborn", exit_code=-signal.SIGKILL)
    assert markers(tmp_path, "graceful") == {f"graceful-polite-{polite}"}


# -- restarts --------------------------------------------------------------------------------------------


def test_kill_9_of_a_child_restarts_it_and_readyz_recovers(start, tmp_path: Path) -> None:
    sup = start(
        component("victim", "sleeper", dir=str(tmp_path)),
        component("bystander", "sleeper", dir=str(tmp_path)),
        restart_backoff_initial_s=0.1,
    )
    sup.wait_ready()
    victim, bystander = sup.current_pid("victim"), sup.current_pid("bystander")

    os.kill(victim, signal.SIGKILL)
    sup.wait_until(lambda: len(sup.child_pids()["victim"]) == 2, "victim to be restarted")
    sup.wait_ready()
    assert sup.current_pid("victim") != victim
    assert sup.current_pid("bystander") == bystander
    [exit_record] = sup.find("component exited unexpectedly", child="victim")
    assert exit_record["signal"] == "SIGKILL"
    assert exit_record["exit_code"] == -signal.SIGKILL

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_crashing_children_are_restarted_with_growing_backoff(start, tmp_path: Path) -> None:
    initial, maximum = 0.1, 0.4
    sup = start(
        component("crasher", "crasher", dir=str(tmp_path), after_s=0.0),
        component("unloadable", "no_such_component"),
        component("steady", "sleeper", dir=str(tmp_path)),
        restart_backoff_initial_s=initial,
        restart_backoff_max_s=maximum,
        restart_backoff_reset_s=60.0,
    )
    crashes = sup.wait_until(
        lambda: (r := sup.find("component exited unexpectedly", child="crasher")) and len(r) >= 4 and r,
        "four crashes",
    )
    # Doubling from the initial delay, capped at the maximum (no run lasted the reset time).
    assert [r["delay_s"] for r in crashes[:4]] == [initial, 2 * initial, maximum, maximum]
    assert all(r["exit_code"] == 1 for r in crashes)
    assert sup.find("component failed", component="crasher")  # the child logged the traceback
    assert all("crashed on purpose" in r["exc"] for r in sup.find("component failed", component="crasher"))

    # A target that cannot be imported is a bootstrap failure (exit code 2), restarted like any crash.
    sup.wait_until(lambda: sup.find("component exited unexpectedly", child="unloadable"), "unloadable")
    assert sup.find("component exited unexpectedly", child="unloadable")[0]["exit_code"] == 2

    # The supervisor lives on: healthy, not ready (crashers never report ready), the steady child untouched.
    assert sup.proc.poll() is None
    assert sup.get("/healthz") == (200, "ok")
    status, body = sup.get("/readyz")
    assert status == 503 and "[+]steady ready" in body and "[-]crasher not ready" in body
    assert len(sup.child_pids()["steady"]) == 1

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0
    assert not any(alive(pid) for pid in sup.all_child_pids())


def test_restart_backoff_doubles_caps_and_resets_after_a_long_run() -> None:
    backoff = RestartBackoff(initial_s=0.5, max_s=3.0, reset_s=60.0)
    assert [backoff.after_exit(uptime_s=1.0) for _ in range(5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    assert backoff.after_exit(uptime_s=60.0) == 0.5  # stayed up long enough: back to the start
    assert backoff.after_exit(uptime_s=0.1) == 1.0


# -- the supervisor's death ----------------------------------------------------------------------------


def test_kill_9_of_the_supervisor_leaves_no_child_behind(start, tmp_path: Path) -> None:
    sup = start(
        component("one", "sleeper", dir=str(tmp_path)),
        component("stubborn", "stubborn", dir=str(tmp_path)),  # ignores SIGTERM; PDEATHSIG is SIGKILL
    )
    sup.wait_ready()
    pids = sup.all_child_pids()
    assert len(pids) == 2 and all(alive(pid) for pid in pids)

    sup.proc.kill()
    sup.proc.wait()
    sup.wait_until(lambda: not any(alive(pid) for pid in pids), "children to die with the supervisor", 10)


def test_a_child_whose_supervisor_is_already_gone_exits_at_once() -> None:
    # PR_SET_PDEATHSIG only helps while the parent lives; a child started by a parent that died before
    # prctl ran must notice by itself (its parent pid is not the supervisor's).
    env = _env() | {SUPERVISOR_PID_ENV: str(os.getpid())}  # we are not its parent: the shell is
    proc = subprocess.run(
        ["/bin/sh", "-c", f'exec "{sys.executable}" -m dorgu.runtime.child orphan & wait $!'],
        env=env,
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=DEADLINE_S,
    )
    assert proc.returncode == EXIT_ORPHANED, proc.stderr.decode()


# -- metrics -----------------------------------------------------------------------------------------


def _samples(text: str, name: str) -> dict[str, float]:
    return {
        m.group(1): float(m.group(2))
        for m in re.finditer(rf"^{name}(\{{[^}}]*\}}) (\S+)$", text, flags=re.MULTILINE)
    }


def test_metrics_serve_the_childrens_samples_and_drop_dead_childrens_live_gauges(
    start, tmp_path: Path
) -> None:
    sup = start(
        component("meter", "metered", dir=str(tmp_path), count=3),
        restart_backoff_initial_s=0.1,
    )
    sup.wait_ready()
    first = sup.current_pid("meter")
    status, text = sup.get("/metrics")
    assert status == 200
    assert _samples(text, "dorgu_test_ticks_total") == {'{component="meter"}': 3.0}
    assert _samples(text, "dorgu_test_up") == {'{component="meter"}': 1.0}
    assert sup.metrics_dir.joinpath(f"{first}.sock").exists()

    os.kill(first, signal.SIGKILL)
    sup.wait_until(lambda: len(sup.child_pids()["meter"]) == 2, "meter to be restarted")
    sup.wait_ready()
    status, text = sup.get("/metrics")
    assert status == 200
    # The dead process's counts stay counted; its live gauge is gone (only the new process's 1 remains).
    assert _samples(text, "dorgu_test_ticks_total") == {'{component="meter"}': 6.0}
    assert _samples(text, "dorgu_test_up") == {'{component="meter"}': 1.0}
    assert not sup.metrics_dir.joinpath(f"{first}.sock").exists()
    assert _samples(text, "dorgu_component_restarts_total") == {'{component="meter"}': 1.0}

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_a_clean_exit_hands_over_what_the_child_counted_after_the_last_scrape(start, tmp_path: Path) -> None:
    sup = start(
        component("meter", "metered", dir=str(tmp_path), count=3, count_then_restart=10),
        restart_backoff_initial_s=0.1,
    )
    sup.wait_ready()
    status, text = sup.get("/metrics")
    assert status == 200
    assert _samples(text, "dorgu_test_ticks_total") == {'{component="meter"}': 3.0}
    (tmp_path / "scraped").touch()  # now the child counts 10 more and exits cleanly, asking for a restart
    sup.wait_until(lambda: len(sup.child_pids()["meter"]) == 2, "meter to be restarted")
    sup.wait_ready()
    _status, text = sup.get("/metrics")
    # 3 + 10 from the first process (its final snapshot, sent on the status pipe) + 3 from the second. Without
    # the final snapshot it would be 3 + 3: the 10 were counted after the only scrape of the first process.
    assert _samples(text, "dorgu_test_ticks_total") == {'{component="meter"}': 16.0}
    assert _samples(text, "dorgu_test_up") == {'{component="meter"}': 1.0}
    # Asked for, not a crash: not counted as a restart.
    assert _samples(text, "dorgu_component_restarts_total") == {'{component="meter"}': 0.0}

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0


# -- logs ------------------------------------------------------------------------------------------------


def test_json_log_lines_carry_context_extra_fields_and_tracebacks() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("dorgu.test.logs")
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(component="widgets"))
    logger.addHandler(handler)
    logger.propagate = False
    try:
        tokens = [controller_var.set("widget"), key_var.set("ns/w1"), reconcile_id_var.set("r-1")]
        logger.warning("reconciled %s", "w1", extra={"attempt": 2, "path": Path("/x")})
        for var, token in zip((controller_var, key_var, reconcile_id_var), tokens, strict=True):
            var.reset(token)
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True

    first, second = (json.loads(line) for line in stream.getvalue().splitlines())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", first["ts"])
    assert first | {"ts": None} == {
        "ts": None,
        "level": "warning",
        "logger": "dorgu.test.logs",
        "msg": "reconciled w1",
        "component": "widgets",
        "controller": "widget",
        "key": "ns/w1",
        "reconcile_id": "r-1",
        "attempt": 2,
        "path": "/x",
    }
    assert "controller" not in second and second["level"] == "error"
    assert second["exc"].startswith("Traceback") and "ValueError: bad" in second["exc"]


def test_setup_logging_replaces_handlers_and_takes_level_names() -> None:
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    stream = io.StringIO()
    try:
        setup_logging("debug", component="c1", stream=stream)
        setup_logging("DEBUG", component="c2", stream=stream)
        assert len(root.handlers) == 1 and root.level == logging.DEBUG
        logging.getLogger("dorgu.test").debug("hello")
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
        for h in saved_handlers:
            root.addHandler(h)
        root.setLevel(saved_level)
        logging.captureWarnings(False)
    [line] = stream.getvalue().splitlines()
    assert json.loads(line)["component"] == "c2"
