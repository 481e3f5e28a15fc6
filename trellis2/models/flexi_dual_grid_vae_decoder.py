"""`FlexiDualGridVaeDecoder`: the TRELLIS.2 shape decoder (sparse latent -> flexible dual grid -> mesh).

A `SparseUnetVaeDecoder` with 7 output channels that predicts its own subdivisions. Per output voxel:
channels 0:3 are the dual vertex in voxel units, `(1 + 2 m) * sigmoid(h) - m` with margin `m = 0.5`;
3:6 the intersected flags of the voxel's x/y/z edges (`h > 0`); 6 the quad split weight
(`softplus(h)`). Meshes are extracted per batch element on the grid `resolution` (set by the pipeline
through `set_resolution`) in the cube `[-0.5, 0.5]^3`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from o_voxel.convert.dual_grid_to_mesh import flexible_dual_grid_to_mesh
from trellis2.modules.sparse import SparseTensor

from .sparse_unet_vae_decoder import SparseUnetVaeDecoder

MESH_AABB = ((-0.5, -0.5, -0.5), (0.5, 0.5, 0.5))


@dataclass
class Mesh:
    """A raw decoded mesh: `vertices [V, 3]` float32 and `faces [F, 3]` int32 (vertex indices)."""

    vertices: torch.Tensor
    faces: torch.Tensor

    def to(self, device: torch.device | str) -> Mesh:
        return Mesh(self.vertices.to(device), self.faces.to(device))


@dataclass
class DualGridFields:
    """Decoded per-voxel flexible dual grid: offsets `[N, 3]`, edge flags `[N, 3]` bool, weights `[N, 1]`."""

    dual_vertices: torch.Tensor
    intersected: torch.Tensor
    split_weight: torch.Tensor


class FlexiDualGridVaeDecoder(SparseUnetVaeDecoder):
    """Shape decoder; `forward(x, **kwargs)` returns `[Mesh]` (or `([Mesh], subs)` with `return_subs`)."""

    def __init__(
        self,
        resolution: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]],
        voxel_margin: float = 0.5,
        use_fp16: bool = False,
    ) -> None:
        super().__init__(
            7,
            model_channels,
            latent_channels,
            num_blocks,
            block_type,
            up_block_type,
            block_args,
            use_fp16=use_fp16,
            pred_subdiv=True,
        )
        self.resolution = resolution
        self.voxel_margin = voxel_margin

    def set_resolution(self, resolution: int) -> None:
        """Grid size of the extracted meshes (the network itself is resolution-agnostic)."""
        self.resolution = int(resolution)

    def dual_grid_fields(self, h: SparseTensor) -> DualGridFields:
        """Turn the raw 7-channel output into dual vertices, edge flags and split weights (fp32)."""
        feats = h.feats.float()
        m = self.voxel_margin
        return DualGridFields(
            dual_vertices=(1 + 2 * m) * torch.sigmoid(feats[:, 0:3]) - m,
            intersected=feats[:, 3:6] > 0,
            split_weight=F.softplus(feats[:, 6:7]),
        )

    def extract_meshes(self, h: SparseTensor) -> list[Mesh]:
        """One mesh per batch element; vertex indices are local to that element's voxels."""
        fields = self.dual_grid_fields(h)
        meshes = []
        for rows in h.layout:
            vertices, faces = flexible_dual_grid_to_mesh(
                h.coords[rows, 1:],
                fields.dual_vertices[rows],
                fields.intersected[rows],
                fields.split_weight[rows],
                aabb=MESH_AABB,
                grid_size=self.resolution,
                train=False,
            )
            meshes.append(Mesh(vertices, faces))
        return meshes

    def forward(self, x: SparseTensor, **kwargs):  # type: ignore[override]
        """Decode latent voxels to meshes; `return_subs=True` also returns the subdivision logits."""
        decoded = super().forward(x, **kwargs)
        if kwargs.get("return_subs", False):
            h, subs = decoded
            return self.extract_meshes(h), subs
        return self.extract_meshes(decoded)

    def decode_voxels(self, x: SparseTensor, return_subs: bool = False):
        """The raw 7-channel output `SparseTensor` (no mesh extraction), optionally with `subs`."""
        return super().forward(x, return_subs=return_subs)
