"""The teacher: TRELLIS.2 as the app runs it (low-VRAM, the models folder's `pipeline.json` samplers), with its
sparse structure recorded.

The pipeline's public API gives the decoded asset; the sparse-structure latent and the decoder's 64^3
logits are read with a forward hook on the (frozen) sparse-structure decoder, which every pipeline type
calls once per run. The noise the structure flow started from is not recorded: it is made again from the
seed (`fresnel.network.structure_noise`, the pipeline's first draw of its seeded CPU generator).
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from PIL import Image

from ..pipeline import cut_out
from ..segmentation import remove_plain_background
from .targets import TeacherRun


class Trellis2Teacher:
    """`run(views, seed)`: one TRELLIS.2 asset from one cut-out image (or several views of one object)."""

    def __init__(self, models_dir: Path, pipeline_type: str, device: str | None = None) -> None:
        self.pipeline = self.load_pipeline(models_dir, device)
        self.pipeline_type = pipeline_type
        self.pipeline.load_models(pipeline_type)
        self._captured: dict[str, torch.Tensor] = {}
        decoder = self.pipeline.model("sparse_structure_decoder")
        decoder.register_forward_hook(self._capture)

    def load_pipeline(self, models_dir: Path, device: str | None):
        """The TRELLIS.2 pipeline of the models folder (a benchmark builds another one here)."""
        from trellis2.pipelines import Trellis2MultiViewPipeline

        return Trellis2MultiViewPipeline.from_pretrained(models_dir, device=device)

    def _capture(self, _module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        self._captured["latent"] = inputs[0][0].detach().float().cpu()
        self._captured["logits"] = output[0, 0].detach().float().cpu()

    def cut_out(self, image: Image.Image) -> Image.Image:
        """The image with its object's transparency; an opaque image goes through the models folder's
        background remover (as in the app's engines) or, without one, Fresnel's plain-background segmentation."""
        return cut_out(image, self._remove_background)

    def _remove_background(self, rgb: Image.Image) -> Image.Image:
        from trellis2.pipelines import ModelNotFoundError

        try:
            remover = self.pipeline.rembg_model()
        except ModelNotFoundError:  # optional: images with transparency do not need it
            return remove_plain_background(rgb)
        with self.pipeline.models.on_device(remover) as model:
            return model(rgb)

    def run(self, views: list[Image.Image], seed: int) -> TeacherRun:
        """One teacher asset for cut-out `views` (one image: the single-image pipeline; several: multi-view)."""
        self._captured.clear()
        started = time.monotonic()
        if len(views) == 1:
            assets = self.pipeline.run(views[0], seed=seed, pipeline_type=self.pipeline_type)
        else:
            assets = self.pipeline.run_multi_image(views, seed=seed, pipeline_type=self.pipeline_type)
        seconds = time.monotonic() - started
        if "latent" not in self._captured:
            raise RuntimeError("the sparse-structure decoder was not called; the structure was not recorded")
        return TeacherRun(assets[0], self._captured["latent"], self._captured["logits"], seconds)
