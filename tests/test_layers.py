"""The import contracts of `pyproject.toml` (`[tool.importlinter]`): they hold for the tree, they catch an
upward import, and every package imports first in a fresh interpreter (no hidden import-order coupling)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: the backport import-linter itself depends on
    import tomli as tomllib

REPO_ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = REPO_ROOT / "pyproject.toml"
CONFIG = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
SKIP_DIRS = {"node_modules", "__pycache__", "electron"}


def lint_imports(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    """`lint-imports` of this interpreter's environment, run in `cwd` with `cwd` first on the path."""
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed (pip install -e '.[dev]')")
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run(
        [exe, "--no-cache", "--no-logo", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_the_layers_are_the_documented_ones():
    assert CONTRACTS["layers"]["type"] == "layers"
    assert CONTRACTS["layers"]["layers"] == [
        "gui",
        "fresnel",
        "trellis2.pipelines",
        "trellis2.samplers",
        "trellis2.progress",
        "trellis2.models",
        "trellis2.modules",
        "o_voxel",
        "cumesh",
    ]
    assert CONTRACTS["tools"]["forbidden_modules"] == ["tools"]


@pytest.mark.parametrize("contract", sorted(CONTRACTS))
def test_contract_holds_for_the_tree(contract):
    result = lint_imports(REPO_ROOT, "--contract", contract)
    assert result.returncode == 0, result.stdout + result.stderr


def _fake_tree(root: Path) -> None:
    """Empty packages for every root package and layer of the contracts, plus our `pyproject.toml`."""
    for name in {*CONFIG["root_packages"], *CONTRACTS["layers"]["layers"]}:
        folder = root.joinpath(*name.split("."))
        folder.mkdir(parents=True, exist_ok=True)
        for parent in [folder, *folder.relative_to(root).parents]:
            if parent != Path("."):
                (root / parent / "__init__.py").touch()
    shutil.copy(PYPROJECT, root / "pyproject.toml")


@pytest.mark.parametrize(
    ("importer", "imported", "broken"),
    [
        ("cumesh", "o_voxel", "layers"),  # geometry kernels importing the voxel layer
        ("trellis2.modules", "trellis2.models", "layers"),
        ("trellis2.progress", "trellis2.samplers", "layers"),
        ("trellis2.samplers", "trellis2.pipelines", "layers"),
        ("fresnel", "gui", "layers"),
        ("trellis2.pipelines", "tools", "tools"),
    ],
)
def test_an_upward_import_breaks_its_contract(tmp_path, importer, imported, broken):
    _fake_tree(tmp_path)
    clean = lint_imports(tmp_path)
    assert clean.returncode == 0, clean.stdout + clean.stderr  # the fake tree itself keeps every contract
    (tmp_path.joinpath(*importer.split(".")) / "__init__.py").write_text(f"import {imported}\n")
    result = lint_imports(tmp_path)
    assert result.returncode != 0
    kept = {c: f"{CONTRACTS[c]['name']} KEPT" in result.stdout for c in CONTRACTS}
    assert kept == {c: c != broken for c in CONTRACTS}, result.stdout
    assert f"{importer} -> {imported}" in result.stdout


def _packages() -> list[str]:
    """Every package of the root packages (folders with `__init__.py`), every layer, and the server app."""
    found = []
    for root in CONFIG["root_packages"]:
        for init in sorted((REPO_ROOT / root).rglob("__init__.py")):
            parts = init.parent.relative_to(REPO_ROOT).parts
            if not SKIP_DIRS.intersection(parts):
                found.append(".".join(parts))
    return sorted({*found, *CONTRACTS["layers"]["layers"], "gui.backend.app"})


def test_the_package_list_covers_every_layer():
    assert {"trellis2.modules.sparse", "o_voxel.convert", "tools"} <= set(_packages())


@pytest.mark.parametrize("package", _packages())
def test_package_imports_first_in_a_fresh_interpreter(package):
    result = subprocess.run(
        [sys.executable, "-c", f"import {package}"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
