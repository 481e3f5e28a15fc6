"""The Hugging Face token for gated models: kept in the OS keyring where one works, else in a file of the data
folder that only the user can read (mode 0600).

The token is only ever read to be sent to the hub (`models_download.fetch_model`); it is never logged, never
part of an API response (those say whether one is set and where it is kept) and never part of an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

AUTO = object()  # TokenStore's default: the installed keyring when it works
KEYRING_SERVICE = "genesis"
KEYRING_USER = "huggingface-token"
TOKEN_FILE = "hf-token"  # in the data folder, mode 0600
TOKEN_PATTERN = re.compile(r"[A-Za-z0-9_\-.]{8,256}")
KEYRING, FILE, ENVIRONMENT, HUB_LOGIN = "keyring", "file", "HF_TOKEN", "hf auth login"


class BadToken(ValueError):
    """A token that cannot be one (its text is never part of the message)."""


def hub_login_token() -> str | None:
    """The token huggingface_hub itself would use: `$HF_TOKEN`, else the one `hf auth login` stored."""
    from huggingface_hub import get_token

    return get_token()


def working_keyring():
    """The `keyring` module when it is installed and has a real backend (not the fail/null one), else None."""
    try:
        import keyring
        from keyring.backends import fail
    except Exception:
        return None
    try:
        backend = keyring.get_keyring()
    except Exception:
        return None
    if isinstance(backend, fail.Keyring) or getattr(backend, "priority", 1) <= 0:
        return None
    return keyring


class TokenStore:
    """Where the app keeps the token. `resolve()` is the token to use: the stored one, else huggingface_hub's
    own (`$HF_TOKEN` or `hf auth login`), so a person logged in with the hub's tools need not enter it again."""

    def __init__(
        self,
        data_dir: Path | None,
        keyring_module: Any = AUTO,
        hub_token: Callable[[], str | None] = hub_login_token,
    ) -> None:
        """`keyring_module`: the `keyring` module (or a stand-in), None for none; by default the installed one
        when it works. `hub_token`: huggingface_hub's own token lookup."""
        self.file = Path(data_dir) / TOKEN_FILE if data_dir is not None else None
        self._keyring = working_keyring() if keyring_module is AUTO else keyring_module
        self._hub_token = hub_token

    @property
    def storage(self) -> str:
        """Where `set` keeps a token: `keyring` or `file`."""
        return KEYRING if self._keyring is not None else FILE

    def _from_keyring(self) -> str | None:
        if self._keyring is None:
            return None
        try:
            return self._keyring.get_password(KEYRING_SERVICE, KEYRING_USER) or None
        except Exception:
            return None

    def _from_file(self) -> str | None:
        if self.file is None or not self.file.is_file():
            return None
        if os.name == "posix" and self.file.stat().st_mode & 0o077:
            os.chmod(self.file, 0o600)  # readable by others (copied in, restored from a backup): tighten
        return self.file.read_text().strip() or None

    def stored(self) -> tuple[str | None, str | None]:
        """`(token, where)` of the token the app stored, or `(None, None)`."""
        token = self._from_keyring()
        if token:
            return token, KEYRING
        token = self._from_file()
        return (token, FILE) if token else (None, None)

    def resolve(self) -> str | None:
        token, _ = self.stored()
        return token or self._hub_token() or None

    def source(self) -> str | None:
        """Where the token `resolve()` gives comes from, or None when there is none."""
        _, where = self.stored()
        if where:
            return where
        if self._hub_token():
            return ENVIRONMENT if os.environ.get("HF_TOKEN") else HUB_LOGIN
        return None

    def status(self) -> dict[str, str | bool | None]:
        """What the API tells: set or not, where it comes from, where a new one would be kept. Never the token."""
        source = self.source()
        return {"set": source is not None, "source": source, "storage": self.storage}

    def set(self, token: str) -> str:
        """Store `token` (keyring, else the 0600 file); returns where it went. `BadToken` for text that is no token."""
        token = (token or "").strip()
        if not TOKEN_PATTERN.fullmatch(token):
            raise BadToken(
                "That is not a Hugging Face token: a token is 8 to 256 letters, digits, '-', '_' or '.', "
                "usually starting with hf_."
            )
        if self._keyring is not None:
            try:
                self._keyring.set_password(KEYRING_SERVICE, KEYRING_USER, token)
                self._remove_file()
                return KEYRING
            except Exception:
                pass  # a keyring that is installed but locked or broken: the file it is
        self._write_file(token)
        return FILE

    def clear(self) -> None:
        if self._keyring is not None:
            try:
                self._keyring.delete_password(KEYRING_SERVICE, KEYRING_USER)
            except Exception:
                pass  # nothing stored there
        self._remove_file()

    def _write_file(self, token: str) -> None:
        if self.file is None:
            raise OSError("no data folder to keep the token in")
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_name(self.file.name + ".tmp")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(token)
        os.chmod(tmp, 0o600)
        os.replace(tmp, self.file)

    def _remove_file(self) -> None:
        if self.file is not None:
            self.file.unlink(missing_ok=True)
