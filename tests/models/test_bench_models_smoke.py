"""`tools/bench_models.py --quick` runs on CPU, round-trips checkpoints and writes its reports."""

from __future__ import annotations

import json

import pytest
import torch

from tools import bench_models


def test_shell_coords_are_a_sorted_unique_shell():
    coords = bench_models.shell_coords(16, 300, torch.device("cpu"))
    assert coords.shape == (300, 4) and coords.dtype == torch.int32
    assert torch.unique(coords, dim=0).shape[0] == 300
    key = ((coords[:, 1] * 16) + coords[:, 2]) * 16 + coords[:, 3]
    assert torch.all(key[1:] > key[:-1])
    radius = (coords[:, 1:].float() + 0.5 - 8).norm(dim=1)
    assert ((radius - 7.2).abs() < 2).all()


def test_quick_benchmark_of_the_flows(tmp_path):
    out = tmp_path / "bench.json"
    code = bench_models.main(
        [
            "--device",
            "cpu",
            "--quick",
            "--repeats",
            "1",
            "--only",
            "ss_flow,shape_flow_256,tex_flow_256",
            "--checkpoint-dir",
            str(tmp_path / "ckpt"),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert [r["name"] for r in report["results"]] == ["ss_flow", "shape_flow_256", "tex_flow_256"]
    for r in report["results"]:
        assert r["error"] is None and r["seconds"] > 0 and r["load_seconds"] > 0 and r["params"] > 0
    assert "| ss_flow | SparseStructureFlowModel |" in out.with_suffix(".md").read_text()
    assert not list((tmp_path / "ckpt").iterdir())  # round-trip files are removed


def test_quick_compare_reference_of_the_flows(tmp_path):
    """`--compare-reference` (the GPU command of docs/benchmarks/README.md) runs on CPU with tiny models."""
    out = tmp_path / "compare.json"
    code = bench_models.main(
        [
            "--device",
            "cpu",
            "--quick",
            "--compare-reference",
            "--repeats",
            "1",
            "--only",
            "ss_flow,tex_flow_64",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "compare-reference" and report["hardware"]["device"] == "cpu"
    assert [r["name"] for r in report["results"]] == ["ss_flow", "tex_flow_64"]
    labels = [label for label, _ in bench_models.LEVELS]
    for r in report["results"]:
        assert "error" not in r
        assert r["reference"]["forward_ms"] > 0 and r["reference"]["pair_ms"] > 0
        assert r["reference"]["attention"]["ops"]  # the SDPA op that ran, from the profiler
        assert [lv["label"] for lv in r["levels"]] == labels
        for level in r["levels"]:
            assert level["forward_ms"] > 0 and level["pair_ms"] > 0
            assert len(level["rel_l2"]) == 2  # first call and a later call at other inputs
            assert level["rel_l2_max"] < 0.05  # bf16 tiny models on the CPU
        assert r["speedup_pair"] > 0 and isinstance(r["within_bound"], bool)
        assert r["reference"]["rel_l2_bf16_vs_fp32"] > 0
    text = out.with_suffix(".md").read_text()
    assert "| ss_flow |" in text and "+ fused q/k norm and RoPE (= fast path)" in text


@pytest.mark.slow
def test_quick_compare_reference_with_compiled_blocks(tmp_path):
    """`--compile` adds a torch.compile level (here on the CPU, ~30 s of compiling)."""
    out = tmp_path / "compile.json"
    args = ["--device", "cpu", "--quick", "--compare-reference", "--repeats", "1", "--only", "ss_flow"]
    assert bench_models.main([*args, "--compile", "--compile-only", "ss_flow", "--out", str(out)]) == 0
    (row,) = json.loads(out.read_text())["results"]
    level = row["levels"][-1]
    assert level["label"] == bench_models.COMPILE_LEVEL[0] and level["options"]["compile"]
    assert level["compile_error"] is None and level["rel_l2_max"] < 0.05
