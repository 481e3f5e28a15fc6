"""Conversions between meshes and O-Voxel flexible dual grids (and per-voxel PBR attributes).

Each function lives in a module of its own; they are imported on first use.
"""

from __future__ import annotations

import importlib

_FUNCTIONS = {
    "flexible_dual_grid_to_mesh": "o_voxel.convert.dual_grid_to_mesh",
    "mesh_to_flexible_dual_grid": "o_voxel.convert.mesh_to_dual_grid",
    "textured_mesh_to_volumetric_attr": "o_voxel.convert.volumetric_attributes",
}


def __getattr__(name: str):
    if name in _FUNCTIONS:
        return getattr(importlib.import_module(_FUNCTIONS[name]), name)
    raise AttributeError(f"module 'o_voxel.convert' has no attribute {name!r}")


__all__ = list(_FUNCTIONS)
