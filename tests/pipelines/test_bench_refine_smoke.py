"""`tools/bench_refine.py --quick` runs on CPU: the Refine run takes its structure where the plain run samples it."""

from __future__ import annotations

import json

import bench_refine  # tools/ is on sys.path (tests/pipelines/conftest.py)


def test_quick_draft_and_refine_against_a_plain_run(tmp_path):
    out = tmp_path / "refine.json"
    assert (
        bench_refine.main(["--device", "cpu", "--quick", "--types", "512", "--runs", "1", "--out", str(out)])
        == 0
    )
    report = json.loads(out.read_text())
    assert report["quick"] and report["structure_voxels_64"] > 0
    assert report["draft"]["glb_seconds"] >= report["draft"]["structure_seconds"] > 0
    (case,) = report["cases"]
    assert case["pipeline_type"] == "512" and case["lr_tokens"] > 0 and case["hr_tokens"] is None
    plain_structure = case["plain"]["stages"][bench_refine.STRUCTURE_STAGE]
    refine_structure = case["refine"]["stages"][bench_refine.STRUCTURE_STAGE]
    assert plain_structure["steps"] > 1 and refine_structure["steps"] == 1  # given, not sampled
    assert "shape_slat" in case["refine"]["stages"] and "tex_slat" in case["refine"]["stages"]
    assert case["structure_stage_seconds"] > 0
    assert "| 512 |" in out.with_suffix(".md").read_text()
