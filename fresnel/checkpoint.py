"""Fresnel checkpoints: a folder with `config.json` and `model.safetensors`, loaded strictly.

Loading checks the file before building anything: a truncated or foreign file, a missing or unexpected
tensor, or a wrong shape is an error that names the file, never a silently random layer (the same rules as
the TRELLIS.2 loader, `trellis2.models.loading`).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from trellis2.models.loading import check_state_keys, read_header

from .config import CONFIG_FILE, WEIGHTS_FILE, FresnelConfig
from .network import FresnelNet

BUNDLED_DIR = Path(__file__).resolve().parent / "weights" / "fresnel-base"


class FresnelCheckpointError(ValueError):
    """A Fresnel checkpoint folder that cannot be loaded; the message says which file and why."""


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
