"""TRELLIS.2 networks and `from_pretrained`, which loads official checkpoints unchanged.

`MODEL_CLASSES` maps each class name that may appear in a checkpoint's `<name>.json` to the module
that defines it; modules are imported only when a checkpoint names them.
"""

from __future__ import annotations

import importlib

MODEL_CLASSES: dict[str, str] = {
    "SparseStructureFlowModel": "trellis2.models.sparse_structure_flow",
    "SLatFlowModel": "trellis2.models.structured_latent_flow",
    "ElasticSLatFlowModel": "trellis2.models.structured_latent_flow",
    "SparseStructureDecoder": "trellis2.models.sparse_structure_decoder",
    "SparseUnetVaeDecoder": "trellis2.models.sparse_unet_vae_decoder",
    "FlexiDualGridVaeDecoder": "trellis2.models.flexi_dual_grid_vae_decoder",
}


def model_class(name: str) -> type:
    """The class registered under an official checkpoint class name."""
    if name not in MODEL_CLASSES:
        raise KeyError(name)
    return getattr(importlib.import_module(MODEL_CLASSES[name]), name)


def from_pretrained(path: str, **kwargs):
    """Load `path.json` + `path.safetensors` (see `trellis2.models.loading`)."""
    from .loading import from_pretrained as _load

    return _load(path, **kwargs)


__all__ = ["MODEL_CLASSES", "model_class", "from_pretrained"]
