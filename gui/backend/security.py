"""Network safety: no web page of another site can drive the server (Host and Origin checks), a token
when the server is reachable beyond this machine, byte limits on every request body enforced while it
streams in (the request is cut off as soon as it crosses the limit), and bounded JSON parsing."""

from __future__ import annotations

import json
import math
import re
import secrets
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import LOOPBACK_HOSTS, Settings
from .errors import ApiError, error_response

UPLOAD_PATH_PREFIXES = ("/api/generate/", "/api/preview/")  # routes that take pictures (the upload limit)
MAX_BODY_BYTES = 64 * 2**10  # every request body that is not an upload (JSON); an upload's `params` too
MAX_JSON_DEPTH = 16  # nesting of arrays and objects (the API's own bodies nest two deep)
MAX_JSON_NUMBER_CHARS = 40  # digits of one number (a seed has ten)
JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
JSON_BRACKET = re.compile(r"[\[\]{}]")


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"The request body is larger than the limit of {limit:,} bytes.")
        self.limit = limit


class BodyLimitMiddleware:
    """Every request body has a byte limit: `max_upload_bytes` for uploads, `MAX_BODY_BYTES` for the rest.
    A body whose declared Content-Length is too big is refused before it is read; one that grows past the
    limit while streaming is cut off (`BodyTooLarge`). Both answer 413."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_upload_bytes = max_upload_bytes
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        upload = scope["path"].startswith(UPLOAD_PATH_PREFIXES)
        limit = self.max_upload_bytes if upload else self.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large(limit, upload)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge(limit)
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large(limit, upload)(scope, receive, send)


def too_large(limit: int, upload: bool = True):
    if upload:
        return error_response(
            "upload_too_large", f"The upload is larger than the limit of {limit / 2**20:.1f} MiB."
        )
    return error_response("request_too_large", f"The request body is larger than {limit:,} bytes.")


def _bounded_number(kind: type):
    def parse(text: str):
        if len(text) > MAX_JSON_NUMBER_CHARS:
            raise ValueError(f"a number of {len(text):,} characters (the limit is {MAX_JSON_NUMBER_CHARS})")
        value = kind(text)
        if not math.isfinite(value):
            raise ValueError(f"{text} is not a finite number")
        return value

    return parse


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


def parse_json(text: str | bytes, what: str) -> Any:
    """JSON from a client, within the limits: size, nesting depth, number length; no NaN or Infinity.
    Anything else is a 400/413 `ApiError` (never a RecursionError or a ValueError from int())."""
    if isinstance(text, (bytes, bytearray)):
        if len(text) > MAX_BODY_BYTES:
            raise ApiError("request_too_large", f"{what} is larger than {MAX_BODY_BYTES:,} bytes.")
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ApiError("invalid_json", f"{what} is not UTF-8 text.") from exc
    if len(text) > MAX_BODY_BYTES:
        raise ApiError("request_too_large", f"{what} is larger than {MAX_BODY_BYTES:,} characters.")
    depth = deepest = 0
    for bracket in JSON_BRACKET.finditer(JSON_STRING.sub("", text)):
        depth += 1 if bracket.group() in "[{" else -1
        deepest = max(deepest, depth)
    if deepest > MAX_JSON_DEPTH:
        raise ApiError("invalid_json", f"{what} nests {deepest} levels deep; the limit is {MAX_JSON_DEPTH}.")
    try:
        return json.loads(
            text,
            parse_int=_bounded_number(int),
            parse_float=_bounded_number(float),
            parse_constant=_no_constant,
        )
    except json.JSONDecodeError as exc:
        raise ApiError(
            "invalid_json", f"{what} is not valid JSON: {exc.msg} (at character {exc.pos})."
        ) from exc
    except (ValueError, RecursionError) as exc:
        raise ApiError("invalid_json", f"{what} is not usable JSON: {exc}.") from exc


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


SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
OWN_FETCH_SITES = ("same-origin", "none")  # `none`: typed in the address bar, a bookmark
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
Origin = tuple[str, str, int]


def parse_origin(text: str) -> Origin | None:
    """`scheme://host[:port]` → (scheme, host, port), lower case, default port filled in; None for anything
    else (`null`, no scheme, user info, a path, a bad port)."""
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return None
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    clean = not (parts.username or parts.password or parts.path or parts.query or parts.fragment)
    if scheme not in DEFAULT_PORTS or not host or not clean:
        return None
    return scheme, host, port if port is not None else DEFAULT_PORTS[scheme]


def host_origin(host_header: str, scheme: str) -> Origin | None:
    """The origin a request was addressed to: its scheme and its `Host` header (`host[:port]`)."""
    return parse_origin(f"{scheme}://{host_header}") if host_header and "/" not in host_header else None


def refuse(code: str, message: str):
    return error_response(code, message)


class HostOriginMiddleware:
    """Only the app's own pages (and non-browser clients) may use the server:

    - bound to loopback, the `Host` must name this machine (`127.0.0.1`, `localhost`, `::1` or the bound
      name, any port): a page of another site whose name was re-pointed at 127.0.0.1 (DNS rebinding) is
      refused;
    - an `Origin` header must be the server's own origin (the `Host` it was reached by, or one of
      `Settings.allowed_origins`); `null` and every other origin are refused, for every method;
    - a state-changing request without `Origin` is refused when the browser marks it as coming from
      another site (`Sec-Fetch-Site`), as are another site's sub-resource loads of `/api`.

    Clients that are not browsers (the CLI, scripts) send neither header and pass."""

    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self.loopback = settings.is_loopback
        self.local_names = {h.lower() for h in LOOPBACK_HOSTS | {settings.host}}
        self.allowed = {o for o in map(parse_origin, settings.allowed_origins) if o is not None}

    def check(self, scope: Scope) -> tuple[str, str] | None:
        """(code, message) of the refusal, or None when the request may pass."""
        headers = dict(scope.get("headers") or [])
        host_header = headers.get(b"host", b"").decode("latin-1")
        scheme = {"ws": "http", "wss": "https"}.get(scope.get("scheme", "http"), scope.get("scheme", "http"))
        host = host_origin(host_header, scheme)
        if self.loopback and (host is None or host[1] not in self.local_names):
            return (
                "host_not_allowed",
                f"This server answers only to its own address, not to {host_header[:100]!r}.",
            )
        origin_header = headers.get(b"origin")
        if origin_header is not None:
            origin = parse_origin(origin_header.decode("latin-1"))
            if origin is None or (origin != host and origin not in self.allowed):
                shown = origin_header.decode("latin-1")[:100]
                return "origin_not_allowed", f"Requests from pages of {shown!r} are refused."
            return None
        site = headers.get(b"sec-fetch-site", b"").decode("latin-1").lower()
        if not site or site in OWN_FETCH_SITES:
            return None
        unsafe = scope.get("method", "GET") not in SAFE_METHODS
        navigation = headers.get(b"sec-fetch-mode", b"").decode("latin-1").lower() == "navigate"
        if unsafe or (scope["path"].startswith("/api") and not navigation):
            return "origin_not_allowed", f"Requests from another site ({site}) are refused."
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] in ("http", "websocket"):
            refusal = self.check(scope)
            if refusal is not None:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": 1008})
                    return
                await refuse(*refusal)(scope, receive, send)
                return
        await self.app(scope, receive, send)
