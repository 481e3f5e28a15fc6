"""Server settings: where models and jobs live, what the network may reach, upload limits."""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}
DEFAULT_PORT = 8741


def default_models_dir() -> Path:
    return Path(os.environ.get("GENESIS_MODELS_DIR") or REPO_ROOT / "models")


def default_data_dir() -> Path:
    return Path(os.environ.get("GENESIS_DATA_DIR") or REPO_ROOT / "outputs")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    return int(value) if value else default


def _env_float(name: str, default: float) -> float:
    value = os.environ.get(name)
    return float(value) if value else default


@dataclass
class Settings:
    """Everything the server needs to know; built from flags, then environment, then defaults."""

    models_dir: Path = field(default_factory=default_models_dir)
    data_dir: Path = field(default_factory=default_data_dir)
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    token: str | None = field(default_factory=lambda: os.environ.get("GENESIS_TOKEN") or None)
    max_upload_bytes: int = field(default_factory=lambda: _env_int("GENESIS_MAX_UPLOAD_BYTES", 64 * 2**20))
    max_image_pixels: int = field(default_factory=lambda: _env_int("GENESIS_MAX_IMAGE_PIXELS", 40_000_000))
    idle_unload_s: float = field(default_factory=lambda: _env_float("GENESIS_IDLE_UNLOAD_S", 600.0))
    extra_origins: list[str] = field(default_factory=list)
    device: str | None = field(default_factory=lambda: os.environ.get("GENESIS_DEVICE") or None)

    def __post_init__(self) -> None:
        self.models_dir = Path(self.models_dir).expanduser().resolve()
        self.data_dir = Path(self.data_dir).expanduser().resolve()
        if self.max_upload_bytes <= 0 or self.max_image_pixels <= 0:
            raise ValueError("upload limits must be positive")

    @property
    def is_loopback(self) -> bool:
        return self.host in LOOPBACK_HOSTS

    def ensure_token(self) -> str | None:
        """Binding beyond this machine requires a token; make one up when none was given."""
        if not self.is_loopback and not self.token:
            self.token = secrets.token_urlsafe(24)
        return self.token

    @property
    def allowed_origins(self) -> list[str]:
        """The app's own origins: the server's address (web UI), and Electron's file:// pages."""
        hosts = {"127.0.0.1", "localhost", self.host}
        own = [f"http://{h}:{self.port}" for h in sorted(hosts)]
        return own + ["null", "app://genesis"] + list(self.extra_origins)
