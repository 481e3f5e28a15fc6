"""Real-size decoder configs (spec §1.4) built on the `meta` device match the spec's counts (§5.2, §6.6, §11)."""

from __future__ import annotations

import torch

from trellis2.models.flexi_dual_grid_vae_decoder import FlexiDualGridVaeDecoder
from trellis2.models.sparse_structure_decoder import SparseStructureDecoder
from trellis2.models.sparse_unet_vae_decoder import SparseUnetVaeDecoder

SC_VAE_ARGS = dict(
    model_channels=[1024, 512, 256, 128, 64],
    latent_channels=32,
    num_blocks=[4, 16, 8, 4, 0],
    block_type=["SparseConvNeXtBlock3d"] * 5,
    up_block_type=["SparseResBlockC2S3d"] * 4,
    block_args=[{"use_checkpoint": False}] * 5,
    use_fp16=True,
)


def counts(model: torch.nn.Module) -> dict[str, int]:
    params = dict(model.named_parameters())
    return {
        "total": sum(p.numel() for p in params.values()),
        "tensors": len(model.state_dict()),
        "fp16": sum(p.numel() for p in params.values() if p.dtype == torch.float16),
        "fp32": sum(p.numel() for p in params.values() if p.dtype == torch.float32),
    }


def group_count(model: torch.nn.Module, prefix: str) -> int:
    return sum(p.numel() for n, p in model.named_parameters() if n.startswith(prefix))


def test_shape_decoder_counts():
    with torch.device("meta"):
        model = FlexiDualGridVaeDecoder(resolution=256, **SC_VAE_ARGS)
    assert counts(model) == {"total": 474_231_463, "tensors": 292, "fp16": 474_163_680, "fp32": 67_783}
    groups = {
        g: group_count(model, g + ".")
        for g in ("from_latent", "blocks.0", "blocks.1", "blocks.2", "blocks.3")
    }
    assert groups == {
        "from_latent": 33_792,
        "blocks.0": 267_172_360,
        "blocks.1": 176_954_632,
        "blocks.2": 25_890_440,
        "blocks.3": 4_179_784,
    }
    assert group_count(model, "output_layer.") == 455
    assert tuple(model.blocks[0][4].conv1.weight.shape) == (4096, 3, 3, 3, 1024)


def test_texture_decoder_counts():
    with torch.device("meta"):
        model = SparseUnetVaeDecoder(out_channels=6, pred_subdiv=False, **SC_VAE_ARGS)
    assert counts(model) == {"total": 474_216_006, "tensors": 284, "fp16": 474_148_288, "fp32": 67_718}
    assert not any("to_subdiv" in k for k in model.state_dict())


def test_sparse_structure_decoder_counts():
    with torch.device("meta"):
        model = SparseStructureDecoder(
            out_channels=1,
            latent_channels=8,
            num_res_blocks=2,
            channels=[512, 128, 32],
            num_res_blocks_middle=2,
            use_fp16=True,
        )
    assert counts(model) == {"total": 73_671_201, "tensors": 74, "fp16": 73_549_696, "fp32": 121_505}
    assert group_count(model, "input_layer.") == 111_104
    assert group_count(model, "middle_block.") == 28_317_696
    assert group_count(model, "blocks.") == 45_241_472
    assert group_count(model, "out_layer.") == 929
