"""The export benchmark runs end to end in --quick mode and writes a well-formed report."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_bench_export_quick(tmp_path):
    out = tmp_path / "bench.json"
    run = subprocess.run(
        [sys.executable, "tools/bench_export.py", "--quick", "--device", "cpu", "--out", str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads(out.read_text())
    assert report["hardware"]["cpu"] and report["device"] == "cpu"
    (case,) = report["cases"]
    assert 0 < case["output_faces"] <= case["decimation_target"]
    steps = [s["step"] for s in case["steps"]]
    assert steps[0] == "fill holes" and steps[-1] == "write glb"
    assert all(s["seconds"] >= 0 and s["peak_gb"] > 0 for s in case["steps"])
