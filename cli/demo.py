"""``dorgu dev demo``: the main job on a local control plane.

For now: a real control plane, dorgu's CRDs, the samples applied and shown as ``kubectl get`` shows them
(the server's own Table, so the printer columns are the CRDs'). The operator joins this demo once it exists.
"""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

from cli import paths
from dorgu.envtest import ControlPlane, ControlPlaneSettings, format_table

SHOWN = (
    ("dorgu.io/v1", "ApplicationPersona", "applicationpersonas.dorgu.io"),
    ("dorgu.io/v1", "ClusterPersona", "clusterpersonas.dorgu.io"),
    ("apps/v1", "Deployment", "deployments.apps"),
)


def run_demo(*, wait: bool) -> int:
    def _stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    with ControlPlane(ControlPlaneSettings(crds=tuple(paths.crd_files()))) as cp:
        applied = cp.apply_manifests(paths.sample_files())
        for obj in applied:
            meta = obj["metadata"]
            where = f"{meta['namespace']}/" if meta.get("namespace") else ""
            print(f"{obj['kind'].lower()}/{where}{meta['name']} applied")
        client = cp.client()
        for api_version, kind, resource in SHOWN:
            info = client.resource(api_version, kind)
            print(f"\n$ kubectl get {resource}{' -A' if info.namespaced else ''}")
            print(format_table(client.table(api_version, kind), namespaced=info.namespaced))
        print(
            "\nThe control plane stays up until Ctrl-C. In another shell:\n"
            f"  export KUBECONFIG={cp.kubeconfig}"
        )
        sys.stdout.flush()
        if wait:
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                print("\nstopping the control plane", file=sys.stderr)
    return 0
