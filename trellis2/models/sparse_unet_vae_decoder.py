"""`SparseUnetVaeDecoder`: the sparse convolutional VAE decoder of TRELLIS.2 (texture decoder).

Latent voxels go through `from_latent`, then per level a stack of `SparseConvNeXtBlock3d` and (except
at the last level) one `SparseResBlockC2S3d` that doubles the resolution, keeping only the children
whose subdivision logit is `> 0`; a non-affine LayerNorm and `output_layer` finish. The subdivision
logits are predicted by the blocks (`pred_subdiv=True`, the shape decoder) or supplied by the caller
(`guide_subs`, the texture decoder, which thereby reproduces the shape decoder's voxels in the same
order). With `use_fp16` the blocks' matmul layers hold fp16 weights and the torso runs in fp16, while
norms compute in fp32 and `from_latent` / `output_layer` stay fp32 (the official precision plan).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from trellis2.modules.norm import LayerNorm32
from trellis2.modules.sparse import SparseConv3d, SparseLinear, SparseTensor, subdivide

# Rows evaluated at once by row-wise layers (norms, MLPs, the output head) when autograd does not
# record: bounds their fp32 / hidden-width temporaries on decodes of tens of millions of voxels.
ROW_CHUNK = 2**18


def map_rows(
    fn: Callable[[torch.Tensor], torch.Tensor],
    feats: torch.Tensor,
    residual: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """`fn(feats) (+ residual)` for a row-wise `fn`, evaluated `ROW_CHUNK` rows at a time.

    Without autograd (no input or parameter requires grad) the chunks go straight into `out`, which
    may be `feats` itself (each chunk is read before it is overwritten). When autograd records, the
    result is built out of place.
    """
    n = feats.shape[0]
    head = fn(feats[:ROW_CHUNK])
    if residual is not None:
        head = head + residual[:ROW_CHUNK]
    if n <= ROW_CHUNK:
        return head
    if head.requires_grad:
        tail = fn(feats[ROW_CHUNK:])
        if residual is not None:
            tail = tail + residual[ROW_CHUNK:]
        return torch.cat([head, tail])
    if out is None:
        out = torch.empty((n, *head.shape[1:]), dtype=head.dtype, device=head.device)
    out[:ROW_CHUNK] = head
    del head
    for s in range(ROW_CHUNK, n, ROW_CHUNK):
        y = fn(feats[s : s + ROW_CHUNK])
        if residual is not None:
            y += residual[s : s + ROW_CHUNK]
        out[s : s + ROW_CHUNK] = y
    return out


class SparseConvNeXtBlock3d(nn.Module):
    """`x + Linear(SiLU(Linear(LN(conv(x)))))`, hidden width `mlp_ratio * C`."""

    def __init__(self, channels: int, mlp_ratio: float = 4.0, use_checkpoint: bool = False) -> None:
        super().__init__()
        self.channels = channels
        self.use_checkpoint = use_checkpoint  # training only; kept for config compatibility
        self.norm = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.conv = SparseConv3d(channels, channels, 3)
        hidden = int(channels * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(channels, hidden), nn.SiLU(), nn.Linear(hidden, channels))

    def _norm_mlp(self, feats: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.norm(feats))

    def forward(self, x: SparseTensor) -> SparseTensor:
        h = self.conv(x).feats
        return x.replace(map_rows(self._norm_mlp, h, residual=x.feats, out=h))


class SparseResBlockC2S3d(nn.Module):
    """Residual block that subdivides every voxel into (up to) 8 children: `Ci` -> `Co` channels.

    `forward(x, subdiv=None)`: with `pred_subdiv` the block predicts the subdivision logits from its
    input and returns `(out, logits)`; otherwise the caller passes the logits (a `SparseTensor` on the
    same voxels as `x`) and the block returns `out`. A child exists iff its logit is `> 0`.

    Memory: `conv1`'s `8 * Co` channels per parent are never held for all parents at once; each
    output chunk is split into the existing children straight away.
    """

    def __init__(
        self,
        channels: int,
        out_channels: int | None = None,
        use_checkpoint: bool = False,
        pred_subdiv: bool = True,
    ) -> None:
        super().__init__()
        out_channels = out_channels or channels
        if channels % 8 or out_channels % (channels // 8):
            raise ValueError(
                f"SparseResBlockC2S3d({channels} -> {out_channels}): input channels must split into 8 "
                "children whose channel count divides the output channels"
            )
        self.channels = channels
        self.out_channels = out_channels
        self.pred_subdiv = pred_subdiv
        self.use_checkpoint = use_checkpoint
        self.norm1 = LayerNorm32(channels, elementwise_affine=True, eps=1e-6)
        self.norm2 = LayerNorm32(out_channels, elementwise_affine=False, eps=1e-6)
        self.conv1 = SparseConv3d(channels, out_channels * 8, 3)
        self.conv2 = SparseConv3d(out_channels, out_channels, 3)
        if pred_subdiv:
            self.to_subdiv = SparseLinear(channels, 8)

    def _check_guide(self, x: SparseTensor, subdiv: SparseTensor | None) -> None:
        if subdiv is None:
            raise ValueError(
                "this up-sampling block does not predict subdivisions: pass `subdiv` (guide_subs)"
            )
        if subdiv.feats.shape != (x.feats.shape[0], 8) or not torch.equal(subdiv.coords, x.coords):
            raise ValueError(
                f"guide subdivision does not match the decoder's voxels: {tuple(subdiv.feats.shape)} logits "
                f"for {x.feats.shape[0]} voxels (the guides must come from the shape decoder run on the same "
                "latent coordinates, in the same order)"
            )

    def _norm1_silu(self, feats: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm1(feats))

    def _norm2_silu(self, feats: torch.Tensor) -> torch.Tensor:
        return F.silu(self.norm2(feats))

    def forward(self, x: SparseTensor, subdiv: SparseTensor | None = None):
        if self.pred_subdiv:
            subdiv = self.to_subdiv(x)
        else:
            self._check_guide(x, subdiv)
        children = subdivide(x.coords, subdiv.feats > 0, 2)
        n_children = children.coords.shape[0]
        h_in = x.replace(map_rows(self._norm1_silu, x.feats))
        h = torch.empty(n_children, self.out_channels, dtype=self.conv1.weight.dtype, device=x.device)
        for start, _, chunk in self.conv1.chunks(h_in):
            lo, hi, kids = children.split_rows(chunk, start)
            h[lo:hi] = kids
        del h_in
        h = map_rows(self._norm2_silu, h, out=h)
        out = self.conv2(SparseTensor(h, children.coords, x.batch_size))
        del h
        # Skip: each of the Ci/8 child channels repeated Co/(Ci/8) times consecutively.
        skip = children.split(x.feats).to(out.feats.dtype)[:, :, None]
        groups = out.feats.view(n_children, self.channels // 8, self.out_channels // (self.channels // 8))
        if groups.requires_grad or skip.requires_grad:
            feats = (groups + skip).reshape(n_children, self.out_channels)
        else:
            feats = groups.add_(skip).view(n_children, self.out_channels)
        out = out.replace(feats)
        return (out, subdiv) if self.pred_subdiv else out


BLOCK_TYPES: dict[str, type[nn.Module]] = {"SparseConvNeXtBlock3d": SparseConvNeXtBlock3d}
UP_BLOCK_TYPES: dict[str, type[nn.Module]] = {"SparseResBlockC2S3d": SparseResBlockC2S3d}

# Parameters of these layer types follow the torso dtype (the official MIX_PRECISION_MODULES).
_MATMUL_LAYERS = (nn.Linear, nn.Conv3d, SparseConv3d)


def cast_matmul_layers(module: nn.Module, dtype: torch.dtype) -> None:
    """Cast the parameters of every Linear/Conv layer inside `module` (norms keep theirs)."""
    for m in module.modules():
        if isinstance(m, _MATMUL_LAYERS):
            for p in m.parameters(recurse=False):
                p.data = p.data.to(dtype)


def _lookup(table: dict[str, type[nn.Module]], name: str, what: str) -> type[nn.Module]:
    if name not in table:
        raise ValueError(f"unsupported {what} {name!r}; supported: {', '.join(table)}")
    return table[name]


class SparseUnetVaeDecoder(nn.Module):
    """Sparse VAE decoder; `forward(x, guide_subs=None, return_subs=False)` as the official model."""

    def __init__(
        self,
        out_channels: int,
        model_channels: list[int],
        latent_channels: int,
        num_blocks: list[int],
        block_type: list[str],
        up_block_type: list[str],
        block_args: list[dict[str, Any]],
        use_fp16: bool = False,
        pred_subdiv: bool = True,
    ) -> None:
        super().__init__()
        levels = len(model_channels)
        if not (len(num_blocks) == len(block_type) == len(block_args) == levels):
            raise ValueError("model_channels, num_blocks, block_type and block_args need one entry per level")
        if len(up_block_type) != levels - 1:
            raise ValueError(f"up_block_type needs {levels - 1} entries (one per level but the last)")
        self.out_channels = out_channels
        self.model_channels = list(model_channels)
        self.latent_channels = latent_channels
        self.num_blocks = list(num_blocks)
        self.pred_subdiv = pred_subdiv
        self.use_fp16 = use_fp16
        self.dtype = torch.float16 if use_fp16 else torch.float32
        self.low_vram = False  # toggled by the official pipeline; no effect here

        self.output_layer = SparseLinear(model_channels[-1], out_channels)
        self.from_latent = SparseLinear(latent_channels, model_channels[0])
        self.blocks = nn.ModuleList()
        for i in range(levels):
            block = _lookup(BLOCK_TYPES, block_type[i], "block_type")
            level = nn.ModuleList(block(model_channels[i], **block_args[i]) for _ in range(num_blocks[i]))
            if i < levels - 1:
                up = _lookup(UP_BLOCK_TYPES, up_block_type[i], "up_block_type")
                level.append(
                    up(model_channels[i], model_channels[i + 1], pred_subdiv=pred_subdiv, **block_args[i])
                )
            self.blocks.append(level)
        if use_fp16:
            self.convert_to_fp16()

    # --- precision -----------------------------------------------------------------------
    def convert_to_fp16(self) -> None:
        """fp16 weights for the torso's Linear/conv layers (norms and in/out layers stay fp32)."""
        cast_matmul_layers(self.blocks, torch.float16)
        self.use_fp16, self.dtype = True, torch.float16

    def convert_to_fp32(self) -> None:
        cast_matmul_layers(self.blocks, torch.float32)
        self.use_fp16, self.dtype = False, torch.float32

    @property
    def device(self) -> torch.device:
        return self.from_latent.weight.device

    # --- forward -------------------------------------------------------------------------
    def _is_up_block(self, level: int, index: int) -> bool:
        return level < len(self.blocks) - 1 and index == len(self.blocks[level]) - 1

    def _check_input(self, x: SparseTensor) -> None:
        if not isinstance(x, SparseTensor):
            raise TypeError(f"the decoder expects a SparseTensor latent, got {type(x).__name__}")
        if x.feats.dim() != 2 or x.feats.shape[1] != self.latent_channels:
            raise ValueError(f"latent must have {self.latent_channels} channels, got {tuple(x.feats.shape)}")

    def forward(
        self, x: SparseTensor, guide_subs: list[SparseTensor] | None = None, return_subs: bool = False
    ):
        """Decode latent voxels to `out_channels` features per output voxel (fp32).

        Returns the output `SparseTensor`, or `(output, subs)` with `return_subs` (the subdivision
        logits entering each up block; only when this decoder predicts them).
        """
        if guide_subs is not None and self.pred_subdiv:
            raise ValueError("guide_subs is only for decoders built with pred_subdiv=False")
        if return_subs and not self.pred_subdiv:
            raise ValueError("return_subs needs a decoder that predicts subdivisions (pred_subdiv=True)")
        if not self.pred_subdiv and guide_subs is None:
            raise ValueError(
                "this decoder does not predict subdivisions: pass guide_subs from the shape decoder"
            )
        if guide_subs is not None and len(guide_subs) != len(self.blocks) - 1:
            raise ValueError(f"guide_subs needs {len(self.blocks) - 1} entries, got {len(guide_subs)}")
        self._check_input(x)
        h = self.from_latent(x).type(self.dtype)
        subs: list[SparseTensor] = []
        for i, level in enumerate(self.blocks):
            for j, block in enumerate(level):
                if not self._is_up_block(i, j):
                    h = block(h)
                elif self.pred_subdiv:
                    h, sub = block(h)
                    subs.append(sub)
                else:
                    h = block(h, subdiv=guide_subs[i])
        # A fresh cache: the caller keeps the output, not the full-resolution neighbour map.
        h = SparseTensor(map_rows(lambda f: self._head(f, x.dtype), h.feats), h.coords, h.batch_size)
        return (h, subs) if return_subs else h

    def _head(self, feats: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """Back to the input dtype, non-affine LayerNorm (eps 1e-5), `output_layer`."""
        feats = feats.to(dtype)
        feats = F.layer_norm(feats, feats.shape[-1:])
        return F.linear(
            feats.to(self.output_layer.weight.dtype), self.output_layer.weight, self.output_layer.bias
        )

    def upsample(self, x: SparseTensor, upsample_times: int) -> torch.Tensor:
        """Coordinates `[M, 4]` after `upsample_times` up blocks (no output layer is applied)."""
        if not self.pred_subdiv:
            raise ValueError("upsample needs a decoder that predicts subdivisions (pred_subdiv=True)")
        if not 0 <= upsample_times < len(self.blocks):
            raise ValueError(f"upsample_times must be in 0..{len(self.blocks) - 1}, got {upsample_times}")
        self._check_input(x)
        h = self.from_latent(x).type(self.dtype)
        for i, level in enumerate(self.blocks):
            if i == upsample_times:
                break
            for j, block in enumerate(level):
                h = block(h)[0] if self._is_up_block(i, j) else block(h)
        return h.coords
