"""Shared test fixtures: where the golden vectors live and how to compare against them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DIR = Path(os.environ.get("GENESIS_SHARED_DIR", REPO_ROOT.parent / "shared"))
GOLDEN_DIR = SHARED_DIR / "golden"

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(scope="session")
def golden_dir() -> Path:
    """`../shared/golden`: test vectors produced by the official implementation."""
    if not GOLDEN_DIR.is_dir():
        pytest.fail(f"golden vectors not found at {GOLDEN_DIR} (set GENESIS_SHARED_DIR)")
    return GOLDEN_DIR


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """No test may leave a process behind: every server, worker or window a test starts has the session's
    temporary folder in its command line; any still alive at the end fails the run (and is killed)."""
    import signal

    from tests.process_utils import wait_until_gone

    factory = getattr(session.config, "_tmp_path_factory", None)
    if factory is None or getattr(factory, "_basetemp", None) is None:
        return
    left = wait_until_gone(str(factory.getbasetemp()))
    if not left:
        return
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass
    lines = "\n".join(f"  {pid}: {command[:200]}" for pid, command in left)
    session.config.get_terminal_writer().line(
        f"processes left behind by the tests (killed now):\n{lines}", red=True
    )
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
