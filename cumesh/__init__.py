"""Mesh operations for GLB export, in pure PyTorch (any device) with SciPy/xatlas where they are better.

All functions take `vertices` float `[V, 3]` and `faces` int32/int64 `[F, 3]` tensors, never modify
them, and return results on the input's device (faces as int64). Bad input raises `ValueError`.
"""

from .bvh import MeshBVH
from .cleanup import (
    merge_duplicate_vertices,
    remove_degenerate_faces,
    remove_duplicate_faces,
    remove_small_connected_components,
    remove_unreferenced_vertices,
)
from .geometry import face_areas, face_normals, vertex_normals
from .holes import fill_holes
from .remesh import remesh_narrow_band_dc
from .repair import repair_non_manifold_edges, unify_face_orientations
from .simplify import simplify
from .topology import TopologyReport, check_topology, clean_topology, split_normal_mismatches
from .uv import remove_uv_degenerate_faces, uv_unwrap

__all__ = [
    "MeshBVH",
    "TopologyReport",
    "check_topology",
    "clean_topology",
    "face_areas",
    "face_normals",
    "fill_holes",
    "merge_duplicate_vertices",
    "remesh_narrow_band_dc",
    "remove_degenerate_faces",
    "remove_duplicate_faces",
    "remove_small_connected_components",
    "remove_unreferenced_vertices",
    "remove_uv_degenerate_faces",
    "repair_non_manifold_edges",
    "simplify",
    "split_normal_mismatches",
    "unify_face_orientations",
    "uv_unwrap",
    "vertex_normals",
]
