"""Every error code the service sends, once: its HTTP status (`None`: a job's failure, reported in the job),
the message it carries when nothing more specific is known, and a hint a person can act on.

API errors are rendered as `{"error": {"code", "message", "hint"}}` (DESIGN.md), a failed job's `error` the same
way; `GET /api/config` serves the whole table. A new code is one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi.responses import JSONResponse

from .config import COMMAND_NAME

DOWNLOAD_COMMAND = f"{COMMAND_NAME} models download"
LOWER_SETTINGS = (
    "Choose pipeline type 512 or 1024 and a smaller texture size, and close other programs using the GPU."
)
PICTURE = "Use a PNG, JPEG or WebP picture of one object."


@dataclass(frozen=True)
class ErrorCode:
    status: int | None
    message: str
    hint: str


ERROR_CODES: dict[str, ErrorCode] = {
    # requests
    "bad_request": ErrorCode(400, "The request could not be understood.", "Check what the client sends."),
    "invalid_form": ErrorCode(
        400,
        "The multipart form could not be read.",
        "Send the image(s) as multipart/form-data with a file field and 'params'.",
    ),
    "invalid_json": ErrorCode(400, "The JSON could not be read.", "Send a JSON object."),
    "empty_file": ErrorCode(400, "The uploaded file is empty.", PICTURE),
    "wrong_image_count": ErrorCode(
        400,
        "This engine takes another number of images.",
        "Add one image for Image mode, two to eight views for Multi-view.",
    ),
    "invalid_image": ErrorCode(400, "The file is not an image that can be used.", PICTURE),
    "unauthorized": ErrorCode(
        401,
        "This server requires its access token.",
        "Open the address with its access token (…/?token=…) as printed by the server.",
    ),
    "host_not_allowed": ErrorCode(
        403,
        "This server answers only to its own address.",
        "Open the server by the address it printed (http://127.0.0.1:PORT or http://localhost:PORT).",
    ),
    "origin_not_allowed": ErrorCode(
        403,
        "Requests from pages of other sites are refused.",
        "Use the Genesis window or the page the server serves; add a trusted origin with --allow-origin.",
    ),
    "not_found": ErrorCode(404, "Nothing is at this address.", "Check the address."),
    "job_not_found": ErrorCode(
        404, "There is no such job.", "The job may have been deleted; reload the job list."
    ),
    "file_not_found": ErrorCode(404, "The job has no such file.", "Export the model again."),
    "method_not_allowed": ErrorCode(
        405, "This method is not allowed here.", "Check the API documentation (/api/docs)."
    ),
    "job_finished": ErrorCode(409, "The job has already finished.", "There is nothing to cancel."),
    "job_not_succeeded": ErrorCode(
        409, "Only a finished job can be exported.", "Wait until the job has succeeded."
    ),
    "job_not_draft": ErrorCode(
        409, "This job cannot be refined.", "Refine a finished Fast job made with this version of Genesis."
    ),
    "job_active": ErrorCode(409, "The job is still queued or running.", "Cancel it before deleting it."),
    "job_busy": ErrorCode(409, "The job is being exported.", "Try again when the export has finished."),
    "generation_missing": ErrorCode(
        409, "The stored generation of this job is missing.", "Generate the model again."
    ),
    "upload_too_large": ErrorCode(413, "The upload is too large.", "Use a smaller picture file."),
    "request_too_large": ErrorCode(
        413, "The request body is too large.", "Send the JSON the API documents (a few hundred bytes)."
    ),
    "image_too_large": ErrorCode(
        413,
        "The image has too many pixels.",
        "Use a smaller picture (a few thousand pixels on each side is plenty).",
    ),
    "invalid_parameters": ErrorCode(
        422, "A parameter is not valid.", "Change the value named in the message."
    ),
    "http_error": ErrorCode(None, "The server refused the request.", "Check the request against /api/docs."),
    "internal_error": ErrorCode(
        500, "The server hit an unexpected error.", "See the server's log for details."
    ),
    "disk_full": ErrorCode(
        507,
        "The disk holding the data folder is full.",
        "Free some disk space (or delete old jobs), then try again.",
    ),
    "server_busy": ErrorCode(
        503,
        "The server is busy decoding other uploads.",
        "Try again in a moment; send smaller pictures.",
    ),
    "engine_not_installed": ErrorCode(
        503,
        "This engine is not installed on the server.",
        "Use another engine, or install what the message says is missing.",
    ),
    # failed jobs
    "out_of_memory": ErrorCode(None, "The GPU ran out of memory.", LOWER_SETTINGS),
    "model_missing": ErrorCode(
        None,
        "A model the job needs is not in the models folder.",
        f"Download the models with `{DOWNLOAD_COMMAND}`, then try again.",
    ),
    "engine_error": ErrorCode(
        None, "The engine failed.", "Try another seed or image; if it keeps failing, see the server's log."
    ),
    "worker_crashed": ErrorCode(
        None,
        "The engine process stopped unexpectedly while running this job (a crash in a "
        "native library or the system running out of memory). The server restarted it.",
        f"Generate it again; if it happens again: {LOWER_SETTINGS}",
    ),
    "interrupted": ErrorCode(
        None, "The server stopped while this job was running (crash or restart).", "Generate it again."
    ),
    "cancelled": ErrorCode(None, "Cancelled while running.", "Generate it again when you want the model."),
}


def error_info(code: str) -> ErrorCode:
    return ERROR_CODES[code]


def error_hint(code: str) -> str:
    """What a person can do about `code` ('' for a code of no table, e.g. from an older database)."""
    return ERROR_CODES[code].hint if code in ERROR_CODES else ""


class ApiError(Exception):
    """A failure to report to the client: a code of `ERROR_CODES` (which gives the HTTP status) and a message."""

    def __init__(self, code: str, message: str | None = None, **details: Any) -> None:
        info = error_info(code)
        super().__init__(message or info.message)
        self.status = info.status or 500
        self.code = code
        self.message = message or info.message
        self.details = details

    def response(self) -> JSONResponse:
        return error_response(self.code, self.message, status=self.status, **self.details)


def error_response(
    code: str, message: str | None = None, status: int | None = None, **details: Any
) -> JSONResponse:
    """`{"error": {"code", "message", "details"?}}` with the code's status (or `status` for codes that vary)."""
    body: dict[str, Any] = {
        "code": code,
        "message": message or error_info(code).message,
        "hint": error_hint(code),
    }
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status or error_info(code).status or 500)


def job_not_found(job_id: str) -> ApiError:
    return ApiError("job_not_found", f"There is no job with id {job_id!r}.")


def error_table() -> dict[str, dict[str, Any]]:
    """The table for `GET /api/config`."""
    return {
        code: {"status": e.status, "message": e.message, "hint": e.hint} for code, e in ERROR_CODES.items()
    }
