"""The Fast tab's Model menu (headless Chromium): filled from `GET /api/config` with the models folder's
Fresnel students after the built-in one, which is chosen; shown on the Fast tab only."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from fresnel.checkpoint import BUILTIN_MODEL, MODELS_SUBDIR, save_fresnel
from fresnel.config import TINY_CONFIG
from fresnel.network import FresnelNet
from gui.backend.app import create_app
from gui.backend.config import Settings
from gui.backend.worker_process import EngineSpec
from tools.browser_harness import (
    REPO_ROOT,
    app_in_thread,
    free_port,
    missing_browser_tooling,
    run_node_script,
)
from tools.make_tiny_models import make_tiny_models

pytestmark = pytest.mark.browser
SCRIPT = """
import { createRequire } from 'node:module';
const ROOT = %(root)s;
const { chromium } = createRequire(ROOT + '/package.json')('playwright-core');
const { CHROMIUM_ARGS } = await import(ROOT + '/tools/browser_page.mjs');
const browser = await chromium.launch({ executablePath: process.env.GENESIS_CHROMIUM, args: CHROMIUM_ARGS });
try {
  const page = await browser.newPage();
  const problems = [];
  page.on('pageerror', (err) => problems.push(err.message));
  await page.goto(%(url)s);
  await page.waitForSelector('body[data-ready="true"]', { timeout: 60000 });
  const menu = () => page.evaluate(() => {
    const select = document.getElementById('fresnel-model');
    return { options: [...select.options].map((o) => o.value), value: select.value,
      visible: select.closest('[data-param]').hidden === false };
  });
  await page.click('#mode-fast');
  const fast = await menu();
  await page.click('#mode-image');
  const image = await menu();
  console.log(JSON.stringify({ fast, image, problems }));
} finally {
  await browser.close();
}
"""


@pytest.fixture
def server(tmp_path):
    reason = missing_browser_tooling()
    if reason:
        pytest.skip(f"browser tests need Chromium, node and playwright-core: {reason}")
    models = tmp_path / "models"
    make_tiny_models(models, seed=0)  # so that the other tabs can be chosen
    student = FresnelNet(replace(TINY_CONFIG, noise_channels=8, noise_resolution=8))
    for name in ("chairs", "Lamps-v2"):
        save_fresnel(student, models / MODELS_SUBDIR / name)
    (models / MODELS_SUBDIR / "half-written").mkdir()  # no checkpoint: not a model
    settings = Settings(models_dir=models, data_dir=tmp_path / "data", port=free_port())
    app = create_app(settings, EngineSpec(converter="gui.backend.export:vertex_colored_mesh"))
    with app_in_thread(app, settings.port) as url:
        yield url


def test_the_fast_tab_offers_the_distilled_models_after_the_built_in_one(server, tmp_path):
    script = tmp_path / "menu.mjs"
    script.write_text(SCRIPT % {"root": json.dumps(str(REPO_ROOT)), "url": json.dumps(server)})
    result = run_node_script(script, timeout_s=180)
    assert result.returncode == 0, result.stdout + result.stderr
    shown = json.loads(result.stdout.strip().splitlines()[-1])
    assert shown["problems"] == []
    assert shown["fast"] == {
        "options": [BUILTIN_MODEL, "Lamps-v2", "chairs"],
        "value": BUILTIN_MODEL,
        "visible": True,
    }
    assert shown["image"]["visible"] is False
