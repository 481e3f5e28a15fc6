"""The multi-view engine: several views of one object conditioning every denoising step."""

from __future__ import annotations

from .base import EngineRequest
from .trellis2 import Trellis2Engine, sampler_kwargs


class MultiViewEngine(Trellis2Engine):
    name = "multiview"
    label = "multi-view TRELLIS.2"

    def _pipeline_class(self):
        from trellis2.pipelines import Trellis2MultiViewPipeline

        return Trellis2MultiViewPipeline

    def run(self, request: EngineRequest, progress, cancel):
        self.load()
        return self._pipeline.run_multi_image(
            request.images,
            mode=request.params.mode,
            **sampler_kwargs(request.params),
            progress=progress,
            cancel=cancel,
        )
