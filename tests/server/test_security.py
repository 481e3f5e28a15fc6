"""Hardening of the job server: no web page of another site can drive it (Host and Origin checks), uploads
never reach a decoder outside the accepted formats, request bodies and JSON are bounded, files are served
only from inside their job folder."""

from __future__ import annotations

import io
import json
import math
import os
import struct
import threading
import time
import zlib
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from gui.backend.app import create_app
from gui.backend.config import Settings
from gui.backend.errors import ApiError
from gui.backend.files import JobFolders
from gui.backend.images import ACCEPTED_FORMATS, DECODE_BYTES_PER_PIXEL, DecodeBudget, decode_upload, decoded
from gui.backend.security import host_origin, parse_origin
from gui.backend.worker_process import EngineSpec

from .conftest import FAKE_ENGINES, LiveServer, app_in_process, fake_server_cmd, png_bytes, submit

FAKE_SPEC = EngineSpec(FAKE_ENGINES)
EVIL = "https://evil.example"


@pytest.fixture(scope="module")
def offline(tmp_path_factory) -> TestClient:
    """The app without its lifespan (no worker): enough for the checks that run before any route."""
    tmp = tmp_path_factory.mktemp("security")
    app = create_app(Settings(models_dir=tmp / "models", data_dir=tmp / "data", port=8741), FAKE_SPEC)
    return TestClient(app, base_url="http://127.0.0.1:8741")


def error_code(response) -> str:
    return response.json()["error"]["code"]


# -- Host / Origin -----------------------------------------------------------------------------------------
def test_origins_are_parsed_not_compared_as_strings():
    assert parse_origin("http://127.0.0.1:8741") == ("http", "127.0.0.1", 8741)
    assert parse_origin("HTTP://LocalHost") == ("http", "localhost", 80)
    assert host_origin("[::1]:9", "http") == ("http", "::1", 9)
    for bad in ("null", "http://127.0.0.1:8741@evil.example", "http://a/b", "file://x", "http://h:99999", ""):
        assert parse_origin(bad) is None, bad
    for bad in ("127.0.0.1:8741@evil.example", "a/b", "", "h:x"):
        assert host_origin(bad, "http") is None, bad


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8741", "127.0.0.1.evil.example", "0.0.0.0"])
def test_dns_rebinding_host_is_refused(offline: TestClient, host: str):
    for method, path in (("GET", "/api/jobs"), ("GET", "/"), ("POST", "/api/generate/image")):
        r = offline.request(method, path, headers={"Host": host})
        assert r.status_code == 403 and error_code(r) == "host_not_allowed", (method, path, r.text)


@pytest.mark.parametrize(
    "host", ["127.0.0.1:8741", "localhost:8741", "LOCALHOST", "[::1]:8741", "127.0.0.1:9999"]
)
def test_own_names_pass_the_host_check(offline: TestClient, host: str):
    r = offline.get("/api/openapi.json", headers={"Host": host})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "origin",
    ["null", EVIL, "http://127.0.0.1:8741@evil.example", "http://127.0.0.1:8742", "https://127.0.0.1:8741"],
)
def test_foreign_origins_are_refused_for_every_method(offline: TestClient, origin: str):
    for method in ("GET", "POST", "DELETE", "OPTIONS"):
        r = offline.request(
            method, "/api/jobs", headers={"Origin": origin, "Access-Control-Request-Method": "POST"}
        )
        assert r.status_code == 403 and error_code(r) == "origin_not_allowed", (method, origin, r.text)
        assert "access-control-allow-origin" not in r.headers


def test_cross_site_requests_without_origin_are_refused(offline: TestClient):
    cross = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "no-cors"}
    assert (
        error_code(offline.post("/api/jobs/" + "0" * 32 + "/cancel", headers=cross)) == "origin_not_allowed"
    )
    assert offline.get("/api/openapi.json", headers=cross).status_code == 403, "another site's <img>/<script>"
    same_site = {"Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors"}
    assert offline.delete("/api/jobs/" + "0" * 32, headers=same_site).status_code == 403
    navigation = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate"}
    assert offline.get("/api/openapi.json", headers=navigation).status_code == 200, "a link may open a page"
    own = {"Sec-Fetch-Site": "same-origin", "Origin": "http://127.0.0.1:8741"}
    assert offline.get("/api/openapi.json", headers=own).status_code == 200


def test_own_origin_passes_and_gets_no_cors_for_others(offline: TestClient):
    r = offline.get("/api/openapi.json", headers={"Origin": "http://127.0.0.1:8741"})
    assert r.status_code == 200
    r = offline.get(
        "/api/openapi.json", headers={"Host": "localhost:8741", "Origin": "http://localhost:8741"}
    )
    assert r.status_code == 200


def test_a_non_loopback_bind_still_needs_its_token_from_its_own_origin(tmp_path):
    settings = Settings(models_dir=tmp_path, data_dir=tmp_path / "d", host="0.0.0.0", port=8741, token="t0k")
    client = TestClient(create_app(settings, FAKE_SPEC), base_url="http://192.168.1.5:8741")
    assert error_code(client.get("/api/openapi.json")) == "unauthorized"
    assert client.get("/api/openapi.json", headers={"Authorization": "Bearer t0k"}).status_code == 200
    r = client.get("/api/openapi.json?token=t0k", headers={"Origin": EVIL})
    assert r.status_code == 403 and error_code(r) == "origin_not_allowed"


def test_live_server_refuses_other_sites_and_serves_its_own_ui(fake_server: LiveServer):
    """Against the real server: a rebinding request, a cross-site form POST and a `null` origin are all
    refused and create nothing; the same requests from the app's own origin (and from the CLI's httpx,
    which sends no Origin) work."""
    client, url = fake_server.client, fake_server.url
    before = len(client.get("/api/jobs").json())
    port = url.rsplit(":", 1)[1]
    rebinding = client.get("/api/jobs", headers={"Host": f"attacker.example:{port}"})
    assert rebinding.status_code == 403 and error_code(rebinding) == "host_not_allowed"
    form = {"params": "{}"}
    files = {"image": ("a.png", png_bytes(), "image/png")}
    for origin in (EVIL, "null"):
        r = client.post("/api/generate/image", data=form, files=files, headers={"Origin": origin})
        assert r.status_code == 403 and error_code(r) == "origin_not_allowed", r.text
    plain_form = client.post(
        "/api/generate/image",
        content=b"params=%7B%7D",
        headers={"Origin": EVIL, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert plain_form.status_code == 403
    assert len(client.get("/api/jobs").json()) == before, "nothing was created"
    own = client.post("/api/generate/image", data=form, files=files, headers={"Origin": url})
    assert own.status_code == 202, own.text
    fake_server.wait_state(own.json()["job_id"], ("succeeded",))
    assert client.get("/", headers={"Origin": url, "Sec-Fetch-Site": "same-origin"}).status_code == 200
    job_id = submit(fake_server)
    assert fake_server.wait_state(job_id, ("succeeded",))["state"] == "succeeded"
    assert client.get(f"/api/jobs/{job_id}", headers={"Origin": EVIL}).status_code == 403
    assert json.loads(client.get(f"/api/jobs/{job_id}").text)["id"] == job_id


# -- uploads -----------------------------------------------------------------------------------------------
def png_header(width: int, height: int) -> bytes:
    """A PNG that claims `width` x `height` pixels, with (almost) no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    idat = zlib.compress(b"\0" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def encoded(fmt: str, size=(32, 32), **options) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(buf, format=fmt, **options)
    return buf.getvalue()


EPS = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 32 32\n0 0 moveto 32 32 lineto stroke\nshowpage\n%%EOF\n"


def test_only_png_jpeg_and_webp_reach_a_decoder(monkeypatch):
    from PIL import EpsImagePlugin

    opened = []
    monkeypatch.setattr(EpsImagePlugin.EpsImageFile, "_open", lambda self: opened.append("eps"))
    monkeypatch.setattr(EpsImagePlugin, "Ghostscript", lambda *a, **k: opened.append("gs"))
    for name, data in {
        "EPS": EPS,
        "PS with a binary header": b"\xc5\xd0\xd3\xc6" + EPS,
        "BMP": encoded("BMP"),
        "GIF": encoded("GIF"),
        "TIFF": encoded("TIFF"),
        "ICO": encoded("ICO"),
        "PPM": encoded("PPM"),
    }.items():
        with pytest.raises(ApiError) as err:
            decode_upload(data, name, 10**6)
        assert err.value.code == "invalid_image" and "PNG, JPEG or WebP" in err.value.message, name
    assert opened == [], "no other plugin (and never Ghostscript) was asked to open an upload"
    for fmt in ACCEPTED_FORMATS:
        assert decode_upload(encoded(fmt), fmt, 10**6).size == (32, 32)


@pytest.mark.parametrize("side", [3000, 20000, 65535])
def test_the_pixel_limit_is_checked_from_the_header_with_413(side: int):
    """Also beyond Pillow's own bomb limits (89 and 179 megapixels), which used to end as 400."""
    with pytest.raises(ApiError) as err:
        decode_upload(png_header(side, side), "The image", 4_000_000)
    assert err.value.code == "image_too_large" and err.value.status == 413


def test_the_decode_budget_bounds_concurrent_decodes():
    budget = DecodeBudget(limit_bytes=3 * DECODE_BYTES_PER_PIXEL * 100 * 100)
    data = encoded("PNG", (100, 100))
    inside, peak = [0], [0]
    lock = threading.Lock()

    def one() -> None:
        with decoded(data, "x", 10**6, budget):
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
            time.sleep(0.02)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=one) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak[0] <= 3 and budget.peak <= budget.limit and budget.used == 0
    with pytest.raises(ApiError) as err, budget.reserve(budget.limit), budget.reserve(1, timeout=0.05):
        pass
    assert err.value.code == "server_busy" and err.value.status == 503


def test_live_uploads_of_other_formats_and_bombs_get_their_codes(fake_server: LiveServer):
    cases = {
        "eps": (EPS, 400, "invalid_image"),
        "huge header": (png_header(30000, 30000), 413, "image_too_large"),
        "gif": (encoded("GIF"), 400, "invalid_image"),
    }
    for name, (data, status, code) in cases.items():
        r = fake_server.client.post(
            "/api/generate/image", files={"image": ("a.png", data, "image/png")}, data={"params": "{}"}
        )
        assert r.status_code == status and error_code(r) == code, (name, r.text)
    views = [("images", (f"v{i}.png", png_bytes(), "image/png")) for i in range(3)]
    views.append(("images", ("bad.png", EPS, "image/png")))
    before = set((fake_server.data_dir / "jobs").iterdir())
    r = fake_server.client.post("/api/generate/multiview", files=views, data={"params": "{}"})
    assert r.status_code == 400 and "Image 4" in r.json()["error"]["message"]
    assert set((fake_server.data_dir / "jobs").iterdir()) == before, "a refused request leaves no folder"


# -- request parsing -------------------------------------------------------------------------------------
def streamed(size: int):
    for _ in range(size // 65536):
        yield b" " * 65536


@pytest.fixture(scope="module")
def done_job(fake_server: LiveServer) -> str:
    job_id = submit(fake_server)
    fake_server.wait_state(job_id, ("succeeded",))
    return job_id


def test_pathological_json_is_a_400_or_413_never_a_500(fake_server: LiveServer, done_job: str):
    client = fake_server.client
    export = f"/api/jobs/{done_job}/export"
    long_number = "1" * 5000
    deep = "[" * 5000 + "]" * 5000
    image = {"image": ("a.png", png_bytes(), "image/png")}
    cases = {
        "params: 5,000-digit number": (
            lambda: client.post(
                "/api/generate/image", files=image, data={"params": f'{{"seed": {long_number}}}'}
            ),
            400,
            "invalid_json",
        ),
        "params: nested 5,000 deep": (
            lambda: client.post("/api/generate/image", files=image, data={"params": f'{{"a": {deep}}}'}),
            400,
            "invalid_json",
        ),
        "params: 100 kB": (
            lambda: client.post(
                "/api/generate/image", files=image, data={"params": "{" + " " * 100_000 + "}"}
            ),
            413,
            "request_too_large",
        ),
        "export: 5,000-digit number": (
            lambda: client.post(export, content=f'{{"texture_size": {long_number}}}'),
            400,
            "invalid_json",
        ),
        "export: huge exponent": (
            lambda: client.post(export, content=b'{"texture_size": 1e99999}'),
            400,
            "invalid_json",
        ),
        "export: NaN": (lambda: client.post(export, content=b'{"texture_size": NaN}'), 400, "invalid_json"),
        "export: nested": (lambda: client.post(export, content=f'{{"format": {deep}}}'), 400, "invalid_json"),
        "export: not UTF-8": (
            lambda: client.post(export, content=b'{"format": "\xff"}'),
            400,
            "invalid_json",
        ),
        "export: 200 kB": (
            lambda: client.post(export, content=b'{"format": "glb"' + b" " * 200_000 + b"}"),
            413,
            "request_too_large",
        ),
        "export: streamed, no length": (
            lambda: client.post(
                export, content=streamed(2 * 2**20), headers={"content-type": "application/json"}
            ),
            413,
            "request_too_large",
        ),
        "cancel with a body": (
            lambda: client.post(f"/api/jobs/{done_job}/cancel", content=b"x" * 100_000),
            413,
            "request_too_large",
        ),
    }
    for name, (send, status, code) in cases.items():
        r = send()
        assert r.status_code == status and error_code(r) == code, (name, r.status_code, r.text[:300])
        assert "Traceback" not in r.text
    assert client.get("/api/health").json()["status"] == "ok"
    ok = client.post(export, json={"format": "glb"})
    assert ok.status_code == 200, ok.text


# -- files and processes ---------------------------------------------------------------------------------
def test_symlinks_out_of_the_job_folder_are_not_followed(tmp_path):
    folders = JobFolders(tmp_path)
    job_id, other = "a" * 32, "b" * 32
    folders.write_bytes(job_id, "model.glb", b"glb")
    folders.write_bytes(other, "model.glb", b"other")
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    assert folders.real_file(job_id, "model.glb") == folders.path(job_id, "model.glb").resolve()
    (folders.folder(job_id) / "out.glb").symlink_to(secret)
    (folders.folder(job_id) / "sideways.glb").symlink_to(folders.path(other, "model.glb"))
    (folders.folder(job_id) / "dir.glb").mkdir()
    for name in ("out.glb", "sideways.glb", "dir.glb", "missing.glb"):
        assert folders.real_file(job_id, name) is None, name
    linked = "c" * 32
    (folders.root / linked).symlink_to(folders.folder(other), target_is_directory=True)
    assert folders.real_file(linked, "model.glb") is None, "a job folder that is a link is refused"


def test_live_server_serves_no_file_through_a_symlink(fake_server: LiveServer, done_job: str):
    folder = fake_server.data_dir / "jobs" / done_job
    url = f"/api/jobs/{done_job}/files/model.glb"
    assert fake_server.client.get(url).status_code == 200
    model = folder / "model.glb"
    kept = folder / "model.kept"
    model.rename(kept)
    model.symlink_to(fake_server.data_dir / "genesis.db")
    try:
        r = fake_server.client.get(url)
        assert r.status_code == 404 and error_code(r) == "file_not_found"
        assert b"SQLite" not in r.content
    finally:
        model.unlink()
        kept.rename(model)


@pytest.fixture(scope="module")
def inproc(tmp_path_factory):
    """The app in this process (its worker in its own), so a test can slow the export down."""
    with app_in_process(tmp_path_factory.mktemp("inproc")) as client:
        yield client


def finished(client: TestClient) -> str:
    r = client.post("/api/generate/image", files={"image": ("a.png", png_bytes(), "image/png")})
    job_id = r.json()["job_id"]
    for _ in range(400):
        if client.get(f"/api/jobs/{job_id}").json()["state"] == "succeeded":
            return job_id
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


@pytest.mark.parametrize("wait_s, status", [(5.0, 200), (0.2, 409)])
def test_delete_during_export_waits_or_answers_409_never_500(inproc, monkeypatch, wait_s, status):
    from gui.backend import routes

    real = routes.export_generation

    def slow(*args, **kwargs):
        time.sleep(1.0)
        return real(*args, **kwargs)

    monkeypatch.setattr(routes, "export_generation", slow)
    monkeypatch.setattr(routes, "DELETE_WAIT_S", wait_s)
    job_id = finished(inproc)
    results = {}
    exporting = threading.Thread(
        target=lambda: results.update(
            export=inproc.post(f"/api/jobs/{job_id}/export", json={"format": "ply"})
        )
    )
    exporting.start()
    time.sleep(0.3)
    deleted = inproc.delete(f"/api/jobs/{job_id}")
    exporting.join()
    assert deleted.status_code == status, deleted.text
    assert results["export"].status_code in (200, 404), results["export"].text
    if status == 409:
        assert error_code(deleted) == "job_busy"
        assert inproc.delete(f"/api/jobs/{job_id}").status_code == 200
    assert inproc.get(f"/api/jobs/{job_id}").status_code == 404
    assert inproc.get("/api/health").json()["status"] == "ok"


def child_pids(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def is_gone(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except OSError:
        return True


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_the_worker_dies_within_2_s_of_its_server(tmp_path):
    """Even in the middle of a long step that never calls back (a native call, texture baking)."""
    server = LiveServer(fake_server_cmd(tmp_path, "--steps", "2", "--step-s", "30"), tmp_path)
    try:
        job_id = submit(server)
        server.wait_state(job_id, ("running",))
        time.sleep(0.5)  # inside the 30 s step
        workers = [
            p for p in child_pids(server.proc.pid) if "spawn_main" in Path(f"/proc/{p}/cmdline").read_text()
        ]
        assert workers, "the worker process was not found"
        server.kill()
        killed = time.monotonic()
        while not all(is_gone(p) for p in workers) and time.monotonic() - killed < 10:
            time.sleep(0.05)
        assert all(is_gone(p) for p in workers), "the worker outlived its server"
        assert time.monotonic() - killed < 2.0
    finally:
        server.stop()


# -- memory ------------------------------------------------------------------------------------------------
MEMORY_PIXELS = int(os.environ.get("GENESIS_MEMORY_PIXELS", "4000000"))  # 40000000 for the README figure
MEMORY_SLACK_BYTES = 96 * 2**20  # request buffers, threads, allocator slack


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def gradient_png(side: int) -> bytes:
    """A picture at the pixel limit that compresses to almost nothing: the costliest upload per byte."""
    ramp = Image.linear_gradient("L").resize((side, side))
    image = Image.merge("RGBA", (ramp, ramp.transpose(Image.Transpose.ROTATE_90), ramp, ramp))
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc")
def test_ten_concurrent_max_size_uploads_stay_under_the_memory_ceiling(tmp_path, capsys):
    side = math.isqrt(MEMORY_PIXELS)
    data = gradient_png(side)
    server = LiveServer(
        fake_server_cmd(tmp_path, "--max-pixels", str(MEMORY_PIXELS), "--steps", "1", "--step-s", "0"),
        tmp_path,
    )
    try:
        pid = server.proc.pid

        def upload() -> int:
            files_ = {"image": ("max.png", data, "image/png")}
            with httpx.Client(base_url=server.url, timeout=600) as client:
                return client.post("/api/generate/image", files=files_, data={"params": "{}"}).status_code

        assert upload() == 202  # warm: imports, threads, the decoder
        baseline = proc_kib(pid, "VmRSS") * 1024
        try:
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # restart the peak from here
        except OSError:
            pass
        results: list[int] = []
        threads = [threading.Thread(target=lambda: results.append(upload())) for _ in range(10)]
        started = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        seconds = time.monotonic() - started
        peak = proc_kib(pid, "VmHWM") * 1024
    finally:
        server.stop()
    ceiling = DecodeBudget.for_pixels(MEMORY_PIXELS).limit + MEMORY_SLACK_BYTES
    with capsys.disabled():
        print(
            f"\nmemory: 10 concurrent {side}x{side} uploads ({len(data) / 2**20:.1f} MiB each) in {seconds:.1f} s; "
            f"server RSS {baseline / 2**20:.0f} MiB idle, peak +{(peak - baseline) / 2**20:.0f} MiB "
            f"(ceiling +{ceiling / 2**20:.0f} MiB)"
        )
    assert results == [202] * 10
    assert peak - baseline <= ceiling
