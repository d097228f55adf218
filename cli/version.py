"""Usage:
  dorgu version [options]

Options:
  --config FILE   Ignored (accepted by every command).
  --no-color      Ignored (accepted by every command).
  -h --help       Show this help.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from docopt import docopt


def dorgu_version() -> str:
    try:
        return version("dorgu")
    except PackageNotFoundError:
        return "0+unknown"


def run(argv: list[str]) -> int:
    docopt(__doc__ or "", argv=argv)
    print(f"dorgu {dorgu_version()}")
    return 0
