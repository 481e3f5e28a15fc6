"""Sparse voxel tensors and the layers that operate on them (pure PyTorch, CPU and CUDA).

Voxel lookups (neighbour maps) use `o_voxel.voxel_index.VoxelIndex`, the one voxel index of the project.
"""

from .conv import (
    SparseConv3d,
    SubmanifoldNeighbors,
    neighbor_map,
    neighbors_of,
    submanifold_conv3d,
    submanifold_neighbor_map,
)
from .linear import SparseLinear
from .spatial import (
    SparseChannel2Spatial,
    SparseSpatial2Channel,
    Subdivision,
    channel_to_spatial,
    spatial_to_channel,
    subdivide,
)
from .tensor import SparseTensor, sample_std, sparse_cat

__all__ = [
    "SparseTensor",
    "sparse_cat",
    "sample_std",
    "SparseConv3d",
    "SparseLinear",
    "SparseChannel2Spatial",
    "SparseSpatial2Channel",
    "Subdivision",
    "channel_to_spatial",
    "spatial_to_channel",
    "subdivide",
    "neighbor_map",
    "neighbors_of",
    "SubmanifoldNeighbors",
    "submanifold_conv3d",
    "submanifold_neighbor_map",
]
