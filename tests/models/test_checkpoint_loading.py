"""`from_pretrained`: strict loading, dtype rules and a clear error for every kind of bad checkpoint."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from trellis2.models import from_pretrained
from trellis2.models.loading import CheckpointError


@pytest.fixture()
def ckpt(golden_dir, tmp_path) -> Path:
    """A writable copy of the golden ss flow checkpoint: returns the path without suffix."""
    for suffix in (".json", ".safetensors"):
        shutil.copy(golden_dir / "case01_ss_flow" / f"ss_flow{suffix}", tmp_path / f"model{suffix}")
    return tmp_path / "model"


def _state(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path) + ".safetensors")


def _save(path: Path, state: dict[str, torch.Tensor]) -> None:
    save_file(state, str(path) + ".safetensors")


def _edit_json(path: Path, **changes) -> None:
    json_path = Path(str(path) + ".json")
    config = json.loads(json_path.read_text())
    config.update(changes)
    json_path.write_text(json.dumps(config))


def test_loads_every_tensor_exactly(ckpt):
    model = from_pretrained(ckpt)
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    state = _state(ckpt)
    ours = model.state_dict()
    assert set(ours) == set(state)
    for key, value in state.items():
        assert torch.equal(ours[key], value), key


def test_accepts_suffix_and_stored_rope_buffer(ckpt):
    state = _state(ckpt)
    state["rope_phases"] = torch.zeros(512, 8, dtype=torch.complex64)  # derived: ignored, recomputed
    _save(ckpt, state)
    model = from_pretrained(str(ckpt) + ".json")
    assert model.rope_phases.abs().min() > 0.99


def test_bfloat16_file_upcasts_non_block_parameters(ckpt):
    _save(ckpt, {k: v.to(torch.bfloat16) for k, v in _state(ckpt).items()})
    _edit_json(ckpt, args={**json.loads(Path(str(ckpt) + ".json").read_text())["args"], "dtype": "bfloat16"})
    model = from_pretrained(ckpt)
    assert model.blocks[1].mlp.mlp[0].weight.dtype == torch.bfloat16
    assert model.blocks[1].norm2.weight.dtype == torch.float32
    assert model.adaLN_modulation[1].weight.dtype == torch.float32
    assert model.out_layer.weight.dtype == torch.float32


def test_dtype_override_from_kwargs(ckpt):
    model = from_pretrained(ckpt, dtype="float16")
    assert model.blocks[0].self_attn.to_qkv.weight.dtype == torch.float16


def test_missing_key(ckpt):
    state = _state(ckpt)
    del state["blocks.1.cross_attn.to_kv.weight"]
    _save(ckpt, state)
    with pytest.raises(
        CheckpointError,
        match=r"model\.safetensors does not match.*1 missing key\(s\): "
        r"blocks\.1\.cross_attn\.to_kv\.weight",
    ):
        from_pretrained(ckpt)


def test_unexpected_key(ckpt):
    state = _state(ckpt)
    state["blocks.7.extra.weight"] = torch.zeros(3)
    _save(ckpt, state)
    with pytest.raises(CheckpointError, match=r"1 unexpected key\(s\): blocks\.7\.extra\.weight"):
        from_pretrained(ckpt)


def test_many_missing_keys_are_summarised(ckpt):
    state = {k: v for k, v in _state(ckpt).items() if not k.startswith("blocks.1.")}
    _save(ckpt, state)
    with pytest.raises(CheckpointError, match=r"21 missing key\(s\): blocks\.1\.\S+.*\(and 16 more\)"):
        from_pretrained(ckpt)


def test_wrong_shape(ckpt):
    state = _state(ckpt)
    state["input_layer.weight"] = torch.zeros(64, 16)
    _save(ckpt, state)
    with pytest.raises(
        CheckpointError,
        match=r"1 shape mismatch\(es\): input_layer\.weight: file \[64, 16\] "
        r"vs model \[64, 8\]",
    ):
        from_pretrained(ckpt)


def test_truncated_file(ckpt):
    path = Path(str(ckpt) + ".safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"model\.safetensors: .*truncated or corrupt"):
        from_pretrained(ckpt)


def test_garbage_file(ckpt):
    Path(str(ckpt) + ".safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(CheckpointError, match=r"model\.safetensors: not a readable safetensors file"):
        from_pretrained(ckpt)


def test_unknown_class(ckpt):
    _edit_json(ckpt, name="SparseStructureFlowModelXL")
    with pytest.raises(
        CheckpointError,
        match=r"model\.json: unknown model class 'SparseStructureFlowModelXL'; "
        r"known classes: .*SLatFlowModel",
    ):
        from_pretrained(ckpt)


def test_bad_constructor_args(golden_dir, tmp_path):
    for suffix in (".json", ".safetensors"):
        shutil.copy(golden_dir / "case03_slat_flow" / f"shape_flow{suffix}", tmp_path / f"m{suffix}")
    _edit_json(tmp_path / "m", args={"resolution": 8, "bogus": 1})
    with pytest.raises(CheckpointError, match=r"m\.json: cannot build ElasticSLatFlowModel from its args"):
        from_pretrained(tmp_path / "m")


def test_unknown_dtype(ckpt):
    with pytest.raises(CheckpointError, match=r"unknown model dtype 'float8'"):
        from_pretrained(ckpt, dtype="float8")


def test_invalid_json(ckpt):
    Path(str(ckpt) + ".json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"model\.json: not valid JSON"):
        from_pretrained(ckpt)
    Path(str(ckpt) + ".json").write_text('{"args": {}}')
    with pytest.raises(CheckpointError, match=r'model\.json: expected \{"name"'):
        from_pretrained(ckpt)


@pytest.mark.parametrize("suffix", [".json", ".safetensors"])
def test_missing_file(ckpt, suffix):
    Path(str(ckpt) + suffix).unlink()
    with pytest.raises(FileNotFoundError, match=rf"checkpoint file not found: .*model\{suffix}"):
        from_pretrained(ckpt)
