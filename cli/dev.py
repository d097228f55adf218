"""Usage:
  dorgu dev cluster up [options]
  dorgu dev cluster down [options]
  dorgu dev cluster env [options]
  dorgu dev demo [--no-wait] [options]

Commands:
  dev cluster up    Start a local control plane (etcd, kube-apiserver, kube-controller-manager 1.20.2; built
                    from Debian's sources on first use) with dorgu's CRDs; prints `export KUBECONFIG=...`.
  dev cluster down  Stop it and remove its files.
  dev cluster env   Print `export KUBECONFIG=...` for the running local control plane.
  dev demo          The whole system on this machine, narrated: a local control plane, `dorgu operator`
                    with all five components, `dorgu generate` and `dorgu persona apply` on the bundled
                    sample app, a Deployment that breaks its persona (the webhook's warnings), and
                    `dorgu persona watch` following the persona while the Deployment is fixed.

Options:
  --no-wait         Exit after showing the result instead of staying up until Ctrl-C.
  --config FILE     Ignored (accepted by every command).
  --no-color        Ignored (accepted by every command).
  -h --help         Show this help.
"""

from __future__ import annotations

import sys

from docopt import docopt

from cli import paths


def run(argv: list[str]) -> int:
    args = docopt(__doc__ or "", argv=argv)
    if args["cluster"]:
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
    from cli.demo import run_demo

    return run_demo(wait=not args["--no-wait"])
