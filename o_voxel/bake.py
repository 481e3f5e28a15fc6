"""Texture baking: per-texel surface point -> closest point on the original surface -> sparse attribute lookup.

Steps (spec `ovoxel-export.md` sections 2.8-2.13): rasterise the UV layout, interpolate each covered texel's
3D position, project it onto the original (pre-simplification) surface, sample the sparse attribute volume
trilinearly there, quantise to bytes and fill the gutters (uncovered texels, and covered ones that found no
voxel) from the nearest valid texel so bilinear filtering and mip-maps never bleed in black.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
import torch

from o_voxel.attributes import SparseVoxelGrid, sample_trilinear
from o_voxel.rasterize import rasterize_uv

ClosestPointFn = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


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
    for start in range(0, covered_idx.numel(), chunk_size):
        idx = covered_idx[start : start + chunk_size]
        tri = vertices[faces[face_id[idx]]].to(torch.float32)  # (n, 3, 3)
        pos = (bary[idx, :, None] * tri).sum(1)
        if closest_point is not None and surface is not None:
            _, fid, uvw = closest_point(pos)
            v0, f0 = surface
            hit = fid >= 0
            proj = (uvw[:, :, None].to(torch.float32) * v0[f0[fid.clamp(min=0)]].to(torch.float32)).sum(1)
            ok = hit & torch.isfinite(proj).all(-1)
            pos = torch.where(ok[:, None], proj, pos)
        grid_pos = (pos - aabb_min.to(pos)) / voxel_size.to(pos)
        values, weight = sample_trilinear(feats, grid, grid_pos.to(feats.device))
        channels[idx.to(feats.device)] = values.to(torch.float32)
        found[idx.to(feats.device)] = weight > 0
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
