"""The multi-view engine: several views of one object conditioning every denoising step."""

from __future__ import annotations

from .base import EngineRequest
from .trellis2 import Trellis2Engine, sampler_kwargs


class MultiViewEngine(Trellis2Engine):
    name = "multiview"
    label = "multi-view TRELLIS.2"

    def _pipeline_class(self):
        import trellis2.pipelines as package

        if hasattr(package, "Trellis2MultiViewPipeline"):
            return package.Trellis2MultiViewPipeline
        from trellis2.pipelines.multi_view import Trellis2MultiViewPipeline

        return Trellis2MultiViewPipeline

    def status(self):
        try:
            self._pipeline_class()
        except Exception as exc:  # noqa: BLE001 - a broken or missing pipeline package
            from .base import EngineStatus

            return EngineStatus(False, f"The multi-view pipeline is not installed ({exc}).")
        return super().status()

    def run(self, request: EngineRequest, progress, cancel):
        self.load()
        return self._pipeline.run_multi_image(request.images, mode=request.params.mode,
                                              **sampler_kwargs(request.params), progress=progress, cancel=cancel)
