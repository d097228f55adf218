"""Runs a Supervisor against a real cluster, from one JSON argument (a test-sized ``dorgu operator``).

``python -m tests.runtime.programs.operator_main '{"kubeconfig": PATH, "components": [...],
"settings": {...}}'`` — the connection is resolved from the kubeconfig exactly as the operator resolves it.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from dorgu.runtime.component import ComponentSpec
from dorgu.runtime.kubeconfig import resolve
from dorgu.runtime.supervisor import SupervisorSettings, run_supervisor


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    access = resolve(kubeconfig=config["kubeconfig"], run_dir=Path(tempfile.mkdtemp(prefix="dorgu-run-")))
    return run_supervisor(
        [ComponentSpec(**c) for c in config["components"]],
        access.connection,
        SupervisorSettings(**config.get("settings", {})),
        background=[access.refresher.run] if access.refresher else [],
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
