"""Golden outputs of `dorgu generate` for the fixture corpus; byte-identical on every run."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from tests.cli.conftest import FIXTURE_APPS, GOLDEN, copy_app, tree

UPDATE = os.environ.get("DORGU_UPDATE_GOLDEN") == "1"


def _generate(run_cli, app_dir: Path, out: Path) -> dict[str, bytes]:
    out.mkdir()
    cwd = Path.cwd()
    os.chdir(out)
    try:
        r = run_cli("generate", str(app_dir), "-o", "k8s", "--kube-version", "1.20", "--namespace", "demo")
    finally:
        os.chdir(cwd)
    assert r.code == 0, r.err
    return tree(out)


@pytest.mark.parametrize("app", FIXTURE_APPS)
def test_generate_matches_golden(app: str, run_cli, tmp_path: Path) -> None:
    src = copy_app(app, tmp_path / "src")
    first = _generate(run_cli, src, tmp_path / "out1")
    second = _generate(run_cli, src, tmp_path / "out2")
    assert first == second, "two runs on the same input must give byte-identical files"
    golden_dir = GOLDEN / app.replace("/", "__")
    if UPDATE:
        shutil.rmtree(golden_dir, ignore_errors=True)
        for rel, data in first.items():
            (golden_dir / rel).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / rel).write_bytes(data)
    assert golden_dir.is_dir(), f"no golden for {app}; run with DORGU_UPDATE_GOLDEN=1"
    golden = tree(golden_dir)
    assert sorted(first) == sorted(golden)
    for rel in golden:
        assert first[rel].decode() == golden[rel].decode(), rel


def test_dry_run_prints_the_same_files(run_cli, tmp_path: Path) -> None:
    src = copy_app("flask", tmp_path / "src")
    r = run_cli("generate", str(src), "--dry-run", "--kube-version", "1.20", "--namespace", "demo")
    assert r.code == 0
    assert "--- deployment.yaml ---" in r.out and "--- ../PERSONA.md ---" in r.out
    assert "Validation" in r.err and "Validation" not in r.out
    assert not Path("k8s").exists()
