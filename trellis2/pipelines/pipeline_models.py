"""The pipeline's networks: resolved from `pipeline.json`, loaded lazily on the CPU, and lent to the
compute device one stage at a time (low-VRAM execution).

Every network lives on the CPU between uses. `on_device(module)` gives it device copies of its tensors
for one stage and points it back at the CPU tensors afterwards, so once a stage ends, fails or is
cancelled no parameter remains on the GPU.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch

from .model_paths import ModelNotFoundError, repo_id_of_folder, resolve_checkpoint, resolve_model_folder
from .pipeline_config import MODEL_KEYS, PipelineConfig

IMAGE_COND_MODEL = "image_cond_model"  # DINOv3 image features
REMBG_MODEL = "rembg_model"  # BiRefNet background removal
NETWORK_KEYS = (*MODEL_KEYS, IMAGE_COND_MODEL, REMBG_MODEL)


def default_device() -> torch.device:
    """CUDA when available, else the CPU."""
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


class PipelineModels:
    """The networks of one pipeline folder, by key: the `pipeline.json` checkpoints (`MODEL_KEYS`),
    `image_cond_model` and `rembg_model`.

    `missing_model_hint` ends the message of every `ModelNotFoundError` raised here (see there).
    """

    pin_memory = True  # keep the CPU copies of the weights in pinned memory when running on CUDA

    def __init__(
        self,
        config: PipelineConfig,
        pipeline_dir: Path | str,
        models_dir: Path | str | None,
        device: torch.device | str | None = None,
        missing_model_hint: str = "",
    ) -> None:
        self.config = config
        self.pipeline_dir = Path(pipeline_dir)
        self.models_dir = Path(models_dir) if models_dir is not None else None
        self.device = torch.device(device) if device is not None else default_device()
        self.missing_model_hint = missing_model_hint
        self.pipeline_repo = repo_id_of_folder(self.pipeline_dir)
        self._loaded: dict[str, torch.nn.Module] = {}

    # --- where the weights are -----------------------------------------------------------------
    def checkpoint_path(self, key: str) -> Path:
        """Local checkpoint prefix for `pipeline.json` model `key` (raises `ModelNotFoundError`)."""
        if key not in self.config.models:
            raise ModelNotFoundError(
                f"{self.pipeline_repo}:{key}",
                self.pipeline_dir / "pipeline.json",
                f"pipeline.json has no '{key}' entry",
                self.missing_model_hint,
            )
        return resolve_checkpoint(
            self.config.models[key],
            self.pipeline_dir,
            self.models_dir,
            self.pipeline_repo,
            self.missing_model_hint,
        )

    def model_folder(self, key: str) -> Path:
        """Local folder of the transformers model `image_cond_model` or `rembg_model`."""
        name = self.config.image_cond_model if key == IMAGE_COND_MODEL else self.config.rembg_model
        return resolve_model_folder(name, self.pipeline_dir, self.models_dir, self.missing_model_hint)

    def require(self, keys: Iterable[str]) -> None:
        """Fail early, naming the first missing checkpoint among `keys` that is not loaded yet."""
        for key in keys:
            if key not in self._loaded:
                self.checkpoint_path(key)

    # --- loading -------------------------------------------------------------------------------
    def get(self, key: str) -> torch.nn.Module:
        """Network `key`, loaded on the CPU the first time it is asked for."""
        if key not in self._loaded:
            if key not in NETWORK_KEYS:
                raise KeyError(key)
            self._loaded[key] = self._load(key)
        return self._loaded[key]

    def _load(self, key: str) -> torch.nn.Module:
        if key == IMAGE_COND_MODEL:
            from ..modules.image_feature_extractor import DinoV3FeatureExtractor

            return DinoV3FeatureExtractor(self.model_folder(key))
        if key == REMBG_MODEL:
            from .background_removal import BiRefNet

            return BiRefNet(self.model_folder(key))
        from ..models import from_pretrained

        return from_pretrained(str(self.checkpoint_path(key)), device="cpu").eval()

    def add(self, key: str, module: torch.nn.Module) -> None:
        """Use `module` (kept on the CPU) as network `key` instead of loading it from disk."""
        if key not in NETWORK_KEYS:
            raise KeyError(key)
        self._loaded[key] = module

    def loaded(self) -> dict[str, torch.nn.Module]:
        """The networks loaded so far, by key."""
        return dict(self._loaded)

    # --- low-VRAM device visits ----------------------------------------------------------------
    @contextlib.contextmanager
    def on_device(self, module: torch.nn.Module) -> Iterator[torch.nn.Module]:
        """Give `module` device copies of its tensors for one stage; afterwards it points at its CPU
        tensors again (nothing is copied back: inference does not change weights).

        On CUDA the CPU tensors are pinned on the first visit, so every later visit is a fast
        asynchronous upload.
        """
        if self.device.type == "cpu":
            yield module
            return
        pin = self.pin_memory and self.device.type == "cuda"
        tensors = [t for t in (*module.parameters(), *module.buffers()) if t.device.type == "cpu"]
        saved: list[torch.Tensor] = []
        try:
            for tensor in tensors:
                data = tensor.data
                if pin and not data.is_pinned():
                    data = data.pin_memory()
                saved.append(data)
                tensor.data = data.to(self.device, non_blocking=True)
            yield module
        finally:
            for tensor, data in zip(tensors, saved, strict=False):  # `saved` is shorter after a failure
                tensor.data = data
            self.release_device_memory()

    def release_device_memory(self) -> None:
        """Return cached device memory to the driver (CUDA only)."""
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def parameters_on_device(self) -> list[str]:
        """Keys of loaded networks with any parameter off the CPU (empty after every stage)."""
        return [
            key
            for key, module in self._loaded.items()
            if any(p.device.type != "cpu" for p in module.parameters())
        ]


__all__ = ["IMAGE_COND_MODEL", "NETWORK_KEYS", "REMBG_MODEL", "PipelineModels", "default_device"]
