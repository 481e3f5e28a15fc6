"""Real-size TRELLIS.2 models (configs of spec §1.4) have exactly the parameter counts of spec §11.

Built on the `meta` device: no memory is allocated and no weights are initialised.
"""

from __future__ import annotations

import importlib

import pytest
import torch

from trellis2.models import MODEL_CLASSES, model_class

DIT = dict(
    model_channels=1536,
    cond_channels=1024,
    num_blocks=30,
    num_heads=12,
    mlp_ratio=5.3334,
    pe_mode="rope",
    share_mod=True,
    initialization="scaled",
    qk_rms_norm=True,
    qk_rms_norm_cross=True,
    dtype="bfloat16",
)
SPARSE_DEC = dict(
    model_channels=[1024, 512, 256, 128, 64],
    latent_channels=32,
    num_blocks=[4, 16, 8, 4, 0],
    block_type=["SparseConvNeXtBlock3d"] * 5,
    up_block_type=["SparseResBlockC2S3d"] * 4,
    block_args=[{"use_checkpoint": False}] * 5,
    use_fp16=True,
)

# (checkpoint, class, args, parameters, tensors in the file)
REAL_MODELS = [
    (
        "ss_flow_img_dit_1_3B_64_bf16",
        "SparseStructureFlowModel",
        dict(resolution=16, in_channels=8, out_channels=8, **DIT),
        1_292_179_976,
        640,
    ),
    (
        "slat_flow_img2shape_dit_1_3B_512_bf16",
        "SLatFlowModel",
        dict(resolution=32, in_channels=32, out_channels=32, **DIT),
        1_292_253_728,
        640,
    ),
    (
        "slat_flow_img2shape_dit_1_3B_1024_bf16",
        "ElasticSLatFlowModel",
        dict(resolution=64, in_channels=32, out_channels=32, **DIT),
        1_292_253_728,
        640,
    ),
    (
        "slat_flow_imgshape2tex_dit_1_3B_512_bf16",
        "ElasticSLatFlowModel",
        dict(resolution=32, in_channels=64, out_channels=32, **DIT),
        1_292_302_880,
        640,
    ),
    (
        "slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
        "SLatFlowModel",
        dict(resolution=64, in_channels=64, out_channels=32, **DIT),
        1_292_302_880,
        640,
    ),
    (
        "shape_dec_next_dc_f16c32_fp16",
        "FlexiDualGridVaeDecoder",
        dict(resolution=256, **SPARSE_DEC),
        474_231_463,
        292,
    ),
    (
        "tex_dec_next_dc_f16c32_fp16",
        "SparseUnetVaeDecoder",
        dict(out_channels=6, pred_subdiv=False, **SPARSE_DEC),
        474_216_006,
        284,
    ),
    (
        "ss_dec_conv3d_16l8_fp16",
        "SparseStructureDecoder",
        dict(
            out_channels=1,
            latent_channels=8,
            num_res_blocks=2,
            num_res_blocks_middle=2,
            channels=[512, 128, 32],
            use_fp16=True,
        ),
        73_671_201,
        74,
    ),
]


def build_on_meta(class_name: str, args: dict) -> torch.nn.Module:
    try:
        importlib.import_module(MODEL_CLASSES[class_name])
    except ImportError:
        pytest.skip(f"{class_name} is not implemented yet")
    with torch.device("meta"):
        return model_class(class_name)(**args)


@pytest.mark.parametrize(
    "checkpoint,class_name,args,params,tensors", REAL_MODELS, ids=[m[0] for m in REAL_MODELS]
)
def test_real_size_parameter_count(checkpoint, class_name, args, params, tensors):
    model = build_on_meta(class_name, args)
    assert sum(p.numel() for p in model.parameters()) == params
    assert len(model.state_dict()) == tensors  # the derived rope buffer is not part of the state dict


def test_real_ss_flow_precision_split():
    """Spec §3.4: 1,274,680,320 bf16 parameters (block Linear layers) + 17,499,656 fp32."""
    model = build_on_meta("SparseStructureFlowModel", REAL_MODELS[0][2])
    by_dtype: dict[torch.dtype, int] = {}
    for p in model.parameters():
        by_dtype[p.dtype] = by_dtype.get(p.dtype, 0) + p.numel()
    assert by_dtype == {torch.bfloat16: 1_274_680_320, torch.float32: 17_499_656}
    assert tuple(model.rope_phases.shape) == (4096, 64)
