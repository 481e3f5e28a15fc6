"""Imports point down the layers: only `tools/` and `tests/` import `tools`, tools never import `tests`, and
the service takes its application defaults (models folder) from its own settings, not from `trellis2`."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
IMPORT = r"^\s*(?:from|import)\s+{}\b"


def python_files(*folders: str) -> list[Path]:
    return [p for folder in folders for p in (ROOT / folder).rglob("*.py") if "node_modules" not in p.parts]


def importers(files: list[Path], module: str) -> list[str]:
    pattern = re.compile(IMPORT.format(re.escape(module)), re.MULTILINE)
    return [str(p.relative_to(ROOT)) for p in files if pattern.search(p.read_text())]


def test_only_tools_and_tests_import_tools():
    outside = python_files("gui", "trellis2", "o_voxel", "cumesh", "fresnel") + [ROOT / "bootstrap.py"]
    assert importers(outside, "tools") == []


def test_tools_do_not_import_tests():
    assert importers(python_files("tools"), "tests") == []


def test_the_service_does_not_take_the_models_folder_from_trellis2():
    users = [
        str(p.relative_to(ROOT))
        for p in python_files("gui", "tools")
        if re.search(r"default_models_dir", p.read_text()) and re.search(r"trellis2", p.read_text())
    ]
    assert users == []
