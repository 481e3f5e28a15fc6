"""Input checks shared by the O-Voxel conversions and the GLB exporter; every failure is a plain ValueError."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

SUPPORTED_TEXTURE_SIZES = (512, 1024, 2048, 4096)


def as_tensor(x, dtype: torch.dtype | None = None, device: torch.device | None = None) -> torch.Tensor:
    """Tensor view of `x` (ndarray, list or tensor) without copying when possible."""
    if torch.is_tensor(x):
        t = x
    else:
        t = torch.from_numpy(np.ascontiguousarray(x)) if isinstance(x, np.ndarray) else torch.as_tensor(x)
    return t.to(dtype=dtype or t.dtype, device=device or t.device)


def validate_mesh(vertices, faces, what: str = "mesh") -> tuple[torch.Tensor, torch.Tensor]:
    """Check a triangle mesh; returns `(vertices float32 (V, 3), faces int64 (F, 3))` on the vertices' device."""
    v = as_tensor(vertices)
    f = as_tensor(faces, device=v.device)
    if v.ndim != 2 or v.shape[1] != 3:
        raise ValueError(f"{what}: vertices must have shape (V, 3), got {tuple(v.shape)}")
    if f.ndim != 2 or f.shape[1] != 3:
        raise ValueError(f"{what}: faces must have shape (F, 3) (triangles), got {tuple(f.shape)}")
    if v.shape[0] == 0 or f.shape[0] == 0:
        raise ValueError(f"{what} is empty ({v.shape[0]} vertices, {f.shape[0]} faces); nothing to convert")
    if not v.is_floating_point():
        v = v.float()
    if f.is_floating_point():
        raise ValueError(f"{what}: face indices must be integers, got {f.dtype}")
    v = v.to(torch.float32)
    f = f.to(torch.int64)
    if not bool(torch.isfinite(v).all()):
        bad = int((~torch.isfinite(v).all(-1)).sum())
        raise ValueError(f"{what}: {bad} vertices have NaN or infinite coordinates")
    lo, hi = int(f.min()), int(f.max())
    if lo < 0 or hi >= v.shape[0]:
        raise ValueError(
            f"{what}: face indices out of range: found indices {lo}..{hi} but there are {v.shape[0]} vertices"
        )
    return v, f


def resolve_grid(
    vertices: torch.Tensor,
    aabb,
    voxel_size: float | Sequence[float] | None,
    grid_size: int | Sequence[int] | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(aabb float32 (2, 3), voxel_size float32 (3,), grid_size int64 (3,))` from whichever was given."""
    device = vertices.device
    if voxel_size is None and grid_size is None:
        raise ValueError("give either voxel_size or grid_size")
    if aabb is None:
        lo, hi = vertices.min(0).values, vertices.max(0).values
        if voxel_size is not None:
            vs = as_tensor(voxel_size, torch.float32, device).expand(3)
            extent = torch.ceil((hi - lo) / vs).clamp(min=1) * vs
        else:
            gs = as_tensor(grid_size, torch.float32, device).expand(3)
            extent = (hi - lo) * gs / (gs - 1).clamp(min=1)
        centre = (lo + hi) / 2
        aabb_t = torch.stack([centre - extent / 2, centre + extent / 2])
    else:
        aabb_t = as_tensor(aabb, torch.float32, device).reshape(2, 3)
        if not bool(torch.isfinite(aabb_t).all()) or bool((aabb_t[1] <= aabb_t[0]).any()):
            raise ValueError(
                f"aabb must be [[min x, y, z], [max x, y, z]] with max > min, got {aabb_t.tolist()}"
            )
    extent = aabb_t[1] - aabb_t[0]
    if voxel_size is not None:
        vs = as_tensor(voxel_size, torch.float32, device).expand(3).clone()
        if bool((vs <= 0).any()):
            raise ValueError(f"voxel_size must be positive, got {vs.tolist()}")
        gs = torch.round(extent / vs).to(torch.int64)
    else:
        gs = as_tensor(grid_size, torch.int64, device).expand(3).clone()
        vs = extent / gs.to(torch.float32)
    if bool((gs < 1).any()):
        raise ValueError(f"grid size must be at least 1 voxel per axis, got {gs.tolist()}")
    return aabb_t, vs, gs


def validate_texture_size(texture_size: int) -> int:
    """Texture side in pixels: one of 512, 1024, 2048, 4096."""
    if isinstance(texture_size, bool) or int(texture_size) != texture_size:
        raise ValueError(f"texture_size must be an integer, got {texture_size!r}")
    if int(texture_size) not in SUPPORTED_TEXTURE_SIZES:
        raise ValueError(
            f"unsupported texture size {texture_size}: choose one of {', '.join(map(str, SUPPORTED_TEXTURE_SIZES))}"
        )
    return int(texture_size)


def validate_attribute_volume(attr_volume, coords, attr_layout: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Check per-voxel attributes `(L, C)`, their coords `(L, 3)` and the name -> channel-slice layout."""
    feats = as_tensor(attr_volume)
    cs = as_tensor(coords, device=feats.device)
    if feats.ndim != 2:
        raise ValueError(f"attr_volume must have shape (voxels, channels), got {tuple(feats.shape)}")
    if feats.shape[0] == 0 or cs.numel() == 0:
        raise ValueError("the attribute volume has no voxels; the model produced no texture data to bake")
    if cs.ndim != 2 or cs.shape[1] != 3:
        if cs.ndim == 2 and cs.shape[1] == 4:
            cs = cs[:, 1:]
        else:
            raise ValueError(f"coords must have shape (voxels, 3), got {tuple(cs.shape)}")
    if cs.shape[0] != feats.shape[0]:
        raise ValueError(f"attr_volume has {feats.shape[0]} voxels but coords has {cs.shape[0]}")
    if not bool(torch.isfinite(feats).all()):
        raise ValueError("attr_volume contains NaN or infinite values")
    for name in ("base_color", "metallic", "roughness", "alpha"):
        if name not in attr_layout:
            raise ValueError(f"attr_layout is missing {name!r}; it has {sorted(attr_layout)}")
        sl = attr_layout[name]
        width = len(range(*sl.indices(feats.shape[1]))) if isinstance(sl, slice) else 0
        expected = 3 if name == "base_color" else 1
        if width != expected:
            raise ValueError(
                f"attr_layout[{name!r}] must be a slice of {expected} channel(s) within {feats.shape[1]}, got {sl}"
            )
    return feats.float(), cs.to(torch.int64)
