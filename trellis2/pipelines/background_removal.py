"""Background removal with BiRefNet / RMBG-2.0 (spec §9.2), loaded from a local folder only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class BiRefNet(torch.nn.Module):
    """A transformers remote-code segmentation model; `__call__(rgb) -> rgba` with the mask as alpha.

    The model's code and weights come from `folder` (its `config.json` `auto_map` names the module
    file next to it); nothing is fetched from the network.
    """

    input_size = 1024

    def __init__(self, folder: str | Path) -> None:
        super().__init__()
        from transformers import AutoModelForImageSegmentation

        folder = Path(folder)
        if not (folder / "config.json").is_file():
            raise FileNotFoundError(f"background-removal model folder {folder} has no config.json")
        self.model = AutoModelForImageSegmentation.from_pretrained(
            str(folder), trust_remote_code=True, local_files_only=True
        )
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
