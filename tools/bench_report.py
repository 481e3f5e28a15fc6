"""Where every benchmark's report goes (the JSON and its Markdown table side by side), and its hardware line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def hardware_phrase(hw: dict[str, Any]) -> str:
    """`bench_pipeline.hardware`'s dict as the start of a report's hardware line: GPU (else CPU), torch, CUDA."""
    return f"{hw.get('gpu', hw['cpu'])}, torch {hw['torch']}" + (
        f", CUDA {hw['cuda']}" if "cuda" in hw else ""
    )


def save_report(out: Path | None, report: dict[str, Any], text: str) -> None:
    """Write `report` as JSON to `out` (its suffix becomes .json) and `text` to the .md beside it; nothing
    when `out` is None."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(text)
