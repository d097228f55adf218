"""Runs a Supervisor from one JSON argument, so tests can run (and signal) it as a process of its own.

``python tests/runtime/programs/supervisor_main.py '{"components": [{"name": ..., "target": ...,
"options": {}}], "settings": {...SupervisorSettings fields...}}'``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from dorgu.runtime.component import ComponentSpec
from dorgu.runtime.config import ConnectionSettings
from dorgu.runtime.supervisor import SupervisorSettings, run_supervisor


def main(argv: list[str]) -> int:
    config = json.loads(argv[0])
    settings = dict(config.get("settings", {}))
    if settings.get("metrics_dir") is not None:
        settings["metrics_dir"] = Path(settings["metrics_dir"])
    return run_supervisor(
        [ComponentSpec(**c) for c in config["components"]],
        ConnectionSettings(server="https://127.0.0.1:1"),
        SupervisorSettings(**settings),
    )


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
