"""`tools/eval_fresnel.py` end to end on a tiny untrained checkpoint: the table, the diagnostics line, strict JSON."""

from __future__ import annotations

import json

import torch

from fresnel.checkpoint import save_fresnel
from fresnel.config import TINY_CONFIG
from fresnel.network import FresnelNet
from tools import eval_fresnel


def test_the_tool_writes_the_table_the_diagnostics_and_strict_json(tmp_path) -> None:
    torch.manual_seed(0)
    save_fresnel(FresnelNet(TINY_CONFIG), tmp_path / "tiny")
    out, table = tmp_path / "result.json", tmp_path / "table.md"
    argv = ["--checkpoint", str(tmp_path / "tiny"), "--count", "2", "--batch-size", "2", "--device", "cpu"]
    argv += ["--workers", "1", "--points", "400", "--truth-resolution", "24", "--out", str(out)]
    assert eval_fresnel.main([*argv, "--markdown", str(table)]) == 0
    text = table.read_text()
    for label in eval_fresnel.LABELS.values():
        assert f"| {label} |" in text
    assert "Diagnostics of Fresnel's own fields" in text
    result = json.loads(out.read_text(), parse_constant=refuse_constant)
    assert len(result["rows"]) == 2 and "registered" in result["rows"][0]
    assert set(result["summary"]["fresnel_registered"]) >= {"f_score", "visible_recall", "extent_ratio"}


def refuse_constant(name: str) -> None:
    raise AssertionError(f"the JSON holds {name}: not strict JSON")
