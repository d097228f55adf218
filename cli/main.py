"""dorgu — keep applications true to their personas.

Usage:
  dorgu version
  dorgu dev cluster up
  dorgu dev cluster down
  dorgu dev cluster env
  dorgu dev demo [--no-wait]
  dorgu (-h | --help)

Commands:
  version           Print the version.
  dev cluster up    Start a local control plane (etcd, kube-apiserver, kube-controller-manager 1.20.2; built
                    from Debian's sources on first use) with dorgu's CRDs; prints `export KUBECONFIG=...`.
  dev cluster down  Stop it and remove its files.
  dev cluster env   Print `export KUBECONFIG=...` for the running local control plane.
  dev demo          Bring up a local control plane, install the CRDs, apply the samples and show them.

Options:
  --no-wait         Exit after showing the result instead of staying up until Ctrl-C.
  -h --help         Show this help.

Exit codes: 0 success, 1 failure, 2 usage or input error.
"""

from __future__ import annotations

import sys
from importlib.metadata import PackageNotFoundError, version

from docopt import DocoptExit, docopt

from cli import paths


def _version() -> str:
    try:
        return version("dorgu")
    except PackageNotFoundError:
        return "0+unknown"


def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__ or "", argv=argv, default_help=True)
    except DocoptExit as e:
        print(f"Error: {str(e).strip()}", file=sys.stderr)
        return 2
    if args["version"]:
        print(f"dorgu {_version()}")
        return 0
    if args["dev"] and args["cluster"]:
        from dorgu.envtest import devcluster

        if args["up"]:
            print(devcluster.up(crds=paths.crd_files()))
        elif args["down"]:
            stopped = devcluster.down()
            print("dev cluster stopped" if stopped else "no dev cluster was running", file=sys.stderr)
        else:
            line = devcluster.env()
            if line is None:
                print(
                    "Error: no dev cluster is running (start one with `dorgu dev cluster up`)",
                    file=sys.stderr,
                )
                return 1
            print(line)
        return 0
    if args["dev"] and args["demo"]:
        from cli.demo import run_demo

        return run_demo(wait=not args["--no-wait"])
    return 2


def entrypoint() -> None:
    sys.exit(main())


if __name__ == "__main__":
    entrypoint()
