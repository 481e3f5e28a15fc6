"""API errors: one exception type, rendered as `{"error": {"code", "message"}}` (DESIGN.md)."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """A failure to report to the client, with an HTTP status and a stable machine-readable code."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, **self.details)


def error_response(status: int, code: str, message: str, **details: Any) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if details:
        body["details"] = details
    return JSONResponse({"error": body}, status_code=status)


def job_not_found(job_id: str) -> ApiError:
    return ApiError(404, "job_not_found", f"There is no job with id {job_id!r}.")
