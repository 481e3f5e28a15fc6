"""Engines: the TRELLIS.2 image-to-3D pipeline (single image and multi-view) and its helpers."""

from .image_loading import ImageInputError, open_image
from .model_check import check_models
from .model_paths import ModelNotFoundError, default_models_dir
from .multiview import MULTIVIEW_MODES, Trellis2MultiViewPipeline
from .pipeline_config import PIPELINE_TYPES, PipelineConfigError
from ..progress import CancelFlag, JobCancelled, ProgressCallback
from .trellis2_image_to_3d import Trellis2ImageTo3DPipeline

__all__ = [
    "CancelFlag",
    "ImageInputError",
    "JobCancelled",
    "ModelNotFoundError",
    "MULTIVIEW_MODES",
    "PIPELINE_TYPES",
    "PipelineConfigError",
    "ProgressCallback",
    "Trellis2ImageTo3DPipeline",
    "Trellis2MultiViewPipeline",
    "check_models",
    "default_models_dir",
    "open_image",
]
