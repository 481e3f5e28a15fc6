"""Write a complete tiny TRELLIS.2 models folder (official layout, seeded random weights).

    python tools/make_tiny_models.py OUT [--seed 0]

Layout (the same ids and file names as the real models, so the same code paths load them):

    OUT/microsoft/TRELLIS.2-4B/pipeline.json, ckpts/*.json + *.safetensors (flows 512 and 1024, decoders)
    OUT/microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16.*
    OUT/facebook/dinov3-vitl16-pretrain-lvd1689m/   (a tiny transformers DINOv3ViTModel)
    OUT/briaai/RMBG-2.0/                            (a tiny remote-code segmentation model)

Every pipeline type runs on the CPU in seconds. Weights follow the golden vectors' rules (matrices
N(0, 1/fan_in), norm scales 1 + 0.2 N, biases 0.1 N, other vectors 0.5 N); afterwards a few biases
are calibrated on a synthetic image so that the sparse structure, the decoder subdivisions and the
background mask have sensible sizes (a few hundred latent voxels, ~10^4 decoded voxels).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from safetensors.torch import save_file

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

PIPELINE_REPO = ("microsoft", "TRELLIS.2-4B")
DINO_REPO = ("facebook", "dinov3-vitl16-pretrain-lvd1689m")
RMBG_REPO = ("briaai", "RMBG-2.0")

WIDTH = 64  # flow-model width and DINOv3 hidden size
LATENT = 8  # structured-latent channels
SS_OCCUPANCY = 0.0004  # fraction of the 64^3 sparse-structure grid that is occupied
SUBDIV_FRACTION = 0.28  # fraction of children a decoder up block keeps

FLOW_ARGS = {
    "model_channels": WIDTH,
    "cond_channels": WIDTH,
    "num_blocks": 2,
    "num_heads": 4,
    "mlp_ratio": 5.3334,
    "pe_mode": "rope",
    "share_mod": True,
    "initialization": "scaled",
    "qk_rms_norm": True,
    "qk_rms_norm_cross": True,
    "dtype": "float32",
}
DECODER_ARGS = {
    "model_channels": [32, 16, 16, 8, 8],
    "latent_channels": LATENT,
    "num_blocks": [1, 1, 1, 0, 0],
    "block_type": ["SparseConvNeXtBlock3d"] * 5,
    "up_block_type": ["SparseResBlockC2S3d"] * 4,
    "block_args": [{"use_checkpoint": False}] * 5,
    "use_fp16": False,
}
CHECKPOINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "ss_flow_img_dit_1_3B_64_bf16": (
        "SparseStructureFlowModel",
        {"resolution": 8, "in_channels": 8, "out_channels": 8, **FLOW_ARGS},
    ),
    "slat_flow_img2shape_dit_1_3B_512_bf16": (
        "ElasticSLatFlowModel",
        {"resolution": 32, "in_channels": LATENT, "out_channels": LATENT, **FLOW_ARGS},
    ),
    "slat_flow_img2shape_dit_1_3B_1024_bf16": (
        "ElasticSLatFlowModel",
        {"resolution": 64, "in_channels": LATENT, "out_channels": LATENT, **FLOW_ARGS},
    ),
    "slat_flow_imgshape2tex_dit_1_3B_512_bf16": (
        "ElasticSLatFlowModel",
        {"resolution": 32, "in_channels": 2 * LATENT, "out_channels": LATENT, **FLOW_ARGS},
    ),
    "slat_flow_imgshape2tex_dit_1_3B_1024_bf16": (
        "ElasticSLatFlowModel",
        {"resolution": 64, "in_channels": 2 * LATENT, "out_channels": LATENT, **FLOW_ARGS},
    ),
    "shape_dec_next_dc_f16c32_fp16": ("FlexiDualGridVaeDecoder", {"resolution": 256, **DECODER_ARGS}),
    "tex_dec_next_dc_f16c32_fp16": (
        "SparseUnetVaeDecoder",
        {"out_channels": 6, **DECODER_ARGS, "pred_subdiv": False},
    ),
}
SS_DECODER = (
    "ss_dec_conv3d_16l8_fp16",
    "SparseStructureDecoder",
    {
        "out_channels": 1,
        "latent_channels": 8,
        "num_res_blocks": 1,
        "channels": [16, 16, 8, 8],
        "num_res_blocks_middle": 1,
        "norm_type": "layer",
        "use_fp16": False,
    },
)

# The first LATENT entries of the released normalisation statistics (spec §1.2).
SHAPE_MEAN = [0.781296, 0.018091, -0.495192, -0.558457, 1.060530, 0.093252, 1.518149, -0.933218]
SHAPE_STD = [5.972266, 4.706852, 5.445010, 5.209927, 5.320220, 4.547237, 5.020802, 5.444004]
TEX_MEAN = [3.501659, 2.212398, 2.226094, 0.251093, -0.026248, -0.687364, 0.439898, -0.928075]
TEX_STD = [2.665652, 2.743913, 2.765121, 2.595319, 3.037293, 2.291316, 2.144656, 2.911822]


def _sampler(steps: int, strength: float, rescale: float, interval: list[float], rescale_t: float) -> dict:
    return {
        "name": "FlowEulerGuidanceIntervalSampler",
        "args": {"sigma_min": 1e-5},
        "params": {
            "steps": steps,
            "guidance_strength": strength,
            "guidance_rescale": rescale,
            "guidance_interval": interval,
            "rescale_t": rescale_t,
        },
    }


def pipeline_json() -> dict[str, Any]:
    """The official `pipeline.json` structure with few sampling steps."""
    return {
        "name": "Trellis2ImageTo3DPipeline",
        "args": {
            "models": {
                "sparse_structure_flow_model": "ckpts/ss_flow_img_dit_1_3B_64_bf16",
                "sparse_structure_decoder": "microsoft/TRELLIS-image-large/ckpts/ss_dec_conv3d_16l8_fp16",
                "shape_slat_flow_model_512": "ckpts/slat_flow_img2shape_dit_1_3B_512_bf16",
                "shape_slat_flow_model_1024": "ckpts/slat_flow_img2shape_dit_1_3B_1024_bf16",
                "shape_slat_decoder": "ckpts/shape_dec_next_dc_f16c32_fp16",
                "tex_slat_flow_model_512": "ckpts/slat_flow_imgshape2tex_dit_1_3B_512_bf16",
                "tex_slat_flow_model_1024": "ckpts/slat_flow_imgshape2tex_dit_1_3B_1024_bf16",
                "tex_slat_decoder": "ckpts/tex_dec_next_dc_f16c32_fp16",
            },
            "sparse_structure_sampler": _sampler(3, 7.5, 0.7, [0.6, 1.0], 5.0),
            "shape_slat_sampler": _sampler(3, 7.5, 0.5, [0.6, 1.0], 3.0),
            "tex_slat_sampler": _sampler(2, 1.0, 0.0, [0.6, 0.9], 3.0),
            "shape_slat_normalization": {"mean": SHAPE_MEAN, "std": SHAPE_STD},
            "tex_slat_normalization": {"mean": TEX_MEAN, "std": TEX_STD},
            "image_cond_model": {
                "name": "DinoV3FeatureExtractor",
                "args": {"model_name": "/".join(DINO_REPO)},
            },
            "rembg_model": {"name": "BiRefNet", "args": {"model_name": "/".join(RMBG_REPO)}},
            "low_vram": True,
            "default_pipeline_type": "1024_cascade",
        },
    }


def random_tensor(name: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """Seeded values by the golden vectors' rules, chosen from the parameter's name and shape."""
    leaf = name.rsplit(".", 1)[-1]
    noise = torch.randn(shape, generator=generator)
    if leaf == "weight" and len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        return noise / fan_in**0.5
    if leaf in ("weight", "gamma"):
        return 1.0 + 0.2 * noise
    if leaf == "bias":
        return 0.1 * noise
    if leaf.startswith("lambda"):
        return 0.5 + 0.2 * noise
    return 0.5 * noise


def randomize(module: torch.nn.Module, generator: torch.Generator, skip: set[str] = frozenset()) -> None:
    """Overwrite every floating-point parameter and persistent buffer of `module` in place."""
    with torch.no_grad():
        for name, tensor in module.state_dict().items():
            if name in skip or not tensor.is_floating_point():
                continue
            tensor.copy_(random_tensor(name, tuple(tensor.shape), generator))


def _derived(model: torch.nn.Module) -> set[str]:
    keys = set()
    for prefix, sub in model.named_modules():
        for name in getattr(sub, "derived_buffers", ()):
            keys.add(f"{prefix}.{name}" if prefix else name)
    return keys


def _build(name: str, args: dict[str, Any], generator: torch.Generator) -> torch.nn.Module:
    from trellis2.models import model_class

    model = model_class(name)(**args)
    randomize(model, generator, _derived(model))
    return model.eval()


def save_checkpoint(model: torch.nn.Module, name: str, args: dict[str, Any], prefix: Path) -> None:
    """`prefix.json` (`{"name", "args"}`) and `prefix.safetensors` (without derived buffers)."""
    prefix.parent.mkdir(parents=True, exist_ok=True)
    skip = _derived(model)
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items() if k not in skip}
    save_file(state, str(prefix.with_name(prefix.name + ".safetensors")))
    prefix.with_name(prefix.name + ".json").write_text(json.dumps({"name": name, "args": args}, indent=2))


def write_dinov3(folder: Path, generator: torch.Generator) -> None:
    from transformers import DINOv3ViTConfig, DINOv3ViTModel

    config = DINOv3ViTConfig(
        hidden_size=WIDTH,
        intermediate_size=4 * WIDTH,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_register_tokens=4,
        patch_size=32,
        image_size=512,
        rope_theta=100.0,
        layer_norm_eps=1e-5,
        key_bias=False,
        use_gated_mlp=False,
        hidden_act="gelu",
    )
    model = DINOv3ViTModel(config)
    randomize(model, generator)
    model.save_pretrained(str(folder), safe_serialization=True)


def write_rmbg(folder: Path, generator: torch.Generator, calibration_image: Image.Image) -> None:
    """A remote-code segmentation model folder: `config.json` + `tiny_birefnet.py` + weights."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("tiny_birefnet.py"), folder / "tiny_birefnet.py")
    sys.path.insert(0, str(Path(__file__).parent))
    try:
        from tiny_birefnet import TinyBiRefNet, TinyBiRefNetConfig
    finally:
        sys.path.pop(0)
    config = TinyBiRefNetConfig(
        architectures=["TinyBiRefNet"],
        auto_map={
            "AutoConfig": "tiny_birefnet.TinyBiRefNetConfig",
            "AutoModelForImageSegmentation": "tiny_birefnet.TinyBiRefNet",
        },
    )
    model = TinyBiRefNet(config).eval()
    randomize(model, generator)
    # Calibrate: logits of the calibration image get a spread of 0.5 around a median of 3, so that
    # nearly every pixel of any image is confidently foreground (alpha > 204 needs a logit above ~1.4):
    # a stand-in must never turn a test image into "no object found".
    from trellis2.pipelines.background_removal import IMAGENET_MEAN, IMAGENET_STD

    pixels = torch.from_numpy(
        np.asarray(calibration_image.convert("RGB").resize((1024, 1024)), np.float32) / 255
    )
    x = (pixels.permute(2, 0, 1) - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[
        :, None, None
    ]
    with torch.no_grad():
        spread = model(x[None])[-1].std()
        model.head.weight *= 0.5 / spread
        model.head.bias *= 0.5 / spread
        model.head.bias += 3.0 - model(x[None])[-1].median()
    config.save_pretrained(str(folder))
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "model.safetensors"))


def calibration_image(opaque: bool) -> Image.Image:
    """A simple synthetic object: a coloured disk and a bar (RGBA with transparency, or on white)."""
    image = Image.new("RGBA", (256, 256), (255, 255, 255, 255 if opaque else 0))
    draw = ImageDraw.Draw(image)
    draw.ellipse((48, 40, 208, 200), fill=(200, 80, 40, 255))
    draw.rectangle((110, 150, 146, 236), fill=(60, 90, 200, 255))
    return image


def _subdiv_layers(decoder: torch.nn.Module) -> list[torch.nn.Module]:
    return [m.to_subdiv for m in decoder.modules() if getattr(m, "to_subdiv", None) is not None]


@torch.no_grad()
def calibrate(trellis_dir: Path, models_dir: Path) -> None:
    """Shift the sparse-structure decoder's output bias and the shape decoder's subdivision biases."""
    from trellis2.modules.sparse import SparseTensor
    from trellis2.pipelines.trellis2_image_to_3d import Trellis2ImageTo3DPipeline

    pipe = Trellis2ImageTo3DPipeline.from_pretrained(trellis_dir, device="cpu")
    image = pipe.preprocess_image(calibration_image(opaque=False))
    cond = pipe.get_cond([image], 512)
    flow = pipe.model("sparse_structure_flow_model")
    ss_decoder = pipe.model("sparse_structure_decoder")
    logits = []
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        r = flow.resolution
        noise = torch.randn(1, flow.in_channels, r, r, r, generator=g)
        z = (
            pipe.samplers["sparse_structure_sampler"]
            .sample(flow, noise, cond.positive, cond.negative, **pipe.config.sparse_structure_sampler.params)
            .samples
        )
        logits.append(ss_decoder(z).flatten())
    threshold = torch.quantile(torch.cat(logits), 1.0 - SS_OCCUPANCY)
    ss_decoder.out_layer[-1].bias -= threshold
    stem, name, args = SS_DECODER
    save_checkpoint(ss_decoder, name, args, models_dir / "microsoft" / "TRELLIS-image-large" / "ckpts" / stem)

    # Subdivision biases, level by level, on a plausible latent over the calibrated structure.
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(1, flow.in_channels, flow.resolution, flow.resolution, flow.resolution, generator=g)
    z = (
        pipe.samplers["sparse_structure_sampler"]
        .sample(flow, noise, cond.positive, cond.negative, **pipe.config.sparse_structure_sampler.params)
        .samples
    )
    occupancy = torch.nn.functional.max_pool3d((ss_decoder(z) > 0).float(), 2, 2, 0) > 0.5
    coords = torch.argwhere(occupancy)[:, [0, 2, 3, 4]].int()
    feats = torch.randn(coords.shape[0], LATENT, generator=g) * torch.tensor(SHAPE_STD) + torch.tensor(
        SHAPE_MEAN
    )
    latent = SparseTensor(feats, coords)
    shape_decoder = pipe.model("shape_slat_decoder")
    for layer in _subdiv_layers(shape_decoder):
        captured: list[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda _m, _i, out, sink=captured: sink.append(out.feats))
        shape_decoder.decode_voxels(latent)
        hook.remove()
        layer.bias -= torch.quantile(captured[0], 1.0 - SUBDIV_FRACTION, dim=0)
    name, args = CHECKPOINTS["shape_dec_next_dc_f16c32_fp16"]
    save_checkpoint(shape_decoder, name, args, trellis_dir / "ckpts" / "shape_dec_next_dc_f16c32_fp16")


def make_tiny_models(out_dir: str | Path, seed: int = 0) -> Path:
    """Write the tiny models folder `out_dir`; returns the pipeline folder (`.../microsoft/TRELLIS.2-4B`).

    Runs single-threaded (tiny networks only lose from intra-op threads); the thread count is restored.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _write_tiny_models(Path(out_dir), seed)
    finally:
        torch.set_num_threads(threads)


def _write_tiny_models(out_dir: Path, seed: int) -> Path:
    generator = torch.Generator().manual_seed(seed)
    trellis_dir = out_dir.joinpath(*PIPELINE_REPO)
    for stem, (name, args) in CHECKPOINTS.items():
        save_checkpoint(_build(name, args, generator), name, args, trellis_dir / "ckpts" / stem)
    stem, name, args = SS_DECODER
    ss_prefix = out_dir / "microsoft" / "TRELLIS-image-large" / "ckpts" / stem
    save_checkpoint(_build(name, args, generator), name, args, ss_prefix)
    write_dinov3(out_dir.joinpath(*DINO_REPO), generator)
    write_rmbg(out_dir.joinpath(*RMBG_REPO), generator, calibration_image(opaque=True))
    (trellis_dir / "pipeline.json").write_text(json.dumps(pipeline_json(), indent=2))
    calibrate(trellis_dir, out_dir)
    return trellis_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path, help="models folder to write (created if missing)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    args = parser.parse_args(argv)
    folder = make_tiny_models(args.out, args.seed)
    print(f"tiny TRELLIS.2 models written to {args.out} (pipeline: {folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
