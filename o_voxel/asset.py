"""What every engine hands the export: a mesh plus the PBR voxel volume it was decoded with."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

PBR_LAYOUT: dict[str, slice] = {
    "base_color": slice(0, 3),
    "metallic": slice(3, 4),
    "roughness": slice(4, 5),
    "alpha": slice(5, 6),
}


@dataclass
class MeshWithVoxel:
    """A decoded asset: `vertices [V, 3]` float32, `faces [F, 3]` int32 in the cube
    `[-0.5, 0.5]^3` (Z-up), and PBR attributes `attrs [M, 6]` on voxels `coords [M, 3]` (int32,
    x, y, z at resolution `1 / voxel_size`) whose centres are `origin + (coords + 0.5) * voxel_size`.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    coords: torch.Tensor
    attrs: torch.Tensor
    voxel_size: float
    origin: torch.Tensor = field(default_factory=lambda: torch.tensor([-0.5, -0.5, -0.5]))
    layout: dict[str, slice] = field(default_factory=lambda: dict(PBR_LAYOUT))

    @property
    def voxel_shape(self) -> torch.Size:
        """`[1, C, X, Y, Z]` with `(X, Y, Z) = max(coords) + 1` per axis."""
        extent = (self.coords.max(dim=0).values + 1).tolist() if self.coords.shape[0] else [0, 0, 0]
        return torch.Size([1, self.attrs.shape[1], *extent])

    @property
    def resolution(self) -> int:
        return round(1.0 / self.voxel_size)

    def to(self, device: torch.device | str) -> MeshWithVoxel:
        return MeshWithVoxel(
            self.vertices.to(device),
            self.faces.to(device),
            self.coords.to(device),
            self.attrs.to(device),
            self.voxel_size,
            self.origin.to(device),
            dict(self.layout),
        )
