"""End to end in a real browser: the web UI against a live job server with tiny models.

Starts `python -m gui.backend.launcher --no-window` on a free port with a tiny models folder, then runs
`tests/browser/e2e.mjs` (playwright-core driving Debian's headless Chromium, WebGL via SwiftShader).
Screenshots, the axe reports and the re-exported GLB are kept under `test-artifacts/browser/`.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.browser_harness import REPO_ROOT, run_node_script

ARTIFACTS = REPO_ROOT / "test-artifacts"
E2E_SCRIPT = Path(__file__).with_name("e2e.mjs")

pytestmark = pytest.mark.browser


def test_generate_view_cancel_export_in_the_browser(live_ui_server, input_image):
    out = ARTIFACTS / "browser"
    result = run_node_script(
        E2E_SCRIPT, "--url", live_ui_server.url, "--image", str(input_image), "--out", str(out), timeout_s=420
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "e2e.log").write_text(result.stdout + result.stderr)
    print(result.stdout[-6000:])
    assert result.returncode == 0, (
        f"the browser test failed (screenshots in {out}):\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}\n"
        f"server log:\n{live_ui_server.log_tail()}"
    )
    assert "all checks passed" in result.stdout
    for name in ("main-window.png", "history.png", "04-mode-wireframe.png", "reexport.glb"):
        assert (out / name).is_file(), f"missing artifact {name}"
