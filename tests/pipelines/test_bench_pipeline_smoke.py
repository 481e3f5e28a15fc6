"""`tools/bench_pipeline.py --compare-reference --quick` runs on CPU and writes its reports."""

from __future__ import annotations

import json

import bench_pipeline  # tools/ is on sys.path (tests/pipelines/conftest.py)


def test_quick_compare_reference_of_the_pipeline(tmp_path):
    out = tmp_path / "pipeline.json"
    code = bench_pipeline.main(
        ["--device", "cpu", "--quick", "--compare-reference", "--types", "1024_cascade", "--runs", "1"]
        + ["--out", str(out)]
    )
    assert code == 0
    report = json.loads(out.read_text())
    assert report["mode"] == "compare-reference" and report["hardware"]["device"] == "cpu"
    (case,) = report["cases"]
    assert case["pipeline_type"] == "1024_cascade"
    rows = {row["stage"]: row for row in case["stages"]}
    for stage in ("sparse_structure", "shape_slat", "shape_slat_hr", "tex_slat"):
        row = rows[stage]
        assert row["fast_path_used"], row
        assert row["reference_seconds"] > 0 and row["fast_seconds"] > 0
        assert row["rel_l2"] < 1e-4 and row["within_bound"]  # float32 tiny models
    assert rows["tex_slat"]["calls"] == {"positive": 2}  # guidance strength 1: one forward per step
    ss = rows["sparse_structure"]  # guided steps: one batched pair, or two forwards where not exact
    assert ("pair" in ss["calls"]) == (ss["pair_probe"] == "exact"), ss
    other = {row["stage"]: row for row in case["stages_default_attention"]}
    assert other["shape_slat_hr"]["fast_path_used"] and other["shape_slat_hr"]["rel_l2"] < 1e-4
    text = out.with_suffix(".md").read_text()
    assert "| shape_slat_hr |" in text and "**generation (without decode)**" in text
    assert "### reference against fast path with PyTorch's own SDPA choice" in text
