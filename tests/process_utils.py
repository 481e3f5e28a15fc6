"""Finding processes a test left behind (Linux /proc; elsewhere nothing is found)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def processes_mentioning(text: str) -> list[tuple[int, str]]:
    """`(pid, command line)` of every live process but this one whose command line contains `text`."""
    found = []
    for entry in Path("/proc").glob("[0-9]*") if Path("/proc").is_dir() else []:
        try:
            raw = (entry / "cmdline").read_bytes()
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        if int(entry.name) != os.getpid() and state != "Z" and text in command:
            found.append((int(entry.name), command))
    return found


def wait_until_gone(text: str, timeout_s: float = 5.0) -> list[tuple[int, str]]:
    """The processes mentioning `text` that are still alive after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while (left := processes_mentioning(text)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left
