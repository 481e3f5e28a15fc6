"""`from_pretrained`: build a model from `<path>.json` and fill it strictly from `<path>.safetensors`.

`<path>.json` is `{"name": <class name>, "args": {...}}` as in the official checkpoints; the class is
looked up in `trellis2.models.MODEL_CLASSES`. Loading is strict: every key of the file must be a
parameter/buffer of the model with the same shape and vice versa. The only exception are derived
buffers a class lists in `derived_buffers` (e.g. the dense flow's `rope_phases`), which may be present
in the file or not and are always recomputed.

Memory: the model is first built on the `meta` device (no allocation, no random init); the file is
validated from its header before any tensor is read; then each tensor is read once, cast to the dtype
the model keeps it in (the official mixed-precision rules), and assigned — no second copy.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from torch import nn

MAX_LISTED_KEYS = 5


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message names the file and what is wrong."""


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """`<path>.json` and `<path>.safetensors` (a path given with either suffix is accepted)."""
    path = Path(path)
    if path.suffix in (".json", ".safetensors"):
        path = path.with_suffix("")
    return path.with_name(path.name + ".json"), path.with_name(path.name + ".safetensors")


def _listing(keys: Iterable[str]) -> str:
    keys = sorted(keys)
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    more = len(keys) - MAX_LISTED_KEYS
    return shown + (f" (and {more} more)" if more > 0 else "")


def read_config(json_path: Path) -> tuple[str, dict[str, Any]]:
    """`(name, args)` of a checkpoint JSON, with clear errors for malformed files."""
    try:
        config = json.loads(json_path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{json_path}: not valid JSON ({e})") from e
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise CheckpointError(f'{json_path}: expected {{"name": <model class>, "args": {{...}}}}')
    args = config.get("args", {})
    if not isinstance(args, dict):
        raise CheckpointError(f'{json_path}: "args" must be an object, got {type(args).__name__}')
    return config["name"], args


def resolve_class(name: str, json_path: Path) -> type[nn.Module]:
    """The model class registered under `name`."""
    from . import MODEL_CLASSES, model_class

    if name not in MODEL_CLASSES:
        raise CheckpointError(
            f"{json_path}: unknown model class {name!r}; known classes: {', '.join(sorted(MODEL_CLASSES))}"
        )
    try:
        return model_class(name)
    except (ImportError, AttributeError) as e:
        raise CheckpointError(
            f"{json_path}: model class {name!r} is not available in this build ({e})"
        ) from e


def read_header(st_path: Path) -> dict[str, tuple[int, ...]]:
    """Tensor name -> shape, read from the safetensors header only (rejects truncated files)."""
    try:
        with safe_open(str(st_path), framework="pt") as f:
            return {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()}
    except Exception as e:  # safetensors raises its own error types for corrupt headers/buffers
        raise CheckpointError(
            f"{st_path}: not a readable safetensors file, truncated or corrupt ({e})"
        ) from e


def _derived_keys(model: nn.Module) -> set[str]:
    keys = set()
    for prefix, module in model.named_modules():
        for name in getattr(module, "derived_buffers", ()):
            keys.add(f"{prefix}.{name}" if prefix else name)
    return keys


def check_state_keys(
    expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]], derived: set[str], st_path: Path
) -> None:
    """Raise `CheckpointError` on missing/unexpected keys or shape mismatches (derived keys exempt)."""
    missing = set(expected) - set(found) - derived
    unexpected = set(found) - set(expected) - derived
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s): {_listing(missing)}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s): {_listing(unexpected)}")
    wrong = {k for k in set(expected) & set(found) if tuple(expected[k]) != tuple(found[k])}
    if wrong:
        first = sorted(wrong)[:MAX_LISTED_KEYS]
        details = "; ".join(f"{k}: file {list(found[k])} vs model {list(expected[k])}" for k in first)
        more = f" (and {len(wrong) - len(first)} more)" if len(wrong) > len(first) else ""
        problems.append(f"{len(wrong)} shape mismatch(es): {details}{more}")
    if problems:
        raise CheckpointError(f"{st_path} does not match the model: " + "; ".join(problems))


def _build(cls: type[nn.Module], args: dict[str, Any], json_path: Path, device: torch.device) -> nn.Module:
    try:
        with device:
            return cls(**args)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{json_path}: cannot build {cls.__name__} from its args ({e})") from e


def _reset_derived(model: nn.Module) -> None:
    for module in model.modules():
        if hasattr(module, "reset_derived_buffers"):
            module.reset_derived_buffers()


def from_pretrained(path: str | Path, device: str | torch.device | None = None, **kwargs) -> nn.Module:
    """Load the checkpoint `path` (`path.json` + `path.safetensors`) and return the model in eval mode.

    `kwargs` override the JSON's constructor args (e.g. `dtype="float32"` for a flow model). `device`
    is where the weights are loaded (default CPU). Parameters are frozen (`requires_grad=False`).
    """
    json_path, st_path = checkpoint_paths(path)
    for p in (json_path, st_path):
        if not p.is_file():
            raise FileNotFoundError(f"checkpoint file not found: {p}")
    device = torch.device(device if device is not None else "cpu")
    name, args = read_config(json_path)
    cls = resolve_class(name, json_path)
    model = _build(cls, {**args, **kwargs}, json_path, torch.device("meta"))

    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    found = read_header(st_path)
    derived = _derived_keys(model)
    check_state_keys(expected, found, derived, st_path)

    targets = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(st_path), framework="pt", device=str(device)) as f:
            for key in expected:
                state[key] = f.get_tensor(key).to(targets[key].dtype)
    except Exception as e:
        raise CheckpointError(
            f"{st_path}: failed to read tensor data, file truncated or corrupt ({e})"
        ) from e

    model.load_state_dict(state, strict=True, assign=True)
    _reset_derived(model)
    if any(t.is_meta for t in [*model.parameters(), *model.buffers()]):
        # A class with buffers we cannot recompute: build it for real and copy the weights in.
        model = _build(cls, {**args, **kwargs}, json_path, device)
        model.load_state_dict(state, strict=True)
    model.requires_grad_(False)
    return model.eval()
