"""The Fresnel engine's pipeline: one image -> one `MeshWithVoxel`, in three stages with progress and cancel.

1. `preprocess`: RGBA with real transparency keeps its alpha; an opaque image goes through the given
   background remover (the installed model) or, without one, `fresnel.segmentation`; then the object crop.
2. `network`: `FresnelNet` on the crop and on its mirror image (one batch of two); the mirrored fields are
   turned back and the two averaged. Training sees every object both ways, so this costs one more image in
   the batch and takes out the guesses that differ between the two (measured: F@0.05 on a sphere
   0.82 -> 0.88, box 0.88 -> 0.87, torus 1.00 -> 1.00).
3. `surface`: stand the fields upright and extract the O-Voxel mesh (`fresnel.surface`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from o_voxel.asset import MeshWithVoxel
from trellis2.pipelines.image_loading import ImageInputError, has_real_alpha, normalize_image
from trellis2.pipelines.preprocess import limit_size
from trellis2.progress import CancelFlag, ProgressCallback, no_progress, raise_if_cancelled

from .checkpoint import BUNDLED_DIR, load_fresnel
from .image_input import crop_to_object, image_to_tensor
from .network import FresnelNet, FresnelOutput
from .segmentation import remove_plain_background
from .surface import fields_to_asset, upright_fields

STAGES = ("preprocess", "network", "surface")
MIN_OBJECT_PIXELS = 8  # a crop box smaller than this (half side, pixels) has no usable object
BackgroundRemover = Callable[[Image.Image], Image.Image]


class FresnelPipeline:
    """`FresnelPipeline.from_checkpoint(folder)` loads a checkpoint (the bundled one by default)."""

    def __init__(self, model: FresnelNet, device: torch.device | str = "cpu") -> None:
        self.model = model.to(device).eval()
        self.device = torch.device(device)

    @classmethod
    def from_checkpoint(
        cls, folder: Path = BUNDLED_DIR, device: torch.device | str | None = None
    ) -> FresnelPipeline:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        return cls(load_fresnel(folder), device)

    def object_crop(
        self, image: Image.Image, remove_background: BackgroundRemover | None = None
    ) -> torch.Tensor:
        """The network's input `[1, 4, S, S]` for one image (see the module docstring)."""
        image = limit_size(normalize_image(image))
        if not has_real_alpha(image):
            image = (remove_background or remove_plain_background)(image.convert("RGB"))
        crop, boxes, found = crop_to_object(image_to_tensor(image), self.model.config.image_size)
        if not bool(found[0]) or float(boxes[0, 2]) < MIN_OBJECT_PIXELS / 2:
            raise ImageInputError(
                "no object found: the image is fully transparent or the object is only a few "
                "pixels; use an image with a visible object"
            )
        return crop

    @torch.no_grad()
    def predict(self, crop: torch.Tensor) -> FresnelOutput:
        """The network's fields for crops `[B, 4, S, S]`, averaged with those of the mirrored crops (image
        columns and grid x are one axis: `fresnel.network.lift`)."""
        crop = crop.to(self.device)
        batch = crop.shape[0]
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(torch.cat([crop, crop.flip(3)]))
        logits, attributes, elevation = (
            out.occupancy_logits.float(),
            out.attribute_logits.float(),
            out.elevation.float(),
        )
        return FresnelOutput(
            (logits[:batch] + logits[batch:].flip(1)) / 2,
            (attributes[:batch] + attributes[batch:].flip(2)) / 2,
            (elevation[:batch] + elevation[batch:]) / 2,
        )

    def run(
        self,
        image: Image.Image,
        seed: int = 0,
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
        remove_background: BackgroundRemover | None = None,
    ) -> list[MeshWithVoxel]:
        """One asset for `image`. The student is deterministic: `seed` is accepted for the engine interface
        and the same input always gives the same mesh."""
        del seed
        total = len(STAGES)
        progress(STAGES[0], 0, total)
        crop = self.object_crop(image, remove_background)
        raise_if_cancelled(cancel)
        progress(STAGES[1], 1, total)
        out = self.predict(crop)
        raise_if_cancelled(cancel)
        progress(STAGES[2], 2, total)
        asset = fields_to_asset(*upright_fields(out))
        progress(STAGES[2], 3, total)
        return [asset]
