"""Network safety: a token when the server is reachable beyond this machine, and upload byte limits
enforced while the body streams in (the request is cut off as soon as it crosses the limit)."""

from __future__ import annotations

import secrets
from urllib.parse import parse_qs

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_response

UPLOAD_PATH_PREFIX = "/api/generate/"


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The upload is larger than the limit of {limit / 2**20:.0f} MiB.")
        self.limit = limit


class UploadLimitMiddleware:
    """Rejects an upload whose declared Content-Length is too big before reading it, and stops reading
    one that grows past the limit while streaming (`UploadTooLarge`, answered with 413)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(UPLOAD_PATH_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(self.max_bytes)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except UploadTooLarge:
            if not started:
                await too_large(self.max_bytes)(scope, receive, send)


def too_large(limit: int):
    return error_response(
        "upload_too_large", f"The upload is larger than the limit of {limit / 2**20:.1f} MiB."
    )


class TokenMiddleware:
    """When a token is configured, every `/api` request must carry it: `Authorization: Bearer <token>`,
    `X-Genesis-Token: <token>`, or `?token=<token>` (for EventSource and download links)."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        self.app = app
        self.token = token

    def _presented(self, scope: Scope) -> str | None:
        headers = dict(scope.get("headers") or [])
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            return auth[7:].strip()
        if b"x-genesis-token" in headers:
            return headers[b"x-genesis-token"].decode("latin-1")
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        return (query.get("token") or [None])[0]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.token
            and scope["type"] == "http"
            and scope["path"].startswith("/api")
            and scope.get("method") != "OPTIONS"
        ):
            presented = self._presented(scope) or ""
            if not secrets.compare_digest(presented.encode(), self.token.encode()):
                response = error_response(
                    "unauthorized", "This server requires its access token (Authorization: Bearer ...)."
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
