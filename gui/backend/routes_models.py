"""`/api/models`: what the Models panel shows and does (list, download, cancel, token, background model).

| method & path | what |
| --- | --- |
| `GET /api/models` | every model: state on disk, size, licence, gated, latest download task; token status; free space |
| `POST /api/models/{org}/{name}/download` | queue one model (202); continues a partial download |
| `POST /api/models/download-all` | queue every model not verified yet (202) |
| `POST /api/models/{org}/{name}/cancel`, `POST /api/models/cancel` | cancel one download, or all |
| `PUT /api/models/token` `{"token": "hf_…"}`, `DELETE /api/models/token` | store or forget the Hugging Face token |
| `PUT /api/models/background` `{"model": id or null}` | choose the background-removal model |

State-changing requests pass the server's Host/Origin checks like every other (`security.py`). The token is
never sent back: responses say whether one is set and where it is kept.
"""

from __future__ import annotations

import threading
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from . import models_download as md
from .errors import ApiError
from .hf_token import BadToken, TokenStore
from .model_manager import ModelManager
from .routes import ERRORS
from .security import parse_json

router = APIRouter(prefix="/api/models", tags=["models"], responses=ERRORS)
_manager_lock = threading.Lock()


class TaskOut(BaseModel):
    repo_id: str
    state: Literal["queued", "downloading", "verifying", "done", "failed", "cancelled"]
    done_bytes: int
    total_bytes: int | None = Field(description="known once the hub has listed the files")
    speed_bps: float | None = Field(description="bytes per second over the last seconds")
    eta_s: float | None = Field(description="seconds left at that speed")
    error_code: str | None = Field(
        description="no_network, wrong_token, token_needed, licence_not_accepted, disk_full, not_found, "
        "checksum or download_failed"
    )
    error: str | None = Field(description="one line a person can act on")
    queued_at: float
    finished_at: float | None


class ModelOut(BaseModel):
    id: str
    purpose: str
    licence: str
    gated: bool = Field(description="its licence must be accepted on the hub, and a token given")
    page: str = Field(description="the model's page on the hub (where a gated licence is accepted)")
    size_bytes: int
    size_exact: bool = Field(description="false: an estimate until a download has listed the files")
    bytes_on_disk: int
    state: Literal["missing", "partial", "present", "verified"]
    background: bool = Field(description="a background-removal model (only opaque images need one)")
    in_use: bool | None = Field(description="for background models: whether it is the one in use")
    task: TaskOut | None


class TokenOut(BaseModel):
    set: bool
    source: str | None = Field(description="keyring, file, HF_TOKEN or 'hf auth login'")
    storage: Literal["keyring", "file"] = Field(description="where a token given here is kept")


class BackgroundOut(BaseModel):
    in_use: str | None
    chosen: str | None
    choices: list[str] = Field(description="licence-clean first")


class ModelsOut(BaseModel):
    folder: str
    free_bytes: int
    models: list[ModelOut]
    active: str | None = Field(description="the model being downloaded now")
    token: TokenOut
    tokens_page: str
    background: BackgroundOut
    changed: list[str] = Field(
        default_factory=list, description="the models this request queued or cancelled"
    )


def manager(request: Request) -> ModelManager:
    """The app's download manager, made on first use from its settings."""
    state = request.app.state
    with _manager_lock:
        if getattr(state, "model_manager", None) is None:
            settings = state.settings
            state.model_manager = ModelManager(settings.models_dir, TokenStore(settings.data_dir))
        return state.model_manager


def spec_id(org: str, name: str) -> str:
    repo_id = f"{org}/{name}"
    try:
        return md.find_spec(repo_id).repo_id
    except KeyError:
        known = ", ".join(s.repo_id for s in md.model_specs())
        raise ApiError("not_found", f"There is no model {repo_id!r} here; the models are: {known}.") from None


async def json_body(request: Request) -> dict[str, Any]:
    body = await request.body()
    data = parse_json(body, "The request body") if body.strip() else {}
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "The request body must be a JSON object.")
    return data


async def snapshot(request: Request, changed: list[str] | None = None) -> dict[str, Any]:
    out = await run_in_threadpool(manager(request).snapshot)
    return {**out, "changed": changed or []}


@router.get("", response_model=ModelsOut)
async def list_models(request: Request) -> dict[str, Any]:
    """Every model with its state (missing, partial, present, verified), size, licence and latest download."""
    return await snapshot(request)


@router.post("/download-all", response_model=ModelsOut, status_code=202)
async def download_all(request: Request) -> dict[str, Any]:
    """Queue every model not verified yet (the pipeline's, and the background model wanted)."""
    return await snapshot(request, await run_in_threadpool(manager(request).download_all))


@router.post("/cancel", response_model=ModelsOut)
async def cancel_all(request: Request) -> dict[str, Any]:
    """Cancel every queued and running download (what was fetched is kept for the next one)."""
    return await snapshot(request, manager(request).cancel())


@router.post("/{org}/{name}/download", response_model=ModelsOut, status_code=202)
async def download_one(request: Request, org: str, name: str) -> dict[str, Any]:
    """Queue one model; a partial download continues where it stopped."""
    return await snapshot(request, manager(request).download([spec_id(org, name)]))


@router.post("/{org}/{name}/cancel", response_model=ModelsOut)
async def cancel_one(request: Request, org: str, name: str) -> dict[str, Any]:
    """Cancel one model's download."""
    return await snapshot(request, manager(request).cancel(spec_id(org, name)))


@router.put("/token", response_model=TokenOut)
async def set_token(request: Request) -> dict[str, Any]:
    """Store the Hugging Face token (OS keyring, else a file only the user can read). It is never sent back."""
    data = await json_body(request)
    token = data.get("token")
    if not isinstance(token, str):
        raise ApiError("invalid_parameters", 'Send {"token": "hf_…"}.')
    tokens = manager(request).tokens
    try:
        await run_in_threadpool(tokens.set, token)
    except BadToken as exc:
        raise ApiError("invalid_parameters", str(exc)) from None
    return tokens.status()


@router.delete("/token", response_model=TokenOut)
async def clear_token(request: Request) -> dict[str, Any]:
    """Forget the stored token (a token of `HF_TOKEN` or `hf auth login` stays theirs)."""
    tokens = manager(request).tokens
    await run_in_threadpool(tokens.clear)
    return tokens.status()


@router.put("/background", response_model=ModelsOut)
async def choose_background(request: Request) -> dict[str, Any]:
    """Choose the background-removal model (`{"model": id}`; null forgets the choice)."""
    data = await json_body(request)
    choice = data.get("model")
    if choice is not None and choice not in md.background_models():
        raise ApiError(
            "invalid_parameters",
            f"model: choose one of {', '.join(md.background_models())} (or null).",
        )
    await run_in_threadpool(md.choose_background, manager(request).models_dir, choice)
    return await snapshot(request, [choice] if choice else [])
