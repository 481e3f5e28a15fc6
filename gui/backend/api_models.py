"""The API's contract: the response of every route, as pydantic models (so `/api/docs` documents them).

Routes that are polled often (`GET /api/jobs`, `GET /api/jobs/{id}`) send `Job.to_api()` as it is and name
`JobOut` only for the documentation; `tests/server` checks that what they send validates against it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .store import JobState

SSE_JOB_EVENT = "job"  # data: the job (JobOut), sent whenever it changes, until it is final
SSE_DELETED_EVENT = "deleted"  # data: {} — the job was deleted; the stream ends


class ErrorBody(BaseModel):
    code: str = Field(description="a key of `GET /api/config` → `errors`")
    message: str
    hint: str = Field("", description="what a person can do about it")
    details: dict[str, Any] | None = None


class ErrorOut(BaseModel):
    error: ErrorBody


class JobStats(BaseModel):
    """What the worker measured; `peak_vram_bytes` only on CUDA."""

    model_config = ConfigDict(extra="allow")

    vertices: int
    faces: int
    file_bytes: int
    seconds: float
    texture_size: int
    peak_vram_bytes: int | None = None


class JobResult(BaseModel):
    files: dict[str, str] = Field(
        description="file name → URL under /api/jobs/{id}/files/ (model.glb and the exports)"
    )
    model: str = Field(description="URL of the job's GLB, for viewers")
    thumbnail: str | None = Field(
        None,
        description="URL of a small picture of the result (PNG); null for jobs made before there were any",
    )
    stats: JobStats


class JobOut(BaseModel):
    id: str
    engine: str
    state: JobState
    stage: str
    step: int
    total: int
    progress: float = Field(ge=0, le=1)
    eta_s: float | None
    created_at: float
    started_at: float | None
    finished_at: float | None
    params: dict[str, Any]
    inputs: list[str] = Field(description="URLs of the input images (and the preview)")
    preview: str | None = Field(description="URL of a small picture of the first input")
    error: ErrorBody | None = None
    result: JobResult | None = None
    queue_position: int | None = None
    cancel_requested: bool = Field(
        False, description="a cancel was asked for and the running job is stopping"
    )


class JobCreated(BaseModel):
    job_id: str


class JobDeleted(BaseModel):
    deleted: str


class ExportResult(BaseModel):
    name: str = Field(description="the file's name in the job")
    format: str
    bytes: int
    url: str = Field(description="where to download it")
    download_name: str = Field(description="the file name to save it under")


class EngineHealth(BaseModel):
    ready: bool
    reason: str


class HealthOut(BaseModel):
    status: str
    version: str
    device: str
    engines: dict[str, EngineHealth]
    summary: str  # one line: which engines can run, and the device (`engines.engine_summary`)
    loaded_engine: str | None
    running_job: str | None


class Choice(BaseModel):
    value: str | int
    label: str


class FormatChoice(Choice):
    extension: str
    media_type: str


class EngineConfig(BaseModel):
    label: str
    description: str
    ready: bool
    reason: str
    route: str = Field(description="POST /api/generate/<route>")
    image_field: str
    min_images: int
    max_images: int
    params: dict[str, dict[str, Any]] = Field(
        description="the request's fields: type, label, default, limits, "
        "choices (nested objects have `fields`)"
    )
    device_note: str = Field(
        "", description="one line when the export defaults are lighter on this machine (no GPU), else empty"
    )
    sampler_defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="what unset sampler values mean: the models' own `pipeline.json` values",
    )


class ErrorCodeInfo(BaseModel):
    status: int | None = Field(description="HTTP status; null for a failed job's code")
    message: str
    hint: str


class ModelInfo(BaseModel):
    id: str
    purpose: str
    licence: str
    gated: bool


class UploadLimits(BaseModel):
    max_upload_bytes: int
    max_image_pixels: int


class ConfigOut(BaseModel):
    engines: dict[str, EngineConfig]
    pipeline_types: list[Choice]
    multiview_modes: list[Choice]
    export_formats: list[FormatChoice]
    texture_sizes: list[Choice]
    stage_names: dict[str, str] = Field(description="the words for the stage ids jobs report")
    export: dict[str, dict[str, Any]] = Field(description="fields of POST /api/jobs/{id}/export")
    errors: dict[str, ErrorCodeInfo]
    models: list[ModelInfo]
    uploads: UploadLimits
    events: dict[str, str] = Field(
        description="event names of GET /api/jobs/{id}/events: `job` (data: the job), "
        "`deleted` (the job is gone; the stream ends)"
    )
