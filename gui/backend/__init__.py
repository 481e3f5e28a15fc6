"""The Genesis job server (FastAPI), the `genesis` command and the launcher."""

from __future__ import annotations

try:
    from importlib.metadata import version as _version

    __version__ = _version("genesis")
except Exception:  # noqa: BLE001 - running from a source tree that is not installed
    __version__ = "0.0.0"
