"""Where every benchmark's report goes: the JSON and its Markdown table side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def save_report(out: Path | None, report: dict[str, Any], text: str) -> None:
    """Write `report` as JSON to `out` (its suffix becomes .json) and `text` to the .md beside it; nothing
    when `out` is None."""
    if out is None:
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    out.with_suffix(".md").write_text(text)
