"""The cut-out an engine will make of an opaque picture, previewed before Generate (`POST /api/preview/cutout`).

The same background removal the jobs use: the background model in use (`models_download.background_model`, the
one TRELLIS.2 jobs load), else, for the engines that can do without one (Fresnel), the plain-background
segmentation of `fresnel.segmentation`. Like the pipelines, the picture is first limited to 1024 px and a
picture with real transparency is used as it is. The model runs here, in the server process, on the CPU (the
accelerator belongs to the worker): loaded on the first preview, let go after `idle_s` without one.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import ApiError

Remover = Callable[[Image.Image], Image.Image]  # RGB in, RGBA of the same size out
PLAIN_BACKGROUND_ENGINES = frozenset({"fresnel"})  # engines that segment plain backgrounds without a model
NO_MODEL = (
    "This picture has no transparency and no background-removal model is installed, so {engine} cannot use it. "
    "Use a PNG with a transparent background, or download a background-removal model in the Models panel."
)


class CutoutMaker:
    """Cut-outs for previews; holds at most one background model, and only while previews come."""

    def __init__(self, models_dir: Path, idle_s: float = 600.0) -> None:
        self.models_dir = Path(models_dir)
        self.idle_s = idle_s
        self._lock = threading.Lock()
        self._model: tuple[str, Remover] | None = None  # (repo id, loaded model)
        self._timer: threading.Timer | None = None

    def remover(self, engine: str, label: str) -> Remover:
        """What removes the background for `engine` (`label`: its name in messages); `ApiError` when nothing
        can."""
        from .models_download import background_model

        repo = background_model(self.models_dir)
        if repo is not None:
            return self._loaded(repo)
        if engine in PLAIN_BACKGROUND_ENGINES:
            from fresnel.segmentation import remove_plain_background

            return remove_plain_background
        raise ApiError("invalid_image", NO_MODEL.format(engine=label))

    def _loaded(self, repo: str) -> Remover:
        """The model `repo`, loaded once (on the CPU) and kept until `idle_s` pass without a preview."""
        with self._lock:
            if self._model is None or self._model[0] != repo:
                from trellis2.pipelines.background_removal import BiRefNet
                from trellis2.pipelines.model_paths import find_repository

                self._model = (repo, BiRefNet(find_repository(self.models_dir, repo)))
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(self.idle_s, self.release)
            self._timer.daemon = True
            self._timer.start()
            return self._model[1]

    def release(self) -> None:
        """Let the background model go (the next preview loads it again)."""
        with self._lock:
            self._model = None

    def cut_out(self, image: Image.Image, engine: str, label: str) -> Image.Image:
        """`image` (decoded, RGB or RGBA) as the RGBA cut-out `engine` would work from; `ApiError`
        (`invalid_image`) when no object can be separated from the background."""
        from trellis2.pipelines.image_loading import ImageInputError, has_real_alpha
        from trellis2.pipelines.preprocess import foreground_crop_box, limit_size

        image = limit_size(image)
        if has_real_alpha(image):
            return image.convert("RGBA")
        try:
            rgba = self.remover(engine, label)(image.convert("RGB"))
            foreground_crop_box(
                np.asarray(rgba.getchannel("A"))
            )  # the pipelines' own "is anything left" check
        except ImageInputError as exc:
            raise ApiError("invalid_image", f"The background could not be removed: {exc}") from exc
        return rgba
