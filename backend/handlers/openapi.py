"""GET /api/v1/openapi.json: the OpenAPI 3.1 document of the API, built from the routes.

Request bodies come from the msgspec models, so the document cannot drift from
what the handlers accept.
"""

from __future__ import annotations

from typing import Any

import msgspec
from aiohttp import web

from backend import models

__all__ = ["build_document", "document"]

_BODIES: dict[tuple[str, str], type] = {
    ("POST", "/api/v1/auth:register"): models.RegisterBody,
    ("POST", "/api/v1/auth:login"): models.LoginBody,
    ("POST", "/api/v1/auth:refreshToken"): models.RefreshBody,
    ("POST", "/api/v1/machines/{machine_id}/monitors"): models.MonitorCreate,
    ("POST", "/api/v1/traces:generate"): models.TraceGenerate,
}
_ERROR = {
    "type": "object",
    "properties": {"error": {"type": "object", "properties": {
        "code": {"type": "integer"}, "message": {"type": "string"},
        "status": {"type": "string"}}}},
}


def build_document(app: web.Application) -> dict[str, Any]:
    bodies = list(_BODIES.values())
    schemas, components = msgspec.json.schema_components(
        bodies, ref_template="#/components/schemas/{name}"
    )
    by_type = dict(zip(bodies, schemas, strict=True))
    paths: dict[str, dict[str, Any]] = {}
    for route in app.router.routes():
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        if not path or route.method == "HEAD":
            continue
        doc = (route.handler.__doc__ or "").strip()
        op: dict[str, Any] = {
            "operationId": f"{route.method.lower()}_{route.handler.__name__}",
            "summary": doc.splitlines()[0] if doc else route.handler.__name__,
            "responses": {
                "default": {"description": "error",
                            "content": {"application/json": {"schema": _ERROR}}},
            },
        }
        body = _BODIES.get((route.method, path))
        if body is not None:
            op["requestBody"] = {"required": True,
                                 "content": {"application/json": {"schema": by_type[body]}}}
        if path not in {"/api/v1/auth:login", "/api/v1/auth:register",
                        "/api/v1/auth:refreshToken", "/api/v1/openapi.json"}:
            op["security"] = [{"bearer": []}]
        params = [seg[1:-1] for seg in path.split("/") if seg.startswith("{")]
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True,
                                 "schema": {"type": "string"}} for p in params]
        paths.setdefault(path, {})[route.method.lower()] = op
    return {
        "openapi": "3.1.0",
        "info": {"title": "xputrace", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "bearerFormat": "JWT"}},
        },
    }


async def document(request: web.Request) -> web.Response:
    """The OpenAPI document of this API."""
    return web.json_response(build_document(request.app))
