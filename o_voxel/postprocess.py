"""`to_glb`: dense O-Voxel mesh + sparse PBR voxels -> simplified, UV-unwrapped, texture-baked `trimesh.Trimesh`.

Pipeline (spec `ovoxel-export.md` section 2): fill small holes (this dense mesh is the "original" surface the
textures are projected onto), simplify with cleanup passes (or narrow-band remesh, keeping only the outward
sheets, then simplify), drop
degenerate faces, UV-unwrap, bake base colour / alpha / metallic / roughness, rotate Z-up -> glTF Y-up.
All mesh operations come from `cumesh`; everything runs on the device of the input tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch
import trimesh
from PIL import Image

from o_voxel.attributes import SparseVoxelGrid, sample_trilinear
from o_voxel.bake import atlas_pack_options, bake_attribute_textures
from o_voxel.export import resolve_alpha_mode
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


def _dedupe(cm, v: torch.Tensor, f: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The clean-up after an intermediate operation: degenerate, duplicate and coincident faces go (no re-orienting;
    the one full `clean_topology` at the end of the export surface fixes winding and closed-part orientation)."""
    return cm.clean_topology(v, f, orient=False)


def _simplify_clean(cm, v: torch.Tensor, f: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Simplify to `target` faces and clean up; a mesh already within budget is returned as it is."""
    return (v, f) if f.shape[0] <= target else _dedupe(cm, *cm.simplify(v, f, target))


def _clean_simplify(cm, v: torch.Tensor, f: torch.Tensor, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Branch A (remesh=False): two rounds of simplify + cleanup, duplicates removed after every operation.

    `repair_non_manifold_edges` only splits vertices (positions unchanged) and small-component removal only removes
    faces, so neither can add a duplicate, coincident or degenerate face; the others are cleaned after."""
    for round_target in (target * 3, target):
        v, f = _simplify_clean(cm, v, f, round_target)
        v, f = cm.repair_non_manifold_edges(v, f)
        v, f = cm.remove_small_connected_components(v, f, _SMALL_COMPONENT_AREA)
        v, f = _dedupe(cm, *cm.fill_holes(v, f, _HOLE_PERIMETER))
    return _simplify_clean(cm, v, f, target)  # hole fans can push the count slightly over the target


@dataclass
class _Surface:
    """The export surface plus what baking or vertex sampling needs from the input."""

    vertices: torch.Tensor  # (V, 3) Z-up, clean topology
    faces: torch.Tensor  # (F, 3) int64
    original: tuple[torch.Tensor, torch.Tensor]  # hole-filled dense mesh the attributes are projected from
    bvh: object
    feats: torch.Tensor
    voxel_coords: torch.Tensor
    grid: SparseVoxelGrid
    aabb: torch.Tensor
    voxel_size: torch.Tensor
    device: torch.device


def _export_surface(
    vertices,
    faces,
    attr_volume,
    coords,
    attr_layout,
    aabb,
    voxel_size,
    grid_size,
    decimation_target: int,
    remesh: bool,
    remesh_band: float,
    remesh_project: float,
    step: Callable[[int], None],
) -> _Surface:
    """Steps 1-2 of the export (shared by `to_glb` and `to_vertex_colored_mesh`): original surface, export mesh."""
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

    # 1. the original surface: hole-filled dense mesh, used for projection while baking
    v0, f0 = cm.fill_holes(v, f, _HOLE_PERIMETER)
    v0, f0 = cm.remove_degenerate_faces(v0, f0)
    if f0.shape[0] == 0:
        raise ValueError("input mesh has only degenerate (zero-area) faces")
    bvh = cm.MeshBVH(v0, f0)
    step(1)

    # 2. the export surface, with clean topology after every operation
    if remesh:
        centre = aabb_t.mean(0)
        extent = float((aabb_t[1] - aabb_t[0]).max())
        resolution = int(gs.max())
        scale = (resolution + 3 * remesh_band) / resolution * extent
        v1, f1 = cm.remesh_narrow_band_dc(
            v0,
            f0,
            centre,
            scale,
            resolution,
            band=remesh_band,
            project_back=remesh_project,
            bvh=bvh,
            keep_inward_sheets=False,  # the inner sheet of a closed object is never seen: spend the budget outside
        )
        v1, f1 = _simplify_clean(cm, *_dedupe(cm, v1, f1), target)
        step(2)
    else:
        v1, f1 = _simplify_clean(cm, v0, f0, target * 3)
        step(2)
        v1, f1 = _clean_simplify(cm, v1, f1, target)
    v1, f1 = cm.clean_topology(v1, f1)  # the full pass: also consistent winding, closed parts outward
    if f1.shape[0] == 0:
        raise ValueError("simplification left no faces; the input mesh is too small or degenerate")
    step(3)
    return _Surface(v1, f1, (v0, f0), bvh, feats, vox, grid, aabb_t, vs, device)


def _split_folds(
    cm, v: torch.Tensor, f: torch.Tensor, n: torch.Tensor, *per_vertex: torch.Tensor
) -> tuple[torch.Tensor, ...]:
    """Folds (faces whose area-weighted corner normals oppose their winding) get corners of their own with the
    flat face normal (`cumesh.split_normal_mismatches`); corners whose every face moved to new copies go.
    Returns `(vertices, faces, normals, *per_vertex)`, each per-vertex tensor gathered like the vertices."""
    f, n, source = cm.split_normal_mismatches(v, f, n)
    used = torch.zeros(source.shape[0], dtype=torch.bool, device=f.device)
    used[f.reshape(-1)] = True
    f = (torch.cumsum(used.long(), 0) - 1)[f]
    keep = source[used]
    return (v[keep], f, n[used], *(t[keep.to(t.device)] for t in per_vertex))


def _validated(cm, v: torch.Tensor, f: torch.Tensor, n: torch.Tensor) -> None:
    """The one end-of-export check: zero topology defects, normals agreeing with the winding."""
    cm.check_topology(v, f, n).raise_if_defective("the exported mesh")


def _unit(normals: torch.Tensor) -> np.ndarray:
    out = normals.detach().cpu().numpy().astype(np.float64)
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


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
    alpha_mode: str = "auto",
    progress: Progress | None = None,
    alpha_cutoff: float = 0.5,
    name: str = "genesis",
) -> trimesh.Trimesh:
    """Turn a dense O-Voxel mesh and its per-voxel PBR attributes into a textured, glTF-ready mesh.

    `vertices (N, 3)` / `faces (M, 3)`: the decoded mesh in the Z-up O-Voxel frame. `attr_volume (L, C)`
    with `coords (L, 3)` and `attr_layout` (name -> channel slice with `base_color`, `metallic`,
    `roughness`, `alpha`): the voxel attributes, nominally in [0, 1]. `decimation_target` is a face count.
    `alpha_mode`: 'auto' (default: OPAQUE when the baked alpha is solid everywhere, else BLEND), 'OPAQUE'
    (RGB base colour), 'MASK' (RGBA, cut at `alpha_cutoff`) or 'BLEND' (RGBA). `name` names the material,
    textures, mesh and node of the GLB (e.g. `genesis_<job>`). `progress(stage, done, total)` is called as
    each step starts (`stage` names it, `done` steps are finished) and once at the end (`done == total`). The result has clean topology (`cumesh.check_topology` finds no defect; it is checked here).
    Returns a Y-up `trimesh.Trimesh` (process=False) for `o_voxel.export.export_asset`. `verbose` /
    `use_tqdm` are accepted for API compatibility.
    """
    resolve_alpha_mode(alpha_mode, None, alpha_cutoff)  # reject a bad mode before any work
    size = validate_texture_size(texture_size)
    cm = _cumesh()

    def step(
        done: int,
    ) -> None:  # `done` steps are finished; the one named is running (or the last, at the end)
        if progress is not None:
            running = min(done, len(_STEPS) - 1)
            progress("remesh + simplify" if (remesh and running == 1) else _STEPS[running], done, len(_STEPS))

    step(0)

    s = _export_surface(
        vertices,
        faces,
        attr_volume,
        coords,
        attr_layout,
        aabb,
        voxel_size,
        grid_size,
        decimation_target,
        remesh,
        remesh_band,
        remesh_project,
        step,
    )
    v1, f1, vs = s.vertices, s.faces, s.voxel_size

    # 3. UV atlas; normals are area-weighted on the welded mesh and follow the seam-split vertices
    normals = cm.vertex_normals(v1, f1)
    chart_options = {
        "threshold_cone_half_angle_rad": float(mesh_cluster_threshold_cone_half_angle_rad),
        "refine_iterations": int(mesh_cluster_refine_iterations),
        "global_iterations": int(mesh_cluster_global_iterations),
        "smooth_strength": float(mesh_cluster_smooth_strength),
    }
    v2, f2, uvs, vmap = cm.uv_unwrap(
        v1,
        f1,
        compute_charts_kwargs=chart_options,
        pack_charts_kwargs=atlas_pack_options(size),
        texture_size=size,
    )
    voxel = float(vs.min())
    v2, f2, uvs, vmap = cm.remove_uv_degenerate_faces(
        v2, f2, uvs, vmap, area_eps=1e-6 * voxel**2, edge_eps=1e-4 * voxel
    )
    if f2.shape[0] == 0:
        raise ValueError("UV unwrapping left no usable faces; the mesh is degenerate")
    n2 = normals[vmap.to(normals.device).long()]
    v2, f2, n2, uvs = _split_folds(cm, v2, f2, n2, uvs)
    _validated(cm, v2, f2, n2)
    step(4)

    # 4. textures
    baked = bake_attribute_textures(
        v2.to(s.device),
        f2.to(s.device).long(),
        uvs.to(s.device),
        size,
        partial(s.bvh.closest_point, max_distance=_PROJECTION_RANGE_VOXELS * float(vs.max())),
        s.original,
        s.feats,
        s.grid,
        s.aabb[0],
        vs,
        attr_layout,
    )
    step(5)

    # 5. glTF material and Y-up mesh
    mode = resolve_alpha_mode(alpha_mode, baked.alpha[baked.covered], alpha_cutoff)
    base = baked.base_color if mode == "OPAQUE" else baked.base_color_rgba()
    material = trimesh.visual.material.PBRMaterial(
        name=name,
        baseColorTexture=Image.fromarray(np.ascontiguousarray(base)),
        baseColorFactor=np.array([255, 255, 255, 255], dtype=np.uint8),
        metallicRoughnessTexture=Image.fromarray(baked.metallic_roughness_rgb()),
        metallicFactor=1.0,
        roughnessFactor=1.0,
        alphaMode=mode,
        alphaCutoff=float(alpha_cutoff) if mode == "MASK" else None,
        doubleSided=not remesh,
    )
    uv_np = uvs.detach().cpu().numpy().astype(np.float64)
    uv_np[:, 1] = 1.0 - uv_np[:, 1]  # trimesh's UVs are v-up (as OBJ); glTF and the image rows are v-down
    mesh = trimesh.Trimesh(
        vertices=zup_to_gltf(v2.detach().cpu().numpy().astype(np.float64)),
        faces=f2.detach().cpu().numpy().astype(np.int64),
        vertex_normals=zup_to_gltf(_unit(n2)),
        process=False,
        visual=trimesh.visual.TextureVisuals(uv=uv_np, material=material),
        metadata={"name": name},
    )
    step(6)
    return mesh


@torch.no_grad()
def to_vertex_colored_mesh(
    vertices,
    faces,
    attr_volume,
    coords,
    attr_layout: dict[str, slice],
    aabb=((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5)),
    voxel_size: float | Sequence[float] | None = None,
    grid_size: int | Sequence[int] | None = None,
    decimation_target: int = 1000000,
    remesh: bool = False,
    remesh_band: float = 1,
    remesh_project: float = 0.9,
    progress: Progress | None = None,
    name: str = "genesis",
) -> trimesh.Trimesh:
    """The export for STL and PLY: the same simplified, clean surface as `to_glb`, no UV unwrap or bake.

    Each vertex gets the voxel attributes sampled (trilinearly) at its closest point on the original surface:
    RGBA vertex colours (base colour + alpha) and unit normals. Returns a Y-up `trimesh.Trimesh`; write it
    with `export_asset(..., "ply")` (colours and normals) or `"stl"` (geometry), both z-up by default.
    """
    stages = ("fill holes", "simplify", "clean up", "vertex colours")
    cm = _cumesh()

    def step(done: int) -> None:  # as in `to_glb`
        if progress is not None:
            running = min(done, len(stages) - 1)
            progress("remesh + simplify" if (remesh and running == 1) else stages[running], done, len(stages))

    step(0)

    s = _export_surface(
        vertices,
        faces,
        attr_volume,
        coords,
        attr_layout,
        aabb,
        voxel_size,
        grid_size,
        decimation_target,
        remesh,
        remesh_band,
        remesh_project,
        step,
    )
    v1, f1, normals = _split_folds(cm, s.vertices, s.faces, cm.vertex_normals(s.vertices, s.faces))
    _validated(cm, v1, f1, normals)
    pos = v1.to(torch.float32)
    _, fid, uvw = s.bvh.closest_point(pos, max_distance=_PROJECTION_RANGE_VOXELS * float(s.voxel_size.max()))
    v0, f0 = s.original
    proj = (uvw[:, :, None].to(torch.float32) * v0[f0[fid.clamp(min=0)]].to(torch.float32)).sum(1)
    pos = torch.where((fid >= 0)[:, None], proj, pos)
    grid_pos = (pos - s.aabb[0]) / s.voxel_size
    values, weight = sample_trilinear(s.feats, s.grid, grid_pos)
    missing = torch.nonzero(weight <= 0).squeeze(1)
    if missing.numel():  # no voxel around: take the nearest voxel centre
        from scipy.spatial import cKDTree

        centres = (s.voxel_coords.to(torch.float64) + 0.5).cpu().numpy()
        _, nearest = cKDTree(centres).query(grid_pos[missing].to(torch.float64).cpu().numpy())
        values[missing] = s.feats[torch.from_numpy(nearest).to(s.device)].to(values.dtype)
    rgba = torch.cat([values[:, attr_layout["base_color"]], values[:, attr_layout["alpha"]]], 1)
    colours = torch.round(rgba.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()
    mesh = trimesh.Trimesh(
        vertices=zup_to_gltf(v1.detach().cpu().numpy().astype(np.float64)),
        faces=f1.detach().cpu().numpy().astype(np.int64),
        vertex_normals=zup_to_gltf(_unit(normals)),
        vertex_colors=colours,
        process=False,
        metadata={"name": name},
    )
    step(4)
    return mesh
