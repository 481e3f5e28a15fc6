"""`gui.backend.main:app`: the server with settings from the environment (`GENESIS_*`)."""

from __future__ import annotations

from .app import create_app

app = create_app()
