"""Build the benchmark peers (``make bench-peers``): today the client-go peer of ``bench/peers/client-go``.

Usage: python -m bench.peers.build

Rules it keeps:

* **Same toolchain and client-go as the control plane.** Go 1.19 and the kubernetes 1.20.2 source tree (its
  vendored ``k8s.io/client-go``) come from :func:`dorgu.envtest.binaries.fetch_sources`, the download step of
  the control-plane build. The peer is copied into the tree (``cmd/dorgu-bench-peer/``) and built in GOPATH
  mode, so its imports resolve to the vendored copies; no module proxy is asked for anything.
* **Cached, apart from the control plane's cache.** Everything lives under
  :func:`cli.bench.peerpaths.peers_cache_dir` (``$XDG_CACHE_HOME/dorgu/peers/``): ``sources/`` (the downloads
  and the extracted tree, fetched once; refetched only when the kubernetes version or the recipe of
  ``dorgu.envtest`` changes), ``gocache/`` (Go's build cache: a rebuild compiles only the peer) and ``bin/``.
  The control plane's cache (``…/dorgu/envtest/``) and its key are not touched.
* **Rebuilt when its sources change.** The binary's key is a hash of the peer's ``.go`` files (names and
  contents), the kubernetes version and the recipe; it is kept beside the binary (``client-go-peer.key``).
  A run whose key matches builds nothing. The binary is written under a temporary name and renamed: a
  half-built one is never found at :func:`cli.bench.peerpaths.client_go_peer_binary`.
* One build at a time per machine (a lock file in the cache); the path of the binary is printed at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from cli.bench.peerpaths import client_go_peer_binary, peers_cache_dir
from dorgu.envtest.binaries import K8S_VERSION, RECIPE, EnvtestSetupError, Sources, fetch_sources

CLIENT_GO_DIR = Path(__file__).resolve().parent / "client-go"
"""The client-go peer's sources (package main)."""
PACKAGE = "cmd/dorgu-bench-peer"
"""Where the peer is placed inside the kubernetes tree (import path ``k8s.io/kubernetes/<PACKAGE>``)."""
MARKER = ".complete.json"
"""Written into ``sources/`` when a fetch finished; names the tree's parts and what it was fetched for."""


def _progress(msg: str) -> None:
    print(f"[dorgu bench-peers] {msg}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            _progress(f"another build of the peers is running; waiting for the lock on {path}")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _wanted() -> dict[str, str]:
    return {"kubernetes": K8S_VERSION, "recipe": RECIPE}


def cached_sources(work: Path) -> Sources | None:
    """The sources fetched into ``work`` by an earlier run, or None (absent, unfinished or outdated)."""
    try:
        m = json.loads((work / MARKER).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(m, dict) or {k: m.get(k) for k in _wanted()} != _wanted():
        return None
    try:
        s = Sources(
            work=work, etcd=work / m["etcd"], goroot=work / m["goroot"], src=work / m["src"], orig=m["orig"]
        )
    except (KeyError, TypeError):
        return None
    if not ((s.goroot / "bin" / "go").is_file() and (s.src / "vendor" / "k8s.io" / "client-go").exists()):
        return None
    return s


def ensure_sources(work: Path) -> Sources:
    """The cached sources, fetched first (about 200 MB of downloads, a few minutes) when there are none."""
    found = cached_sources(work)
    if found is not None:
        return found
    (work / MARKER).unlink(missing_ok=True)
    s = fetch_sources(work, progress=_progress)
    marker = {
        **_wanted(),
        "etcd": str(s.etcd.relative_to(work)),
        "goroot": str(s.goroot.relative_to(work)),
        "src": str(s.src.relative_to(work)),
        "orig": s.orig,
    }
    (work / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
    return s


def go_files(directory: Path) -> list[Path]:
    """The peer's sources: the ``.go`` files of its directory, tests excluded, in name order."""
    files = sorted(p for p in directory.glob("*.go") if not p.name.endswith("_test.go"))
    if not files:
        raise EnvtestSetupError(f"no .go files in {directory}")
    return files


def source_key(files: list[Path]) -> str:
    """The build key: the peer's file names and contents, the kubernetes version and the recipe."""
    h = hashlib.sha256(json.dumps(_wanted(), sort_keys=True).encode())
    for f in files:
        h.update(f.name.encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def build_client_go_peer(*, force: bool = False) -> Path:
    """Build the client-go peer unless the binary of the same key is there; returns the binary's path."""
    root = peers_cache_dir()
    binary = client_go_peer_binary()
    key_file = binary.with_name(binary.name + ".key")
    files = go_files(CLIENT_GO_DIR)
    key = source_key(files)
    with _locked(root / ".lock"):
        if not force and binary.is_file() and key_file.is_file() and key_file.read_text().strip() == key:
            _progress(f"up to date (key {key[:12]})")
            return binary
        t0 = time.monotonic()
        sources = ensure_sources(root / "sources")
        env = sources.go_env(gocache=root / "gocache")
        major, minor = sources.go_version(env)
        pkg = sources.src / PACKAGE
        shutil.rmtree(pkg, ignore_errors=True)
        pkg.mkdir(parents=True)
        for f in files:
            shutil.copy2(f, pkg / f.name)
        binary.parent.mkdir(parents=True, exist_ok=True)
        partial = binary.with_name(binary.name + ".partial")
        _progress(f"building the client-go peer with Go {major}.{minor} (the first build compiles client-go)")
        cmd = [
            str(sources.goroot / "bin" / "go"),
            "build",
            "-o",
            str(partial),
            f"k8s.io/kubernetes/{PACKAGE}",
        ]
        res = subprocess.run(
            cmd, cwd=sources.gopath / "src" / "k8s.io" / "kubernetes", env=env, capture_output=True, text=True
        )
        if res.returncode != 0:
            raise EnvtestSetupError(
                f"go build failed (exit {res.returncode}):\n{(res.stdout + res.stderr).strip()}"
            )
        partial.rename(binary)  # atomic: a half-built binary is never found under the final name
        key_file.write_text(key + "\n")
        _progress(f"built in {time.monotonic() - t0:.0f} s")
        return binary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.peers.build", description=__doc__.splitlines()[0])
    ap.add_argument("--force", action="store_true", help="rebuild even when the binary is up to date")
    args = ap.parse_args(argv)
    try:
        binary = build_client_go_peer(force=args.force)
    except EnvtestSetupError as e:
        print(f"bench-peers: {e}", file=sys.stderr)
        return 1
    print(f"client-go peer: {binary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
