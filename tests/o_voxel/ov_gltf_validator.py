"""pytest helper: run the Khronos glTF Validator (npm `gltf-validator`, via node) on GLB files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(__file__).with_name("gltf_validate.mjs")


def validate_glb(*paths: Path) -> list[dict]:
    """Validator reports (one dict per file); fails the test if node or the validator is missing."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed; it is needed to run the glTF validator")
    if not (REPO_ROOT / "node_modules" / "gltf-validator").is_dir():
        pytest.fail("npm package gltf-validator is missing: run `npm install` at the repository root")
    run = subprocess.run(
        [node, str(SCRIPT), *map(str, paths)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300
    )
    reports = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    assert len(reports) == len(paths), f"validator failed: {run.stderr or run.stdout}"
    return reports


def assert_valid_glb(*paths: Path) -> None:
    """Every file passes the glTF validator with 0 errors and 0 warnings."""
    for report in validate_glb(*paths):
        issues = [m for m in report.get("messages", []) if m.get("severity", 0) <= 1]
        assert report["numErrors"] == 0, f"{report['path']}: {report['numErrors']} glTF errors: {issues[:5]}"
        assert report.get("numWarnings", 0) == 0, f"{report['path']}: glTF warnings: {issues[:5]}"
