"""`genesis models download` without a network: one clear line and a failing exit code, never a traceback."""

from __future__ import annotations

import errno
import os
import socket
import subprocess
import sys

from gui.backend.models_download import is_network_error

from .conftest import REPO_ROOT


def test_an_unreachable_hub_is_one_line_and_exit_code_1(tmp_path):
    env = {**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "2"}
    env.pop("HF_HUB_OFFLINE", None)
    cmd = [
        sys.executable,
        "-m",
        "gui.backend.cli",
        "models",
        "download",
        "--yes",
        "--models-dir",
        str(tmp_path),
    ]
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "cannot be reached" in errors[0], done.stderr


def test_network_errors_are_told_apart_from_other_failures():
    class ConnectError(Exception):  # the name the HTTP libraries give a failed connection
        pass

    wrapped = RuntimeError("request failed")
    wrapped.__cause__ = socket.gaierror(-2, "Name or service not known")
    assert is_network_error(ConnectError("refused"))
    assert is_network_error(wrapped)
    assert is_network_error(ConnectionRefusedError())
    assert not is_network_error(OSError(errno.ENOSPC, "No space left on device"))
    assert not is_network_error(ValueError("bad checksum"))
