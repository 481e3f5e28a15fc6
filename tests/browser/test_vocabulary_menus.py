"""A vocabulary entry changed in its owning module shows up in the renderer's menus (headless Chromium), in
`GET /api/config` and in the CLI's choices; the menus hold exactly what the server serves."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from gui.backend import cli
from gui.backend.app import create_app
from gui.backend.config import Settings
from gui.backend.worker_process import EngineSpec
from o_voxel import formats, validation
from tools.browser_harness import app_in_thread, free_port, run_node_script
from trellis2.pipelines import pipeline_config

pytestmark = pytest.mark.browser
MENUS_SCRIPT = Path(__file__).with_name("menus.mjs")


@pytest.fixture
def patched_server(browser_tooling, monkeypatch, tmp_path):
    """The real app in this process (so the monkeypatched owners are the ones it reads), fake engines."""
    monkeypatch.setattr(pipeline_config, "PIPELINE_TYPES", (*pipeline_config.PIPELINE_TYPES, "2048_cascade"))
    monkeypatch.setattr(validation, "SUPPORTED_TEXTURE_SIZES", (*validation.SUPPORTED_TEXTURE_SIZES, 8192))
    settings = Settings(models_dir=tmp_path / "models", data_dir=tmp_path / "data", port=free_port())
    app = create_app(settings, EngineSpec("tests.server.fake_engine:fake_engines"))
    with app_in_thread(app, settings.port) as url:
        yield url


def test_a_new_pipeline_type_and_texture_size_reach_the_menus_the_api_and_the_cli(patched_server):
    config = httpx.get(f"{patched_server}/api/config", timeout=30).json()
    result = run_node_script(MENUS_SCRIPT, "--url", patched_server, timeout_s=180)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    menus = shown["menus"]
    assert shown["problems"] == []
    assert {"value": "2048_cascade", "label": "2048 cascade"} in menus["pipeline_types"]
    assert menus["pipeline_types"] == [
        {"value": c["value"], "label": c["label"]} for c in config["pipeline_types"]
    ]
    for key in ("texture_sizes", "export_texture_sizes"):
        assert {"value": "8192", "label": "8192 px"} in menus[key]
        assert [int(o["value"]) for o in menus[key]] == [c["value"] for c in config["texture_sizes"]]
    assert [o["value"] for o in menus["export_formats"]] == list(formats.EXPORT_FORMATS)
    assert [t["label"] for t in menus["tabs"]] == [e["label"] for e in config["engines"].values()]
    assert [t["disabled"] for t in menus["tabs"]] == [not e["ready"] for e in config["engines"].values()]
    limits = config["engines"]["trellis2"]["params"]["decimation_target"]
    assert menus["decimation"] == [str(limits["minimum"]), str(limits["maximum"]), str(limits["default"])]
    assert menus["sampler_inputs"] == 12 and len(menus["view_modes"]) == 8

    parser = cli.build_parser()
    generate = next(a for a in parser._actions if a.dest == "command").choices["generate"]
    choices = {a.dest: a.choices for a in generate._actions}
    assert "2048_cascade" in choices["pipeline_type"] and 8192 in choices["texture_size"]
