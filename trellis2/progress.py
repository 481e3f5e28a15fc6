"""Progress reporting and cancellation shared by every engine (the engine interface of DESIGN.md)."""

from __future__ import annotations

from typing import Protocol


class JobCancelled(Exception):
    """Raised between steps when the job's cancel flag is set."""


class ProgressCallback(Protocol):
    def __call__(self, stage: str, step: int, total: int) -> None: ...


class CancelFlag(Protocol):
    def is_set(self) -> bool: ...


def no_progress(stage: str, step: int, total: int) -> None:
    """The default callback: report nothing."""


def raise_if_cancelled(cancel: CancelFlag | None) -> None:
    """Check the flag between steps; raise `JobCancelled` when it is set."""
    if cancel is not None and cancel.is_set():
        raise JobCancelled("the job was cancelled")
