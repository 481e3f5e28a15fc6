"""What is kept of one teacher run, and how it becomes dense volumes again.

A TRELLIS.2 run (`TeacherRun`: the decoded asset, the sparse-structure latent and the decoder's 64^3 logits)
is reduced to a `TeacherRecord`, all in the teacher's object frame (the cube `[-0.5, 0.5]^3`, Z up; grid
index order x, y, z for the structure, the latent and the O-Voxel coordinates alike):

| array | what | stored as |
| --- | --- | --- |
| `seed` | the teacher's noise seed (its structure noise is `fresnel.network.structure_noise`) | int64 |
| `latent` | the sparse-structure latent the flow made from that noise | float16 `[C, R, R, R]` |
| `structure` | the decoder's 64^3 occupancy (logits > 0: the voxels the surface passes) | packed bits |
| `distance` | signed distance to the decoded surface at the 64^3 voxel centres, in voxels | int8, ±`DISTANCE_CLIP` |
| `attr_cells`, `attr_values` | the O-Voxel PBR attributes averaged over each 64^3 voxel they touch | uint8 |
| `surface_points`, `surface_colors` | samples of the decoded mesh and their base colour (evaluation) | float16, uint8 |

The signed distance comes from the O-Voxel surface voxels pooled to 128^3 (inside: the voxels the closed
surface encloses), averaged down to 64^3. The mesh's own statistics go into the item's `done.json`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy import ndimage

from o_voxel.asset import MeshWithVoxel
from o_voxel.attributes import SparseVoxelGrid, sample_trilinear

from ..config import ATTRIBUTE_CHANNELS
from ..evaluation import SURFACE_POINTS, sample_surface

STRUCTURE_RESOLUTION = 64  # TRELLIS.2's sparse-structure decoder output, a side
SOLID_RESOLUTION = 128  # the O-Voxel surface is pooled to this grid to tell inside from outside
BLOCK = SOLID_RESOLUTION // STRUCTURE_RESOLUTION
DISTANCE_CLIP = 8.0  # voxels (of STRUCTURE_RESOLUTION); farther is stored as this
DISTANCE_SCALE = 127.0 / DISTANCE_CLIP


@dataclass
class TeacherRun:
    """One TRELLIS.2 run: its asset, the sparse-structure latent `[C, R, R, R]` and decoder logits `[64]*3`."""

    asset: MeshWithVoxel
    latent: torch.Tensor
    logits: torch.Tensor
    seconds: float


def pooled_cells(coords: torch.Tensor, resolution: int, target: int) -> tuple[torch.Tensor, torch.Tensor]:
    """`(cells [K, 3] int64, inverse [N])`: the voxels of a `target` grid that voxels `coords` of a
    `resolution` grid fall in, and which cell each one is in."""
    cells = torch.div(coords.long() * target, resolution, rounding_mode="floor").clamp(0, target - 1)
    return torch.unique(cells, dim=0, return_inverse=True)


def surface_distance(coords: torch.Tensor, resolution: int) -> np.ndarray:
    """Signed distance (voxels of `STRUCTURE_RESOLUTION`, negative inside) at the 64^3 voxel centres, from
    surface voxels `coords` of a `resolution` grid: pooled to `SOLID_RESOLUTION`, closed by one voxel,
    filled, distance to the nearest surface voxel, then averaged over each 2^3 block (an open surface
    encloses nothing: its distance is positive on both sides, `frames.student_targets` gives it a body)."""
    cells, _ = pooled_cells(coords, resolution, SOLID_RESOLUTION)
    surface = np.zeros((SOLID_RESOLUTION,) * 3, dtype=bool)
    surface[tuple(cells.numpy().T)] = True
    filled = ndimage.binary_fill_holes(ndimage.binary_dilation(surface))
    inside = ndimage.binary_erosion(filled) & ~surface
    distance = ndimage.distance_transform_edt(~surface).astype(np.float32)
    signed = np.where(inside, -distance, distance)
    blocks = signed.reshape((STRUCTURE_RESOLUTION, BLOCK) * 3).mean(axis=(1, 3, 5))
    return blocks / BLOCK


def surface_colors(asset: MeshWithVoxel, points: torch.Tensor) -> torch.Tensor:
    """sRGB base colour `[N, 3]` in [0, 1] at surface points, sampled trilinearly from the O-Voxel attributes
    (points with no voxel around them get the mean colour)."""
    size = [asset.resolution] * 3
    grid = SparseVoxelGrid(asset.coords.cpu(), size)
    local = (points.cpu() - asset.origin.cpu()) / asset.voxel_size
    base = asset.attrs[:, asset.layout["base_color"]].float().cpu()
    values, weight = sample_trilinear(base, grid, local)
    values[weight == 0] = base.mean(0)
    return values.clamp(0, 1)


def teacher_record(run: TeacherRun, seed: int) -> tuple[dict[str, np.ndarray], dict]:
    """`(arrays, statistics)` of one teacher run: the `TeacherRecord` arrays (module docstring) and the
    decoded mesh's statistics (counts, area, bounds, seconds)."""
    asset = run.asset
    if tuple(run.logits.shape) != (STRUCTURE_RESOLUTION,) * 3:
        raise ValueError(f"the sparse-structure decoder gave {tuple(run.logits.shape)}, not 64^3")
    vertices, faces = asset.vertices.float().cpu(), asset.faces.long().cpu()
    if faces.shape[0] == 0 or asset.coords.shape[0] == 0:
        raise ValueError("the teacher made no surface for this image")
    generator = torch.Generator().manual_seed(seed)
    points, _ = sample_surface(vertices, faces, SURFACE_POINTS, generator)
    cells, inverse = pooled_cells(asset.coords.cpu(), asset.resolution, STRUCTURE_RESOLUTION)
    attrs = asset.attrs.float().cpu().clamp(0, 1)
    sums = torch.zeros(cells.shape[0], ATTRIBUTE_CHANNELS).index_add_(0, inverse, attrs)
    counts = torch.zeros(cells.shape[0]).index_add_(0, inverse, torch.ones(inverse.shape[0]))
    distance = surface_distance(asset.coords.cpu(), asset.resolution)
    arrays = {
        "seed": np.int64(seed),
        "latent": run.latent.float().cpu().numpy().astype(np.float16),
        "structure": np.packbits((run.logits.float().cpu() > 0).numpy().reshape(-1)),
        "distance": np.round(np.clip(distance, -DISTANCE_CLIP, DISTANCE_CLIP) * DISTANCE_SCALE).astype(
            np.int8
        ),
        "attr_cells": cells.numpy().astype(np.uint8),
        "attr_values": to_bytes(sums / counts[:, None]),
        "surface_points": points.numpy().astype(np.float16),
        "surface_colors": to_bytes(surface_colors(asset, points)),
    }
    tri = vertices[faces]
    area = float(torch.linalg.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0]).norm(dim=-1).sum() / 2)
    stats = {
        "seed": seed,
        "seconds": round(run.seconds, 3),
        "vertices": int(vertices.shape[0]),
        "faces": int(faces.shape[0]),
        "voxels": int(asset.coords.shape[0]),
        "resolution": asset.resolution,
        "structure_voxels": int((run.logits > 0).sum()),
        "area": round(area, 5),
        "bounds": [vertices.min(0).values.tolist(), vertices.max(0).values.tolist()],
    }
    return arrays, stats


def to_bytes(values: torch.Tensor) -> np.ndarray:
    """Values in [0, 1] as uint8."""
    return (values.clamp(0, 1) * 255).round().to(torch.uint8).numpy()


def unpack_structure(packed: np.ndarray) -> torch.Tensor:
    """The stored 64^3 occupancy (bool)."""
    bits = np.unpackbits(packed)[: STRUCTURE_RESOLUTION**3]
    return torch.from_numpy(bits.astype(bool)).reshape((STRUCTURE_RESOLUTION,) * 3)


def stored_distance(record: dict[str, np.ndarray]) -> torch.Tensor:
    """The signed distance `[64, 64, 64]` (voxels, float32) of a record."""
    return torch.from_numpy(record["distance"].astype(np.float32) / DISTANCE_SCALE)


def dense_attributes(record: dict[str, np.ndarray]) -> torch.Tensor:
    """`[6, 64, 64, 64]` uint8: the record's attributes on every voxel, each empty voxel taking the value of
    the nearest voxel that has one (so that resampling near the surface never mixes in empty voxels)."""
    size = (STRUCTURE_RESOLUTION,) * 3
    cells = record["attr_cells"].astype(np.int64)
    values = np.zeros((ATTRIBUTE_CHANNELS, *size), dtype=np.uint8)
    values[:, cells[:, 0], cells[:, 1], cells[:, 2]] = record["attr_values"].T
    empty = np.ones(size, dtype=bool)
    empty[cells[:, 0], cells[:, 1], cells[:, 2]] = False
    nearest = ndimage.distance_transform_edt(empty, return_distances=False, return_indices=True)
    return torch.from_numpy(values[:, nearest[0], nearest[1], nearest[2]])
