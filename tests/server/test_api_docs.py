"""`/api/docs` is a complete reference that needs no network: every route listed, nothing loaded from elsewhere."""

from __future__ import annotations

import re

from .conftest import app_in_process


def test_the_api_reference_renders_offline(tmp_path):
    with app_in_process(tmp_path) as client:
        page = client.get("/api/docs")
        spec = client.get("/api/openapi.json").json()
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    text = page.text
    for path, methods in spec["paths"].items():
        assert path in text, path
        for method in methods:
            assert f">{method.upper()}<" in text
    assert "/api/generate/fast" in text and "/api/jobs/{job_id}/export" in text
    assert "<script" not in text
    references = re.findall(r"""(?:src|href)=['"]([^'"]+)""", text)
    assert references and all(ref.startswith("/") for ref in references), references
    assert "http://" not in text and "https://" not in text
