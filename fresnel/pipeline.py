"""The Fresnel engine's pipeline: one image -> one `MeshWithVoxel`, in three stages with progress and cancel.

1. `preprocess`: RGBA with real transparency keeps its alpha; an opaque image goes through the given
   background remover (the installed model) or, without one, `fresnel.segmentation`; then the object crop.
2. `network`: `FresnelNet` on the crop and on its mirror image (one batch of two); the mirrored fields are
   turned back and the two averaged. Training sees every object both ways, so this costs one more image in
   the batch and takes out the guesses that differ between the two (measured: F@0.05 on a sphere
   0.82 -> 0.88, box 0.88 -> 0.87, torus 1.00 -> 1.00).
3. `surface`: stand the fields upright and extract the O-Voxel mesh (`fresnel.surface`).

A model with a noise input (a student distilled from TRELLIS.2, `fresnel.distill`) also gets the seed's
sparse-structure noise, so its seed picks one of the shapes TRELLIS.2 could make; the bundled model has
none and gives the same mesh for every seed.
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
from .network import FresnelNet, FresnelOutput, structure_noise
from .segmentation import remove_plain_background
from .surface import LEVEL, fields_to_asset, surface_shell, upright_fields

STAGES = ("preprocess", "network", "surface")
MIN_OBJECT_PIXELS = 8  # a crop box smaller than this (half side, pixels) has no usable object
BackgroundRemover = Callable[[Image.Image], Image.Image]


def cut_out(image: Image.Image, remove_background: BackgroundRemover | None = None) -> Image.Image:
    """The image with its object's transparency: RGBA with real transparency as it is, an opaque image through
    `remove_background` (the installed model) or, without one, `fresnel.segmentation`."""
    image = limit_size(normalize_image(image))
    if not has_real_alpha(image):
        image = (remove_background or remove_plain_background)(image.convert("RGB"))
    return image


def object_crop(rgba: Image.Image, size: int) -> torch.Tensor:
    """The network's input `[1, 4, size, size]` for a cut-out image (`cut_out`)."""
    crop, boxes, found = crop_to_object(image_to_tensor(rgba), size)
    if not bool(found[0]) or float(boxes[0, 2]) < MIN_OBJECT_PIXELS / 2:
        raise ImageInputError(
            "no object found: the image is fully transparent or the object is only a few "
            "pixels; use an image with a visible object"
        )
    return crop


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
        return object_crop(cut_out(image, remove_background), self.model.config.image_size)

    def noise_for(self, seeds: list[int]) -> torch.Tensor | None:
        """The structure noise of `seeds` for a model with a noise input, else None."""
        return structure_noise(seeds, self.model.config) if self.model.config.noise_channels else None

    @torch.no_grad()
    def predict(self, crop: torch.Tensor, noise: torch.Tensor | None = None) -> FresnelOutput:
        """The network's fields for crops `[B, 4, S, S]` (and, for a model with a noise input, their noise
        `[B, C, R, R, R]`), averaged with those of the mirrored crops and noise (image columns and grid x are
        one axis: `fresnel.network.lift`)."""
        crop = crop.to(self.device)
        batch = crop.shape[0]
        both = None if noise is None else noise.to(self.device)
        both = None if both is None else torch.cat([both, both.flip(2)])
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.device.type == "cuda"):
            out = self.model(torch.cat([crop, crop.flip(3)]), both)
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
        """One asset for `image`. Deterministic: the same input and seed always give the same mesh (a model
        without a noise input ignores the seed)."""
        return self.run_draft(image, seed, progress, cancel, remove_background)[0]

    def run_draft(
        self,
        image: Image.Image,
        seed: int = 0,
        progress: ProgressCallback = no_progress,
        cancel: CancelFlag | None = None,
        remove_background: BackgroundRemover | None = None,
    ) -> tuple[list[MeshWithVoxel], torch.Tensor]:
        """`run`'s asset and the draft's sparse structure, `[G, G, G]` bool in the O-Voxel frame (what TRELLIS.2
        refines with): the voxels the surface of the upright occupancy above `LEVEL` passes
        (`surface.surface_shell`), as TRELLIS.2's own sparse structure marks them."""
        total = len(STAGES)
        progress(STAGES[0], 0, total)
        crop = self.object_crop(image, remove_background)
        raise_if_cancelled(cancel)
        progress(STAGES[1], 1, total)
        out = self.predict(crop, self.noise_for([seed]))
        raise_if_cancelled(cancel)
        progress(STAGES[2], 2, total)
        occupancy, attributes = upright_fields(out)
        asset = fields_to_asset(occupancy, attributes)
        progress(STAGES[2], 3, total)
        return [asset], surface_shell(occupancy > LEVEL)

    def structure(
        self, image: Image.Image, seed: int = 0, remove_background: BackgroundRemover | None = None
    ) -> torch.Tensor:
        """The sparse structure `run_draft` gives for `image` and `seed`."""
        return self.run_draft(image, seed, remove_background=remove_background)[1]
