"""The job cards and the input in a real browser against the fake engines (quick): a fully transparent image is
refused before upload, an opaque one's cut-out is previewed per engine, the Advanced fields and the device note
come from the config, the watched job opens when it is done, cards show the result's picture and the job's name,
and Use settings restores the picture (`cards_and_input.mjs`)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from tests.server.conftest import LiveServer, fake_server_cmd
from tools.browser_harness import REPO_ROOT, run_node_script

SCRIPT = Path(__file__).with_name("cards_and_input.mjs")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser-cards"

pytestmark = pytest.mark.browser


def pictures(folder: Path) -> dict[str, Path]:
    """An opaque object on a plain background, an object with transparency, and a fully transparent image."""
    opaque = Image.new("RGB", (240, 240), (246, 246, 244))
    opaque.paste(Image.new("RGB", (90, 120), (40, 90, 200)), (75, 60))
    transparent = Image.new("RGBA", (128, 128), (0, 0, 0, 0))
    transparent.paste(Image.new("RGBA", (64, 64), (200, 40, 40, 255)), (32, 32))
    paths = {
        "opaque": folder / "object_on_white.png",
        "transparent": folder / "object.png",
        "empty": folder / "empty.png",
    }
    opaque.save(paths["opaque"])
    transparent.save(paths["transparent"])
    Image.new("RGBA", (96, 96), (255, 255, 255, 0)).save(paths["empty"])
    return paths


def test_cards_watching_and_the_input_checks_in_the_browser(browser_tooling, tmp_path):
    data = tmp_path / "data"
    server = LiveServer(fake_server_cmd(data, "--fast-ready", "--steps", "10", "--step-s", "0.4"), data)
    try:
        images = pictures(tmp_path)
        args = [f"--{name}={path}" for name, path in images.items()]
        result = run_node_script(SCRIPT, "--url", server.url, *args, "--out", str(ARTIFACTS), timeout_s=300)
    finally:
        server.stop()
    print(result.stdout[-4000:])
    assert result.returncode == 0, f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}\nserver:\n{server.log}"
    assert "all checks passed" in result.stdout
