"""Golden case 09: the official pipeline end to end on tiny seeded models (pipeline type 512)."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.golden_utils import assert_golden_close
from trellis2.modules.sparse import SparseTensor
from trellis2.pipelines import Trellis2ImageTo3DPipeline

LATENT = {"atol": 5e-4, "rtol": 1e-3}


def test_case09_pipeline_matches_golden(golden_dir):
    case = golden_dir / "case09_pipeline"
    io = load_file(case / "case09_io.safetensors")
    pipe = Trellis2ImageTo3DPipeline.from_pretrained(case, device="cpu")

    # Intermediate results, recorded through the stage methods.
    seen = {}
    sample_ss = pipe.sample_sparse_structure
    sample_shape = pipe.sample_shape_slat
    sample_tex = pipe.sample_tex_slat

    def record_ss(*args, **kwargs):
        seen["ss_coords"] = sample_ss(*args, **kwargs)
        return seen["ss_coords"]

    def record_shape(*args, **kwargs):
        seen["shape_slat"] = sample_shape(*args, **kwargs)
        return seen["shape_slat"]

    def record_tex(*args, **kwargs):
        seen["tex_slat"] = sample_tex(*args, **kwargs)
        return seen["tex_slat"]

    pipe.sample_sparse_structure, pipe.sample_shape_slat, pipe.sample_tex_slat = (
        record_ss,
        record_shape,
        record_tex,
    )
    preprocessed = pipe.preprocess_image(Image.open(case / "input.png"))
    assert np.array_equal(
        np.asarray(preprocessed), np.asarray(Image.open(case / "preprocessed.png").convert("RGB"))
    )
    assert_golden_close(pipe.get_cond([preprocessed], 512).positive, io["cond"], name="cond")

    asset = pipe.run(Image.open(case / "input.png"), seed=42, pipeline_type="512")[0]
    assert torch.equal(seen["ss_coords"], io["ss_coords"])
    assert isinstance(seen["shape_slat"], SparseTensor)
    assert_golden_close(seen["shape_slat"].feats, io["shape_slat"], **LATENT, name="shape_slat")
    assert_golden_close(seen["tex_slat"].feats, io["tex_slat"], **LATENT, name="tex_slat")
    assert torch.equal(asset.coords, io["coords"])
    assert torch.equal(asset.faces, io["faces"])
    assert_golden_close(asset.vertices, io["vertices"], atol=1e-5, rtol=0, name="vertices")
    assert_golden_close(asset.attrs, io["attrs"], **LATENT, name="attrs")
    assert torch.equal(asset.origin, io["origin"])
    assert asset.voxel_size == float(io["voxel_size"])
    assert list(asset.voxel_shape) == io["voxel_shape"].tolist()


def test_private_generator_draws_the_official_noise(golden_dir):
    io = load_file(golden_dir / "case09_pipeline" / "case09_io.safetensors")
    generator = torch.Generator().manual_seed(42)
    assert torch.equal(torch.randn(1, 8, 8, 8, 8, generator=generator), io["noise_ss"])
    assert torch.equal(torch.randn(46, 8, generator=generator), io["noise_shape"])
    assert torch.equal(torch.randn(46, 8, generator=generator), io["noise_tex"])
