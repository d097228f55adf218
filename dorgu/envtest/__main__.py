"""The local control plane (run as `python -m dorgu.envtest COMMAND`).

Usage:
  envtest build
  envtest up [CRD...]
  envtest down
  envtest env
  envtest serve --state=FILE [CRD...]
  envtest run [CRD...]

Commands:
  build   Build (once per machine) and cache etcd, kube-apiserver and kube-controller-manager 1.20.2.
  up      Start a detached local control plane, install CRD files, print `export KUBECONFIG=...`.
  down    Stop it and remove its files.
  env     Print `export KUBECONFIG=...` for the running one.
  serve   Run a control plane in the foreground (what `up` detaches); writes FILE when ready.
  run     Run a control plane in the foreground until Ctrl-C, printing the export line.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

from docopt import DocoptExit, docopt

from dorgu.envtest import devcluster
from dorgu.envtest.binaries import EnvtestSetupError, ensure_binaries
from dorgu.envtest.controlplane import ControlPlane, ControlPlaneError, ControlPlaneSettings


def main(argv: list[str] | None = None) -> int:
    try:
        args = docopt(__doc__ or "", argv=argv)
    except DocoptExit as e:
        print(e, file=sys.stderr)
        return 2
    crds = [Path(p) for p in args["CRD"]]
    try:
        if args["build"]:
            print(ensure_binaries())
        elif args["up"]:
            print(devcluster.up(crds=crds))
        elif args["down"]:
            print("stopped" if devcluster.down() else "no dev cluster was running", file=sys.stderr)
        elif args["env"]:
            line = devcluster.env()
            if line is None:
                print("Error: no dev cluster is running (start one with `up`)", file=sys.stderr)
                return 1
            print(line)
        elif args["serve"]:
            devcluster.serve(state=Path(args["--state"]), crds=crds)
        elif args["run"]:
            signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(0))  # `with` below tears down
            try:
                with ControlPlane(ControlPlaneSettings(crds=tuple(crds))) as cp:
                    print(devcluster.export_line(str(cp.kubeconfig)), flush=True)
                    print(f"# pids {json.dumps(cp.pids)} work_dir {cp.work_dir}", flush=True)
                    while True:
                        time.sleep(3600)
            except KeyboardInterrupt:
                pass
    except (EnvtestSetupError, ControlPlaneError) as e:
        print(f"Error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
