"""The REST API of DESIGN.md (everything under `/api`)."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException

from . import vocabulary
from .api_models import (
    SSE_DELETED_EVENT,
    SSE_JOB_EVENT,
    ConfigOut,
    ErrorOut,
    ExportResult,
    HealthOut,
    JobCreated,
    JobDeleted,
    JobOut,
    ModelInfo,
)
from .engines import ENGINES, EngineEntry, engine_summary
from .errors import ApiError, error_table, job_not_found
from .export import download_name, export_file_name, export_generation
from .files import is_job_id
from .generation import GENERATION_FILE, load_generation
from .images import store_uploads
from .models_download import model_specs
from .params import ExportRequest, SamplerParams, describe_fields, device_defaults, device_note
from .refine import REFINE_ENGINE, check_draft, create_refine_job, refine_params
from .security import parse_json
from .store import QUEUED, SUCCEEDED, Job
from .timings import device_label

ERRORS = {code: {"model": ErrorOut} for code in (400, 404, 409, 422)}
router = APIRouter(prefix="/api", responses=ERRORS)
SSE_INTERVAL_S = 0.25
SSE_HEARTBEAT_S = 15.0
DELETE_WAIT_S = 10.0  # a delete waits this long for the job's export to finish, then answers 409 job_busy
_export_lock = threading.Lock()


def media_type(suffix: str) -> str:
    """The content type of a job file: the export formats' own, PNG for images."""
    by_extension = {f.extension: f.media_type for f in vocabulary.export_formats().values()}
    return {**by_extension, "png": "image/png"}.get(suffix.lstrip("."), "application/octet-stream")


def services(request: Request):
    return request.app.state.services


def job_payload(svc, job: Job) -> dict[str, Any]:
    """The job as stored (the worker writes progress several times a second), plus its queue position."""
    out = job.to_api()
    if job.state == QUEUED:
        out["queue_position"] = svc.store.queue_position(job.id)
    return out


def get_job(svc, job_id: str) -> Job:
    if not is_job_id(job_id):
        raise ApiError("job_not_found", "That is not a job id (job ids are 32 hexadecimal characters).")
    job = svc.store.get(job_id)
    if job is None:
        raise job_not_found(job_id)
    return job


# -- health ------------------------------------------------------------------------------------------------
def describe_device(preferred: str | None) -> str:
    import torch

    if preferred:
        return preferred
    if torch.cuda.is_available():
        return f"cuda ({torch.cuda.get_device_name(0)})"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


@router.get("/health", response_model=HealthOut)
async def health(request: Request) -> dict[str, Any]:
    from . import __version__

    svc = services(request)
    statuses = await run_in_threadpool(svc.engines.statuses)
    device = describe_device(svc.settings.device)
    return {
        "status": "ok",
        "version": __version__,
        "device": device,
        "engines": {name: s.to_api() for name, s in statuses.items()},
        "summary": engine_summary(statuses, device),
        "loaded_engine": svc.worker.loaded_engine,
        "running_job": svc.store.running_job_id(),
    }


# -- config ------------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=8)
def has_gpu(device: str | None) -> bool:
    """Whether this server's jobs run on a GPU (the device the worker uses, `timings.device_label`)."""
    return device_label(device).startswith("cuda")


def sampler_defaults(engine) -> dict[str, dict[str, Any]]:
    """What the engine's models use for unset sampler values (only the fields the API knows)."""
    known = set(SamplerParams.model_fields)
    return {
        stage: {k: v for k, v in values.items() if k in known}
        for stage, values in engine.sampler_defaults().items()
    }


def engine_config(entry: EngineEntry, svc, statuses) -> dict[str, Any]:
    status = statuses.get(entry.name)
    engine = svc.engines.engines.get(entry.name)
    lighter = device_defaults(entry.params, has_gpu(svc.settings.device))
    return {
        "label": entry.label,
        "description": entry.description,
        "ready": bool(status and status.ready),
        "reason": status.reason if status else "This server was started without this engine.",
        "route": entry.route,
        "image_field": entry.image_field,
        "min_images": entry.min_images,
        "max_images": entry.max_images,
        "params": describe_fields(entry.params, lighter),
        "device_note": device_note(lighter),
        "sampler_defaults": sampler_defaults(engine) if engine is not None else {},
    }


@router.get("/config", response_model=ConfigOut)
async def read_config(request: Request) -> dict[str, Any]:
    """Everything a client builds its menus, limits and error hints from: engines, the vocabulary, the
    parameters' limits and defaults, the error codes with their hints, and the models."""
    svc = services(request)

    def build() -> dict[str, Any]:
        statuses = svc.engines.statuses()
        return {
            "engines": {name: engine_config(entry, svc, statuses) for name, entry in ENGINES.items()},
            **vocabulary.vocabulary(),
            "export": describe_fields(
                ExportRequest, device_defaults(ExportRequest, has_gpu(svc.settings.device))
            ),
            "errors": error_table(),
            "models": [
                ModelInfo(id=m.repo_id, purpose=m.purpose, licence=m.licence, gated=m.gated)
                for m in model_specs()
            ],
            "uploads": {
                "max_upload_bytes": svc.settings.max_upload_bytes,
                "max_image_pixels": svc.settings.max_image_pixels,
            },
            "events": {"job": SSE_JOB_EVENT, "deleted": SSE_DELETED_EVENT},
        }

    return await run_in_threadpool(build)


# -- submitting jobs ---------------------------------------------------------------------------------------
async def read_form(request: Request):
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith("multipart/form-data"):
        raise ApiError("invalid_form", "Send the image(s) as multipart/form-data (file field plus 'params').")
    try:
        return await request.form(max_files=max(e.max_images for e in ENGINES.values()) + 1, max_fields=8)
    except MultiPartException as exc:
        raise ApiError("invalid_form", f"The multipart body could not be read: {exc.message}") from exc
    except HTTPException as exc:
        raise ApiError("invalid_form", f"The multipart body could not be read: {exc.detail}") from exc


def validated(model, data: dict[str, Any]) -> Any:
    """`model.model_validate(data)`, or a 422 `invalid_parameters` naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        where = ".".join(str(p) for p in errors[0]["loc"]) or "params"
        raise ApiError("invalid_parameters", f"{where}: {errors[0]['msg']}", errors=errors) from exc


def parse_params(engine: str, raw: Any, gpu: bool = True) -> Any:
    """The `params` form field of `engine`, validated; without a GPU (`gpu` false) a setting left out takes the
    lighter default of `device_defaults`, as `GET /api/config` says."""
    if raw is None or raw == "":
        data: Any = {}
    elif isinstance(raw, str):
        data = parse_json(raw, "'params'")
    else:
        raise ApiError("invalid_form", "'params' must be a text field holding JSON, not a file.")
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "'params' must be a JSON object.")
    model = ENGINES[engine].params
    return validated(model, {**device_defaults(model, gpu), **data})


async def submit(request: Request, entry: EngineEntry) -> JSONResponse:
    svc = services(request)
    engine, field = entry.name, entry.image_field
    known = engine in svc.engines.engines
    status = await run_in_threadpool(svc.engines.engines[engine].status) if known else None
    if status is None or not status.ready:
        reason = status.reason if status else f"There is no engine called {engine!r}."
        raise ApiError("engine_not_installed", reason, engine=engine)
    form = await read_form(request)
    uploads = [v for v in form.getlist(field) if isinstance(v, UploadFile)]
    unexpected = [k for k in form.keys() if k not in (field, "params")]
    if unexpected:
        raise ApiError(
            "invalid_form",
            f"Unexpected form field(s): {', '.join(sorted(set(unexpected)))[:200]}. "
            f"Send '{field}' and 'params'.",
        )
    if not (entry.min_images <= len(uploads) <= entry.max_images):
        wanted = (
            f"exactly {entry.min_images}"
            if entry.min_images == entry.max_images
            else f"{entry.min_images} to {entry.max_images}"
        )
        raise ApiError(
            "wrong_image_count",
            f"This endpoint takes {wanted} image(s) in the '{field}' field; got {len(uploads)}.",
        )
    params = parse_params(engine, form.get("params"), has_gpu(svc.settings.device))
    job_id = uuid.uuid4().hex
    names = await run_in_threadpool(
        store_uploads,
        svc.folders,
        job_id,
        [upload.file for upload in uploads],
        svc.settings.max_image_pixels,
        svc.decode_budget,
    )
    try:
        svc.store.create(engine, params.model_dump(), names, job_id=job_id)
    except BaseException:  # e.g. the database on a full disk: no folder without its job
        await run_in_threadpool(svc.folders.remove, job_id)
        raise
    svc.worker.notify()
    return JSONResponse({"job_id": job_id}, status_code=202)


def add_generate_route(entry: EngineEntry) -> None:
    """`POST /api/generate/<route>` for one engine of the registry."""

    async def generate(request: Request) -> JSONResponse:
        return await submit(request, entry)

    images = (
        f"'{entry.image_field}' ×{entry.min_images}–{entry.max_images}"
        if entry.max_images > 1
        else f"'{entry.image_field}'"
    )
    router.add_api_route(
        f"/generate/{entry.route}",
        generate,
        methods=["POST"],
        status_code=202,
        response_model=JobCreated,
        name=f"generate_{entry.name}",
        summary=f"{entry.label}: queue a job",
        description=f"{entry.description}. Multipart: {images} and 'params' (JSON of "
        f"{entry.params.__name__}; see GET /api/config).",
        responses={503: {"model": ErrorOut}, 413: {"model": ErrorOut}},
    )


for _entry in ENGINES.values():
    add_generate_route(_entry)


# -- jobs --------------------------------------------------------------------------------------------------
@router.get("/jobs", response_model=list[JobOut])
async def list_jobs(request: Request, limit: int = 200) -> JSONResponse:
    svc = services(request)
    return JSONResponse([job_payload(svc, job) for job in svc.store.list(limit=max(1, min(limit, 1000)))])


@router.get("/jobs/{job_id}", response_model=JobOut)
async def read_job(request: Request, job_id: str) -> JSONResponse:
    """Polled often by every client: answered straight from one indexed SQLite read, no model validation."""
    svc = services(request)
    return JSONResponse(job_payload(svc, get_job(svc, job_id)))


def shared_job_text(svc, job_id: str) -> tuple[str | None, bool]:
    """The job as JSON text for event streams, read once per half interval however many clients listen."""
    now = time.monotonic()
    hit = svc.event_cache.get(job_id)
    if hit is not None and now - hit[0] < SSE_INTERVAL_S / 2:
        return hit[1], hit[2]
    job = svc.store.get(job_id)
    entry = (now, None if job is None else json.dumps(job_payload(svc, job)), job is None or job.is_final)
    if len(svc.event_cache) > 1000:
        svc.event_cache.clear()
    svc.event_cache[job_id] = entry
    return entry[1], entry[2]


@router.get("/jobs/{job_id}/events")
async def job_events(request: Request, job_id: str) -> StreamingResponse:
    svc = services(request)
    get_job(svc, job_id)

    async def stream():
        last, last_sent = None, time.monotonic()
        while True:
            text, final = shared_job_text(svc, job_id)
            if text is None:
                yield f"event: {SSE_DELETED_EVENT}\ndata: {{}}\n\n"
                return
            if text != last:
                last, last_sent = text, time.monotonic()
                yield f"event: {SSE_JOB_EVENT}\ndata: {text}\n\n"
            elif time.monotonic() - last_sent > SSE_HEARTBEAT_S:
                last_sent = time.monotonic()
                yield ": keep-alive\n\n"
            if final:  # a closed connection ends the stream at the next send (starlette watches it)
                return
            await asyncio.sleep(SSE_INTERVAL_S)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post("/jobs/{job_id}/cancel", response_model=JobOut)
async def cancel_job(request: Request, job_id: str) -> dict[str, Any]:
    svc = services(request)
    job = get_job(svc, job_id)
    if job.is_final:
        raise ApiError("job_finished", f"The job has already {job.state}; there is nothing to cancel.")
    if not svc.worker.cancel(job_id):
        job = get_job(svc, job_id)
        if job.is_final:
            raise ApiError("job_finished", f"The job has already {job.state}; there is nothing to cancel.")
    return job_payload(svc, get_job(svc, job_id))


@router.post("/jobs/{job_id}/refine", status_code=202, response_model=JobCreated)
async def refine_job(request: Request, job_id: str) -> JSONResponse:
    """Run TRELLIS.2 on a finished Fast job's input with the draft's structure and seed; the body may set
    TRELLIS.2 parameters (e.g. `{"pipeline_type": "512"}`)."""
    svc = services(request)
    draft = get_job(svc, job_id)
    body = await request.body()
    data = parse_json(body, 'The request body (JSON, e.g. {"pipeline_type": "512"})') if body.strip() else {}
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "The request body must be a JSON object.")
    check_draft(svc.folders, draft)
    status = await run_in_threadpool(svc.engines.engines[REFINE_ENGINE].status)
    if not status.ready:
        raise ApiError("engine_not_installed", status.reason, engine=REFINE_ENGINE)
    params = parse_params(REFINE_ENGINE, json.dumps(refine_params(draft, data)), has_gpu(svc.settings.device))
    job = await run_in_threadpool(create_refine_job, svc.store, svc.folders, draft, params.model_dump())
    svc.worker.notify()
    return JSONResponse({"job_id": job.id}, status_code=202)


@router.post("/jobs/{job_id}/export", response_model=ExportResult)
async def export_job(request: Request, job_id: str) -> dict[str, Any]:
    svc = services(request)
    job = get_job(svc, job_id)
    body = await request.body()
    data = parse_json(body, 'The request body (JSON, e.g. {"format": "obj"})') if body.strip() else {}
    if not isinstance(data, dict):
        raise ApiError("invalid_json", "The request body must be a JSON object.")
    if data.get("name") is None and job.params.get("name"):
        data["name"] = job.params["name"]  # a re-export keeps the asset name the job was made with
    req = validated(ExportRequest, {**device_defaults(ExportRequest, has_gpu(svc.settings.device)), **data})
    if job.state != SUCCEEDED:
        raise ApiError("job_not_succeeded", f"Only a finished job can be exported; this one is {job.state}.")
    generation = svc.folders.path(job_id, GENERATION_FILE)
    if not generation.is_file():
        raise ApiError("generation_missing", "The stored generation of this job is missing; run it again.")
    name = export_file_name(req.format, req)

    def do_export() -> dict[str, Any]:
        with svc.job_locks.hold(job_id), _export_lock:  # a delete waits for this export
            if svc.store.get(job_id) is None:
                raise job_not_found(job_id)
            target = svc.folders.path(job_id, name)
            if not target.is_file():
                meshes = load_generation(generation, device=export_device(svc.settings.device))
                needed = generation.stat().st_size + 2 * req.texture_size**2
                with svc.folders.atomic(job_id, name, needed, f"the {req.format} export") as tmp:
                    export_generation(meshes, req.export_params(), req.format, tmp, converter=svc.converter)
            svc.store.add_file(job_id, name, name)
            return {"name": name, "format": req.format, "bytes": target.stat().st_size}

    result = await run_in_threadpool(do_export)
    ext = vocabulary.export_formats()[req.format].extension
    return {
        **result,
        "url": f"/api/jobs/{job_id}/files/{name}",
        "download_name": download_name(job_id, job.engine, int(job.params.get("seed", 0)), ext),
    }


def export_device(preferred: str | None) -> str:
    import torch

    return preferred or ("cuda" if torch.cuda.is_available() else "cpu")


@router.get("/jobs/{job_id}/files/{name}")
async def job_file(request: Request, job_id: str, name: str) -> FileResponse:
    svc = services(request)
    job = get_job(svc, job_id)
    if name not in job.files and name not in job.inputs:
        raise ApiError("file_not_found", "This job has no file of that name.")
    path = svc.folders.real_file(job_id, name)
    if path is None:
        raise ApiError("file_not_found", "The file is missing from the job folder.")
    suffix = path.suffix.lower()
    headers = {}
    if name not in job.inputs and suffix != ".png":
        seed = int(job.params.get("seed", 0))
        headers["Content-Disposition"] = (
            f'attachment; filename="{download_name(job_id, job.engine, seed, suffix[1:])}"'
        )
    return FileResponse(path, media_type=media_type(suffix), headers=headers)


@router.delete("/jobs/{job_id}", response_model=JobDeleted)
async def delete_job(request: Request, job_id: str) -> dict[str, Any]:
    svc = services(request)
    get_job(svc, job_id)
    lock = svc.job_locks.lock(job_id)
    if not await run_in_threadpool(lock.acquire, True, DELETE_WAIT_S):
        raise ApiError("job_busy", "The job is being exported; try again when that has finished.")
    try:
        job = get_job(svc, job_id)
        if not job.is_final:
            raise ApiError("job_active", f"The job is {job.state}; cancel it before deleting it.")
        svc.store.delete(job_id)
        await run_in_threadpool(svc.folders.remove, job_id)
    finally:
        lock.release()
    svc.job_locks.forget(job_id)
    return {"deleted": job_id}


class JobLocks:
    """One lock per job for the work that must not overlap with its deletion (exports)."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()

    def lock(self, job_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(job_id, threading.Lock())

    @contextmanager
    def hold(self, job_id: str) -> Iterator[None]:
        with self.lock(job_id):
            yield

    def forget(self, job_id: str) -> None:
        with self._guard:
            self._locks.pop(job_id, None)
