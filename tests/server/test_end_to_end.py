"""End to end with the tiny TRELLIS.2 models: the real `genesis serve`, the real pipeline and export, on the CPU."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from .conftest import REPO_ROOT, LiveServer, submit

FAST = {
    "pipeline_type": "512",
    "texture_size": 512,
    "decimation_target": 10000,
    "remesh": False,
    "sparse_structure_sampler_params": {"steps": 2},
    "shape_slat_sampler_params": {"steps": 2},
    "tex_slat_sampler_params": {"steps": 2},
}
VALIDATE_JS = """
const validator = require('gltf-validator');
const data = require('fs').readFileSync(process.argv[1]);
validator.validateBytes(new Uint8Array(data)).then((r) => {
  console.log(JSON.stringify(r.issues.messages.filter((m) => m.severity === 0).slice(0, 5)));
  process.exit(r.issues.numErrors ? 1 : 0);
}, (e) => { console.log(String(e)); process.exit(2); });
"""


def assert_valid_gltf(path: Path) -> None:
    """The Khronos glTF validator (npm `gltf-validator`) when Node has it; trimesh's loader otherwise."""
    if shutil.which("node") and (REPO_ROOT / "node_modules" / "gltf-validator").is_dir():
        r = subprocess.run(
            ["node", "-e", VALIDATE_JS, str(path)], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        )
        assert r.returncode == 0, f"glTF validator errors: {r.stdout} {r.stderr}"
    else:
        import trimesh

        assert len(trimesh.load(path, force="mesh").faces) > 0


@pytest.fixture(scope="module")
def tiny_server(tiny_models, tmp_path_factory):
    data = tmp_path_factory.mktemp("e2e-data")
    cmd = [
        sys.executable,
        "-m",
        "gui.backend.cli",
        "serve",
        "--port",
        "0",
        "--models-dir",
        str(tiny_models),
        "--data-dir",
        str(data),
        "--device",
        "cpu",
    ]
    server = LiveServer(cmd, data)
    yield server
    server.stop()


def test_health_reports_the_tiny_engines(tiny_server: LiveServer):
    health = tiny_server.client.get("/api/health").json()
    assert health["engines"]["trellis2"]["ready"], health
    assert health["engines"]["fresnel"]["ready"], health  # bundled: ready with any models folder


def test_image_to_glb_with_progress_and_reexport(tiny_server: LiveServer, object_png: bytes, tmp_path):
    job_id = submit(tiny_server, FAST, object_png)
    stages, deadline = set(), time.monotonic() + 600
    while time.monotonic() < deadline:
        job = tiny_server.client.get(f"/api/jobs/{job_id}").json()
        stages.add(job["stage"])
        if job["state"] not in ("queued", "running"):
            break
        time.sleep(0.05)
    assert job["state"] == "succeeded", job.get("error")
    assert stages - {"", "starting", "loading", "done"}, f"progress stages were reported: {stages}"
    glb = tiny_server.client.get(job["result"]["files"]["model.glb"])
    assert glb.status_code == 200 and glb.content[:4] == b"glTF"
    (tmp_path / "model.glb").write_bytes(glb.content)
    assert_valid_gltf(tmp_path / "model.glb")
    r = tiny_server.client.post(
        f"/api/jobs/{job_id}/export",
        json={"format": "glb", "texture_size": 1024, "decimation_target": 10000},
        timeout=300,
    )
    assert r.status_code == 200, r.text
    again = tiny_server.client.get(r.json()["url"])
    assert again.content[:4] == b"glTF" and again.content != glb.content
    for fmt in (
        "stl",
        "ply",
    ):  # the tiny pipeline's folds once made these fail (HTTP 500) in the topology check
        r = tiny_server.client.post(
            f"/api/jobs/{job_id}/export", json={"format": fmt, "decimation_target": 10000}, timeout=300
        )
        assert r.status_code == 200, r.text
        assert tiny_server.client.get(r.json()["url"]).status_code == 200


def test_time_left_holds_through_the_export(tiny_server: LiveServer, object_png: bytes):
    """After three jobs of one kind, the next one's time left comes from that history: at half of its run it
    is within 50 % of the time really left, and the bar and the time left keep moving through the export."""
    params = {**FAST, "texture_size": 2048}  # a bake of some seconds: the export is most of the job
    for _ in range(3):
        job = tiny_server.wait_state(submit(tiny_server, params, object_png), ("succeeded", "failed"), 600)
        assert job["state"] == "succeeded", job.get("error")
    job_id = submit(tiny_server, params, object_png)
    samples = []  # (wall clock, stage, progress, time left, basis)
    deadline = time.monotonic() + 600
    while (job := tiny_server.client.get(f"/api/jobs/{job_id}").json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline
        if job["state"] == "running" and job["eta_s"] is not None:
            samples.append((time.time(), job["stage"], job["progress"], job["eta_s"], job["eta_basis"]))
        time.sleep(0.05)
    assert job["state"] == "succeeded", job.get("error")
    start, end = job["started_at"], job["finished_at"]
    at, _, _, eta, basis = min(samples, key=lambda s: abs(s[0] - (start + end) / 2))
    left = end - at
    assert basis == "history" and abs(eta - left) <= 0.5 * left, (eta, left, end - start)
    export = [s for s in samples if s[1].startswith("export")]
    assert len({round(s[3], 1) for s in export}) >= 3 and len({s[2] for s in export}) >= 3, export


def test_multiview_job(tiny_server: LiveServer, object_png: bytes):
    import json

    files = [("images", (f"v{i}.png", object_png, "image/png")) for i in range(2)]
    r = tiny_server.client.post(
        "/api/generate/multiview", files=files, data={"params": json.dumps({**FAST, "mode": "stochastic"})}
    )
    assert r.status_code == 202, r.text
    job = tiny_server.wait_state(r.json()["job_id"], ("succeeded", "failed", "cancelled"), timeout=600)
    assert job["state"] == "succeeded", job.get("error")


def test_genesis_command_generate_jobs_export(tiny_models, object_png: bytes, tmp_path):
    import json

    image = tmp_path / "object.png"
    image.write_bytes(object_png)
    where = ["--models-dir", str(tiny_models), "--data-dir", str(tmp_path / "data")]
    genesis = [sys.executable, "-m", "gui.backend.cli"]
    out = tmp_path / "chair.glb"
    r = subprocess.run(
        [
            *genesis,
            "generate",
            str(image),
            *where,
            "--pipeline-type",
            "512",
            "--steps",
            "2",
            "--texture-size",
            "512",
            "--decimation-target",
            "10000",
            "--no-remesh",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "%" in r.stdout and out.read_bytes()[:4] == b"glTF"
    length = int.from_bytes(out.read_bytes()[12:16], "little")
    gltf = json.loads(out.read_bytes()[20 : 20 + length])
    assert gltf["meshes"][0]["name"] == gltf["materials"][0]["name"] == "genesis_object"  # the image's stem
    jobs = json.loads(
        subprocess.run(
            [*genesis, "jobs", "--json", *where], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
        ).stdout
    )
    assert len(jobs) == 1 and jobs[0]["state"] == "succeeded"
    r = subprocess.run(
        [
            *genesis,
            "export",
            jobs[0]["id"],
            "--format",
            "ply",
            "--decimation-target",
            "10000",
            "--texture-size",
            "512",
            *where,
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (
        Path(r.stdout.strip().splitlines()[-1]).read_bytes()[:3] == b"ply"
    )  # the command prints the path last
    r = subprocess.run(
        [*genesis, "models", *where], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0 and "MISSING" not in r.stdout


def test_trellis2_removes_backgrounds_with_birefnet_when_that_is_the_model_installed(tiny_models, tmp_path):
    """The licence-clean BiRefNet stands in for RMBG-2.0: ready without a warning, and the pipeline loads it."""
    from gui.backend.engines.trellis2 import Trellis2Engine

    models = tmp_path / "models"
    shutil.copytree(tiny_models, models)
    (models / "ZhengPeng7").mkdir()
    shutil.move(models / "briaai" / "RMBG-2.0", models / "ZhengPeng7" / "BiRefNet")
    engine = Trellis2Engine(models, device="cpu")
    status = engine.status()
    assert status.ready and status.reason == "", status
    engine.load()
    assert engine._pipeline.models.config.rembg_model == "ZhengPeng7/BiRefNet"
    assert engine._pipeline.rembg_model() is not None  # loaded from the BiRefNet folder
    shutil.rmtree(models / "ZhengPeng7")
    assert "No background-removal model" in Trellis2Engine(models, device="cpu").status().reason


def test_refine_a_fast_draft_through_the_api(tiny_server: LiveServer, object_png: bytes):
    """POST /api/jobs/{id}/refine on a finished Fast job: a TRELLIS.2 job linked to its draft, with the draft's
    seed and structure; a TRELLIS.2 job cannot be refined."""
    import json

    files = {"image": ("mug.png", object_png, "image/png")}
    quick = {"texture_size": 512, "decimation_target": 10000, "remesh": False}
    r = tiny_server.client.post(
        "/api/generate/fast", files=files, data={"params": json.dumps({**quick, "seed": 4})}
    )
    assert r.status_code == 202, r.text
    draft = tiny_server.wait_state(r.json()["job_id"], ("succeeded", "failed"), 300)
    assert draft["state"] == "succeeded", draft.get("error")
    body = {
        "pipeline_type": "512",
        **quick,
        "shape_slat_sampler_params": {"steps": 2},
        "tex_slat_sampler_params": {"steps": 2},
    }
    r = tiny_server.client.post(f"/api/jobs/{draft['id']}/refine", json=body)
    assert r.status_code == 202, r.text
    final = tiny_server.wait_state(r.json()["job_id"], ("succeeded", "failed"), 600)
    assert final["state"] == "succeeded", final.get("error")
    assert final["engine"] == "trellis2" and final["params"]["draft_job"] == draft["id"]
    assert final["params"]["seed"] == 4 and final["params"]["structure"] == "fresnel"
    folders = tiny_server.data_dir / "jobs"
    assert (folders / final["id"] / "structure.npz").read_bytes() == (
        folders / draft["id"] / "structure.npz"
    ).read_bytes()
    r = tiny_server.client.post(f"/api/jobs/{final['id']}/refine")
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_not_draft"
