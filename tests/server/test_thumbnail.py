"""The picture of a job's result: rendered once with the job's export (nearest face wins, texture or vertex
colours), written atomically beside model.glb, listed as the job's `result.thumbnail`; a failure never fails the
job, and older jobs without one say so (null)."""

from __future__ import annotations

import io
import json
import logging
import time

import numpy as np
import pytest
import trimesh
from PIL import Image

from gui.backend import thumbnail as thumbnail_module
from gui.backend.export import export_generation, vertex_colored_mesh
from gui.backend.files import MODEL_FILE, THUMBNAIL_FILE
from gui.backend.params import ExportParams
from gui.backend.store import SUCCEEDED, Job
from gui.backend.thumbnail import THUMBNAIL_SIZE, render_thumbnail, write_thumbnail

from .conftest import app_in_process, png_bytes
from .fake_engine import cube_mesh
from .test_units import make_worker


def quad(z: float, colour: tuple[int, int, int], half: float = 0.5) -> trimesh.Trimesh:
    """A square facing +z at depth `z`, in one colour."""
    vertices = np.array([[-half, -half, z], [half, -half, z], [half, half, z], [-half, half, z]])
    mesh = trimesh.Trimesh(vertices, [[0, 1, 2], [0, 2, 3]], process=False)
    mesh.visual.vertex_colors = np.array([[*colour, 255]] * 4, dtype=np.uint8)
    return mesh


def centre(picture: Image.Image) -> tuple[int, ...]:
    return picture.getpixel((picture.width // 2, picture.height // 2))


def test_the_nearest_face_wins_whatever_order_the_faces_come_in():
    near, far = quad(0.2, (255, 0, 0), half=0.3), quad(-0.2, (0, 0, 255))  # the far one is larger
    for parts in ((near, far), (far, near)):
        picture = render_thumbnail(trimesh.util.concatenate(parts))
        red, green, blue, alpha = centre(picture)
        assert picture.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and alpha == 255
        assert red > 3 * blue, f"the near red square must hide the blue one: {centre(picture)}"
    assert picture.getpixel((0, 0))[3] == 0, "the background is transparent"


def test_a_textured_mesh_shows_its_base_colour_texture():
    texture = Image.new("RGB", (8, 8), (20, 200, 40))
    mesh = quad(0.0, (255, 255, 255))
    material = trimesh.visual.material.PBRMaterial(baseColorTexture=texture)
    mesh.visual = trimesh.visual.TextureVisuals(uv=[[0, 0], [1, 0], [1, 1], [0, 1]], material=material)
    red, green, blue, alpha = centre(render_thumbnail(mesh))
    assert green > 3 * max(red, blue) and alpha == 255, "lit, but green"


def test_an_empty_mesh_gives_an_empty_picture(tmp_path):
    write_thumbnail(trimesh.Trimesh(), tmp_path / "t.png")
    with Image.open(tmp_path / "t.png") as picture:
        assert picture.getextrema()[3] == (0, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["t.png"], "no temporary file is left"


def test_the_export_writes_the_thumbnail_and_a_failed_one_is_only_logged(tmp_path, monkeypatch, caplog):
    params = ExportParams(decimation_target=10_000, texture_size=512, remesh=False)
    export_generation(
        [cube_mesh()],
        params,
        "glb",
        tmp_path / MODEL_FILE,
        converter=vertex_colored_mesh,
        thumbnail=tmp_path / THUMBNAIL_FILE,
    )
    with Image.open(tmp_path / THUMBNAIL_FILE) as picture:
        assert picture.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and centre(picture)[3] == 255

    def broken(*args, **kwargs):
        raise RuntimeError("no pictures today")

    monkeypatch.setattr(thumbnail_module, "render_thumbnail", broken)
    other = tmp_path / "other"
    other.mkdir()
    with caplog.at_level(logging.WARNING, logger="genesis.export"):
        stats = export_generation(
            [cube_mesh()],
            params,
            "glb",
            other / MODEL_FILE,
            converter=vertex_colored_mesh,
            thumbnail=other / THUMBNAIL_FILE,
        )
    assert stats["faces"] > 0 and (other / MODEL_FILE).is_file() and not (other / THUMBNAIL_FILE).exists()
    assert "could not make the thumbnail" in caplog.text
    assert [p.name for p in other.iterdir()] == [MODEL_FILE], "no half-written picture is left"


def test_a_job_run_here_lists_its_thumbnail_and_one_without_a_picture_still_succeeds(tmp_path, monkeypatch):
    worker, queue = make_worker(tmp_path)
    job = worker.run_job(queue(texture_size=512, decimation_target=10_000, remesh=False))
    assert job.state == SUCCEEDED and job.files == {MODEL_FILE: MODEL_FILE, THUMBNAIL_FILE: THUMBNAIL_FILE}
    assert job.to_api()["result"]["thumbnail"] == f"/api/jobs/{job.id}/files/{THUMBNAIL_FILE}"
    monkeypatch.setattr(thumbnail_module, "render_thumbnail", lambda *a, **k: 1 / 0)
    job = worker.run_job(queue(texture_size=512, decimation_target=10_000, remesh=False))
    assert job.state == SUCCEEDED and job.files == {MODEL_FILE: MODEL_FILE}
    assert job.to_api()["result"]["thumbnail"] is None


def test_an_older_job_without_a_thumbnail_shows_null():
    old = Job(
        id="a" * 32,
        engine="trellis2",
        state=SUCCEEDED,
        params={},
        inputs=[],
        created_at=0.0,
        files={MODEL_FILE: MODEL_FILE},
    )
    assert old.to_api()["result"]["thumbnail"] is None


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_in_process(tmp_path_factory.mktemp("thumbnail")) as test_client:
        yield test_client


def test_the_api_serves_the_thumbnail_of_a_finished_job(client):
    r = client.post(
        "/api/generate/image",
        files={"image": ("chair.png", png_bytes(), "image/png")},
        data={"params": json.dumps({"texture_size": 512, "decimation_target": 10000, "remesh": False})},
    )
    job_id = r.json()["job_id"]
    deadline = time.monotonic() + 120
    while (job := client.get(f"/api/jobs/{job_id}").json())["state"] not in ("succeeded", "failed"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
    url = job["result"]["thumbnail"]
    assert url == job["result"]["files"][THUMBNAIL_FILE]
    answer = client.get(url)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    assert "attachment" not in answer.headers.get("content-disposition", ""), "shown inline, not downloaded"
    with Image.open(io.BytesIO(answer.content)) as picture:
        assert picture.size == (THUMBNAIL_SIZE, THUMBNAIL_SIZE) and centre(picture)[3] == 255
