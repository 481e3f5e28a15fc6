"""`POST /api/preview/cutout`: the cut-out the chosen engine will make of a picture, before Generate
(`cutout.CutoutMaker`). An upload like the generate routes' (the same formats, size and pixel limits and decode
budget; `security.py` lets only the app's own pages post it), and nothing is stored."""

from __future__ import annotations

import io

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from .api_models import ErrorOut
from .cutout import CutoutMaker
from .engines import ENGINES
from .errors import ApiError
from .images import decoded
from .routes import read_form

router = APIRouter(prefix="/api", responses={code: {"model": ErrorOut} for code in (400, 413)})


def cutouts(request: Request) -> CutoutMaker:
    """The server's one `CutoutMaker` (made on the first preview)."""
    state = request.app.state
    if getattr(state, "cutouts", None) is None:
        settings = state.services.settings
        state.cutouts = CutoutMaker(settings.models_dir, settings.idle_unload_s)
    return state.cutouts


@router.post(
    "/preview/cutout",
    response_class=Response,
    summary="Preview the cut-out of a picture",
    description="Multipart `image` (PNG, JPEG or WebP) and `engine` (a key of GET /api/config engines) → "
    "the RGBA PNG that engine will work from: the background removed as its jobs "
    "remove it, the picture as it is when it has transparency. 400 invalid_image when no single object can be "
    "separated from the background.",
    responses={200: {"content": {"image/png": {}}, "description": "the cut-out (PNG with transparency)"}},
)
async def preview_cutout(request: Request) -> Response:
    svc = request.app.state.services
    form = await read_form(request)
    upload = form.get("image")
    engine = form.get("engine")
    if not isinstance(upload, UploadFile):
        raise ApiError("invalid_form", "Send the picture as the multipart file field 'image'.")
    if not isinstance(engine, str) or engine not in ENGINES:
        raise ApiError("invalid_form", f"'engine' must be one of {', '.join(ENGINES)}.")
    maker = cutouts(request)

    def cut() -> bytes:
        with decoded(upload.file, "The image", svc.settings.max_image_pixels, svc.decode_budget) as image:
            rgba = maker.cut_out(image, engine, ENGINES[engine].label)
        out = io.BytesIO()
        rgba.save(out, format="PNG", compress_level=1)
        return out.getvalue()

    return Response(
        await run_in_threadpool(cut), media_type="image/png", headers={"Cache-Control": "no-store"}
    )
