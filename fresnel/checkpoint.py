"""Fresnel checkpoints: a folder with `config.json` and `model.safetensors`, loaded strictly.

Loading checks the file before building anything: a truncated or foreign file, a missing or unexpected
tensor, or a wrong shape is an error that names the file, never a silently random layer (the same rules as
the TRELLIS.2 loader, `trellis2.models.loading`).

The engine's models: the bundled checkpoint (`BUILTIN_MODEL`, shipped in `fresnel/weights/`) and the
students distilled from TRELLIS.2 in `<models>/fresnel/<name>/` (`model_folders`; `fresnel.distill`).
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trellis2.models.loading import check_state_keys, read_header

from .config import CONFIG_FILE, WEIGHTS_FILE, FresnelConfig
from .network import FresnelNet

BUNDLED_DIR = Path(__file__).resolve().parent / "weights" / "fresnel-base"
BUILTIN_MODEL = BUNDLED_DIR.name  # the engine's default model
MODELS_SUBDIR = "fresnel"  # <models>/fresnel/<name>/: distilled students
CARD_FILE = "card.md"
MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


class FresnelCheckpointError(ValueError):
    """A Fresnel checkpoint folder that cannot be loaded; the message says which file and why."""


def check_model_name(name: str) -> str:
    """`name` if it can name a model folder (letters, digits, `_.-`, at most 64, not the built-in's name)."""
    if not MODEL_NAME.fullmatch(name or ""):
        raise ValueError(
            f"{name!r} cannot name a Fresnel model: use letters, digits, '_', '.' or '-' (at most 64)"
        )
    if name == BUILTIN_MODEL:
        raise ValueError(f"{BUILTIN_MODEL!r} is the built-in model's name; choose another")
    return name


def is_checkpoint(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and (folder / WEIGHTS_FILE).is_file()


def model_folders(models_dir: Path | None) -> dict[str, Path]:
    """Name -> folder of every model the engine can use: the built-in one first, then the checkpoint folders
    of `<models_dir>/fresnel/` by name."""
    found = {BUILTIN_MODEL: BUNDLED_DIR}
    root = Path(models_dir) / MODELS_SUBDIR if models_dir is not None else None
    if root is not None and root.is_dir():
        for folder in sorted(root.iterdir()):
            if MODEL_NAME.fullmatch(folder.name) and folder.name not in found and is_checkpoint(folder):
                found[folder.name] = folder
    return found


def load_fresnel(folder: Path = BUNDLED_DIR, device: torch.device | str = "cpu") -> FresnelNet:
    """The network of a checkpoint folder, in eval mode, in float32 on `device`."""
    folder = Path(folder)
    config_file, weights_file = folder / CONFIG_FILE, folder / WEIGHTS_FILE
    if not config_file.is_file() or not weights_file.is_file():
        raise FresnelCheckpointError(
            f"the Fresnel checkpoint {folder} needs {CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        config = FresnelConfig.load(config_file)
    except (TypeError, ValueError) as exc:
        raise FresnelCheckpointError(f"{config_file}: {exc}") from exc
    try:
        found = read_header(weights_file)
    except Exception as exc:  # noqa: BLE001 - any unreadable header is one kind of error for the user
        raise FresnelCheckpointError(f"{weights_file} is not a readable safetensors file: {exc}") from exc
    model = FresnelNet(config)
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    try:
        check_state_keys(expected, found, set(), weights_file)
    except Exception as exc:  # noqa: BLE001 - re-raised with the checkpoint's own error type
        raise FresnelCheckpointError(str(exc)) from exc
    state = {key: value.float() for key, value in load_file(str(weights_file)).items()}
    model.load_state_dict(state)
    return model.to(device).eval()


def init_weights_from(model: FresnelNet, folder: Path) -> list[str]:
    """Copy the weights of the checkpoint `folder` into `model`, whose configuration must be the checkpoint's
    except for additions that start at zero: the noise input, `top_down`, `depth_lifting`, and more residual
    blocks per 3D level (`decoder_blocks`, each at least the checkpoint's; each added block starts as the
    identity, its last convolution zero). So the model computes exactly what the checkpoint does until it
    learns more. Returns the names of the tensors the checkpoint lacks; any other difference is a
    `FresnelCheckpointError`."""
    base = load_fresnel(folder)
    if not model.config.grows(base.config):
        raise FresnelCheckpointError(f"{folder}: its sizes differ from the network's: {base.config}")
    ours, theirs = model.state_dict(), base.state_dict()
    new = sorted(set(ours) - set(theirs))
    check_state_keys(
        {k: tuple(v.shape) for k, v in ours.items()},
        {k: tuple(v.shape) for k, v in theirs.items()},
        set(new),
        Path(folder) / WEIGHTS_FILE,
    )
    model.load_state_dict({**ours, **theirs})
    with torch.no_grad():
        blocks = zip(model.config.decoder_blocks, base.config.decoder_blocks, strict=True)
        for level, (count, before) in enumerate(blocks):
            for index in range(before, count):
                block = model.levels[level][index]
                block.conv2.weight.zero_()
                block.conv2.bias.zero_()
    return new


def save_fresnel(model: FresnelNet, folder: Path, dtype: torch.dtype = torch.float16) -> None:
    """Write `config.json` and `model.safetensors` (weights in `dtype`), each atomically."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {key: value.detach().to("cpu", dtype).contiguous() for key, value in model.state_dict().items()}
    for name, write in (
        (WEIGHTS_FILE, lambda p: save_file(state, str(p), metadata={"format": "pt"})),
        (CONFIG_FILE, lambda p: Path(p).write_text(model.config.to_json())),
    ):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}.")
        os.close(fd)
        try:
            write(tmp)
            os.chmod(tmp, 0o644)
            os.replace(tmp, folder / name)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
