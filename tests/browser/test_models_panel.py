"""The Models panel in a real browser: the live server with an empty models folder, its hub the fake one
(`tools/fake_hub.py`, the tiny models, throttled so that progress and cancel can be watched); the steps are in
`models_panel.mjs`. Screenshots and the axe report are kept under `test-artifacts/browser-models/`."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.browser_harness import REPO_ROOT, run_node_script, start_ui_server
from tools.fake_hub import ACCEPTED_TOKEN, FakeHub

pytestmark = pytest.mark.browser
SCRIPT = Path(__file__).with_name("models_panel.mjs")
ARTIFACTS = REPO_ROOT / "test-artifacts" / "browser-models"
RATE = 1_500_000  # bytes per second: the tiny TRELLIS.2 folder (6 MB) takes a few seconds


@pytest.fixture
def hub_and_server(browser_tooling, tmp_path):
    from tools.make_tiny_models import make_tiny_models

    make_tiny_models(tmp_path / "tiny", seed=0)
    hub = FakeHub.from_models(tmp_path / "tiny", rate=RATE).start()
    (tmp_path / "models").mkdir()
    server = start_ui_server(tmp_path / "models", tmp_path / "data", env=hub.client_env(tmp_path / "hf-home"))
    yield hub, server
    server.stop()
    hub.stop()


def test_the_models_panel_downloads_cancels_resumes_and_takes_a_token(hub_and_server, tmp_path):
    hub, server = hub_and_server
    result = run_node_script(
        SCRIPT, "--url", server.url, "--token", ACCEPTED_TOKEN, "--out", str(ARTIFACTS), timeout_s=300
    )
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "models-panel.log").write_text(result.stdout + result.stderr)
    print(result.stdout[-4000:])
    assert result.returncode == 0 and "all checks passed" in result.stdout, (
        f"{result.stdout[-4000:]}\n{result.stderr[-4000:]}\nserver log:\n{server.log_tail()}"
    )
    assert ACCEPTED_TOKEN not in server.log_tail(), "the token is never logged"
    assert not any(hub.cdn_auth), "the token went to the hub only, not to where it redirects"
    assert any(had_token for _, _, had_token, _ in hub.requests)
    for name in ("01-models-missing.png", "02-models-downloading.png", "03-models-verified.png"):
        assert (ARTIFACTS / name).is_file(), name
