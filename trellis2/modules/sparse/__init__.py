"""Sparse voxel tensors and the layers that operate on them (pure PyTorch, CPU and CUDA)."""

from .tensor import SparseTensor, sample_std, sparse_cat

__all__ = ["SparseTensor", "sparse_cat", "sample_std"]
