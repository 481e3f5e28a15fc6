"""Running a checks module's `main` under Triton's CPU interpreter, in a process of its own (Triton reads
`TRITON_INTERPRET` when a kernel is defined, so the setting cannot change inside the test process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_interpreted(module: str, passed: str, timeout_s: float = 600) -> None:
    """Run `module.main()` with `TRITON_INTERPRET=1`; fail unless it exits 0 and prints `passed`."""
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-c", f"from {module} import main; main()"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert passed in done.stdout
