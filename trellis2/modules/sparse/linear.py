"""`SparseLinear`: an `nn.Linear` applied to the features of a `SparseTensor`."""

from __future__ import annotations

from torch import nn

from .tensor import SparseTensor


class SparseLinear(nn.Linear):
    """`nn.Linear` on `x.feats` (same parameter names, so official checkpoints load unchanged)."""

    def forward(self, x: SparseTensor) -> SparseTensor:  # type: ignore[override]
        return x.replace(super().forward(x.feats.to(self.weight.dtype)))
