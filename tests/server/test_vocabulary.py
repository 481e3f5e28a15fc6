"""One vocabulary: `GET /api/config` serves what the owning modules say, validation and the CLI follow them,
every error code the service sends has a hint, and every route documents its response."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gui.backend import cli, routes
from gui.backend.app import create_app
from gui.backend.config import DEFAULT_MODELS_DIR, Settings
from gui.backend.engines import ENGINES
from gui.backend.errors import ERROR_CODES
from gui.backend.params import ExportRequest, GenerateParams, device_defaults
from gui.backend.worker_process import EngineSpec
from o_voxel import formats, validation
from trellis2.pipelines import pipeline_config

from .conftest import REPO_ROOT, png_bytes

BACKEND = Path(__file__).resolve().parents[2] / "gui" / "backend"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("vocab")
    app = create_app(
        Settings(models_dir=tmp / "models", data_dir=tmp / "data"),
        EngineSpec(
            "tests.server.fake_engine:fake_engines", converter="gui.backend.export:vertex_colored_mesh"
        ),
    )
    with TestClient(app, base_url="http://127.0.0.1") as test_client:
        yield test_client


def choice_values(config: dict, key: str) -> list:
    return [c["value"] for c in config[key]]


def cli_choices(command: str, flag: str) -> list:
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices[command]
    return list(next(a for a in sub._actions if flag in a.option_strings).choices)


def test_config_serves_engines_vocabulary_limits_and_error_hints(client):
    config = client.get("/api/config").json()
    assert set(config["engines"]) == set(ENGINES)
    image = config["engines"]["trellis2"]
    assert (
        image["ready"] is True and image["label"] == ENGINES["trellis2"].label and image["route"] == "image"
    )
    fast = config["engines"]["fresnel"]
    assert fast["ready"] is False and fast["reason"], "a not-ready engine says why"
    assert config["engines"]["multiview"]["max_images"] == ENGINES["multiview"].max_images
    assert choice_values(config, "pipeline_types") == list(pipeline_config.PIPELINE_TYPES)
    assert {"value": "1024_cascade", "label": "1024 cascade — balanced"} in config["pipeline_types"]
    assert choice_values(config, "export_formats") == list(formats.EXPORT_FORMATS)
    assert {f["value"]: f["extension"] for f in config["export_formats"]}["obj"] == "zip"
    assert choice_values(config, "texture_sizes") == list(validation.SUPPORTED_TEXTURE_SIZES)
    params = image["params"]
    decimation = GenerateParams.model_fields["decimation_target"]
    lighter = device_defaults(GenerateParams, routes.has_gpu(None))  # lighter without a GPU
    assert params["decimation_target"]["default"] == lighter.get("decimation_target", decimation.default)
    assert [params["decimation_target"][k] for k in ("minimum", "maximum")] == [
        m.ge if hasattr(m, "ge") else m.le for m in decimation.metadata
    ]
    assert params["texture_size"]["choices"] == list(validation.SUPPORTED_TEXTURE_SIZES)
    steps = params["shape_slat_sampler_params"]["fields"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["nullable"]) == (1, 50, True)
    assert "pipeline_type" not in fast["params"] and "seed" in fast["params"]
    assert config["export"]["format"]["default"] == ExportRequest.model_fields["format"].default
    for code in (
        "model_missing",
        "worker_crashed",
        "out_of_memory",
        "invalid_parameters",
        "engine_not_installed",
    ):
        assert config["errors"][code]["hint"], f"{code} has a hint"
    assert "genesis models download" in config["errors"]["model_missing"]["hint"]
    assert config["events"] == {"job": "job", "deleted": "deleted"}
    assert config["models"][0]["id"] == "microsoft/TRELLIS.2-4B"


def test_texture_size_outside_the_allowed_sizes_is_refused_naming_them(client):
    r = client.post(
        "/api/generate/image",
        files={"image": ("a.png", png_bytes(), "image/png")},
        data={"params": json.dumps({"texture_size": 1000})},
    )
    assert r.status_code == 422
    error = r.json()["error"]
    assert error["code"] == "invalid_parameters" and error["hint"]
    assert "texture_size" in error["message"] and "512, 1024, 2048, 4096" in error["message"]
    with pytest.raises(ValueError, match="512, 1024, 2048, 4096"):
        ExportRequest.model_validate({"texture_size": 1000})


def test_a_vocabulary_change_in_its_owner_reaches_the_api_validation_and_the_cli(client, monkeypatch):
    monkeypatch.setattr(pipeline_config, "PIPELINE_TYPES", (*pipeline_config.PIPELINE_TYPES, "2048_cascade"))
    monkeypatch.setattr(validation, "SUPPORTED_TEXTURE_SIZES", (*validation.SUPPORTED_TEXTURE_SIZES, 8192))
    config = client.get("/api/config").json()
    assert {"value": "2048_cascade", "label": "2048 cascade"} in config["pipeline_types"]
    assert 8192 in choice_values(config, "texture_sizes")
    assert 8192 in config["engines"]["trellis2"]["params"]["texture_size"]["choices"]
    assert GenerateParams(pipeline_type="2048_cascade", texture_size=8192).texture_size == 8192
    assert "2048_cascade" in cli_choices("generate", "--pipeline-type")
    assert 8192 in cli_choices("export", "--texture-size")


def test_cli_choices_come_from_the_registry_and_the_owners():
    assert cli_choices("generate", "--engine") == list(ENGINES)
    assert cli_choices("generate", "--pipeline-type") == list(pipeline_config.PIPELINE_TYPES)
    assert cli_choices("export", "--format") == list(formats.EXPORT_FORMATS)
    assert cli_choices("generate", "--texture-size") == list(validation.SUPPORTED_TEXTURE_SIZES)


def test_every_error_code_the_service_sends_is_in_the_table():
    pattern = re.compile(r'(?:ApiError|JobFailure|error_response)\(\s*"(\w+)"|recover_after_crash\("(\w+)"\)')
    used = set()
    for path in BACKEND.rglob("*.py"):
        for match in pattern.finditer(path.read_text()):
            used.update(g for g in match.groups() if g)
    used |= {
        "interrupted",
        "cancelled",
        "bad_request",
        "not_found",
        "method_not_allowed",
        "http_error",
    }  # defaults
    assert {"job_not_found", "invalid_parameters", "worker_crashed", "upload_too_large"} <= used
    assert used <= set(ERROR_CODES), f"codes without a row in ERROR_CODES: {sorted(used - set(ERROR_CODES))}"


def test_every_route_documents_its_response(client):
    spec = client.get("/api/openapi.json").json()
    for path, methods in spec["paths"].items():
        for method, operation in methods.items():
            ok = next(code for code in operation["responses"] if code.startswith("2"))
            if path.endswith("/preview/cutout"):  # a picture, documented as image/png
                assert "image/png" in operation["responses"][ok]["content"]
                continue
            schema = operation["responses"][ok]["content"]["application/json"]["schema"]
            if path.endswith("/files/{name}") or path.endswith("/events"):
                continue
            assert schema.get("$ref") or schema.get("items", {}).get("$ref"), (
                f"{method} {path} documents no model"
            )
    for name in ("ConfigOut", "HealthOut", "JobOut", "ExportResult", "JobCreated", "ErrorOut"):
        assert name in spec["components"]["schemas"]


def test_jobs_as_sent_validate_against_the_documented_model(client):
    from gui.backend.api_models import ExportResult, JobOut

    r = client.post(
        "/api/generate/image",
        files={"image": ("a.png", png_bytes(), "image/png")},
        data={"params": json.dumps({"seed": 4, "texture_size": 512})},
    )
    job_id = r.json()["job_id"]
    assert JobOut.model_validate(client.get(f"/api/jobs/{job_id}").json()).preview.endswith("/preview.png")
    deadline = time.monotonic() + 120
    while (job := client.get(f"/api/jobs/{job_id}").json())[
        "state"
    ] != "succeeded" and time.monotonic() < deadline:
        time.sleep(0.1)
    done = JobOut.model_validate(job)
    assert done.result.model.endswith("/model.glb") and done.result.stats.faces > 0
    for listed in client.get("/api/jobs").json():
        JobOut.model_validate(listed)
    exported = client.post(f"/api/jobs/{job_id}/export", json={"format": "obj", "decimation_target": 10000})
    result = ExportResult.model_validate(exported.json())
    assert result.url.endswith(".zip") and result.download_name.endswith(".zip")
    assert client.get(result.url).headers["content-type"] == "application/zip"


def test_settings_are_typed_and_read_the_environment(monkeypatch, tmp_path):
    monkeypatch.delenv("GENESIS_MODELS_DIR", raising=False)
    assert Settings().models_dir == DEFAULT_MODELS_DIR.resolve()
    monkeypatch.setenv("GENESIS_MODELS_DIR", str(tmp_path))
    monkeypatch.setenv("GENESIS_PORT", "9001")
    monkeypatch.setenv("GENESIS_EXTRA_ORIGINS", "http://a.example, http://b.example")
    settings = Settings(port=9002)
    assert settings.models_dir == tmp_path.resolve() and settings.port == 9002, "a flag beats the environment"
    assert Settings().port == 9001 and Settings().extra_origins == ["http://a.example", "http://b.example"]
    monkeypatch.setenv("GENESIS_MAX_UPLOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="max_upload_bytes"):
        Settings()


def test_the_readme_lists_every_error_code_with_its_status():
    """The README's error table is written by hand: it must name every code of the error table, in its status's
    row (codes without a status of their own are named in the text)."""
    readme = (REPO_ROOT / "README.md").read_text()
    rows = {
        line.split("|")[1].strip(): line for line in readme.splitlines() if re.match(r"\| [1-5]\d\d \|", line)
    }
    for code, info in ERROR_CODES.items():
        if info.status is None:
            assert f"`{code}`" in readme, code
        else:
            assert f"`{code}`" in rows.get(str(info.status), ""), (code, info.status)


def test_stage_names_read_the_same_in_the_cli_and_the_renderer(client):
    """The renderer words stages with the config's `stage_names` as `vocabulary.stage_name` does for the CLI,
    including the export's own steps (every step `o_voxel.postprocess` reports has a name)."""
    import shutil
    import subprocess

    from gui.backend import vocabulary
    from o_voxel import postprocess

    names = client.get("/api/config").json()["stage_names"]
    assert names == vocabulary.STAGE_NAMES
    assert set(postprocess._STEPS) <= set(names)
    ids = ["sparse_structure", "export:uv unwrap", "export:bake textures", "export:new_step", "brand_new", ""]
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed")
    script = (
        "import('./gui/electron/renderer/js/format.js').then((m) => "
        f"console.log(JSON.stringify({json.dumps(ids)}.map((id) => m.stageName(id, {json.dumps(names)})))))"
    )
    run = subprocess.run([node, "-e", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == [vocabulary.stage_name(i) for i in ids]
    assert vocabulary.stage_name("export:uv unwrap") == "Exporting: unwrapping UVs"
