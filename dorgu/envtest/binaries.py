"""Obtain etcd and build kube-apiserver + kube-controller-manager 1.20.2 from Debian's packages.

The recipe: Debian *bookworm*'s ``kubernetes`` source package, built in GOPATH
mode with bookworm's Go 1.19, with the vendored ``modern-go/reflect2`` v1.0.1 replaced by Debian's 1.0.2
(1.0.1 segfaults under Go >= 1.18 as soon as the server encodes maps under load). Everything is fetched
through a private apt configuration pinned to ``bookworm`` — the host's apt state is never touched, and a
Debian 13 host (whose archive has no ``kubernetes`` source) works the same way.

The result is cached under ``$XDG_CACHE_HOME/dorgu/envtest/<key>/bin`` so the build happens once per
machine; ``DORGU_ENVTEST_BIN_DIR`` points at ready-made binaries instead.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "v1.20.2"
K8S_GIT_COMMIT = "faecb196815e248d3ecfb03c680a4507229c2a56"
"""The upstream commit of v1.20.2, baked into ``/version`` as the release build would."""
DEBIAN_SUITE = "bookworm"
GO_PACKAGES = ("golang-1.19-go", "golang-1.19-src")
OTHER_PACKAGES = ("etcd-server", "golang-github-modern-go-reflect2-dev")
RECIPE = "r1"
"""Bump when the build recipe changes, so stale caches are rebuilt."""
BINARIES = ("kube-apiserver", "kube-controller-manager", "etcd")
FALLBACK_ARCHIVE = "http://deb.debian.org/debian"
FALLBACK_KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"

Progress = Callable[[str], None]


class EnvtestSetupError(RuntimeError):
    """The control-plane binaries could not be obtained; the message says what failed and what to do."""


def _stderr_progress(msg: str) -> None:
    print(f"[dorgu envtest] {msg}", file=sys.stderr, flush=True)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dorgu" / "envtest"


def cache_dir() -> Path:
    return cache_root() / f"{K8S_VERSION}-{RECIPE}"


@dataclass(frozen=True, kw_only=True)
class Binaries:
    """Paths of the three control-plane executables."""

    etcd: Path
    """etcd 3.4 from Debian's ``etcd-server``."""
    kube_apiserver: Path
    """kube-apiserver built from source."""
    kube_controller_manager: Path
    """kube-controller-manager built from source."""

    @classmethod
    def in_dir(cls, d: Path) -> Binaries:
        return cls(
            etcd=d / "etcd",
            kube_apiserver=d / "kube-apiserver",
            kube_controller_manager=d / "kube-controller-manager",
        )

    def missing(self) -> list[Path]:
        return [p for p in (self.etcd, self.kube_apiserver, self.kube_controller_manager) if not p.is_file()]


def find_binaries() -> Binaries | None:
    """The cached (or ``DORGU_ENVTEST_BIN_DIR``) binaries, or None if they have not been built yet."""
    override = os.environ.get("DORGU_ENVTEST_BIN_DIR")
    if override:
        b = Binaries.in_dir(Path(override))
        if b.missing():
            raise EnvtestSetupError(
                f"DORGU_ENVTEST_BIN_DIR={override} lacks {', '.join(p.name for p in b.missing())}; "
                "unset it to build the binaries automatically"
            )
        return b
    b = Binaries.in_dir(cache_dir() / "bin")
    return None if b.missing() else b


def ensure_binaries(*, progress: Progress = _stderr_progress) -> Binaries:
    """Return the control-plane binaries, building them first if this machine has none (about 6-10 min)."""
    found = find_binaries()
    if found:
        return found
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    with _locked(root / ".lock", progress):
        found = find_binaries()  # another process may have finished the build while we waited
        if found:
            return found
        _build(root, progress)
    found = find_binaries()
    assert found is not None
    return found


@contextlib.contextmanager
def _locked(path: Path, progress: Progress) -> Iterator[None]:
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"another process is building the control plane; waiting for the lock on {path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None, what: str) -> str:
    try:
        res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as e:
        raise EnvtestSetupError(f"{what}: {cmd[0]} is not installed ({e})") from e
    if res.returncode != 0:
        tail = "\n".join((res.stdout + res.stderr).strip().splitlines()[-25:])
        raise EnvtestSetupError(f"{what} failed (exit {res.returncode}): {' '.join(cmd)}\n{tail}")
    return res.stdout


def _host_archive() -> tuple[str, str]:
    """The Debian archive URI and keyring the host already trusts (deb822 sources), else Debian's defaults."""
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in f.read_text(errors="replace").split("\n\n"):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if ":" in line and not line.lstrip().startswith("#"):
                    k, v = line.split(":", 1)
                    fields[k.strip().lower()] = v.strip()
            uris = fields.get("uris", "").split()
            suites = fields.get("suites", "")
            if uris and "security" not in suites and uris[0].rstrip("/").endswith("/debian"):
                return uris[0], fields.get("signed-by", FALLBACK_KEYRING)
    return FALLBACK_ARCHIVE, FALLBACK_KEYRING


def _ensure_host_tools(progress: Progress) -> None:
    need = {"apt-get": "apt", "dpkg-deb": "dpkg", "make": "make", "rsync": "rsync"}
    missing = {tool: pkg for tool, pkg in need.items() if shutil.which(tool) is None}
    if not missing:
        return
    if "apt-get" in missing or "dpkg-deb" in missing:
        raise EnvtestSetupError(
            "building the local control plane needs a Debian-family system with apt-get and dpkg; "
            "alternatively point DORGU_ENVTEST_BIN_DIR at etcd, kube-apiserver and "
            "kube-controller-manager 1.20"
        )
    pkgs = sorted(set(missing.values()))
    if os.geteuid() != 0:
        raise EnvtestSetupError(
            f"missing build tools {', '.join(sorted(missing))}; install them with "
            f"`sudo apt-get install -y {' '.join(pkgs)}` and run again"
        )
    progress(f"installing build tools: {' '.join(pkgs)}")
    _run(["apt-get", "update", "-qq"], what="apt-get update")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    _run(
        ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *pkgs], env=env, what="apt-get install"
    )


def _apt(aptdir: Path) -> list[str]:
    return [
        "apt-get",
        "-o", f"Dir::Etc::SourceList={aptdir / 'sources.sources'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={aptdir / 'lists'}",
        "-o", "Dir::Cache::pkgcache=",
        "-o", "Dir::Cache::srcpkgcache=",
        "-o", "APT::Sandbox::User=root",
        "-o", "Debug::NoLocking=1",
        "-q",
    ]  # fmt: skip


def _go_version(go: Path, env: dict[str, str]) -> tuple[int, int]:
    out = _run([str(go), "version"], env=env, what="go version")
    m = re.search(r"go(\d+)\.(\d+)", out)
    if not m:
        raise EnvtestSetupError(f"cannot read the Go version from {out!r}")
    return int(m.group(1)), int(m.group(2))


@dataclass(frozen=True, kw_only=True)
class Sources:
    """What :func:`fetch_sources` leaves in its work directory: Go, etcd and the patched kubernetes tree."""

    work: Path
    """The directory everything was fetched into (``apt/``, ``downloads/``, ``toolchain/``, ``src/``)."""
    etcd: Path
    """etcd from Debian's ``etcd-server``."""
    goroot: Path
    """GOROOT of Debian's Go 1.19."""
    src: Path
    """The kubernetes source tree, vendored ``modern-go/reflect2`` replaced by 1.0.2; its GOPATH is
    ``src/.go`` (``.go/src/k8s.io/kubernetes`` links back to the tree), so the vendored ``k8s.io/client-go``
    resolves for any package placed inside the tree."""
    orig: str
    """The name of the upstream tarball the tree came from."""

    @property
    def gopath(self) -> Path:
        return self.src / ".go"

    def go_env(self, *, gocache: Path) -> dict[str, str]:
        """The environment for ``go``/``make`` in GOPATH mode: this Go, this GOPATH, no cgo, no inherited
        GO*/KUBE_*/CGO* variables (nor make's flags)."""
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("GO", "KUBE_", "CGO")) and k not in ("MAKEFLAGS", "MFLAGS")
        }
        env.update(
            GOROOT=str(self.goroot),
            PATH=f"{self.goroot / 'bin'}:{env.get('PATH', '/usr/bin:/bin')}",
            GOPATH=str(self.gopath),
            GOCACHE=str(gocache),
            GO111MODULE="off",
            CGO_ENABLED="0",
        )
        return env

    def go_version(self, env: dict[str, str]) -> tuple[int, int]:
        """The Go version, refused unless it can build Kubernetes 1.20 (Go 1.15-1.19)."""
        major, minor = _go_version(self.goroot / "bin" / "go", env)
        if (major, minor) < (1, 15) or (major, minor) > (1, 19):
            raise EnvtestSetupError(
                f"Go {major}.{minor} cannot build Kubernetes 1.20 (needs Go 1.15-1.19); "
                f"the {DEBIAN_SUITE} golang-1.19-go package should provide 1.19"
            )
        return major, minor


def fetch_sources(work: Path, *, progress: Progress = _stderr_progress) -> Sources:
    """Download Go, etcd and the kubernetes source into ``work`` (emptied first) and prepare the tree for a
    GOPATH build. The control-plane build uses it and deletes ``work`` afterwards; the benchmark peers'
    build (``bench/peers``) keeps its own ``work`` as a cache."""
    _ensure_host_tools(progress)
    shutil.rmtree(work, ignore_errors=True)
    aptdir, dl, tool = work / "apt", work / "downloads", work / "toolchain"
    for d in (aptdir / "lists" / "partial", dl, tool):
        d.mkdir(parents=True)
    uri, keyring = _host_archive()
    (aptdir / "sources.sources").write_text(
        f"Types: deb deb-src\nURIs: {uri}\nSuites: {DEBIAN_SUITE}\nComponents: main\nSigned-By: {keyring}\n"
    )
    apt = _apt(aptdir)
    progress(
        f"fetching the {DEBIAN_SUITE} package lists from {uri} (private apt state; the host's is untouched)"
    )
    _run([*apt, "update"], what="apt-get update (private, bookworm)")
    progress(f"downloading {', '.join(GO_PACKAGES + OTHER_PACKAGES)}")
    _run([*apt, "download", *GO_PACKAGES, *OTHER_PACKAGES], cwd=dl, what="apt-get download")
    progress("downloading the Debian source of kubernetes (34 MB)")
    _run([*apt, "source", "--download-only", "kubernetes"], cwd=dl, what="apt-get source kubernetes")
    for deb in sorted(dl.glob("*.deb")):
        _run(["dpkg-deb", "-x", str(deb), str(tool)], what=f"unpacking {deb.name}")
    etcd_bin = tool / "usr" / "bin" / "etcd"
    goroot = tool / "usr" / "lib" / "go-1.19"
    reflect2 = tool / "usr" / "share" / "gocode" / "src" / "github.com" / "modern-go" / "reflect2"
    for p in (etcd_bin, goroot / "bin" / "go", reflect2):
        if not p.exists():
            raise EnvtestSetupError(f"the downloaded packages lack {p}; the bookworm archive layout changed?")

    origs = sorted(dl.glob("kubernetes_*.orig.tar.*"))
    if not origs:
        raise EnvtestSetupError(f"apt-get source kubernetes left no .orig tarball in {dl}")
    progress(f"unpacking {origs[0].name}")
    src_parent = work / "src"
    with tarfile.open(origs[0]) as tf:
        tf.extractall(src_parent, filter="tar")
    srcs = [p.parent.parent for p in src_parent.glob("*/cmd/kube-apiserver")]
    if len(srcs) != 1:
        raise EnvtestSetupError(f"cannot find the kubernetes tree in {src_parent}")
    src = srcs[0]

    vendored = src / "vendor" / "github.com" / "modern-go" / "reflect2"
    shutil.rmtree(vendored)
    shutil.copytree(reflect2, vendored, ignore=shutil.ignore_patterns("*_test.go"))
    progress("replaced vendored modern-go/reflect2 1.0.1 with 1.0.2 (1.0.1 crashes under Go >= 1.18)")

    gopath = src / ".go"
    (gopath / "src" / "k8s.io").mkdir(parents=True)
    (gopath / "src" / "k8s.io" / "kubernetes").symlink_to(Path("../../.."))
    return Sources(work=work, etcd=etcd_bin, goroot=goroot, src=src, orig=origs[0].name)


def _build(root: Path, progress: Progress) -> None:
    t0 = time.monotonic()
    work = root / "work"
    sources = fetch_sources(work, progress=progress)
    src = sources.src
    env = sources.go_env(gocache=work / "gocache")
    env.update(
        KUBE_GIT_VERSION=K8S_VERSION,
        KUBE_GIT_COMMIT=K8S_GIT_COMMIT,
        KUBE_GIT_TREE_STATE="clean",
        KUBE_GIT_MAJOR="1",
        KUBE_GIT_MINOR="20",
        SOURCE_DATE_EPOCH="1610582400",
    )
    major, minor = sources.go_version(env)
    progress(
        f"building kube-apiserver and kube-controller-manager {K8S_VERSION} with Go {major}.{minor} "
        "(≈ 6 min on 2 cores; once per machine)"
    )
    _make(src, env, progress)
    out = src / "_output" / "local" / "bin" / "linux" / "amd64"
    bindir = root / "bin.partial"
    shutil.rmtree(bindir, ignore_errors=True)
    bindir.mkdir()
    for name, path in (
        ("kube-apiserver", out / "kube-apiserver"),
        ("kube-controller-manager", out / "kube-controller-manager"),
        ("etcd", sources.etcd),
    ):
        if not path.is_file():
            raise EnvtestSetupError(f"the build finished without producing {path}")
        shutil.copy2(path, bindir / name)
    (bindir / "manifest.json").write_text(
        json.dumps({"kubernetes": K8S_VERSION, "recipe": RECIPE, "source": sources.orig}, indent=2) + "\n"
    )
    final = root / "bin"
    shutil.rmtree(final, ignore_errors=True)
    bindir.rename(final)  # atomic: a half-built cache is never mistaken for a complete one
    shutil.rmtree(work, ignore_errors=True)
    progress(f"control-plane binaries cached in {final} after {time.monotonic() - t0:.0f} s")


def _make(src: Path, env: dict[str, str], progress: Progress) -> None:
    cmd = ["make", "WHAT=cmd/kube-apiserver cmd/kube-controller-manager"]
    proc = subprocess.Popen(
        cmd, cwd=src, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    )
    assert proc.stdout is not None
    tail: list[str] = []
    t0 = time.monotonic()
    for line in proc.stdout:
        line = line.rstrip()
        tail = [*tail[-40:], line]
        progress(f"[{time.monotonic() - t0:5.0f}s] {line}")
    rc = proc.wait()
    if rc != 0:
        raise EnvtestSetupError(f"building Kubernetes failed (make exit {rc}) in {src}:\n" + "\n".join(tail))
