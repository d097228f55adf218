"""Where ``make bench-peers`` puts the benchmark peers, computable without importing ``bench``.

The peers are built by ``python -m bench.peers.build`` (``bench`` sits above ``cli`` and may not be imported
by it); ``dorgu bench --peers`` only needs to find the result. Both use these functions, so the path has one
definition: ``$XDG_CACHE_HOME/dorgu/peers/`` (``~/.cache`` when ``XDG_CACHE_HOME`` is unset or empty).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["client_go_peer_binary", "peers_cache_dir"]


def peers_cache_dir() -> Path:
    """The peers' cache: downloads and source tree (``sources/``), Go build cache, binaries (``bin/``)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dorgu" / "peers"


def client_go_peer_binary() -> Path:
    """The client-go peer's executable (it may not exist yet: ``make bench-peers`` builds it)."""
    return peers_cache_dir() / "bin" / "client-go-peer"
