"""Textured mesh -> per-voxel PBR attributes (the material half of an O-Voxel).

The voxels are exactly those of `mesh_to_flexible_dual_grid` (the 4 voxels around every lattice edge a
triangle crosses). Each (triangle, voxel) pair contributes one sample: the voxel centre projected onto the
triangle's plane, with unclamped barycentrics, UVs interpolated there and the material's textures read with
bilinear filtering, REPEAT wrapping and a mip level matched to the voxel footprint (spec section 1.8).
A voxel's value is the weighted mean of its samples. Outputs are uint8 like the training data.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import trimesh

from o_voxel.convert.mesh_to_dual_grid import edge_crossings
from o_voxel.validation import resolve_grid, validate_mesh

_ALPHA_MODES = {"OPAQUE": 0, "MASK": 1, "BLEND": 2}


class _MipTexture:
    """A texture as float32 (H, W, C) in [0, 1] with a box-filtered mip chain (square power-of-two only)."""

    def __init__(self, image, channels: str, device: torch.device):
        data = np.asarray(image.convert(channels), dtype=np.float32) / 255.0
        if data.ndim == 2:
            data = data[..., None]
        level = torch.from_numpy(data).to(device)
        self.levels = [level]
        h, w = data.shape[:2]
        if h == w and h & (h - 1) == 0:
            while level.shape[0] > 1:
                level = level.reshape(level.shape[0] // 2, 2, level.shape[1] // 2, 2, -1).mean((1, 3))
                self.levels.append(level)

    @property
    def height(self) -> int:
        return self.levels[0].shape[0]

    def _bilinear(self, level: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
        h, w = level.shape[:2]
        x = uv[:, 0] * w - 0.5
        y = (1.0 - uv[:, 1]) * h - 0.5  # image row 0 is the top (v = 1)
        x0, y0 = torch.floor(x), torch.floor(y)
        fx, fy = (x - x0)[:, None], (y - y0)[:, None]
        x0, y0 = x0.long(), y0.long()
        xs = [torch.remainder(x0, w), torch.remainder(x0 + 1, w)]
        ys = [torch.remainder(y0, h), torch.remainder(y0 + 1, h)]
        top = level[ys[0], xs[0]] * (1 - fx) + level[ys[0], xs[1]] * fx
        bottom = level[ys[1], xs[0]] * (1 - fx) + level[ys[1], xs[1]] * fx
        return top * (1 - fy) + bottom * fy

    def sample(self, uv: torch.Tensor, lod: torch.Tensor) -> torch.Tensor:
        """Trilinear (bilinear + between mip levels) lookup at `uv (N, 2)` with level of detail `lod (N,)`."""
        lod = torch.where(torch.isfinite(lod), lod, torch.zeros_like(lod)).clamp(0, len(self.levels) - 1)
        base = torch.floor(lod).long()
        frac = (lod - base)[:, None]
        out = torch.zeros(uv.shape[0], self.levels[0].shape[-1], device=uv.device)
        for i in torch.unique(base).tolist():
            sel = base == i
            value = self._bilinear(self.levels[i], uv[sel])
            if i + 1 < len(self.levels):
                value = value * (1 - frac[sel]) + self._bilinear(self.levels[i + 1], uv[sel]) * frac[sel]
            out[sel] = value
        return out


def _geometries(mesh) -> list[trimesh.Trimesh]:
    if isinstance(mesh, (str, Path)):
        mesh = trimesh.load(mesh, process=False)
    if isinstance(mesh, trimesh.Scene):
        return [g for g in mesh.dump() if isinstance(g, trimesh.Trimesh)]
    if isinstance(mesh, trimesh.Trimesh):
        return [mesh]
    raise ValueError(f"expected a file path, trimesh.Scene or trimesh.Trimesh, got {type(mesh).__name__}")


def _pbr_material(geometry: trimesh.Trimesh, index: int):
    visual = geometry.visual
    material = getattr(visual, "material", None)
    if not isinstance(visual, trimesh.visual.TextureVisuals) or material is None:
        raise ValueError(
            f"geometry {index} has no texture/material (TextureVisuals with a PBR material needed)"
        )
    if not isinstance(material, trimesh.visual.material.PBRMaterial):
        material = material.to_pbr()
    return material


def _factor(value, size: int, default: float) -> np.ndarray:
    if value is None:
        return np.full(size, default, dtype=np.float32)
    arr = np.asarray(value, dtype=np.float32).reshape(-1)[:size]
    if arr.dtype == np.uint8 or arr.max(initial=0) > 1.0:
        arr = arr / 255.0
    return arr


def _base_color_factor(material) -> np.ndarray:
    value = material.baseColorFactor
    if value is None:
        return np.ones(4, dtype=np.float32)
    arr = np.asarray(value).reshape(-1)
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    out = np.ones(4, dtype=np.float32)
    out[: arr.size] = arr[:4].astype(np.float32) / scale
    return out


@torch.no_grad()
def textured_mesh_to_volumetric_attr(
    mesh,
    voxel_size: float | Sequence[float] | None = None,
    grid_size: int | Sequence[int] | None = None,
    aabb=None,
    mip_level_offset: float = 0.0,
    verbose: bool = False,
    timing: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Voxelise the PBR material of a textured mesh.

    `mesh`: a path, `trimesh.Scene` or `trimesh.Trimesh` whose geometries carry UVs and a (PBR) material.
    Returns `(coords int32 (N, 3) sorted by (x, y, z), attrs)` with uint8 `attrs`: `base_color (N, 3)`,
    `metallic (N, 1)`, `roughness (N, 1)`, `alpha (N, 1)`, `emissive (N, 3)`, `normal (N, 3)` (interpolated
    vertex normal encoded `(n + 1) / 2 * 255`; normal maps are not applied). `verbose`/`timing` are ignored.
    """
    geometries = [g for g in _geometries(mesh) if len(g.faces)]
    if not geometries:
        raise ValueError("the textured mesh is empty: no geometry with faces")
    all_v = np.concatenate([np.asarray(g.vertices, dtype=np.float32) for g in geometries])
    aabb_t, vs, res = resolve_grid(torch.from_numpy(all_v), aabb, voxel_size, grid_size)
    vs64 = vs.double()
    key_parts, value_parts, weight_parts = [], [], []
    for index, geometry in enumerate(geometries):
        material = _pbr_material(geometry, index)
        v, f = validate_mesh(
            np.asarray(geometry.vertices), np.asarray(geometry.faces), what=f"geometry {index}"
        )
        uv_all = getattr(geometry.visual, "uv", None)
        uv_all = np.zeros((len(v), 2)) if uv_all is None else np.asarray(uv_all, dtype=np.float64)
        tri = (v.double() - aabb_t[0].double())[f]  # (F, 3, 3)
        tri_uv = torch.tensor(uv_all)[f]  # (F, 3, 2)
        tri_n = torch.tensor(np.array(geometry.vertex_normals, dtype=np.float64))[f]
        pairs = []
        for axis in range(3):
            t_idx, _, owner = edge_crossings(tri / vs64, res, axis)
            b, c = (axis + 1) % 3, (axis + 2) % 3
            for db, dc in ((0, 0), (1, 0), (0, 1), (1, 1)):
                vox = owner.clone()
                vox[:, b] += db
                vox[:, c] += dc
                pairs.append(torch.cat([t_idx[:, None], vox], 1))
        if not pairs or sum(p.shape[0] for p in pairs) == 0:
            continue
        pairs = torch.unique(torch.cat(pairs), dim=0)  # one sample per (triangle, voxel)
        t_idx, vox = pairs[:, 0], pairs[:, 1:]
        p0, p1, p2 = tri[t_idx, 0], tri[t_idx, 1], tri[t_idx, 2]
        normal = torch.cross(p1 - p0, p2 - p0, dim=-1)
        normal = normal / normal.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        centre = (vox.double() + 0.5) * vs64
        dist = ((centre - p0) * normal).sum(-1)
        q = centre - dist[:, None] * normal
        e0, e1, e2 = p1 - p0, p2 - p0, q - p0
        d00, d01, d11 = (e0 * e0).sum(-1), (e0 * e1).sum(-1), (e1 * e1).sum(-1)
        d20, d21 = (e2 * e0).sum(-1), (e2 * e1).sum(-1)
        denom = d00 * d11 - d01 * d01
        ok = denom.abs() > 0
        denom = torch.where(ok, denom, torch.ones_like(denom))
        bv = (d11 * d20 - d01 * d21) / denom
        bw = (d00 * d21 - d01 * d20) / denom
        bary = torch.stack([1 - bv - bw, bv, bw], -1)
        bary = torch.where(ok[:, None], bary, torch.full_like(bary, 1 / 3))
        uv = (bary[:, :, None] * tri_uv[t_idx]).sum(1)
        vn = (bary[:, :, None] * tri_n[t_idx]).sum(1)
        vn = vn / vn.norm(dim=-1, keepdim=True).clamp(min=1e-30)
        lod = _mip_lod(tri[t_idx], tri_uv[t_idx], float(vs.max()))
        values = _shade(material, uv.float(), lod, mip_level_offset)
        values = torch.cat([values, vn.float()], 1)
        key_parts.append(vox)
        value_parts.append(values)
        weight_parts.append((1.0 - dist).float())
    if not key_parts:
        raise ValueError("the textured mesh crosses no voxel edge of the grid (empty at this resolution)")
    vox = torch.cat(key_parts)
    keys = (vox[:, 0] * res[1] + vox[:, 1]) * res[2] + vox[:, 2]
    uniq, inverse = torch.unique(keys, return_inverse=True)
    weights = torch.cat(weight_parts)
    values = torch.cat(value_parts)
    total = torch.zeros(uniq.shape[0]).index_add_(0, inverse, weights)
    mean = torch.zeros(uniq.shape[0], values.shape[1]).index_add_(0, inverse, values * weights[:, None])
    mean = mean / total[:, None]
    coords = torch.stack([uniq // (res[1] * res[2]), (uniq // res[2]) % res[1], uniq % res[2]], 1).to(
        torch.int32
    )
    mean[:, 9:12] = mean[:, 9:12] * 0.5 + 0.5

    def to_u8(x: torch.Tensor) -> torch.Tensor:
        return (x * 255).clamp(0, 255).to(torch.uint8)

    attrs = {
        "base_color": to_u8(mean[:, 0:3]),
        "metallic": to_u8(mean[:, 3:4]),
        "roughness": to_u8(mean[:, 4:5]),
        "alpha": to_u8(mean[:, 5:6]),
        "emissive": to_u8(mean[:, 6:9]),
        "normal": to_u8(mean[:, 9:12]),
    }
    return coords, attrs


def _mip_lod(tri: torch.Tensor, tri_uv: torch.Tensor, voxel: float) -> torch.Tensor:
    """Texture LOD numerator per sample: log2 of UV units per voxel (the texture height is added later)."""
    dp1, dp2 = tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]
    du1, du2 = tri_uv[:, 1] - tri_uv[:, 0], tri_uv[:, 2] - tri_uv[:, 0]
    det = du1[:, 0] * du2[:, 1] - du2[:, 0] * du1[:, 1]
    safe = torch.where(det.abs() < 1e-6, torch.ones_like(det), det)
    dpdu = (dp1 * du2[:, 1:2] - dp2 * du1[:, 1:2]) / safe[:, None]
    dpdv = (dp2 * du1[:, 0:1] - dp1 * du2[:, 0:1]) / safe[:, None]
    length = voxel / torch.sqrt(dpdu.norm(dim=-1) * dpdv.norm(dim=-1)).clamp(min=1e-30)
    lod = torch.log2(length)
    return torch.where(det.abs() < 1e-6, torch.full_like(lod, -math.inf), lod).float()


def _shade(material, uv: torch.Tensor, lod_uv: torch.Tensor, offset: float) -> torch.Tensor:
    """Material channels per sample: base colour (3), metallic, roughness, alpha, emissive (3)."""
    device = uv.device
    n = uv.shape[0]

    def read(image, channels: str) -> torch.Tensor | None:
        if image is None:
            return None
        texture = _MipTexture(image, channels, device)
        lod = lod_uv + math.log2(texture.height) + offset
        lod = torch.where(torch.isfinite(lod) & (lod > 0), lod, torch.zeros_like(lod))
        return texture.sample(uv, lod)

    factor = torch.from_numpy(_base_color_factor(material))
    base_tex = read(material.baseColorTexture, "RGBA")
    base = (base_tex[:, :3] if base_tex is not None else torch.ones(n, 3)) * factor[:3]
    mr = read(material.metallicRoughnessTexture, "RGB")
    metallic_factor = 1.0 if material.metallicFactor is None else float(material.metallicFactor)
    roughness_factor = 1.0 if material.roughnessFactor is None else float(material.roughnessFactor)
    metallic = (mr[:, 2:3] if mr is not None else torch.ones(n, 1)) * metallic_factor
    roughness = (mr[:, 1:2] if mr is not None else torch.ones(n, 1)) * roughness_factor
    mode = _ALPHA_MODES.get(str(material.alphaMode or "OPAQUE").upper(), 0)
    alpha = (base_tex[:, 3:4] if base_tex is not None else torch.ones(n, 1)) * factor[3]
    if mode == 0:
        alpha = torch.ones(n, 1)
    elif mode == 1:
        cutoff = 0.5 if material.alphaCutoff is None else float(material.alphaCutoff)
        alpha = (alpha >= cutoff).float()
    emissive_factor = torch.from_numpy(_factor(material.emissiveFactor, 3, 0.0))
    emissive_tex = read(material.emissiveTexture, "RGB")
    emissive = (emissive_tex if emissive_tex is not None else torch.ones(n, 3)) * emissive_factor
    return torch.cat([base, metallic, roughness, alpha, emissive], 1)
