"""`to_glb`: dense O-Voxel mesh + sparse PBR voxels -> simplified, UV-unwrapped, texture-baked `trimesh.Trimesh`.

Pipeline (spec `ovoxel-export.md` section 2): fill small holes (this dense mesh is the "original" surface the
textures are projected onto), simplify with cleanup passes (or narrow-band remesh, keeping only the outward
sheets, then simplify), drop
degenerate faces, UV-unwrap, bake base colour / alpha / metallic / roughness, rotate Z-up -> glTF Y-up.
All mesh operations come from `cumesh`; everything runs on the device of the input tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import numpy as np
import torch
import trimesh
from PIL import Image

from o_voxel.attributes import SparseVoxelGrid
from o_voxel.bake import bake_attribute_textures
from o_voxel.validation import (
    as_tensor,
    resolve_grid,
    validate_attribute_volume,
    validate_mesh,
    validate_texture_size,
)

Progress = Callable[[str, int, int], None]

_HOLE_PERIMETER = 3e-2
_SMALL_COMPONENT_AREA = 1e-5
_PROJECTION_RANGE_VOXELS = 4.0  # texels farther than this from the original surface keep their own position
_STEPS = ("fill holes", "simplify", "clean up", "uv unwrap", "bake textures", "assemble")


def _cumesh():
    """The mesh-operations package (imported lazily so o_voxel imports stay light)."""
    import cumesh

    return cumesh


def zup_to_gltf(points: np.ndarray) -> np.ndarray:
    """TRELLIS.2 Z-up `(x, y, z)` -> glTF Y-up `(x, z, -y)` (a rotation; winding is unchanged)."""
    return np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)


def _clean_simplify(cm, v: torch.Tensor, f: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch A (remesh=False): two rounds of simplify + cleanup, then consistent orientation."""
    for round_target in (target * 3, target):
        v, f = cm.simplify(v, f, round_target)
        v, f = cm.remove_duplicate_faces(v, f)
        v, f = cm.repair_non_manifold_edges(v, f)
        v, f = cm.remove_small_connected_components(v, f, _SMALL_COMPONENT_AREA)
        v, f = cm.fill_holes(v, f, _HOLE_PERIMETER)
    if f.shape[0] > target:  # hole fans can push the count slightly over the target
        v, f = cm.simplify(v, f, target)
        v, f = cm.remove_duplicate_faces(v, f)
    return cm.unify_face_orientations(v, f)


@torch.no_grad()
def to_glb(
    vertices,
    faces,
    attr_volume,
    coords,
    attr_layout: dict[str, slice],
    aabb=((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),
    voxel_size: float | Sequence[float] | None = None,
    grid_size: int | Sequence[int] | None = None,
    decimation_target: int = 1000000,
    texture_size: int = 2048,
    remesh: bool = False,
    remesh_band: float = 1,
    remesh_project: float = 0.9,
    mesh_cluster_threshold_cone_half_angle_rad: float = np.radians(90.0),
    mesh_cluster_refine_iterations: int = 0,
    mesh_cluster_global_iterations: int = 1,
    mesh_cluster_smooth_strength: float = 1,
    verbose: bool = False,
    use_tqdm: bool = False,
    alpha_mode: str = "OPAQUE",
    progress: Progress | None = None,
) -> trimesh.Trimesh:
    """Turn a dense O-Voxel mesh and its per-voxel PBR attributes into a textured, glTF-ready mesh.

    `vertices (N, 3)` / `faces (M, 3)`: the decoded mesh in the Z-up O-Voxel frame. `attr_volume (L, C)`
    with `coords (L, 3)` and `attr_layout` (name -> channel slice with `base_color`, `metallic`,
    `roughness`, `alpha`): the voxel attributes, nominally in [0, 1]. `decimation_target` is a face count.
    `alpha_mode` 'OPAQUE' (default) writes an RGB base colour; 'BLEND' keeps the baked alpha.
    `progress(stage, step, total)` is called once per step. Returns a Y-up `trimesh.Trimesh` (process=False)
    ready for `.export("x.glb")`. `verbose` / `use_tqdm` are accepted for API compatibility.
    """
    if alpha_mode not in ("OPAQUE", "BLEND"):
        raise ValueError(f"alpha_mode must be 'OPAQUE' or 'BLEND', got {alpha_mode!r}")
    size = validate_texture_size(texture_size)
    if int(decimation_target) < 4:
        raise ValueError(f"decimation_target must be at least 4 faces, got {decimation_target}")
    target = int(decimation_target)
    feats, vox = validate_attribute_volume(attr_volume, coords, attr_layout)
    device = feats.device if torch.is_tensor(attr_volume) else None
    v, f = validate_mesh(as_tensor(vertices, device=device), faces, what="input mesh")
    device = v.device
    feats, vox = feats.to(device), vox.to(device)
    aabb_t, vs, gs = resolve_grid(v, aabb, voxel_size, grid_size)
    grid = SparseVoxelGrid(vox, gs.tolist())
    cm = _cumesh()

    def step(i: int) -> None:
        if progress is not None:
            name = "remesh + simplify" if (remesh and i == 1) else _STEPS[i]
            progress(name, i + 1, len(_STEPS))

    # 1. the original surface: hole-filled dense mesh, used for projection while baking
    v0, f0 = cm.fill_holes(v, f, _HOLE_PERIMETER)
    v0, f0 = cm.remove_degenerate_faces(v0, f0)
    if f0.shape[0] == 0:
        raise ValueError("input mesh has only degenerate (zero-area) faces")
    bvh = cm.MeshBVH(v0, f0)
    step(0)

    # 2. the export surface
    if remesh:
        centre = aabb_t.mean(0)
        extent = float((aabb_t[1] - aabb_t[0]).max())
        resolution = int(gs.max())
        scale = (resolution + 3 * remesh_band) / resolution * extent
        v1, f1 = cm.remesh_narrow_band_dc(
            v0, f0, centre, scale, resolution, band=remesh_band, project_back=remesh_project, bvh=bvh,
            keep_inward_sheets=False,  # the inner sheet of a closed object is never seen: spend the budget outside
        )
        v1, f1 = cm.simplify(v1, f1, target)
        step(1)
    else:
        v1, f1 = cm.simplify(v0, f0, target * 3)
        step(1)
        v1, f1 = _clean_simplify(cm, v1, f1, target)
    v1, f1 = cm.remove_degenerate_faces(v1, f1)
    v1, f1 = cm.remove_unreferenced_vertices(v1, f1)
    if f1.shape[0] == 0:
        raise ValueError("simplification left no faces; the input mesh is too small or degenerate")
    step(2)

    # 3. UV atlas; normals are area-weighted on the welded mesh and follow the seam-split vertices
    normals = cm.vertex_normals(v1, f1)
    chart_options = {
        "threshold_cone_half_angle_rad": float(mesh_cluster_threshold_cone_half_angle_rad),
        "refine_iterations": int(mesh_cluster_refine_iterations),
        "global_iterations": int(mesh_cluster_global_iterations),
        "smooth_strength": float(mesh_cluster_smooth_strength),
    }
    v2, f2, uvs, vmap = cm.uv_unwrap(v1, f1, compute_charts_kwargs=chart_options)
    voxel = float(vs.min())
    v2, f2, uvs, vmap = cm.remove_uv_degenerate_faces(
        v2, f2, uvs, vmap, area_eps=1e-6 * voxel**2, edge_eps=1e-4 * voxel
    )
    if f2.shape[0] == 0:
        raise ValueError("UV unwrapping left no usable faces; the mesh is degenerate")
    n2 = normals[vmap.to(normals.device).long()]
    step(3)

    # 4. textures
    baked = bake_attribute_textures(
        v2.to(device),
        f2.to(device).long(),
        uvs.to(device),
        size,
        partial(bvh.closest_point, max_distance=_PROJECTION_RANGE_VOXELS * float(vs.max())),
        (v0, f0),
        feats,
        grid,
        aabb_t[0],
        vs,
        attr_layout,
    )
    step(4)

    # 5. glTF material and Y-up mesh
    blend = alpha_mode == "BLEND"
    base = baked.base_color_rgba() if blend else baked.base_color
    material = trimesh.visual.material.PBRMaterial(
        baseColorTexture=Image.fromarray(np.ascontiguousarray(base)),
        baseColorFactor=np.array([255, 255, 255, 255], dtype=np.uint8),
        metallicRoughnessTexture=Image.fromarray(baked.metallic_roughness_rgb()),
        metallicFactor=1.0,
        roughnessFactor=1.0,
        alphaMode=alpha_mode,
        doubleSided=not remesh,
    )
    uv_np = uvs.detach().cpu().numpy().astype(np.float64)
    uv_np[:, 1] = 1.0 - uv_np[:, 1]  # trimesh flips V again when writing glTF
    normals_np = n2.detach().cpu().numpy().astype(np.float64)
    normals_np /= np.maximum(np.linalg.norm(normals_np, axis=1, keepdims=True), 1e-12)
    mesh = trimesh.Trimesh(
        vertices=zup_to_gltf(v2.detach().cpu().numpy().astype(np.float64)),
        faces=f2.detach().cpu().numpy().astype(np.int64),
        vertex_normals=zup_to_gltf(normals_np),
        process=False,
        visual=trimesh.visual.TextureVisuals(uv=uv_np, material=material),
    )
    step(5)
    return mesh
