"""DINOv3 image conditioning (spec §9.1): the tokens TRELLIS.2's flow models cross-attend to."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class DinoV3FeatureExtractor(torch.nn.Module):
    """All layers of a transformers `DINOv3ViTModel`, then a LayerNorm without affine parameters
    (the model's own final norm is not used). CLS and register tokens are kept."""

    def __init__(
        self, model_name: str | Path | None, image_size: int = 512, model: torch.nn.Module | None = None
    ) -> None:
        """Load the transformers folder `model_name` (local files only), or wrap a given `model`."""
        super().__init__()
        if model is None:
            from transformers import DINOv3ViTModel

            folder = Path(model_name)
            if not (folder / "config.json").is_file():
                raise FileNotFoundError(f"DINOv3 model folder {folder} has no config.json")
            model = DINOv3ViTModel.from_pretrained(str(folder), local_files_only=True)
        self.model = model.eval()
        self.image_size = image_size
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @torch.no_grad()
    def extract_features(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Normalised pixels `[B, 3, S, S]` -> tokens `[B, 1 + registers + (S/patch)^2, hidden]`."""
        model = self.model
        pixel_values = pixel_values.to(model.embeddings.patch_embeddings.weight.dtype)
        # The last layer's output before the model's own final norm; asking for hidden states
        # keeps this independent of how a transformers release names the layer stack.
        hidden = model(pixel_values=pixel_values, output_hidden_states=True).hidden_states[-1]
        return F.layer_norm(hidden.float(), hidden.shape[-1:], eps=1e-5)

    def pixel_values(self, images: Sequence[Image.Image]) -> torch.Tensor:
        """Lanczos resize to `image_size`, RGB / 255, ImageNet normalisation: `[B, 3, S, S]`."""
        size = self.image_size
        arrays = [
            np.asarray(image.resize((size, size), Image.Resampling.LANCZOS).convert("RGB"), dtype=np.float32)
            for image in images
        ]
        batch = torch.from_numpy(np.stack(arrays) / np.float32(255)).permute(0, 3, 1, 2).to(self.device)
        return (batch - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: Sequence[Image.Image] | torch.Tensor) -> torch.Tensor:
        if torch.is_tensor(images):
            return self.extract_features(images.to(self.device))
        return self.extract_features(self.pixel_values(images))
