"""Texture baking: per-texel surface point -> closest point on the original surface -> sparse attribute lookup.

Steps (spec `ovoxel-export.md` sections 2.8-2.13): rasterise the UV layout, interpolate each covered texel's
3D position, project it onto the original (pre-simplification) surface, sample the sparse attribute volume
trilinearly there, quantise to bytes and fill the gutters (uncovered texels, and covered ones that found no
voxel) from the nearest valid texel so bilinear filtering and mip-maps never bleed in black.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import cv2
import numpy as np
import torch

from o_voxel.attributes import SparseVoxelGrid, sample_trilinear
from o_voxel.rasterize import rasterize_uv

ClosestPointFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]

_BAND_TEXELS = 3.0  # uncovered texels this close to a chart are baked from the chart's own surface


def atlas_padding(texture_size: int) -> int:
    """Texels of gap between UV charts: 4 (2 at 512), so bilinear filtering and mip levels 0-2 stay in-chart."""
    return 2 if int(texture_size) <= 512 else 4


def atlas_pack_options(texture_size: int) -> dict:
    """xatlas pack options of the export atlas for `cumesh.uv_unwrap(..., texture_size=texture_size)`."""
    return {"padding": atlas_padding(texture_size), "bilinear": True}


@dataclass
class BakedTextures:
    """Baked PBR channels as uint8 images (row 0 = v = 0) plus the texel coverage mask."""

    base_color: np.ndarray  # (H, W, 3)
    alpha: np.ndarray  # (H, W)
    metallic: np.ndarray  # (H, W)
    roughness: np.ndarray  # (H, W)
    covered: np.ndarray  # (H, W) bool: a face covers the texel centre and a voxel value was found

    def base_color_rgba(self, keep_alpha: bool = True) -> np.ndarray:
        """glTF base colour texture: RGB + alpha (255 everywhere when `keep_alpha` is False)."""
        alpha = self.alpha if keep_alpha else np.full_like(self.alpha, 255)
        return np.concatenate([self.base_color, alpha[..., None]], axis=-1)

    def metallic_roughness_rgb(self) -> np.ndarray:
        """glTF metallic-roughness texture: R unused (0), G = roughness, B = metallic."""
        return np.stack([np.zeros_like(self.metallic), self.roughness, self.metallic], axis=-1)


def _sample_texels(
    idx: torch.Tensor,
    fid: torch.Tensor,
    bary: torch.Tensor,
    *,
    vertices,
    faces,
    closest_point,
    surface,
    feats,
    grid,
    aabb_min,
    voxel_size,
    chunk_size: int,
    channels: torch.Tensor,
    found: torch.Tensor,
) -> None:
    """Bake texels `idx` at barycentrics `bary` of faces `fid`: project onto the original surface, sample."""
    for start in range(0, idx.numel(), chunk_size):
        sl = slice(start, start + chunk_size)
        tri = vertices[faces[fid[sl]]].to(torch.float32)  # (n, 3, 3)
        pos = (bary[sl, :, None] * tri).sum(1)
        if closest_point is not None and surface is not None:
            _, hit_face, uvw = closest_point(pos)
            v0, f0 = surface
            hit = hit_face >= 0
            proj = (uvw[:, :, None].to(torch.float32) * v0[f0[hit_face.clamp(min=0)]].to(torch.float32)).sum(
                1
            )
            ok = hit & torch.isfinite(proj).all(-1)
            pos = torch.where(ok[:, None], proj, pos)
        grid_pos = (pos - aabb_min.to(pos)) / voxel_size.to(pos)
        values, weight = sample_trilinear(feats, grid, grid_pos.to(feats.device))
        target = idx[sl].to(feats.device)
        channels[target] = values.to(torch.float32)
        found[target] = weight > 0


def nearest_valid_texel(valid: np.ndarray) -> np.ndarray:
    """For every texel (flat index), the flat index of the nearest valid texel (Euclidean distance)."""
    flat_valid = valid.reshape(-1)
    if flat_valid.all() or not flat_valid.any():
        return np.arange(flat_valid.size)
    invalid = (~valid).astype(np.uint8)
    _, labels = cv2.distanceTransformWithLabels(invalid, cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL)
    # labels number the valid (zero) texels 1..n in raster order
    return np.flatnonzero(flat_valid)[labels.reshape(-1) - 1]


def fill_gutters(image: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Give every invalid texel the value of its nearest valid texel; returns a new image."""
    source = nearest_valid_texel(valid)
    return image.reshape(valid.size, -1)[source].reshape(image.shape)


def closest_barycentric_2d(p: torch.Tensor, tri: torch.Tensor) -> torch.Tensor:
    """Barycentrics `(n, 3)` of the point of each triangle `tri (n, 3, 2)` closest to `p (n, 2)` (clamped)."""
    a, b, c = tri[:, 0], tri[:, 1], tri[:, 2]
    best_d = torch.full(p.shape[:1], float("inf"), dtype=p.dtype, device=p.device)
    best = torch.zeros(p.shape[0], 3, dtype=p.dtype, device=p.device)
    v0, v1 = b - a, c - a
    d = p - a
    den = v0[:, 0] * v1[:, 1] - v0[:, 1] * v1[:, 0]
    safe = torch.where(den.abs() > 0, den, torch.ones_like(den))
    w1 = (d[:, 0] * v1[:, 1] - d[:, 1] * v1[:, 0]) / safe
    w2 = (v0[:, 0] * d[:, 1] - v0[:, 1] * d[:, 0]) / safe
    inside = (den.abs() > 0) & (w1 >= 0) & (w2 >= 0) & (w1 + w2 <= 1)
    best = torch.where(inside[:, None], torch.stack([1 - w1 - w2, w1, w2], 1), best)
    best_d = torch.where(inside, torch.zeros_like(best_d), best_d)
    for i, j in ((0, 1), (1, 2), (2, 0)):
        s, e = tri[:, i], tri[:, j]
        seg = e - s
        t = (((p - s) * seg).sum(1) / (seg * seg).sum(1).clamp_min(1e-30)).clamp(0, 1)
        dist = ((s + t[:, None] * seg - p) ** 2).sum(1)
        better = dist < best_d
        w = torch.zeros_like(best)
        w[:, i], w[:, j] = 1 - t, t
        best = torch.where(better[:, None], w, best)
        best_d = torch.where(better, dist, best_d)
    return best


def _to_bytes(values: torch.Tensor) -> np.ndarray:
    """[0, 1] floats to uint8 with rounding (out-of-range values are clipped)."""
    return torch.round(values.clamp(0, 1) * 255).to(torch.uint8).cpu().numpy()


@torch.no_grad()
def bake_attribute_textures(
    vertices: torch.Tensor,
    faces: torch.Tensor,
    uvs: torch.Tensor,
    texture_size: int,
    closest_point: ClosestPointFn | None,
    surface: tuple[torch.Tensor, torch.Tensor] | None,
    feats: torch.Tensor,
    grid: SparseVoxelGrid,
    aabb_min: torch.Tensor,
    voxel_size: torch.Tensor,
    attr_layout: dict[str, slice],
    chunk_size: int = 1 << 20,
) -> BakedTextures:
    """Bake `base_color`, `alpha`, `metallic`, `roughness` of a sparse attribute volume into UV textures.

    `vertices/faces/uvs` is the unwrapped mesh (same frame as the voxels). `closest_point(points)` returns
    `(distance, face_id, uvw)` on the original surface `surface = (V0, F0)`; pass `None` for both to sample
    at the texel's own position.
    """
    size = int(texture_size)
    face_id, bary = rasterize_uv(uvs, faces, size, size)
    face_id, bary = face_id.reshape(-1), bary.reshape(-1, 3)
    covered_idx = torch.nonzero(face_id >= 0).squeeze(1)
    channels = torch.zeros(size * size, feats.shape[1], dtype=torch.float32, device=feats.device)
    found = torch.zeros(size * size, dtype=torch.bool, device=feats.device)
    sample = partial(
        _sample_texels,
        vertices=vertices,
        faces=faces,
        closest_point=closest_point,
        surface=surface,
        feats=feats,
        grid=grid,
        aabb_min=aabb_min,
        voxel_size=voxel_size,
        chunk_size=chunk_size,
        channels=channels,
        found=found,
    )
    sample(covered_idx, face_id[covered_idx], bary[covered_idx])
    # the band around every chart: bake each texel from the closest point of its nearest covered texel's
    # face, so a face thinner than a texel still owns the texels its bilinear footprint reads
    covered = (face_id >= 0).reshape(size, size).cpu().numpy()
    if covered.any() and not covered.all():
        dist, labels = cv2.distanceTransformWithLabels(
            (~covered).astype(np.uint8), cv2.DIST_L2, 5, labelType=cv2.DIST_LABEL_PIXEL
        )
        band = np.flatnonzero((dist.reshape(-1) > 0) & (dist.reshape(-1) <= _BAND_TEXELS))
        if band.size:
            nearest = np.flatnonzero(covered.reshape(-1))[labels.reshape(-1)[band] - 1]
            band_t = torch.from_numpy(band).to(face_id.device)
            fid = face_id[torch.from_numpy(nearest).to(face_id.device)]
            centre = torch.stack([(band_t % size).double() + 0.5, (band_t // size).double() + 0.5], 1) / size
            w = closest_barycentric_2d(centre, uvs.double()[faces[fid]])
            sample(band_t, fid, w.to(torch.float32))
    valid = found.reshape(size, size).cpu().numpy()
    filled = _to_bytes(channels)[nearest_valid_texel(valid)].reshape(size, size, -1)

    def channel(name: str) -> np.ndarray:
        return np.ascontiguousarray(filled[..., attr_layout[name]])

    return BakedTextures(
        base_color=channel("base_color"),
        alpha=channel("alpha")[..., 0],
        metallic=channel("metallic")[..., 0],
        roughness=channel("roughness")[..., 0],
        covered=valid,
    )
