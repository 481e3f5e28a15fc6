"""Preprocessing (golden case 07) and DINOv3 conditioning (golden case 08)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.golden_utils import assert_golden_close
from trellis2.modules.image_feature_extractor import DinoV3FeatureExtractor
from trellis2.pipelines.image_loading import ImageInputError
from trellis2.pipelines.preprocess import foreground_crop_box, preprocess_image


def _never_called(image):
    raise AssertionError("background removal must not run for an RGBA image with transparency")


def test_small_image_is_bit_exact(golden_dir):
    case = golden_dir / "case07_preprocess"
    out = preprocess_image(Image.open(case / "input_small.png"), remove_background=_never_called)
    expected = np.asarray(Image.open(case / "output_small.png").convert("RGB"))
    assert out.size == (414, 414)
    assert np.array_equal(np.asarray(out), expected)


def test_large_image_is_resized_then_cropped(golden_dir):
    case = golden_dir / "case07_preprocess"
    out = np.asarray(preprocess_image(Image.open(case / "input_large.png"), remove_background=_never_called))
    expected = np.asarray(Image.open(case / "output_large.png").convert("RGB"))
    assert out.shape == expected.shape == (606, 606, 3)
    diff = np.abs(out.astype(int) - expected.astype(int))
    assert diff.max() <= 3, diff.max()


def test_crop_box_rounding_matches_golden_info(golden_dir):
    import json

    info = json.loads((golden_dir / "case07_preprocess" / "preprocess_info.json").read_text())["small"]
    alpha = np.asarray(Image.open(golden_dir / "case07_preprocess" / "input_small.png").getchannel("A"))
    assert list(foreground_crop_box(alpha)) == info["crop_box_float"]


def test_opaque_image_uses_background_removal():
    calls = []

    def fake_remover(rgb: Image.Image) -> Image.Image:
        calls.append(rgb.mode)
        mask = Image.new("L", rgb.size, 0)
        mask.paste(255, (10, 20, 50, 40))
        out = rgb.copy()
        out.putalpha(mask)
        return out

    out = preprocess_image(Image.new("RGB", (64, 64), (200, 100, 50)), remove_background=fake_remover)
    assert calls == ["RGB"]
    assert out.size == (38, 38)  # bbox 10..49 x 20..39: size 39, half 19


def test_fully_transparent_image_is_a_clear_error():
    with pytest.raises(ImageInputError, match="fully transparent"):
        preprocess_image(Image.new("RGBA", (64, 64), (255, 0, 0, 0)), remove_background=_never_called)


def test_dinov3_features_match_golden(golden_dir):
    case = golden_dir / "case08_dinov3"
    io = load_file(case / "case08_io.safetensors")
    extractor = DinoV3FeatureExtractor(case / "dinov3_tiny", image_size=64)
    assert_golden_close(extractor.extract_features(io["pixel_values"]), io["features"], name="features")
    image = Image.open(golden_dir / "case07_preprocess" / "output_small.png")
    pixels = extractor.pixel_values([image])
    assert_golden_close(pixels, io["call_pixel_values"], name="call_pixel_values")
    assert_golden_close(extractor([image]), io["call_features"], name="call_features")
    assert extractor([image]).dtype == torch.float32


def test_background_removal_model_loads_from_its_folder(tiny_models_dir):
    from trellis2.pipelines.background_removal import BiRefNet

    model = BiRefNet(tiny_models_dir / "briaai" / "RMBG-2.0")
    rgba = model(Image.new("RGB", (96, 64), (30, 160, 90)))
    assert rgba.mode == "RGBA" and rgba.size == (96, 64)


@pytest.mark.parametrize("damage", ["truncated", "foreign_weights"])
def test_bad_background_removal_weights_are_named(tiny_models_dir, tmp_path, damage):
    import shutil

    from safetensors.torch import save_file

    from trellis2.pipelines.background_removal import BiRefNet

    folder = tmp_path / "RMBG-2.0"
    shutil.copytree(tiny_models_dir / "briaai" / "RMBG-2.0", folder)
    weights = folder / "model.safetensors"
    if damage == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
        match = "model.safetensors: not a readable safetensors file, truncated or corrupt"
    else:
        save_file({"something.else": torch.zeros(3)}, str(weights))
        match = "model.safetensors does not match the model: .*missing key.*1 unexpected key\\(s\\): something.else"
    with pytest.raises(ValueError, match=match):
        BiRefNet(folder)
