"""Children forked by the fork server: the supervisor's own children, named, reaped and replaced as spawned
ones are; a dead fork server only means spawning again.

(The supervisor tests in test_supervisor.py run through ``run_supervisor`` too, so every behaviour they prove
— graceful stop, Ctrl-C, restarts, no child outliving a SIGKILLed supervisor, metrics — is proved for forked
children as well.)
"""

from __future__ import annotations

import os
import signal
from pathlib import Path

from tests.runtime.test_supervisor import alive, component


def _ppid(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def _fork_server_of(supervisor: int) -> list[int]:
    kids = [
        int(x)
        for t in Path(f"/proc/{supervisor}/task").iterdir()
        for x in (t / "children").read_text().split()
    ]
    return [k for k in kids if "dorgu.runtime.forkserver" in _cmdline(k)]


def test_forked_children_are_the_supervisors_children_and_named_as_spawned_ones(
    start, tmp_path: Path
) -> None:
    sup = start(
        component("one", "sleeper", dir=str(tmp_path)), component("two", "sleeper", dir=str(tmp_path))
    )
    sup.wait_ready()
    for name in ("one", "two"):
        pid = sup.current_pid(name)
        assert _ppid(pid) == sup.proc.pid  # re-parented to the supervisor, the subreaper
        assert _cmdline(pid).endswith(f"-m dorgu.runtime.child {name}")
        # A fork: the child did not start a fresh interpreter, so it has no argument vector of its own.
        assert b"\0-m\0" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    [server] = _fork_server_of(sup.proc.pid)

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0
    sup.wait_until(lambda: not alive(server), "the fork server to exit with the supervisor")


def test_a_dead_fork_server_means_spawning_again(start, tmp_path: Path) -> None:
    sup = start(component("victim", "sleeper", dir=str(tmp_path)), restart_backoff_initial_s=0.1)
    sup.wait_ready()
    [server] = _fork_server_of(sup.proc.pid)
    os.kill(server, signal.SIGKILL)
    first = sup.current_pid("victim")
    os.kill(first, signal.SIGKILL)
    sup.wait_until(lambda: len(sup.child_pids()["victim"]) == 2, "the victim to be restarted")
    sup.wait_ready()
    second = sup.current_pid("victim")
    assert sup.find("fork server", child="victim"), "\n".join(sup.lines)  # the warning names the failure
    assert b"\0-m\0dorgu.runtime.child\0victim" in Path(f"/proc/{second}/cmdline").read_bytes()  # spawned
    assert _ppid(second) == sup.proc.pid

    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0


def test_without_the_fork_server_every_child_is_a_fresh_interpreter(start, tmp_path: Path) -> None:
    sup = start(component("one", "sleeper", dir=str(tmp_path)), fork_server=False)
    sup.wait_ready()
    assert not _fork_server_of(sup.proc.pid)
    assert b"\0-m\0dorgu.runtime.child\0one" in Path(f"/proc/{sup.current_pid('one')}/cmdline").read_bytes()
    os.kill(sup.proc.pid, signal.SIGTERM)
    assert sup.wait_exit() == 0
