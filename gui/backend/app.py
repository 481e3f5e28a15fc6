"""The ASGI application: wiring of settings, store, worker, engines, middleware and routes."""

from __future__ import annotations

import logging
import sqlite3
import threading
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.exceptions import HTTPException as StarletteHTTPException

from .api_docs import docs_page
from .config import REPO_ROOT, Settings
from .engines import EngineManager
from .errors import ApiError, error_response
from .files import MANIFEST_FILE, DiskReserve, JobFolders, disk_full_message, is_disk_full
from .images import DecodeBudget, return_freed_pixels_to_the_system
from .routes import JobLocks, router
from .routes_models import router as models_router
from .routes_preview import router as preview_router
from .security import BodyLimitMiddleware, HostOriginMiddleware, TokenMiddleware
from .store import JobStore
from .worker_process import EngineSpec, WorkerProcess

log = logging.getLogger("genesis.server")
RENDERER_DIR = REPO_ROOT / "gui" / "electron" / "renderer"


class Services:
    """Everything a request handler needs, created at start-up."""

    def __init__(self, settings: Settings, spec: EngineSpec) -> None:
        self.settings = settings
        self.store = JobStore(settings.data_dir)
        self.folders = JobFolders(settings.data_dir)
        self.engines = EngineManager(
            spec.build(settings), settings.idle_unload_s
        )  # statuses only: never loaded here
        self.converter = spec.build_converter()
        self.decode_budget = DecodeBudget.for_pixels(settings.max_image_pixels)
        return_freed_pixels_to_the_system()
        self.reserve = DiskReserve(settings.data_dir)
        self.job_locks = JobLocks()
        self.worker = WorkerProcess(settings, spec, self.store)
        self.event_cache: dict[str, tuple[float, str | None, bool]] = {}  # job id → (read at, JSON, final)

    def recover(self) -> None:
        """After a crash: running jobs become failed and half-written files go. Job folders the database
        does not list are never deleted: re-adopted from their `job.json`, or kept and reported."""
        failed = self.store.recover_after_crash()
        if failed:
            log.warning("%d job(s) were interrupted by a crash and are marked failed", len(failed))
        self.folders.clean_temporaries()
        self.reserve.ensure()
        found = self.store.adopt_folders()
        if found.adopted:
            log.warning(
                "re-adopted %d job(s) the database did not list, from their folders' %s",
                len(found.adopted),
                MANIFEST_FILE,
            )
        if found.kept:
            shown = ", ".join(found.kept[:5]) + (" …" if len(found.kept) > 5 else "")
            log.warning(
                "kept %d folder(s) in %s that no job owns (nothing was deleted): %s",
                len(found.kept),
                self.folders.root,
                shown,
            )


def create_app(settings: Settings | None = None, spec: EngineSpec | None = None) -> FastAPI:
    """Build the server. `spec` says which engines the worker process builds (tests use small ones)."""
    settings = settings or Settings()
    settings.ensure_token()
    spec = spec or EngineSpec()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        services = Services(settings, spec)
        services.recover()
        services.worker.start()
        # the first status check imports the engine packages (seconds): do it now, off the event loop
        threading.Thread(target=services.engines.statuses, name="genesis-warm-up", daemon=True).start()
        app.state.services = services
        try:
            yield
        finally:
            services.worker.stop()
            services.store.close()

    from . import __version__

    app = FastAPI(
        title="Genesis job server",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,  # our own page (api_docs): the stock one loads its scripts from a CDN
        openapi_url="/api/openapi.json",
        redoc_url=None,
    )

    @app.get("/api/docs", include_in_schema=False)
    def api_reference() -> HTMLResponse:
        return HTMLResponse(docs_page(app.openapi()))

    app.state.settings = settings
    install_error_handlers(app)
    app.include_router(router)
    app.include_router(models_router)
    app.include_router(preview_router)
    mount_renderer(app, RENDERER_DIR)
    # the last added runs first: Host/Origin, then the token, then the body limits, then CORS (which only
    # ever sees origins the first check let through)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.allowed_origins,
        allow_methods=["GET", "POST", "DELETE"],
        allow_headers=["Authorization", "X-Genesis-Token", "Content-Type"],
    )
    app.add_middleware(BodyLimitMiddleware, max_upload_bytes=settings.max_upload_bytes)
    app.add_middleware(TokenMiddleware, token=settings.token)
    app.add_middleware(HostOriginMiddleware, settings=settings)
    return app


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError):
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError):
        return error_response(
            "invalid_parameters",
            "The request is not valid.",
            errors=[{"loc": list(e.get("loc", [])), "msg": e.get("msg", "")} for e in exc.errors()],
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        code = codes.get(exc.status_code, "http_error")
        message = f"Nothing is at {request.url.path}." if exc.status_code == 404 else None
        return error_response(
            code, message or (None if code != "http_error" else str(exc.detail)), status=exc.status_code
        )

    async def unexpected(request: Request, exc: Exception):
        if is_disk_full(exc):  # whichever write hit it: an upload, the database, an export
            settings: Settings = request.app.state.settings
            log.warning("disk full on %s %s: %s", request.method, request.url.path, exc)
            return error_response("disk_full", disk_full_message(exc, settings.data_dir, "this request"))
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response("internal_error")

    # OSError and sqlite3.Error get their own handlers: answered there (a full disk is no crash)
    for kind in (OSError, sqlite3.Error, Exception):
        app.add_exception_handler(kind, unexpected)


def mount_renderer(app: FastAPI, folder: Path) -> None:
    """The web UI at `/` when the renderer is present; a plain page otherwise."""
    if (folder / "index.html").is_file():
        app.mount("/", StaticFiles(directory=folder, html=True), name="renderer")
        return

    @app.get("/", include_in_schema=False)
    async def no_renderer():
        return HTMLResponse(
            "<!doctype html><title>Genesis</title><p>The Genesis job server is running. "
            "The web interface is not installed; the API is under <a href='/api/docs'>/api</a>."
        )
