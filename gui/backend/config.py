"""Application settings, in one typed class: where models and jobs live, what the network may reach, upload
limits. Each value comes from a flag (the caller's keyword), else `$GENESIS_<NAME>`, else the default here."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

REPO_ROOT = Path(__file__).resolve().parents[2]
COMMAND_NAME = "genesis"
ENV_PREFIX = "GENESIS_"
DEFAULT_MODELS_DIR = REPO_ROOT / "models"
DEFAULT_DATA_DIR = REPO_ROOT / "outputs"
DEFAULT_PORT = 8741
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


def env_name(field: str) -> str:
    """`models_dir` → `GENESIS_MODELS_DIR`."""
    return ENV_PREFIX + field.upper()


class Settings(BaseModel):
    """Everything the server needs to know. `Settings(port=9)` takes 9 for the port and the environment or the
    defaults for the rest; values are checked and converted by their types."""

    models_dir: Path = Field(
        DEFAULT_MODELS_DIR, description="models the engines load (nothing is downloaded here)"
    )
    data_dir: Path = Field(DEFAULT_DATA_DIR, description="the job database and the jobs' files")
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    token: str | None = Field(None, description="access token; required when binding beyond this machine")
    max_upload_bytes: int = Field(64 * 2**20, gt=0)
    max_image_pixels: int = Field(40_000_000, gt=0)
    idle_unload_s: float = Field(600.0, ge=0)
    extra_origins: list[str] = Field(default_factory=list, description="extra CORS origins (comma-separated)")
    device: str | None = Field(None, description="torch device for the engines (default: the best available)")

    @model_validator(mode="before")
    @classmethod
    def _fill_from_environment(cls, data: Any) -> Any:
        """Fields the caller did not give (or gave as None) come from `$GENESIS_<NAME>` when it is set."""
        values = {k: v for k, v in dict(data or {}).items() if v is not None}
        for name, info in cls.model_fields.items():
            raw = os.environ.get(env_name(name))
            if name in values or not raw:
                continue
            values[name] = (
                [part.strip() for part in raw.split(",") if part.strip()]
                if info.annotation == list[str]
                else raw
            )
        return values

    @field_validator("models_dir", "data_dir")
    @classmethod
    def _absolute(cls, path: Path) -> Path:
        return Path(path).expanduser().resolve()

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
        """Origins whose pages may call the API besides the one the server was reached by: its loopback
        names at the configured port, and `--allow-origin`s. Never `null` (sandboxed or file:// pages)."""
        hosts = {"127.0.0.1", "localhost", self.host}
        own = [f"http://{h if ':' not in h else f'[{h}]'}:{self.port}" for h in sorted(hosts)]
        return own + list(self.extra_origins)
