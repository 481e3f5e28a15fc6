"""The bad-request matrix: every case gets its documented status and error code, and the server stays healthy."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from .conftest import LiveServer, png_bytes, submit

GOOD = png_bytes()


def image_form(data: bytes, params: dict | str | None = None, field: str = "image", count: int = 1):
    files = [(field, (f"view{i}.png", data, "image/png")) for i in range(count)]
    body = {"params": params if isinstance(params, str) else json.dumps(params or {})}
    return {"files": files, "data": body}


def streamed_multipart(size: int):
    """A valid multipart body with one `size`-byte file part, sent chunked (no Content-Length)."""
    yield b'--zzz\r\nContent-Disposition: form-data; name="image"; filename="a.png"\r\n'
    yield b"Content-Type: image/png\r\n\r\n"
    for _ in range(size // 65536):
        yield b"\x89" * 65536
    yield b"\r\n--zzz--\r\n"


def big_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (side, side), (10, 200, 10)).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def finished_jobs(fake_server: LiveServer) -> dict[str, str]:
    ok = submit(fake_server)
    failed = submit(fake_server, {"seed": 13})  # the fake engine's out-of-memory seed
    fake_server.wait_state(ok, ("succeeded",))
    fake_server.wait_state(failed, ("failed",))
    return {"ok": ok, "failed": failed}


def post_image(**form):
    return lambda c, jobs: c.post("/api/generate/image", **form)


CASES = {
    "not an image": (post_image(**image_form(b"hello, I am a text file" * 10)), 400, "invalid_image"),
    "truncated PNG": (post_image(**image_form(GOOD[: len(GOOD) // 2])), 400, "invalid_image"),
    "0-byte file": (post_image(**image_form(b"")), 400, "empty_file"),
    "oversized upload (Content-Length)": (
        post_image(**image_form(b"\0" * (2 * 2**20))),
        413,
        "upload_too_large",
    ),
    "oversized upload (streamed, no length)": (
        lambda c, jobs: c.post(
            "/api/generate/image",
            content=streamed_multipart(3 * 2**20),
            headers={"content-type": "multipart/form-data; boundary=zzz"},
        ),
        413,
        "upload_too_large",
    ),
    "too many pixels": (post_image(**image_form(big_png(400))), 413, "image_too_large"),
    "9 views": (
        lambda c, jobs: c.post("/api/generate/multiview", **image_form(GOOD, field="images", count=9)),
        400,
        "wrong_image_count",
    ),
    "1 view for multi-view": (
        lambda c, jobs: c.post("/api/generate/multiview", **image_form(GOOD, field="images", count=1)),
        400,
        "wrong_image_count",
    ),
    "2 images for single-image": (post_image(**image_form(GOOD, count=2)), 400, "wrong_image_count"),
    "unknown pipeline_type": (
        post_image(**image_form(GOOD, {"pipeline_type": "2048"})),
        422,
        "invalid_parameters",
    ),
    "unknown parameter name": (post_image(**image_form(GOOD, {"stepz": 3})), 422, "invalid_parameters"),
    "unknown multi-view mode": (
        lambda c, jobs: c.post(
            "/api/generate/multiview", **image_form(GOOD, {"mode": "average"}, field="images", count=2)
        ),
        422,
        "invalid_parameters",
    ),
    "steps out of range": (
        post_image(**image_form(GOOD, {"shape_slat_sampler_params": {"steps": 51}})),
        422,
        "invalid_parameters",
    ),
    "guidance out of range": (
        post_image(**image_form(GOOD, {"tex_slat_sampler_params": {"guidance_strength": 0.5}})),
        422,
        "invalid_parameters",
    ),
    "texture size out of range": (
        post_image(**image_form(GOOD, {"texture_size": 8192})),
        422,
        "invalid_parameters",
    ),
    "negative seed": (post_image(**image_form(GOOD, {"seed": -1})), 422, "invalid_parameters"),
    "non-JSON params": (post_image(**image_form(GOOD, "{seed: 1")), 400, "invalid_json"),
    "params not an object": (post_image(**image_form(GOOD, "[1, 2]")), 400, "invalid_json"),
    "JSON body instead of multipart": (
        lambda c, jobs: c.post("/api/generate/image", json={"seed": 1}),
        400,
        "invalid_form",
    ),
    "non-JSON export body": (
        lambda c, jobs: c.post(f"/api/jobs/{jobs['ok']}/export", content=b"format=obj"),
        400,
        "invalid_json",
    ),
    "unknown export format": (
        lambda c, jobs: c.post(f"/api/jobs/{jobs['ok']}/export", json={"format": "fbx"}),
        422,
        "invalid_parameters",
    ),
    "unknown job id": (lambda c, jobs: c.get("/api/jobs/" + "0" * 32), 404, "job_not_found"),
    "path-like job id": (lambda c, jobs: c.get("/api/jobs/..%2F..%2Fgenesis.db"), 404, "not_found"),
    "path-like job id (dots)": (lambda c, jobs: c.get("/api/jobs/..%2E"), 404, "job_not_found"),
    "path-like file name": (
        lambda c, jobs: c.get(f"/api/jobs/{jobs['ok']}/files/..%2F..%2Fgenesis.db"),
        404,
        "not_found",
    ),
    "dotted file name": (lambda c, jobs: c.get(f"/api/jobs/{jobs['ok']}/files/..%2E"), 404, "file_not_found"),
    "generation file is not served": (
        lambda c, jobs: c.get(f"/api/jobs/{jobs['ok']}/files/generation.npz"),
        404,
        "file_not_found",
    ),
    "cancel of a finished job": (
        lambda c, jobs: c.post(f"/api/jobs/{jobs['ok']}/cancel"),
        409,
        "job_finished",
    ),
    "export of a failed job": (
        lambda c, jobs: c.post(f"/api/jobs/{jobs['failed']}/export", json={"format": "glb"}),
        409,
        "job_not_succeeded",
    ),
    "engine not installed": (post_image(**image_form(GOOD)), 503, "engine_not_installed"),
    "unknown route": (lambda c, jobs: c.get("/api/nothing-here"), 404, "not_found"),
    "wrong method": (lambda c, jobs: c.put(f"/api/jobs/{jobs['ok']}"), 405, "method_not_allowed"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_request(fake_server: LiveServer, finished_jobs, case: str):
    send, status, code = CASES[case]
    client = fake_server.client
    if case == "engine not installed":
        response = client.post("/api/generate/fast", files=[("image", ("a.png", GOOD, "image/png"))])
    else:
        response = send(client, finished_jobs)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"]["code"] == code, body
    assert body["error"]["message"] and "Traceback" not in response.text
    assert client.get("/api/health").json()["status"] == "ok"


def test_matrix_leaves_no_stray_jobs_and_the_queue_still_works(fake_server: LiveServer, finished_jobs):
    job_id = submit(fake_server)
    assert fake_server.wait_state(job_id, ("succeeded",))["state"] == "succeeded"
