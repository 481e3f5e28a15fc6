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
    the weights are checked as strictly as our own checkpoints (`trellis2.models.loading`): a truncated
    file, a missing or unexpected key or a wrong shape is an error instead of a silently random layer.
    """
    from safetensors.torch import load_file
    from transformers import AutoConfig
    from transformers.dynamic_module_utils import get_class_from_dynamic_module

    from trellis2.models.loading import check_state_keys, read_header

    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"background-removal model folder {folder} has no config.json")
    weights_file = folder / "model.safetensors"
    if not weights_file.is_file():
        raise FileNotFoundError(f"background-removal weights {weights_file} are missing")
    found = read_header(weights_file)  # before building the model: a damaged download fails fast
    config = AutoConfig.from_pretrained(str(folder), trust_remote_code=True, local_files_only=True)
    reference = (getattr(config, "auto_map", None) or {}).get("AutoModelForImageSegmentation")
    if not reference:
        raise ValueError(
            f"{folder / 'config.json'} has no auto_map entry for AutoModelForImageSegmentation; "
            "it is not a BiRefNet / RMBG-2.0 folder"
        )
    model_class = get_class_from_dynamic_module(reference, str(folder), local_files_only=True)
    model = model_class(config)  # the call from_pretrained makes

    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    prefix = getattr(model, "base_model_prefix", "") or ""
    strip = bool(prefix) and not expected.keys() & found.keys()
    if strip:
        found = {key.removeprefix(prefix + "."): shape for key, shape in found.items()}
    check_state_keys(expected, found, set(), weights_file)
    state = load_file(str(weights_file))
    if strip:
        state = {key.removeprefix(prefix + "."): value for key, value in state.items()}
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
