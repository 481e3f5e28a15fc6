"""Defaults suited to the device: without a GPU the export defaults are lighter (one function, `device_defaults`),
`GET /api/config` serves them with a one-line note, and a setting a request leaves out takes them; with a GPU
nothing changes. The Advanced sampling fields carry one-line explanations through the config."""

from __future__ import annotations

import json

import pytest

from gui.backend import routes
from gui.backend.params import (
    CPU_EXPORT_DEFAULTS,
    ExportRequest,
    FastParams,
    GenerateParams,
    MultiViewParams,
    SamplerParams,
    describe_fields,
    device_defaults,
)

from .conftest import app_in_process, png_bytes

LIGHT = {"texture_size": 1024, "decimation_target": 100_000, "remesh": False}


def test_without_a_gpu_the_export_defaults_are_lighter_and_never_heavier():
    assert CPU_EXPORT_DEFAULTS == LIGHT
    for model in (GenerateParams, MultiViewParams, ExportRequest):
        assert device_defaults(model, gpu=False) == LIGHT
        assert device_defaults(model, gpu=True) == {}
    assert device_defaults(FastParams, gpu=False) == {}, "the Fast drafts are lighter already"
    described = describe_fields(GenerateParams, device_defaults(GenerateParams, gpu=False))
    assert {name: described[name]["default"] for name in LIGHT} == LIGHT
    assert GenerateParams().texture_size == 2048, "the models' own defaults stay as they are"


def test_every_sampler_field_and_stage_is_explained_in_one_line():
    fields = describe_fields(GenerateParams)
    for stage in ("sparse_structure_sampler_params", "shape_slat_sampler_params", "tex_slat_sampler_params"):
        assert fields[stage]["description"] and "\n" not in fields[stage]["description"]
    for name, entry in describe_fields(SamplerParams).items():
        text = entry.get("description", "")
        assert 20 < len(text) <= 100 and "\n" not in text, f"{name}: {text!r}"
        assert "_" not in text and "CFG" not in text, f"{name} is explained in plain words: {text!r}"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with app_in_process(tmp_path_factory.mktemp("device")) as test_client:
        yield test_client


def submitted_params(client, params: dict) -> dict:
    r = client.post(
        "/api/generate/image",
        files={"image": ("a.png", png_bytes(), "image/png")},
        data={"params": json.dumps(params)},
    )
    assert r.status_code == 202, r.text
    return client.get(f"/api/jobs/{r.json()['job_id']}").json()["params"]


def test_the_config_and_the_api_use_the_lighter_defaults_on_the_cpu(client, monkeypatch):
    monkeypatch.setattr(routes, "has_gpu", lambda device: False)
    config = client.get("/api/config").json()
    image = config["engines"]["trellis2"]
    assert {name: image["params"][name]["default"] for name in LIGHT} == LIGHT
    assert "no GPU" in image["device_note"] and "\n" not in image["device_note"]
    assert config["engines"]["fresnel"]["device_note"] == "", "nothing is lighter for the Fast drafts"
    assert {name: config["export"][name]["default"] for name in LIGHT} == LIGHT
    sampler = image["params"]["shape_slat_sampler_params"]
    assert sampler["description"] and all(f["description"] for f in sampler["fields"].values())
    left_out = submitted_params(client, {"seed": 1})
    assert {name: left_out[name] for name in LIGHT} == LIGHT, "a setting left out takes the lighter default"
    chosen = submitted_params(client, {"seed": 2, "texture_size": 2048, "remesh": True})
    assert (chosen["texture_size"], chosen["remesh"], chosen["decimation_target"]) == (2048, True, 100_000)


def test_with_a_gpu_the_official_defaults_stay(client, monkeypatch):
    monkeypatch.setattr(routes, "has_gpu", lambda device: True)
    config = client.get("/api/config").json()
    image = config["engines"]["trellis2"]
    official = {name: GenerateParams.model_fields[name].default for name in LIGHT}
    assert {name: image["params"][name]["default"] for name in LIGHT} == official
    assert image["device_note"] == ""
    left_out = submitted_params(client, {"seed": 3})
    assert {name: left_out[name] for name in LIGHT} == official
