"""Background removal with BiRefNet / RMBG-2.0 (spec §9.2), loaded from a local folder only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_segmentation_model(folder: Path) -> torch.nn.Module:
    """Build the folder's remote-code `AutoModelForImageSegmentation` class and load its safetensors weights.

    Deliberately not `from_pretrained`: transformers 5 expects remote-code models to call `post_init()`,
    which BiRefNet's code does not (it fails with "no attribute 'all_tied_weights_keys'"). Constructing the
    class from its config and loading the state dict ourselves works with transformers 4 and 5 alike, and
    every missing or unexpected weight is an error instead of a silently random layer.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"background-removal model folder {folder} has no config.json")
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
    reference = (getattr(config, "auto_map", None) or {}).get("AutoModelForImageSegmentation")
    if not reference:
        raise ValueError(f"{folder / 'config.json'} has no auto_map entry for AutoModelForImageSegmentation; "
                         "it is not a BiRefNet / RMBG-2.0 folder")
    model_class = get_class_from_dynamic_module(reference, str(folder), local_files_only=True)
    model = model_class(config)  # the call from_pretrained makes

    weights_file = folder / "model.safetensors"
    if not weights_file.is_file():
        raise FileNotFoundError(f"background-removal weights {weights_file} are missing")
    try:
        state = load_file(str(weights_file))
    except (SafetensorError, OSError) as exc:
        raise ValueError(f"cannot read {weights_file}: {exc} (an incomplete download? fetch it again)") from exc
    expected = model.state_dict().keys()
    prefix = getattr(model, "base_model_prefix", "") or ""
    if prefix and not expected & state.keys():
        state = {k.removeprefix(prefix + "."): v for k, v in state.items()}
    missing = sorted(expected - state.keys())
    unexpected = sorted(state.keys() - expected)
    if missing or unexpected:
        raise ValueError(f"{weights_file} does not match the model in {folder}: "
                         f"missing {missing[:5]}, unexpected {unexpected[:5]}")
    model.load_state_dict(state)
    return model


class BiRefNet(torch.nn.Module):
    """A transformers remote-code segmentation model; `__call__(rgb) -> rgba` with the mask as alpha.

    The model's code and weights come from `folder` (its `config.json` `auto_map` names the module
    file next to it); nothing is fetched from the network.
    """

    input_size = 1024

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        self.model = load_segmentation_model(Path(folder))
        self.model.eval()
        self.model.float()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def pixel_values(self, image: Image.Image) -> torch.Tensor:
        """Bilinear resize to 1024 x 1024, [0, 1], ImageNet normalisation: `[1, 3, 1024, 1024]`."""
        size = self.input_size
        resized = image.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        x = torch.from_numpy(np.asarray(resized, dtype=np.float32) / np.float32(255)).permute(2, 0, 1)
        mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
        return ((x - mean) / std)[None].to(self.device)

    @torch.no_grad()
    def forward(self, image: Image.Image) -> Image.Image:
        outputs = self.model(self.pixel_values(image))
        logits = outputs[-1] if isinstance(outputs, (list, tuple)) else outputs
        mask = logits.float().sigmoid()[0, 0].cpu()
        mask_image = Image.fromarray((mask * 255).to(torch.uint8).numpy(), "L").resize(image.size)
        rgba = image.convert("RGB")
        rgba.putalpha(mask_image)
        return rgba
