"""The OpenAPI 3.1 description of the server's routes (GET /openapi.json), made from the routes themselves,
and a page at /docs that lists them without loading anything from the network."""

from __future__ import annotations

import html
import json
from typing import Any

from starlette.routing import Route

ERROR = {
    "type": "object",
    "required": ["error", "error_type"],
    "properties": {"error": {"type": "string"}, "error_type": {"type": "string"}},
}
ERROR_CODES = {
    "400": "Empty input",
    "401": "Wrong or missing API key",
    "413": "Body over --payload-limit",
    "422": "Validation: wrong types, an input too long without truncate, a batch too big",
    "424": "Inference failed",
    "429": "Over --max-concurrent-requests",
    "503": "The model is not loaded yet",
}


class ApiRoute(Route):
    """A route that also carries its description: a summary and the JSON schema of its body."""

    def __init__(self, path: str, endpoint, *, method: str, summary: str, body: dict | None, auth: bool):
        super().__init__(path, endpoint, methods=[method])
        self.method, self.summary, self.body_schema, self.auth = method.lower(), summary, body, auth


def schema(routes: list, title: str, version: str) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        if not isinstance(route, ApiRoute):
            continue
        operation: dict[str, Any] = {
            "summary": route.summary,
            "operationId": route.path.strip("/").replace("/", "_") or "root",
            "responses": {"200": {"description": "OK"}}
            | {code: error_response(text) for code, text in ERROR_CODES.items()},
        }
        if route.body_schema is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": route.body_schema}},
            }
        if route.auth:
            operation["security"] = [{"bearer": []}]
        paths.setdefault(route.path, {})[route.method] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version},
        "paths": paths,
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def error_response(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": ERROR}}}


def page(spec: dict[str, Any]) -> str:
    """A self-contained HTML page: each route, its summary and its body's schema."""
    title = html.escape(f"{spec['info']['title']} {spec['info']['version']}")
    parts = [f"<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1>"]
    parts.append('<p>The machine-readable schema: <a href="/openapi.json">/openapi.json</a></p>')
    for path, operations in spec["paths"].items():
        for method, op in operations.items():
            parts.append(
                f"<h2><code>{method.upper()} {html.escape(path)}</code></h2><p>{html.escape(op['summary'])}</p>"
            )
            body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
            if body is not None:
                parts.append(f"<pre>{html.escape(json.dumps(body, indent=2))}</pre>")
    return "\n".join(parts)
