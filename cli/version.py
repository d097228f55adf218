"""Usage:
  dorgu version [--json] [options]

Print the version, the git commit and the build date (written into the package when it is built: `make
deps`, `make image`; `unknown` when it was not built from a git checkout).

Options:
  --json          One JSON object: {"version", "commit", "built"}.
  --config FILE   Ignored (accepted by every command).
  --no-color      Ignored (accepted by every command).
  -h --help       Show this help.
"""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

from docopt import docopt

from cli import buildinfo


def dorgu_version() -> str:
    try:
        return version("dorgu")
    except PackageNotFoundError:
        return "0+unknown"


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    info = buildinfo.read()
    if args["--json"]:
        print(json.dumps({"version": dorgu_version(), "commit": info.commit, "built": info.built}))
        return 0
    print(f"dorgu {dorgu_version()}")
    print(f"Commit: {info.commit}")
    print(f"Built: {info.built}")
    return 0
