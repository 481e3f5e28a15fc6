"""Engines: the TRELLIS.2 image-to-3D pipeline (single image and multi-view) and its helpers.

Modules, one concept each: `pipeline_config` (pipeline.json and run arguments), `model_paths`
(models folder lookup), `pipeline_models` (lazy loading, low-VRAM device visits), `conditioning`
(DINOv3 image features), `sampling_stages` (the stages), `trellis2_image_to_3d` (the public
pipeline) and `multiview` on top of it; `image_loading`, `preprocess`, `background_removal` prepare
the input image; `model_check` reports which models are present.
"""

from ..progress import CancelFlag, JobCancelled, ProgressCallback
from .conditioning import Conditioning
from .image_loading import ImageInputError, open_image
from .model_check import check_models
from .model_paths import ModelNotFoundError
from .multiview import MULTIVIEW_MODES, Trellis2MultiViewPipeline
from .pipeline_config import PIPELINE_TYPES, PipelineConfig, PipelineConfigError
from .pipeline_models import PipelineModels
from .trellis2_image_to_3d import Trellis2ImageTo3DPipeline

__all__ = [
    "CancelFlag",
    "Conditioning",
    "ImageInputError",
    "JobCancelled",
    "ModelNotFoundError",
    "MULTIVIEW_MODES",
    "PIPELINE_TYPES",
    "PipelineConfig",
    "PipelineConfigError",
    "PipelineModels",
    "ProgressCallback",
    "Trellis2ImageTo3DPipeline",
    "Trellis2MultiViewPipeline",
    "check_models",
    "open_image",
]
