"""`make e2e-k3d` fails loudly when the k3d test does not run, and deletes its cluster on every exit.

These machines have no Docker engine, so k3d cannot run here. The tests that drive `make e2e-k3d` put stub
``k3d``, ``docker`` and ``kubectl`` executables first on PATH (a stub is only for what this machine cannot
produce: Docker and k3d). Each stub logs its arguments and succeeds; ``k3d kubeconfig get`` prints a
kubeconfig whose server is unreachable and the stub ``kubectl version`` answers no server, so the real
tests/e2e/test_k3d.py, run by the real deploy/e2e-k3d.sh, cannot reach a cluster. Everything else is real:
make, the script, pytest and tests/e2e/k3d_gate.py's verdict on pytest's JUnit report.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.k3d_gate import NOT_RUN, verdict
from tests.e2e.kit import ROOT

CLUSTER = "dorgu-e2e-stubbed"
IMAGE = "dorgu-e2e-stubbed:test"
UNREACHABLE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: stubbed
  cluster:
    server: https://127.0.0.1:1
contexts:
- name: stubbed
  context: {cluster: stubbed, user: stubbed}
current-context: stubbed
users:
- name: stubbed
  user: {token: stubbed}
"""


def _stub_bin(tmp_path: Path, tools: tuple[str, ...], fail_on: str = "") -> tuple[Path, Path]:
    """Stub executables that append '<tool> <args>' to a log and exit 0 (1 if that line contains fail_on)."""
    bin_dir, log = tmp_path / "stub-bin", tmp_path / "stub.log"
    bin_dir.mkdir()
    (tmp_path / "kubeconfig").write_text(UNREACHABLE_KUBECONFIG)
    for tool in tools:
        script = bin_dir / tool
        script.write_text(
            "#!/bin/sh\n"
            f'echo "{tool} $*" >> "{log}"\n'
            f'if [ "{tool} $1 $2" = "k3d kubeconfig get" ]; then cat "{tmp_path / "kubeconfig"}"; fi\n'
            + (f'case "{tool} $*" in *"{fail_on}"*) exit 1;; esac\n' if fail_on else "")
            + "exit 0\n"
        )
        script.chmod(0o755)
    return bin_dir, log


def _make_e2e_k3d(tmp_path: Path, bin_dir: Path, *variables: str) -> subprocess.CompletedProcess[str]:
    """`make e2e-k3d` with bin_dir first on PATH, on this test's own virtualenv (never re-installed)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DORGU_E2E_", "MAKE", "K3D_", "PYTEST_")) and k not in ("MFLAGS", "KUBECONFIG")
    }
    env.update(PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}", TMPDIR=str(tmp_path))
    venv = sys.prefix
    return subprocess.run(
        ["make", "--no-print-directory", "-o", f"{venv}/.installed-stamp", "e2e-k3d",
         f"VENV={venv}", f"K3D_CLUSTER={CLUSTER}", f"IMAGE={IMAGE}", *variables],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=180,
    )  # fmt: skip


def _log(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


@pytest.mark.parametrize(
    ("variables", "fail_on", "why"),
    [
        pytest.param((), "", "kubectl got no server version", id="unusable-kubeconfig"),
        pytest.param(
            ("PYTEST_ARGS=-k no_such_test",), "", "pytest collected no tests", id="nothing-collected"
        ),
        pytest.param((), "rollout status", "'kubectl rollout status' failed", id="rollout-failed"),
    ],
)
def test_make_e2e_k3d_fails_loudly_when_the_test_does_not_run(
    tmp_path: Path, variables: tuple[str, ...], fail_on: str, why: str
) -> None:
    bin_dir, log = _stub_bin(tmp_path, ("k3d", "docker", "kubectl"), fail_on)
    out = _make_e2e_k3d(tmp_path, bin_dir, *variables)
    print(out.stdout[-3000:], out.stderr[-3000:], sep="\n")
    calls = _log(log)
    assert f"docker build -t {IMAGE} ." in calls  # the stub docker "built" the image; nothing real was built
    assert f"k3d image import -c {CLUSTER} {IMAGE}" in calls
    assert out.returncode != 0
    assert f"make e2e-k3d: FAILED: {NOT_RUN}" in out.stderr and why in out.stderr
    assert "make e2e-k3d: passed" not in out.stderr
    # The cluster was created and then deleted: the delete is the last k3d call.
    creates = [i for i, c in enumerate(calls) if c.startswith(f"k3d cluster create {CLUSTER} ")]
    deletes = [i for i, c in enumerate(calls) if c == f"k3d cluster delete {CLUSTER}"]
    assert len(creates) == 1 and len(deletes) == 1 and creates[0] < deletes[0]
    assert [c for c in calls if c.startswith("k3d ")][-1] == f"k3d cluster delete {CLUSTER}"


def test_make_e2e_k3d_keeps_the_cluster_with_k3d_keep(tmp_path: Path) -> None:
    bin_dir, log = _stub_bin(tmp_path, ("k3d", "docker", "kubectl"))
    out = _make_e2e_k3d(tmp_path, bin_dir, "K3D_KEEP=1")
    assert out.returncode != 0
    assert f"make e2e-k3d: FAILED: {NOT_RUN}" in out.stderr
    assert f"kept cluster {CLUSTER}" in out.stderr and f"k3d cluster delete {CLUSTER}" in out.stderr
    assert not [c for c in _log(log) if c.startswith("k3d cluster delete")]


def test_make_e2e_k3d_stops_at_once_without_docker(tmp_path: Path) -> None:
    """k3d on PATH but no docker executable (PATH has the stub k3d, make and the shell only)."""
    bin_dir, log = _stub_bin(tmp_path, ("k3d",))
    for tool in ("make", "bash", "sh", "env"):
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    out = subprocess.run(
        ["make", "--no-print-directory", "e2e-k3d"], cwd=ROOT, capture_output=True, text=True, timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert out.returncode == 2
    assert "needs a running Docker engine" in out.stderr and "nothing was run" in out.stderr
    assert _log(log) == []  # k3d was never called


@pytest.mark.parametrize(("required", "rc", "summary"), [("1", 1, "1 error"), ("", 0, "1 skipped")])
def test_k3d_test_without_a_kubeconfig_is_an_error_only_when_required(
    tmp_path: Path, required: str, rc: int, summary: str
) -> None:
    """test_k3d.py run with no DORGU_E2E_KUBECONFIG: a skip normally, an error under DORGU_E2E_REQUIRED=1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DORGU_E2E_", "PYTEST_"))}
    env["DORGU_E2E_REQUIRED"] = required
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/e2e/test_k3d.py::test_k3d_cluster_runs_dorgu"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == rc and summary in out.stdout, out.stdout[-2000:]
    if required:
        assert "the k3d e2e test did not run: runs only from `make e2e-k3d`" in out.stdout


# The gate on real pytest runs: a target test that passes, skips, fails or cannot set up, or is deselected.
TARGET_MODULE = """\
import os
import pytest

MODE = os.environ["GATE_MODE"]


@pytest.fixture
def ready() -> None:
    if MODE == "setup":
        pytest.fail("the k3d e2e test did not run: kubeconfig unusable", pytrace=False)
    if MODE == "setup-plain":
        raise RuntimeError("no cluster")


def test_target(ready: None) -> None:
    if MODE == "skip":
        pytest.skip("no cluster")
    assert MODE != "fail"


def test_other() -> None:
    if MODE == "other-skip":
        pytest.skip("other skipped")
"""


@pytest.mark.parametrize(
    ("mode", "args", "passed", "message"),
    [
        pytest.param("pass", (), True, "ran and passed", id="pass"),
        pytest.param("skip", (), False, f"{NOT_RUN}: test_target was skipped: no cluster", id="skip"),
        pytest.param("setup", (), False, f"{NOT_RUN}: kubeconfig unusable", id="setup-failed"),
        pytest.param("setup-plain", (), False, f"{NOT_RUN}: failed on setup", id="setup-error"),
        pytest.param("fail", (), False, "ran and failed", id="fail"),
        pytest.param(
            "pass",
            ("-k", "no_such_test"),
            False,
            f"{NOT_RUN}: pytest collected no tests (pytest exit 5)",
            id="nothing-collected",
        ),
        pytest.param(
            "pass", ("-k", "test_other"), False, f"{NOT_RUN}: test_target was not collected", id="other"
        ),
        pytest.param("other-skip", (), False, f"{NOT_RUN} in full: skipped test_other", id="other-skipped"),
    ],
)
def test_gate_passes_only_a_test_that_ran_and_passed(
    tmp_path: Path, mode: str, args: tuple[str, ...], passed: bool, message: str
) -> None:
    (tmp_path / "test_gate_target.py").write_text(TARGET_MODULE)
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    junit = tmp_path / "junit.xml"
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={junit}",
         "test_gate_target.py", *args],
        cwd=tmp_path, env={**os.environ, "GATE_MODE": mode}, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    got = verdict(junit, run.returncode, "test_target")
    assert got[0] is passed and message in got[1], (got, run.stdout[-2000:])


def test_gate_without_a_report_is_a_test_that_did_not_run(tmp_path: Path) -> None:
    passed, message = verdict(tmp_path / "missing.xml", 4, "test_target")
    assert not passed and message.startswith(f"{NOT_RUN}: pytest exited 4 without a readable report")
