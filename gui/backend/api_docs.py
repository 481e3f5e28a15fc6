"""`/api/docs`: the REST API's reference, rendered on the server from its own OpenAPI description.

FastAPI's stock page loads Swagger UI from a CDN, so it is blank offline. This page is plain HTML with inline
styles, no script and no request beyond itself; the machine-readable description stays at
`/api/openapi.json`.
"""

from __future__ import annotations

import html
from typing import Any

STYLE = """
body{font:14px/1.5 system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem;color:#1d2330}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{font-size:1.05rem;margin:1.6rem 0 .3rem}
.op{border:1px solid #d7dbe3;border-radius:6px;padding:.6rem .9rem;margin:.6rem 0}
.method{display:inline-block;min-width:4.2rem;font-weight:600;color:#fff;border-radius:4px;text-align:center;
padding:0 .4rem;margin-right:.5rem}.get{background:#2f6fdf}.post{background:#1f8a4c}.delete{background:#c03a2b}
.put,.patch{background:#a36a00}code{font:13px ui-monospace,monospace}table{border-collapse:collapse;margin:.3rem 0}
td,th{border-bottom:1px solid #eceef2;padding:.15rem .6rem .15rem 0;text-align:left;vertical-align:top}
.muted{color:#5d6675}
"""


def _text(value: Any) -> str:
    return html.escape(str(value or ""))


def _schema_name(schema: dict[str, Any]) -> str:
    """A short name for a schema: its `$ref` target, its type, or the types it may be."""
    if "$ref" in schema:
        return schema["$ref"].rsplit("/", 1)[-1]
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return " | ".join(_schema_name(s) for s in schema[key])
    if schema.get("type") == "array":
        return f"array of {_schema_name(schema.get('items', {}))}"
    return str(schema.get("type", "any"))


def _operation(path: str, method: str, op: dict[str, Any]) -> str:
    parts = [
        f'<div class="op"><span class="method {method}">{method.upper()}</span><code>{_text(path)}</code>',
        f"<div>{_text(op.get('summary'))}</div>",
    ]
    if op.get("description"):
        parts.append(f'<div class="muted">{_text(op["description"])}</div>')
    params = op.get("parameters", [])
    if params:
        rows = "".join(
            f"<tr><td><code>{_text(p.get('name'))}</code></td><td>{_text(p.get('in'))}</td>"
            f"<td>{'required' if p.get('required') else 'optional'}</td>"
            f"<td>{_text(_schema_name(p.get('schema', {})))}</td><td>{_text(p.get('description'))}</td></tr>"
            for p in params
        )
        parts.append(
            f"<table><tr><th>parameter</th><th>in</th><th></th><th>type</th><th></th></tr>{rows}</table>"
        )
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        parts.append(
            f"<div>body: <code>{_text(media)}</code> {_text(_schema_name(content.get('schema', {})))}</div>"
        )
    responses = op.get("responses", {})
    if responses:
        rows = "".join(
            f"<tr><td><code>{_text(code)}</code></td><td>{_text(r.get('description'))}</td></tr>"
            for code, r in responses.items()
        )
        parts.append(f"<table><tr><th>status</th><th>response</th></tr>{rows}</table>")
    parts.append("</div>")
    return "".join(parts)


def docs_page(openapi: dict[str, Any]) -> str:
    """The whole reference page for an OpenAPI document, operations grouped by their first tag (or path)."""
    info = openapi.get("info", {})
    sections: dict[str, list[str]] = {}
    for path, methods in openapi.get("paths", {}).items():
        for method, op in methods.items():
            if not isinstance(op, dict):
                continue
            group = (op.get("tags") or [path.split("/")[2] if path.count("/") > 1 else path])[0]
            sections.setdefault(group, []).append(_operation(path, method, op))
    body = "".join(f"<h2>{_text(name)}</h2>{''.join(ops)}" for name, ops in sections.items())
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_text(info.get('title'))} API</title><style>{STYLE}</style></head><body>"
        f"<h1>{_text(info.get('title'))}</h1><p class='muted'>version {_text(info.get('version'))} · "
        "machine-readable: <a href='/api/openapi.json'>/api/openapi.json</a></p>"
        f"{body}</body></html>"
    )
