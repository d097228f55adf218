"""The verdict of `make e2e-k3d` (deploy/e2e-k3d.sh) on its pytest run, read from pytest's JUnit XML.

Rule: it passes only if the one k3d test was collected, ran and passed, nothing was skipped and pytest
exited 0. A skip, a test never collected (pytest exit 5), an error in its set-up (an unusable kubeconfig
under DORGU_E2E_REQUIRED=1) or no report at all means the end-to-end test did not run — a failure, never a
quiet success.

Usage: python -m tests.e2e.k3d_gate JUNIT_XML PYTEST_EXIT_CODE TEST_NAME — prints the verdict; exit 0 if the
test passed, 1 otherwise.
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

NOT_RUN = "the k3d e2e test did not run"


def verdict(junit: Path, pytest_rc: int, test_name: str) -> tuple[bool, str]:
    """(passed, message); the message of a test that never ran starts with NOT_RUN."""
    try:
        root = ET.parse(junit).getroot()
    except (OSError, ET.ParseError) as e:
        return False, f"{NOT_RUN}: pytest exited {pytest_rc} without a readable report ({e})"
    cases = list(root.iter("testcase"))
    targets = [c for c in cases if c.get("name") == test_name]
    if not targets:
        why = "pytest collected no tests" if pytest_rc == 5 else f"{test_name} was not collected"
        return False, f"{NOT_RUN}: {why} (pytest exit {pytest_rc})"
    case = targets[0]
    if (skipped := case.find("skipped")) is not None:
        return False, f"{NOT_RUN}: {test_name} was skipped: {skipped.get('message')}"
    if (error := case.find("error")) is not None:
        message = error.get("message") or ""
        # pytest reports an error of a fixture before the test body as "failed on setup with ...".
        if message.startswith("failed on setup"):
            # test_k3d.py's own reason, when it gave one, without pytest's wrapping.
            _, said, reason = message.partition(f"{NOT_RUN}: ")
            return False, f"{NOT_RUN}: {reason.removesuffix(chr(34)) if said else message}"
        return False, f"the k3d e2e test errored: {message}"
    if (failure := case.find("failure")) is not None:
        return False, f"the k3d e2e test ran and failed: {failure.get('message')}"
    others = [c.get("name") for c in cases if c.find("skipped") is not None]
    if others:
        return False, f"{NOT_RUN} in full: skipped {', '.join(map(str, others))}"
    if pytest_rc != 0:
        return False, f"the k3d e2e test passed but pytest exited {pytest_rc}"
    return True, f"the k3d e2e test ran and passed ({test_name})"


def main(argv: list[str]) -> int:
    junit, rc, test_name = argv
    passed, message = verdict(Path(junit), int(rc), test_name)
    print(message)
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
