"""Our kinds' REST coordinates agree with the CRDs the cluster serves them from."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from dorgu.domain.resources import APPLICATION_PERSONAS, CLUSTER_PERSONAS
from dorgu.runtime.resource import Resource

CRDS = Path(__file__).resolve().parents[2] / "deploy" / "crds"


@pytest.mark.parametrize("resource", [APPLICATION_PERSONAS, CLUSTER_PERSONAS], ids=str)
def test_resource_matches_its_crd(resource: Resource) -> None:
    (crd,) = [d for d in yaml.safe_load_all((CRDS / f"dorgu.io_{resource.plural}.yaml").read_text()) if d]
    spec = crd["spec"]
    (version,) = spec["versions"]
    assert (spec["group"], version["name"]) == (resource.group, resource.version)
    assert (spec["names"]["plural"], spec["names"]["kind"]) == (resource.plural, resource.kind)
    assert (spec["scope"] == "Namespaced") is resource.namespaced
