"""Child processes that never outlive the process that started them, even inside a long native call."""

from __future__ import annotations

import os
import signal
import sys
import threading

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent(parent_pid: int, lifeline) -> None:
    """End this process as soon as its parent is gone: on Linux the kernel kills it (PR_SET_PDEATHSIG, tied to
    the parent thread that started it); everywhere, a thread waits on a pipe whose only writer is the parent
    and exits when it reads end-of-file."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the line above
        os._exit(0)

    def watch() -> None:
        try:
            lifeline.recv()
        except (EOFError, OSError):
            pass
        os._exit(0)

    threading.Thread(target=watch, name="genesis-parent-watch", daemon=True).start()
