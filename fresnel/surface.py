"""From the network's dense fields to the asset every engine hands the export (`o_voxel.asset.MeshWithVoxel`).

1. `stand_upright`: resample the fields from the grid (view) frame into the output frame — turned back by
   the predicted camera elevation, so gravity points down — and fit the object to the unit cube.
2. `fields_to_dual_grid`: the occupancy's 0.5 level as an O-Voxel flexible dual grid: the field's samples
   are the grid corners, every cell the surface crosses is a voxel with one dual vertex (the mean of its
   edge crossings), and each voxel flags the three edges at its maximum corner where the sign changes.
3. The quads around flagged edges (`o_voxel.convert.dual_grid_to_mesh.find_quads`, as the O-Voxel mesh
   extraction) become triangles wound outwards; the cells around the surface carry the PBR attributes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from o_voxel.asset import PBR_LAYOUT, MeshWithVoxel
from o_voxel.convert.dual_grid_to_mesh import find_quads

from .frames import CROP_HALF, elevation_rotation
from .network import FresnelOutput

LEVEL = 0.5
# The 12 edges of a cell as (corner a, corner b), corners numbered by (dx, dy, dz) bits.
_CORNERS = [(x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
_EDGES = [
    (a, b)
    for a in range(8)
    for b in range(a + 1, 8)
    if sum(abs(p - q) for p, q in zip(_CORNERS[a], _CORNERS[b], strict=True)) == 1
]


def sample_fields(volume: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Trilinear samples of `volume [C, G, G, G]` (x, y, z over `[-0.5, 0.5]^3`, values at voxel centres)
    at `points [N, 3]` -> `[N, C]`; outside the cube the nearest border value is used."""
    grid = (points * 2).flip(-1).reshape(1, -1, 1, 1, 3)  # grid_sample wants (z, y, x) for a [D, H, W] volume
    out = F.grid_sample(
        volume[None].float(), grid.float(), mode="bilinear", padding_mode="border", align_corners=False
    )
    return out.reshape(volume.shape[0], -1).T


def _lattice(resolution: int, device) -> torch.Tensor:
    axis = (torch.arange(resolution, device=device, dtype=torch.float32) + 0.5) / resolution - 0.5
    return torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 3)


def stand_upright(
    occupancy: torch.Tensor, attributes: torch.Tensor, elevation: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """`occupancy [G, G, G]` in [0, 1] and `attributes [6, G, G, G]` in the grid frame -> the same fields in
    the output frame: rotated upright by `elevation` and scaled so the object's largest extent spans
    `2 * CROP_HALF` of the cube, centred."""
    g = occupancy.shape[0]
    device = occupancy.device
    pts = _lattice(g, device)
    rot = elevation_rotation(torch.tensor([float(elevation)], device=device))[0]
    inside = pts[occupancy.reshape(-1) > LEVEL]
    if inside.shape[0] == 0:
        return occupancy, attributes
    upright = inside @ rot  # rows: R^T p for each p (p_yaw = R^T p_view)
    lo, hi = upright.min(0).values - 0.5 / g, upright.max(0).values + 0.5 / g
    centre, extent = (lo + hi) / 2, float((hi - lo).max())
    source = (pts * (extent / (2 * CROP_HALF)) + centre) @ rot.T  # output lattice -> grid frame
    volume = torch.cat([occupancy[None], attributes], 0)
    values = sample_fields(volume, source)
    outside = (source.abs() > 0.5 - 0.5 / g).any(dim=1)
    values[outside, 0] = 0.0
    values = values.T.reshape(-1, g, g, g)
    return values[0], values[1:]


def upright_fields(out: FresnelOutput, index: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Object `index` of a network output as upright `(occupancy [G, G, G], attributes [6, G, G, G])`: what the
    engine meshes (`FresnelPipeline.run`) and the evaluation scores."""
    return stand_upright(
        torch.sigmoid(out.occupancy_logits[index]), out.attributes[index], float(out.elevation[index])
    )


def surface_shell(occupied: torch.Tensor) -> torch.Tensor:
    """The voxels of a solid `occupied [G, G, G]` (bool) that the surface passes: those with an empty face
    neighbour (outside the grid counts as empty). This is a sparse structure in TRELLIS.2's sense (its
    decoder marks the voxels the surface passes, not the inside)."""
    empty = F.pad((~occupied).float()[None, None], (1, 1, 1, 1, 1, 1), value=1.0)
    kernel = torch.zeros(1, 1, 3, 3, 3, dtype=empty.dtype, device=empty.device)
    kernel[0, 0, 1, 1, :] = kernel[0, 0, 1, :, 1] = kernel[0, 0, :, 1, 1] = 1.0
    kernel[0, 0, 1, 1, 1] = 0.0
    has_empty_neighbour = F.conv3d(empty, kernel)[0, 0] > 0
    return occupied & has_empty_neighbour


def fields_to_dual_grid(
    occupancy: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """`(coords [N, 3] int32, dual_vertices [N, 3] in [0, 1], intersected [N, 3] bool, rising [N, 3] bool)`
    of the cells that the `LEVEL` surface of `occupancy [G, G, G]` crosses. The field is padded with one empty
    sample a side, so its `G + 2` samples per axis are the corners of `G + 1` cells."""
    f = occupancy.float() - LEVEL
    f = F.pad(f, (1, 1, 1, 1, 1, 1), value=-LEVEL)  # an empty border closes every surface
    n = f.shape[0] - 1
    corners = torch.stack([f[x : x + n, y : y + n, z : z + n] for x, y, z in _CORNERS], -1)  # [n, n, n, 8]
    inside = corners > 0
    active = inside.any(-1) & ~inside.all(-1)
    coords = active.nonzero()
    c = corners[active]  # [N, 8]
    offsets = torch.tensor(_CORNERS, dtype=torch.float32, device=f.device)
    total = torch.zeros(c.shape[0], 3, device=f.device)
    count = torch.zeros(c.shape[0], 1, device=f.device)
    for a, b in _EDGES:
        fa, fb = c[:, a], c[:, b]
        crosses = (fa > 0) != (fb > 0)
        t = (fa / (fa - fb).where(crosses, torch.ones_like(fa))).clamp(0, 1)
        point = offsets[a] + t[:, None] * (offsets[b] - offsets[a])
        total += point * crosses[:, None]
        count += crosses[:, None]
    dual = total / count.clamp_min(1)
    # Edges at the cell's maximum corner (corner 7 = (1, 1, 1)) towards corners 3, 5, 6: along x, y, z.
    top = c[:, 7] > 0
    intersected = torch.stack([(c[:, 3] > 0) != top, (c[:, 5] > 0) != top, (c[:, 6] > 0) != top], -1)
    rising = top[:, None].expand(-1, 3)  # across a flagged edge, the occupancy rises towards corner 7
    return coords.to(torch.int32), dual, intersected, rising


def dual_grid_faces(
    coords: torch.Tensor, intersected: torch.Tensor, rising: torch.Tensor, grid_size: int
) -> torch.Tensor:
    """Triangles `[F, 3]` (int32) of the quads around every flagged edge, wound so that normals point out.

    `rising [N, 3]` says, per flagged edge, that the occupancy grows along the axis. `find_quads` winds every
    quad facing the axis' negative direction, which is outwards exactly where the occupancy rises."""
    size = torch.tensor([grid_size] * 3, device=coords.device)
    quads = find_quads(coords, intersected, size)
    rises = rising.reshape(-1)[intersected.reshape(-1).nonzero().squeeze(1)]
    if quads.shape[0] != rises.shape[0]:
        raise RuntimeError("a flagged edge lacks one of its four voxels")  # impossible with a padded field
    quads = torch.where(rises[:, None], quads, quads.flip(1))
    return quads[:, [0, 1, 2, 0, 2, 3]].reshape(-1, 3).to(torch.int32)


def fields_to_asset(occupancy: torch.Tensor, attributes: torch.Tensor) -> MeshWithVoxel:
    """The mesh of `occupancy`'s 0.5 level and the PBR attributes on the voxels around it, in the
    `[-0.5, 0.5]^3` cube (Z up). Field values sit at the centres of a `G^3` grid of that cube."""
    g = occupancy.shape[0]
    step = 1.0 / g
    origin = -0.5 - 0.5 * step  # the padded corner lattice starts one sample outside the cube
    coords, dual, intersected, rising = fields_to_dual_grid(occupancy)
    if coords.shape[0] == 0:
        raise ValueError("the network found no object in this image")
    vertices = origin + (coords.float() + dual) * step
    faces = dual_grid_faces(coords, intersected, rising, g + 1)
    # Attributes on the surface cells and their neighbours, sampled at the cell centres.
    near = F.max_pool3d(
        torch.zeros(1, g + 1, g + 1, g + 1, device=occupancy.device).index_put_(
            (torch.zeros_like(coords[:, 0]).long(), *coords.long().unbind(1)),
            torch.tensor(1.0, device=occupancy.device),
        ),
        3,
        1,
        1,
    )[0]
    cells = near.nonzero()
    cells = cells[(cells < g).all(dim=1)]  # the export's voxel grid is G cells a side
    centres = origin + (cells.float() + 0.5) * step
    values = sample_fields(attributes, centres).clamp(0, 1)
    return MeshWithVoxel(
        vertices=vertices.float(),
        faces=faces.to(torch.int32),
        coords=cells.to(torch.int32),
        attrs=values,
        voxel_size=step,
        origin=torch.full((3,), origin),
        layout=dict(PBR_LAYOUT),
    )
