"""Fixtures of the browser tests: a live job server with tiny models, and an input image."""

from __future__ import annotations

from pathlib import Path

import pytest

from tools.browser_harness import missing_browser_tooling, start_ui_server, write_input_image


@pytest.fixture(scope="session")
def browser_tooling() -> None:
    reason = missing_browser_tooling()
    if reason:
        pytest.skip(f"browser tests need Chromium, node and playwright-core: {reason}")


@pytest.fixture(scope="module")
def live_ui_server(browser_tooling, tmp_path_factory):
    from tools.make_tiny_models import make_tiny_models

    models = tmp_path_factory.mktemp("ui-tiny-models")
    make_tiny_models(models, seed=0)
    server = start_ui_server(models, tmp_path_factory.mktemp("ui-data"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def input_image(tmp_path_factory) -> Path:
    return write_input_image(tmp_path_factory.mktemp("ui-input") / "object.png")
