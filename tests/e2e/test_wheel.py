"""dorgu as a new user gets it: built into a wheel (from its sdist), installed with its dependencies into a
fresh virtualenv outside the repository, and run from an empty directory.

The wheel is built from a copy of the source tree (the checkout is never written to) with ``python -m
build``, which makes the sdist first and the wheel from the unpacked sdist — so both are proven. ``pip
install <wheel>`` resolves the dependencies from the package index as a user's install does (a cached one
takes under a minute); the venv sees nothing of the repository or of the project's venv (no PYTHONPATH, no
``--system-site-packages``). Only the local control plane's binaries are shared: they are machine state built
once per machine (``dorgu.envtest``), not part of the package.

First, fast and without a build: ``pyproject.toml`` lists every package of the tree. Then (slow): the
importable top-level names the wheel installs are exactly those ``docs/architecture.md`` lists between its
``top-level-names`` markers; every module of the source packages and every data file of ``deploy/`` the CLI
reads is in the wheel (the data byte for byte); matplotlib is not installed and ``dorgu bench --plot`` says
how to get it; ``dorgu dev demo --no-wait`` and ``dorgu bench --personas 50`` succeed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dorgu.envtest.binaries import cache_root

ROOT = Path(__file__).resolve().parents[2]
DATA_DIRS = ("crds", "samples", "demo-app")
"""The parts of deploy/ the CLI reads at run time (CRD install, samples, the demo's app)."""
NOT_SHIPPED = {"bench", "tests"}
"""Top-level folders with Python packages that stay out of the wheel."""
BUILD_TIMEOUT_S = 300
INSTALL_TIMEOUT_S = 600
RUN_TIMEOUT_S = 600


@dataclass(frozen=True, kw_only=True)
class Installed:
    """A wheel installed into a venv of its own, and a clean environment to run it in."""

    wheel: Path
    """The wheel ``python -m build`` made (from the sdist)."""
    sdist: Path
    """The sdist ``python -m build`` made."""
    venv: Path
    """The fresh virtualenv (outside the repository) the wheel is installed in."""
    empty: Path
    """An empty directory, the working directory of every command run."""
    env: dict[str, str]
    """The environment of every command run: the venv first on PATH, nothing of the checkout."""

    def run(self, *argv: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` (``dorgu`` resolves to the venv's) from the empty directory; its whole process group
        is killed when it overruns ``timeout`` (the control plane and the operator must not outlive it)."""
        exe = shutil.which(argv[0], path=self.env["PATH"]) or argv[0]
        proc = subprocess.Popen(
            [exe, *argv[1:]], cwd=self.empty, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, start_new_session=True,
        )  # fmt: skip
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            pytest.fail(f"{' '.join(argv)} overran {timeout:.0f} s:\n{out[-3000:]}\n{err[-3000:]}")
        return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def documented_top_level_names() -> set[str]:
    """The names ``docs/architecture.md`` lists between ``<!-- top-level-names -->`` and its end marker."""
    doc = (ROOT / "docs" / "architecture.md").read_text()
    match = re.search(r"<!-- top-level-names -->(.*?)<!-- /top-level-names -->", doc, re.S)
    assert match, "docs/architecture.md lacks the <!-- top-level-names --> block"
    names = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", match.group(1)))
    assert names, "the <!-- top-level-names --> block of docs/architecture.md names nothing"
    return names


def wheel_top_level_names(names: list[str]) -> set[str]:
    """The importable top-level names among a wheel's entries: packages (folders) and modules (``*.py``)."""
    out: set[str] = set()
    for name in names:
        first, sep, _ = name.partition("/")
        if first.endswith((".dist-info", ".data")):
            continue
        if sep or first.endswith(".py"):
            out.add(first.removesuffix(".py"))
    return out


def _copy_source(dest: Path) -> None:
    # The build sees the working tree (committed or not) but none of its generated state.
    junk = shutil.ignore_patterns(".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc",
                                  ".*_cache", ".hypothesis", "tests", ".dorgu")  # fmt: skip
    shutil.copytree(ROOT, dest, ignore=junk, symlinks=True)


def _check(proc: subprocess.CompletedProcess[str], what: str) -> None:
    tail = f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{tail}"


def _shipped_source_dirs() -> list[Path]:
    return [d for d in sorted(ROOT.iterdir()) if (d / "__init__.py").is_file() and d.name not in NOT_SHIPPED]


def test_pyproject_lists_every_package_of_the_tree() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir: dict[str, str] = config.get("package-dir", {})

    def directory(package: str) -> Path:
        # setuptools' rule: the longest mapped prefix of the name gives the directory; the rest follows.
        parts = package.split(".")
        for n in range(len(parts), -1, -1):
            prefix = ".".join(parts[:n])
            if prefix in package_dir or n == 0:
                return ROOT / package_dir.get(prefix, "") / Path(*parts[n:])
        raise AssertionError(package)

    listed = {directory(p) for p in config["packages"]}
    assert all(d.is_dir() for d in listed), sorted(str(d) for d in listed if not d.is_dir())
    packages = {i.parent for d in _shipped_source_dirs() for i in d.rglob("__init__.py")}
    missing = sorted(str(d.relative_to(ROOT)) for d in packages - listed)
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {missing}"
    assert {ROOT / "deploy" / d for d in DATA_DIRS if d != "demo-app"} <= listed


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("wheel")
    assert not base.resolve().is_relative_to(ROOT), "the venv must lie outside the repository"
    src, dist, venv, empty, home = (base / d for d in ("src", "dist", "venv", "empty", "home"))
    _copy_source(src)
    build = subprocess.run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)],
                           capture_output=True, text=True, timeout=BUILD_TIMEOUT_S)  # fmt: skip
    _check(build, "python -m build")
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")

    # A plain interpreter (not the project venv's) makes the venv: nothing of the project's packages leaks in.
    base_python = Path(getattr(sys, "_base_executable", sys.executable))
    _check(subprocess.run([str(base_python), "-m", "venv", str(venv)], capture_output=True, text=True,
                          timeout=120), "python -m venv")  # fmt: skip
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q",
         str(wheel)],
        capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S, cwd=base,
    )  # fmt: skip
    _check(pip, f"pip install {wheel.name}")

    empty.mkdir()
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "KUBECONFIG", "VIRTUAL_ENV")}
    env.update(
        PATH=os.pathsep.join([str(venv / "bin"), env.get("PATH", "")]),
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        # The control plane's binaries: machine state, built once per machine.
        XDG_CACHE_HOME=str(cache_root().parent.parent),
        NO_COLOR="1",
    )
    yield Installed(wheel=wheel, sdist=sdist, venv=venv, empty=empty, env=env)


@pytest.mark.slow
def test_the_wheel_installs_exactly_the_documented_top_level_names(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        entries = zf.namelist()
        top_level_txt = next(n for n in entries if n.endswith(".dist-info/top_level.txt"))
        listed = set(zf.read(top_level_txt).decode().split())
    names = wheel_top_level_names(entries)
    documented = documented_top_level_names()
    assert names == documented, f"the wheel installs {sorted(names)}; the docs list {sorted(documented)}"
    assert listed == documented, f"top_level.txt says {sorted(listed)}"

    # Each of them imports in the venv, from the venv (not from a checkout).
    code = "import importlib, sys\nfor n in sys.argv[1:]:\n    print(importlib.import_module(n).__file__)"
    proc = installed.run("python", "-c", code, *sorted(documented))
    _check(proc, "importing the top-level names")
    site = str(installed.venv.resolve())
    assert all(Path(f).resolve().is_relative_to(site) for f in proc.stdout.split()), proc.stdout


@pytest.mark.slow
def test_the_wheel_has_every_module_and_the_run_time_data(installed: Installed) -> None:
    with zipfile.ZipFile(installed.wheel) as zf:
        entries = {n: zf.read(n) for n in zf.namelist() if not n.endswith("/")}

    def shipped(rel: str) -> list[str]:
        # A source file's place in the wheel may carry a namespace prefix (``dorgu/cli/...``).
        return [n for n in entries if n == rel or n.endswith("/" + rel)]

    missing = [
        str(p.relative_to(ROOT))
        for d in _shipped_source_dirs()
        for p in sorted(d.rglob("*.py"))
        if "__pycache__" not in p.parts and not shipped(str(p.relative_to(ROOT)))
    ]
    assert not missing, f"modules missing from the wheel (list their packages in pyproject.toml): {missing}"

    data = [p for d in DATA_DIRS for p in sorted((ROOT / "deploy" / d).rglob("*")) if p.is_file()]
    assert any(p.name.endswith(".yaml") for p in data)
    for p in data:
        rel = str(p.relative_to(ROOT / "deploy"))
        where = [n for n in entries if n.endswith("/deploy/" + rel)]
        assert len(where) == 1, f"deploy/{rel} in the wheel: {where}"
        assert entries[where[0]] == p.read_bytes(), f"deploy/{rel} differs in the wheel"

    with zipfile.ZipFile(installed.wheel) as zf:
        assert not [n for n in zf.namelist() if "/deploy/operator/" in n or "/deploy/overlays/" in n]
    with tarfile.open(installed.sdist) as tf:
        in_sdist = {m.name.split("/", 1)[1] for m in tf.getmembers() if "/" in m.name}
    assert {f"deploy/{p.relative_to(ROOT / 'deploy')}" for p in data} <= in_sdist


@pytest.mark.slow
def test_runtime_only_and_plot_says_how_to_install_the_bench_extra(installed: Installed) -> None:
    find = "import importlib.util; print(importlib.util.find_spec('matplotlib'))"
    proc = installed.run("python", "-c", find)
    _check(proc, "looking for matplotlib")
    assert proc.stdout.strip() == "None", "matplotlib is the bench extra's, not a runtime dependency"

    proc = installed.run("dorgu", "bench", "--personas", "50", "--plot", "bench.png", timeout=60)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "pip install 'dorgu[bench]'" in proc.stderr
    assert not list(installed.empty.iterdir()), "nothing ran: the check comes before the bench"


@pytest.mark.slow
def test_runtime_only_generates_without_the_llm_extra(installed: Installed) -> None:
    """The deterministic path needs none of the LLM libraries; a configured provider without them falls back
    with a warning naming the extra, and the command still succeeds (writing nothing here: --dry-run)."""
    libs = ("openai", "anthropic", "google.genai", "ollama")
    find = (
        "import importlib.util\n"
        "def there(m):\n"
        "    try:\n"
        "        return importlib.util.find_spec(m) is not None\n"
        "    except ModuleNotFoundError:  # google.genai without google\n"
        "        return False\n"
        f"print([m for m in {libs!r} if there(m)])"
    )
    proc = installed.run("python", "-c", find)
    _check(proc, "looking for the LLM libraries")
    assert proc.stdout.strip() == "[]", (
        "the LLM client libraries are the llm extra's, not runtime dependencies"
    )

    app = str(ROOT / "deploy" / "demo-app")
    with_key = dataclasses.replace(installed, env=installed.env | {"OPENAI_API_KEY": "sk-not-used"})
    plain = with_key.run("dorgu", "generate", app, "--dry-run")
    _check(plain, "dorgu generate --dry-run")
    proc = with_key.run("dorgu", "generate", app, "--dry-run", "--llm-provider", "openai")
    _check(proc, "dorgu generate --dry-run --llm-provider openai")
    assert "needs the openai package (pip install 'dorgu[llm]')" in proc.stderr, proc.stderr
    assert proc.stdout == plain.stdout
    assert not list(installed.empty.iterdir())


@pytest.mark.slow
def test_dev_demo_runs_from_an_empty_directory(installed: Installed) -> None:
    proc = installed.run("dorgu", "dev", "demo", "--no-wait")
    _check(proc, "dorgu dev demo --no-wait")
    assert "The demo is done." in proc.stdout
    assert "dorgu operator stopped (exit 0)" in proc.stdout and "control plane stopped" in proc.stdout
    assert "Warning: Deployment replicas (1) below persona minimum (2)" in proc.stdout


@pytest.mark.slow
def test_bench_runs_from_an_empty_directory(installed: Installed) -> None:
    proc = installed.run("dorgu", "bench", "--personas", "50")
    _check(proc, "dorgu bench --personas 50")
    assert "local cluster" in proc.stdout, proc.stdout
    assert not list(installed.empty.iterdir()), "dorgu bench leaves nothing in the working directory"
